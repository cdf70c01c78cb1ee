"""Benchmark of the compare-reprojections core (issue #5): matching, refinement, scoring.

Cases (simulated blob-phantom particles, SNR 1, no CTF, float32 images):

(a) global matching of 200 images of box 64 against a 5 deg c1 gallery
    (``xmipp_qc.core.matching``: ``Gallery.build`` + ``match_images``; the time
    includes building the gallery). Reference: ``xmipp_angular_project_library``
    + ``xmipp_angular_projection_matching`` on this 2-core machine, 200 images in
    77 s (2.6 images/s). Target >= 25 images/s.
(b) local refinement plus scoring (``LocalRefiner.refine`` + ``summarize_chunk``
    per chunk of 500, then ``set_statistics``) of 1,000 and 5,000 particles of
    box 64, starting from angles up to 3 deg and shifts up to 2 px off.
    Reference: ``xmipp_angular_continuous_assign2`` 1,000 images in 69 s plus
    ``xmipp_image_residuals`` 20 s (11 images/s; median error about 1 deg).
    Target >= 200 images/s.
(c) the whole core pipeline (refine + score + set statistics, chunks of 500)
    on 10,000 particles of box 96; only one chunk of images is alive at a time.
(d) the accuracy panel (issue #15, ``--panel``; maps and images from
    ``xmipp_qc/tests/panel.py``): images of every panel map made by an
    independent real-space line-integral projector, at SNR 1 and 0.1, centred
    without CTF ("plain") and with a CTF and shifts up to 0.1 N ("ctf+shift"),
    matched against a 5 deg gallery (and a 3 deg one for plain images, which
    must never do worse): fraction within 1.5 steps and within 7.5 deg (the
    same yardstick for both steps), median error (deg, symmetry-aware),
    matching rate (img/s; the gallery build is excluded and timed apart). Then
    the local refinement: from the true angles of noiseless images (median and
    99th percentile of the angular change, deg; flagged = images reported as
    not pinned by the data) and from angles 3 deg off at SNR 1 (median error
    before -> after), beside the Cramér-Rao bound on the first ``n_bound``
    images (``xmipp_qc/tests/cramer_rao.py``: the median error of an efficient
    unbiased estimator; the refinement's median on the same images is printed
    next to it).

Times are medians over ``--repeats`` runs and cover the core calls only (data
generation is excluded): wall time (img/s, compared with Xmipp) and the
process CPU time (cpu/s: images per CPU-second, which is what the machine
would give without the other jobs sharing its two cores). Peak memory is the
``tracemalloc`` peak of the core calls (numpy buffers included), i.e. what one
chunk costs, not the process RSS.
The accuracy column is the median geodesic angular error to the true
orientation (deg) and the median shift error (px).

Usage::

    .venv/bin/python benchmarks/alignment.py [--repeats 3] [--quick]
    .venv/bin/python benchmarks/alignment.py --panel [--panel-n 100] [--maps 70S@24,compact30]
"""

import argparse
import statistics
import time
import tracemalloc

import numpy as np
from scipy.spatial.transform import Rotation

from xmipp_qc.core.geometry import euler_to_matrix
from xmipp_qc.core.outliers import set_statistics
from xmipp_qc.core.refine import LocalRefiner
from xmipp_qc.core.residuals import ChunkSummary, summarize_chunk
from xmipp_qc.core.simulate import (
    blobs_volume,
    perturb_angles,
    phantom_blobs,
    simulate_particles,
)

XMIPP_MATCH_RATE = 200 / 77.0
XMIPP_REFINE_SCORE_RATE = 1000 / (69.0 + 20.0)
CHUNK = 500


def _geodesic(a, b):
    rel = euler_to_matrix(a) @ np.transpose(euler_to_matrix(b), (0, 2, 1))
    return np.degrees(Rotation.from_matrix(rel).magnitude())


def _perturbed(ps, seed):
    rng = np.random.default_rng(seed)
    n = len(ps.angles)
    angles = perturb_angles(ps.true_angles, rng.uniform(0, 3, n), rng)
    phi, r = rng.uniform(0, 2 * np.pi, n), rng.uniform(0, 2, n)
    return angles, ps.true_shifts + np.c_[r * np.cos(phi), r * np.sin(phi)]


class _Meter:
    """Accumulates the time and the tracemalloc peak of the timed sections."""

    def __init__(self):
        self.seconds, self.cpu, self.peak = 0.0, 0.0, 0

    def __enter__(self):
        tracemalloc.reset_peak()
        self._base = tracemalloc.get_traced_memory()[0]
        self._t, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.seconds += time.perf_counter() - self._t
        self.cpu += time.process_time() - self._c
        self.peak = max(self.peak, tracemalloc.get_traced_memory()[1] - self._base)


