"""Benchmark of the Fourier-slice projector (xmipp_qc.core.projection, issue #4).

Workload: a blob phantom of box 128 (and 64) projected at the 1692 directions
of a 5° c1 gallery (psi = 0; xmipp_qc.core.sampling, Xmipp's icosahedral
sampling), for each interpolation (linear, cubic B-spline), full band and
max_freq = 0.25, pad 1 and 2, float32, one thread.

Printed per configuration (medians of ``--repeats`` runs):

* ``init s``: the projector's set-up (padding, 3D FFT, interpolation table);
* ``proj s`` and ``proj/s``: wall time of ``project`` for the whole gallery
  (real images, origin at N//2) and the throughput; ``cpu proj/s`` the same
  from process CPU time (less sensitive to other jobs on the machine);
* ``peak MB``: peak traced memory (tracemalloc, numpy buffers) of set-up plus
  projection, in a separate untimed run;
* ``min NCC`` and ``max err``: worst normalised cross-correlation and largest
  error relative to the peak, over 64 gallery directions, against the exact
  analytic line integrals of the phantom (``simulate.project_blobs``),
  band-limited to max_freq when one is set;
* ``ref/s`` and ``ratio``: the reference figure measured on this machine and
  our throughput divided by it. References: Xmipp C++
  (``xmipp_angular_project_library``) 1.35 s for 1692 projections of a 128³
  map with pad 1, cut-off 0.25, B-spline (1,250/s) and 9.5 s with pad 2, full
  band (180/s); otherwise a plain numpy ``map_coordinates`` Fourier-slice loop
  (120/s at box 128, 720/s at box 64; reference study anchors.md §4.3).

Xmipp measured now: the same C++ projector (``xmippLib.FourierProjector``,
installed with scipion-em; one child process per projector, see
``xmipp_qc/tests/xmipp_projector.py``) is timed in the same run, on the same
phantom and directions, at Xmipp's gallery setting (pad 1, cut-off 0.25,
B-spline) and at pad 2 over the full disc (B-spline). It is printed first, and
the columns ``now/s`` and ``now ratio`` (CPU time) compare each row having the
same padding (or, for the pad-4 row, the same accuracy) with it. This ratio is
immune to the machine's state, which the fixed figures are not: the machine is
shared, and a loaded phase slows this memory-bound numpy code (several passes
over the gathered taps) much more than Xmipp's scalar loop.

Targets (issue #4): >= 2,500/s for pad 1, cut-off 0.25, cubic at box 128, or
a cheaper scheme of equivalent accuracy (the extra row: linear, pad 4, cut-off
0.25, whose NCC and max error match cubic pad 1); >= 1,000/s full band, box
128, linear, with NCC >= 0.999 (pad 2). ``ratio`` uses wall time and ``cpu
ratio`` CPU time (fairer when other jobs share the machine, as the references
were measured on it idle); ``target`` gives the verdict for both.

Usage::

    .venv/bin/python benchmarks/projection.py [--boxes 64 128] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one thread, like the references
os.environ.setdefault("OMP_NUM_THREADS", "1")

import statistics
import time
import tracemalloc

import numpy as np

from xmipp_qc.core.projection import FourierProjector
from xmipp_qc.core.sampling import sample_directions
from xmipp_qc.core.simulate import blobs_volume, phantom_blobs, project_blobs
from xmipp_qc.core.transform import low_pass
from xmipp_qc.tests.xmipp_projector import xmipp_projections

XMIPP = {(128, 1, 0.25, "cubic"): 1692 / 1.35, (128, 2, None): 1692 / 9.5}
NUMPY_BASELINE = {128: 120.0, 64: 720.0}
TARGETS = {
    (128, 1, 0.25, "cubic"): 2500.0,
    (128, 4, 0.25, "linear"): 2500.0,  # the equivalent-accuracy alternative to cubic pad 1
    (128, 2, None, "linear"): 1000.0,
}
XMIPP_NOW = {  # (pad, max_freq) of a row -> Xmipp's projector measured now: (pad, max_freq, degree)
    (1, 0.25): (1, 0.25, 3),
    (4, 0.25): (1, 0.25, 3),  # the pad-4 row matches the accuracy of Xmipp's gallery setting
    (2, None): (2, 0.5, 3),
}
CONFIGS = [  # (interpolation, max_freq, pad)
    (interp, band, pad) for interp in ("linear", "cubic") for band in (None, 0.25) for pad in (1, 2)
] + [("linear", 0.25, 4)]


def reference(box, pad, max_freq, interp):
    if (box, pad, max_freq, interp) in XMIPP:
        return XMIPP[(box, pad, max_freq, interp)], "xmipp"
    if (box, pad, max_freq) in XMIPP:
        return XMIPP[(box, pad, max_freq)], "xmipp"
    return NUMPY_BASELINE.get(box, float("nan")), "numpy"


def ncc(a, b):
    a = a - a.mean(axis=(1, 2), keepdims=True)
    b = b - b.mean(axis=(1, 2), keepdims=True)
    return (a * b).sum((1, 2)) / np.sqrt((a * a).sum((1, 2)) * (b * b).sum((1, 2)))


def run_once(vol, angles, kwargs):
    t0 = time.perf_counter()
    fp = FourierProjector(vol, dtype=np.float32, **kwargs)
    t1, c1 = time.perf_counter(), time.process_time()
    images = fp.project(angles)
    t2, c2 = time.perf_counter(), time.process_time()
    return t1 - t0, t2 - t1, c2 - c1, fp, images


def peak_memory_mb(vol, angles, kwargs):
    tracemalloc.start()
    tracemalloc.reset_peak()
    fp = FourierProjector(vol, dtype=np.float32, **kwargs)
    fp.project(angles)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def accuracy(got, exact, max_freq):
    """Worst NCC and largest error relative to the peak, against the exact projections."""
    want = exact  # a hard cut-off at max_freq cycles/px = 1/max_freq Å at 1 Å/px
    if max_freq is not None and max_freq < 0.5:
        want = low_pass(exact, 1.0 / max_freq, 1.0, edge_width=0.0)
    return ncc(got, want).min(), np.abs(got - want).max() / np.abs(want).max()


def measure_xmipp(vol, angles, check, exact, repeats):
    """Xmipp's C++ projector timed now: {(pad, max_freq, degree): row dict}."""
    rows = {}
    for pad, max_freq, degree in sorted(set(XMIPP_NOW.values())):
        t0 = time.perf_counter()
        images, times = xmipp_projections(vol, check, pad=pad, max_freq=max_freq, degree=degree)
        _, times = xmipp_projections(vol, angles, pad=pad, max_freq=max_freq, degree=degree,
                                     keep=0, repeats=repeats)
        score, err = accuracy(images, exact, max_freq)
        wall, cpu = np.median(times, axis=0)
        rows[(pad, max_freq, degree)] = {
            "pad": pad, "band": max_freq, "degree": degree, "wall": wall,
            "rate": len(angles) / wall, "cpu_rate": len(angles) / cpu, "ncc": score, "err": err,
            "total": time.perf_counter() - t0,
        }
    return rows


