"""Benchmark of the CTF check (issue 20): the time it adds to compare reprojections.

The check (:mod:`xmipp_qc.core.ctf_check`) runs inside
:func:`xmipp_qc.core.pipeline.process_chunk` whenever the CTF is applied. Each
workload is processed chunk by chunk (256 images, one thread) with the check
on and off, alternately, ``--repeats`` times; printed: medians of the chunk
processing time without and with the check, the difference, its share of the
run without it (target <= 10%), the time of ``ctf_correlations`` alone and the
peak RSS. Workloads:

* ``betagal``: the 1,157 real particles of ``../shared/data/betagal-real``
  (box 64 at 3.54 Å/px), given poses, no refinement (the issue's command:
  ``--use-ctf --symmetry d2 --no-refine``);
* ``refine``: 2,048 synthetic particles of box 64 at 3 Å/px with CTF, given
  angles, local refinement (the default run);
* ``matching``: 512 synthetic particles, angles found by projection matching
  (5 deg, c1) then refined.

A second table times whole ``xmipp-qc compare-reprojections`` runs (wall time,
reading, writing the stacks, STAR files and reports included: "a run's time")
with and without ``--no-ctf-check``, alternately: ``betagal`` with the
issue's options, and ``refine``'s particles written as a STAR + MRC stack.

Usage: ``python benchmarks/ctf_check.py [--repeats 3] [--workloads betagal refine matching]
[--cli betagal refine]``. The machine is shared: the load average is printed with the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import time
from pathlib import Path

import numpy as np

from xmipp_qc.core import simulate as sim
from xmipp_qc.core.ctf_check import ctf_correlations
from xmipp_qc.core.pipeline import CompareOptions, MapModel, process_chunk

BETAGAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "betagal-real"
CHUNK = 256


def _betagal():
    from xmipp_qc.formats.mrc import read_images, read_volume
    from xmipp_qc.formats.relion_particles import read_particles

    p = read_particles(str(BETAGAL / "particles.star"))
    stacks = np.array(p.stacks, dtype=object)
    images = np.empty((p.n, int(p.box[0]), int(p.box[0])), dtype=np.float32)
    for s in np.unique(stacks):
        rows = np.flatnonzero(stacks == s)
        images[rows] = read_images(s, p.items[rows])
    vol, vpx = read_volume(str(BETAGAL / "betagal_map.mrc"))  # 100^3 at 3.54 Å/px
    from xmipp_qc.commands.compare_reprojections_inputs import Grid

    grid = Grid.of(p, [vpx], True)  # the CLI's working grid: box 64 at 3.54 Å/px
    vol = grid.fit(vol, vpx, 3)

    acq = {k: float(v[0]) for k, v in p.acquisition.items() if k != "phase_shift_deg"}
    opts = CompareOptions(pixel_size_a=float(p.pixel_size_a[0]), symmetry="d2", use_ctf=True,
                          refine=False)
    return images, vol, p.angles, p.shifts, p.defocus, acq, opts


def _synthetic(n: int, matching: bool):
    box, px = 64, 3.0
    blobs = sim.phantom_blobs(box, seed=5, n_blobs=30)
    ps = sim.simulate_particles(blobs, n, box=box, snr=0.3, pixel_size_a=px, ctf=True,
                                max_shift_px=2.0, seed=6)
    defocus = np.stack([ps.defocus_u, ps.defocus_v, ps.defocus_angle], axis=1)
    acq = {"voltage_kv": ps.voltage_kv, "cs_mm": ps.cs_mm,
           "amplitude_contrast": ps.amplitude_contrast}
    opts = CompareOptions(pixel_size_a=px, use_ctf=True, refine=True)
    angles = None if matching else ps.angles
    return ps.images, sim.blobs_volume(blobs, box), angles, ps.shifts, defocus, acq, opts


class _CheckTimer:
    """Seconds spent in ``chunk_correlations`` (the whole check of a chunk) while on."""

    def __init__(self):
        from xmipp_qc.core import ctf_check

        self.module, self.original, self.seconds = ctf_check, ctf_check.chunk_correlations, 0.0

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return self.original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0

        ctf_check.chunk_correlations = timed

    def close(self):
        self.module.chunk_correlations = self.original


def _run(images, vol, angles, shifts, defocus, acq, opts, check: bool) -> float:
    model = MapModel(vol, dataclasses.replace(opts, ctf_check=check))
    if angles is None:
        model.gallery  # noqa: B018  (built once, not part of the per-chunk cost)
    if opts.refine:
        model.refiner  # noqa: B018
    t0 = time.perf_counter()
    for s in range(0, len(images), CHUNK):
        sl = slice(s, s + CHUNK)
        process_chunk(model, images[sl], ids=np.arange(len(images))[sl],
                      angles=None if angles is None else angles[sl], shifts=shifts[sl],
                      defocus=defocus[sl], acquisition=acq, keep_images=True)
    return time.perf_counter() - t0


def _alone(images, defocus, acq, opts) -> float:
    """``ctf_correlations`` alone on every image, in the default band (no projection)."""
    from xmipp_qc.core.search_band import default_band

    rng = np.random.default_rng(0)
    band = default_band(images.shape[-1])
    spectra = np.fft.rfft2(rng.normal(size=(CHUNK,) + images.shape[1:])).astype(np.complex64)
    t0 = time.perf_counter()
    for s in range(0, len(images), CHUNK):
        x = images[s:s + CHUNK]
        ctf_correlations(x, spectra[:len(x)], defocus[s:s + CHUNK], acq,
                         pixel_size_a=opts.pixel_size_a, max_freq=band)
    return time.perf_counter() - t0


def _write_star(folder: Path, data) -> Path:
    """The synthetic particles as ``particles.star`` + ``stack.mrcs`` (RELION 3.1)."""
    from xmipp_qc.formats.mrc import write_stack, write_volume

    images, vol, angles, shifts, defocus, acq, opts = data
    px, box = opts.pixel_size_a, images.shape[-1]
    write_stack(str(folder / "stack.mrcs"), images, px)
    write_volume(str(folder / "map.mrc"), vol, px)
    lines = ["data_optics", "loop_", "_rlnOpticsGroup #1", "_rlnVoltage #2",
             "_rlnSphericalAberration #3", "_rlnAmplitudeContrast #4", "_rlnImagePixelSize #5",
             "_rlnImageSize #6", f"1 {acq['voltage_kv']} {acq['cs_mm']} "
             f"{acq['amplitude_contrast']} {px} {box}", "", "data_particles", "loop_"]
    cols = ["rlnImageName", "rlnMicrographName", "rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi",
            "rlnOriginXAngst", "rlnOriginYAngst", "rlnOpticsGroup", "rlnDefocusU",
            "rlnDefocusV", "rlnDefocusAngle"]
    lines += [f"_{c} #{i + 1}" for i, c in enumerate(cols)]
    for i in range(len(images)):
        a, sh, d = angles[i], shifts[i] * px, defocus[i]
        lines.append(f"{i + 1:06d}@stack.mrcs mic{i // 64:03d}.mrc {a[0]:.4f} {a[1]:.4f} "
                     f"{a[2]:.4f} {sh[0]:.4f} {sh[1]:.4f} 1 {d[0]:.2f} {d[1]:.2f} {d[2]:.3f}")
    (folder / "particles.star").write_text("\n".join(lines) + "\n")
    return folder / "particles.star"


def _cli(star: Path, volume: Path, out: Path, extra: list, check: bool) -> float:
    import shutil
    import subprocess
    import sys

    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "xmipp_qc.cli", "compare-reprojections", "--images", str(star),
           "--volume", str(volume), "--out", str(out), "--use-ctf", *extra]
    t0 = time.perf_counter()
    subprocess.run(cmd + ([] if check else ["--no-ctf-check"]), check=True,
                   capture_output=True)
    return time.perf_counter() - t0


def cli_table(names, repeats: int) -> None:
    import tempfile

    print(f"\nxmipp-qc compare-reprojections, wall time; load average {os.getloadavg()[0]:.1f}")
    print(f"{'workload':<10}{'images':>8}{'off s':>9}{'on s':>9}{'added s':>9}{'added %':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        runs = {"betagal": (BETAGAL / "particles.star", BETAGAL / "betagal_map.mrc",
                            ["--symmetry", "d2", "--no-refine"], 1157)}
        if "refine" in names:
            (root / "refine").mkdir()
            star = _write_star(root / "refine", _synthetic(2048, False))
            runs["refine"] = (star, root / "refine" / "map.mrc", [], 2048)
        for name in names:
            star, vol, extra, n = runs[name]
            off, on = [], []
            for _ in range(repeats):
                off.append(_cli(star, vol, root / "out", extra, False))
                on.append(_cli(star, vol, root / "out", extra, True))
            t_off, t_on = float(np.median(off)), float(np.median(on))
            print(f"{name:<10}{n:>8}{t_off:>9.2f}{t_on:>9.2f}{t_on - t_off:>9.2f}"
                  f"{100 * (t_on - t_off) / t_off:>9.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workloads", nargs="*", default=["betagal", "refine", "matching"])
    ap.add_argument("--cli", nargs="*", default=["betagal", "refine"])
    args = ap.parse_args()
    from xmipp_qc.native_threads import limit_blas_threads

    limit_blas_threads()
    loads = {"betagal": _betagal, "refine": lambda: _synthetic(2048, False),
             "matching": lambda: _synthetic(512, True)}
    print(f"load average {os.getloadavg()[0]:.1f}; medians of {args.repeats} repeats, "
          f"chunks of {CHUNK}, one thread")
    print(f"{'workload':<10}{'images':>8}{'off s':>9}{'on s':>9}{'added s':>9}{'added %':>9}"
          f"{'in check s':>12}{'check %':>9}{'check alone s':>15}{'img/s on':>10}"
          f"{'peak RSS MB':>13}")
    for name in args.workloads:
        data = loads[name]()
        off, on, inside, share = [], [], [], []
        for _ in range(args.repeats):
            off.append(_run(*data, check=False))
            timer = _CheckTimer()
            try:
                on.append(_run(*data, check=True))
            finally:
                timer.close()
            inside.append(timer.seconds)
            share.append(timer.seconds / on[-1])
        alone = np.median([_alone(data[0], data[4], data[5], data[6])
                           for _ in range(args.repeats)])
        t_off, t_on = float(np.median(off)), float(np.median(on))
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{name:<10}{len(data[0]):>8}{t_off:>9.2f}{t_on:>9.2f}{t_on - t_off:>9.2f}"
              f"{100 * (t_on - t_off) / t_off:>9.1f}{np.median(inside):>12.2f}"
              f"{100 * np.median(share):>9.1f}{alone:>15.2f}"
              f"{len(data[0]) / t_on:>10.1f}{rss:>13.0f}")
    if args.cli:
        cli_table(args.cli, args.repeats)


if __name__ == "__main__":
    main()