def bench_matching(repeats):
    try:
        from xmipp_qc.core.matching import Gallery, match_images
    except ImportError:
        return None
    box, n = 64, 200
    blobs = phantom_blobs(box, seed=0)
    vol = blobs_volume(blobs, box)
    ps = simulate_particles(blobs, n, box=box, snr=1.0, max_shift_px=2.0, seed=1)
    runs = []
    for _ in range(repeats):
        meter = _Meter()
        with meter:
            gallery = Gallery.build(vol, angular_step=5.0, symmetry="c1")
            res = match_images(ps.images, gallery)
        err = _geodesic(res.angles, ps.true_angles)
        runs.append((meter.seconds, meter.peak, np.median(err), (err < 5).mean(), meter.cpu))
    return runs


def refine_and_score(refiner, chunks):
    """The core pipeline: per chunk refine + summarise, then set statistics."""
    meter, parts, errors = _Meter(), [], []
    for ps, angles, shifts in chunks():
        with meter:
            res = refiner.refine(ps.images, angles, shifts)
            parts.append(summarize_chunk(ps.images, res.projections, extra=res.scores()))
        errors.append((_geodesic(res.angles, ps.true_angles),
                       np.hypot(*(res.shifts - ps.true_shifts).T)))
    with meter:
        stats = set_statistics(ChunkSummary.concatenate(parts))
    assert len(stats.is_outlier) == sum(len(e[0]) for e in errors)
    ang = np.concatenate([e[0] for e in errors])
    sh = np.concatenate([e[1] for e in errors])
    return meter.seconds, meter.peak, np.median(ang), np.median(sh), meter.cpu


def bench_refine(n, box, repeats, pregenerate=True):
    blobs = phantom_blobs(box, seed=0)
    refiner = LocalRefiner(blobs_volume(blobs, box))

    def make(k, size):
        ps = simulate_particles(blobs, size, box=box, snr=1.0, max_shift_px=2.0, seed=10 + k)
        return (ps, *_perturbed(ps, seed=k))

    sizes = [min(CHUNK, n - s) for s in range(0, n, CHUNK)]
    if pregenerate:
        data = [make(k, size) for k, size in enumerate(sizes)]

        def chunks():
            return iter(data)
    else:
        def chunks():
            return (make(k, size) for k, size in enumerate(sizes))
    return [refine_and_score(refiner, chunks) for _ in range(repeats)]


def _row(name, n, runs, ref_rate, target):
    sec = statistics.median(r[0] for r in runs)
    peak = statistics.median(r[1] for r in runs) / 2**20
    rate = n / sec
    cpu = statistics.median(r[4] for r in runs)
    ratio = f"{rate / ref_rate:8.1f}x" if ref_rate else f"{'-':>9}"
    ang, sh = (statistics.median(r[k] for r in runs) for k in (2, 3))
    print(f"{name:<31}{n:>6}{sec:>8.2f}{cpu:>8.2f}{rate:>8.1f}{n / cpu:>8.1f}{peak:>8.0f}"
          f"{ratio}{target:>7}   {ang:.2f} deg / {sh:.2f}")


def _panel_match(pmap, images, truth, step, ctf=None):
    from xmipp_qc.core.geometry import rotation_distance
    from xmipp_qc.core.matching import Gallery, match_images

    t0 = time.perf_counter()
    gallery = Gallery.build(pmap.volume, angular_step=step, symmetry=pmap.symmetry)
    t1 = time.perf_counter()
    res = match_images(images, gallery, ctf=ctf)
    t2 = time.perf_counter()
    err = rotation_distance(res.angles, truth, pmap.symmetry)
    return (np.mean(err <= 1.5 * step), np.mean(err <= 7.5), np.median(err),
            len(images) / (t2 - t1), t1 - t0)


def _panel_refine(pmap, sim, noisy, n_bound):
    """Refinement rows: exact-angle change, 3 deg off -> after, and the Cramér-Rao bound."""
    from xmipp_qc.tests.cramer_rao import orientation_bound, predicted_median_error
    from xmipp_qc.tests.panel import noise_sigma

    refiner = LocalRefiner(pmap.volume)
    exact = refiner.refine(sim.images, sim.angles, sim.shifts, ctf=sim.ctf)
    change = exact.angle_change_deg
    start = perturb_angles(sim.angles, 3.0, seed=3)
    res = refiner.refine(noisy, start, sim.shifts, ctf=sim.ctf)
    err = _geodesic(res.angles, sim.angles)
    k = min(n_bound, len(sim.images))
    ctf = None if sim.ctf is None else sim.ctf[:k]
    bound = orientation_bound(pmap.volume, sim.angles[:k], sim.shifts[:k],
                              noise_sigma(sim.images, 1.0), ctf)  # fmt: skip
    return (np.median(change), np.percentile(change, 99), int(np.sum(~exact.pinned)),
            np.median(_geodesic(start, sim.angles)), np.median(err), np.median(err[:k]),
            predicted_median_error(bound))