def print_xmipp(box, rows):
    print(f"Xmipp's projector (xmippLib, C++, one process), box {box}, measured now:")
    print(f"{'pad':>4} {'band':>5} {'interp':>8} {'proj s':>7} {'proj/s':>7} {'cpu proj/s':>10} "
          f"{'min NCC':>8} {'max err':>7}")
    for r in rows.values():
        interp = {1: "linear", 3: "B-spline"}[r["degree"]]
        print(f"{r['pad']:>4} {r['band']!s:>5} {interp:>8} {r['wall']:>7.2f} {r['rate']:>7.0f} "
              f"{r['cpu_rate']:>10.0f} {r['ncc']:>8.5f} {r['err']:>7.4f}", flush=True)


def bench(box, repeats, angles):
    blobs = phantom_blobs(box, seed=0)
    vol = blobs_volume(blobs, box, np.float32)
    check = angles[:: max(1, len(angles) // 64)][:64]
    exact = project_blobs(blobs, check, box=box)
    now = measure_xmipp(vol, angles, check, exact, repeats)
    print_xmipp(box, now)
    print(HEADER)
    rows = []
    for interp, max_freq, pad in CONFIGS:
        kwargs = {"pad": pad, "interpolation": interp, "max_freq": max_freq}
        runs = [run_once(vol, angles, kwargs) for _ in range(repeats)]
        score, err = accuracy(runs[-1][3].project(check), exact, max_freq)
        ref, ref_name = reference(box, pad, max_freq, interp)
        xmipp_now = now.get(XMIPP_NOW.get((pad, max_freq)), {}).get("cpu_rate", float("nan"))
        row = {
            "box": box, "interp": interp, "band": "full" if max_freq is None else max_freq,
            "pad": pad, "init": statistics.median(r[0] for r in runs),
            "wall": statistics.median(r[1] for r in runs), "ncc": score, "err": err,
            "cpu_rate": len(angles) / statistics.median(r[2] for r in runs),
            "mem": peak_memory_mb(vol, angles, kwargs), "ref": ref, "ref_name": ref_name,
            "now": xmipp_now, "target": TARGETS.get((box, pad, max_freq, interp)),
        }
        row["rate"] = len(angles) / row["wall"]
        rows.append(row)
        print_row(row)
    return rows


HEADER = (
    f"{'box':>4} {'interp':>6} {'band':>5} {'pad':>3} {'init s':>7} {'proj s':>7} "
    f"{'proj/s':>7} {'cpu proj/s':>10} {'peak MB':>8} {'min NCC':>8} {'max err':>7} {'ref/s':>7} "
    f"{'ref':>5} {'ratio':>6} {'cpu ratio':>9} {'now/s':>6} {'now ratio':>9} "
    f"{'target wall/cpu':>15}"
)


def print_row(r):
    def verdict(x):
        return "ok" if x >= r["target"] else "MISS"

    tgt = "" if r["target"] is None else (
        f"{r['target']:.0f}: {verdict(r['rate'])}/{verdict(r['cpu_rate'])}")
    now = "" if np.isnan(r["now"]) else f"{r['now']:>6.0f} {r['cpu_rate'] / r['now']:>9.2f}"
    print(
        f"{r['box']:>4} {r['interp']:>6} {r['band']!s:>5} {r['pad']:>3} {r['init']:>7.2f} "
        f"{r['wall']:>7.2f} {r['rate']:>7.0f} {r['cpu_rate']:>10.0f} {r['mem']:>8.0f} "
        f"{r['ncc']:>8.5f} {r['err']:>7.4f} {r['ref']:>7.0f} {r['ref_name']:>5} "
        f"{r['rate'] / r['ref']:>6.2f} {r['cpu_rate'] / r['ref']:>9.2f} {now:>16} {tgt:>15}",
        flush=True,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boxes", type=int, nargs="+", default=[128, 64])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    angles = sample_directions(5.0)
    print(
        f"{len(angles)} directions (5° c1 gallery, psi = 0), float32, 1 thread, "
        f"medians of {args.repeats} runs"
    )
    for box in args.boxes:
        bench(box, args.repeats, angles)


if __name__ == "__main__":
    main()