def bench_panel(n, names=None, n_bound=24):
    """Print the accuracy panel table (module docstring, case d)."""
    from xmipp_qc.tests.panel import add_noise, panel_maps, simulate_images

    print(f"{'map':<12}{'box':>5}{'sym':>5}  {'images':<10}{'SNR':>5}{'step':>5}"
          f"{'<=1.5 step':>11}{'<=7.5 deg':>10}{'median':>8}{'img/s':>8}{'gallery s':>10}")
    refine_rows = []
    for pmap in panel_maps():
        if names and pmap.name not in names:
            continue
        for kind in ("plain", "ctf+shift"):
            sim = simulate_images(pmap, n, snr=None, ctf=kind != "plain",
                                  max_shift_px=0.0 if kind == "plain" else 0.1 * pmap.box,
                                  seed=pmap.box)  # fmt: skip
            for snr in (1.0, 0.1):
                noisy = add_noise(sim.images, snr, seed=7)
                steps = (5.0, 3.0) if kind == "plain" and snr == 1.0 else (5.0,)
                for step in steps:
                    frac, f75, med, rate, tg = _panel_match(pmap, noisy, sim.angles, step,
                                                            sim.ctf)  # fmt: skip
                    print(f"{pmap.name:<12}{pmap.box:>5}{pmap.symmetry:>5}  {kind:<10}{snr:>5g}"
                          f"{step:>5g}{frac:>11.3f}{f75:>10.3f}{med:>8.2f}{rate:>8.1f}{tg:>10.1f}",
                          flush=True)  # fmt: skip
            noisy = add_noise(sim.images, 1.0, seed=8)
            refine_rows.append((pmap, kind, _panel_refine(pmap, sim, noisy, n_bound)))
    _print_refine_rows(refine_rows, n_bound)


def _print_refine_rows(rows, n_bound):
    print(f"\n{'map':<12}{'box':>5}  {'images':<10}{'exact: median':>14}{'p99':>7}"
          f"{'flagged':>8}   3 deg off, SNR 1: median before -> after (deg);"
          f" first {n_bound}: after | Cramér-Rao median")
    for pmap, kind, (med, p99, n_flag, before, after, after_k, bound) in rows:
        print(f"{pmap.name:<12}{pmap.box:>5}  {kind:<10}{med:>14.3f}{p99:>7.2f}{n_flag:>8}"
              f"   {before:.2f} -> {after:.2f}; {after_k:.2f} | {bound:.2f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="skip the 5,000 and 10,000 cases")
    parser.add_argument("--panel", action="store_true", help="print only the accuracy panel")
    parser.add_argument("--panel-n", type=int, default=100, help="images per panel case")
    parser.add_argument("--maps", default="", help="comma-separated panel maps (default all)")
    args = parser.parse_args()
    if args.panel:
        bench_panel(args.panel_n, [m for m in args.maps.split(",") if m])
        return
    tracemalloc.start()
    print(f"medians of {args.repeats} runs; time = core calls only; peak = tracemalloc peak")
    print(f"{'case':<31}{'n':>6}{'wall s':>8}{'cpu s':>8}{'img/s':>8}{'cpu/s':>8}{'peak MB':>8}"
          f"{'vs Xmipp':>9}{'target':>7}   accuracy (median ang / shift px, or frac < 5 deg)")
    match = bench_matching(args.repeats)
    if match is None:
        print(f"{'(a) matching 5 deg c1, box 64':<31}   not available (xmipp_qc.core.matching)")
    else:
        _row("(a) matching 5 deg c1, box 64", 200, match, XMIPP_MATCH_RATE, ">=25")
    for n in (1000,) if args.quick else (1000, 5000):
        runs = bench_refine(n, 64, args.repeats)
        _row("(b) refine + score, box 64", n, runs, XMIPP_REFINE_SCORE_RATE, ">=200")
    if not args.quick:
        runs = bench_refine(10000, 96, args.repeats, pregenerate=False)
        _row("(c) whole pipeline, box 96", 10000, runs, XMIPP_REFINE_SCORE_RATE, "-")
    print(f"Xmipp reference rates (this machine): matching {XMIPP_MATCH_RATE:.1f} img/s, "
          f"continuous_assign2 + image_residuals {XMIPP_REFINE_SCORE_RATE:.1f} img/s (box 64)")


if __name__ == "__main__":
    main()
