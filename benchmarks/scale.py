"""Benchmark of compare reprojections at scale: does memory stay flat with the particle count?

Input: a RELION 3.1 particle STAR of ``--sizes`` particles (default 10,000,
40,000, 200,000) of box 256 at 1.27 Å/px, with given angles, shifts and CTF
(300 kV), made by TILING a small simulated set (``--tile``, default 500
particles, :func:`xmipp_qc.core.simulate.simulate_particles`, written once as
float16, MRC mode 12): the STAR names one stack per 500 particles, each stack a
symbolic link to the tile, so a set of any size costs the tile's 66 MB of disk
and is ready in seconds (the images are then read from the page cache, not the
disk; reading is a small part of a chunk's time). One map (the simulated blob
map, box 256).

Workloads (``--workloads``):

* ``cli``: ``xmipp-qc compare-reprojections --use-ctf -j 2`` (default chunk
  size, working box 96 at 3.39 Å/px) in a child process, with
  ``--output-stacks`` (default ``all``);
* ``final``: the command line's whole-set steps alone (set scores and flags,
  particle STAR with every score and image column, kept/flagged STARs,
  summary, ranking), at each size, from the chunk results of a real run on
  2,000 of the particles tiled to that size (ids renumbered), in a child
  process: the steps whose memory holds per-particle numbers, measured at
  sizes the full run takes too long for on a shared machine;
* ``protocol``: the same particles imported into a headless Scipion project
  (pwem's import from a Scipion sqlite, not timed), then
  ``XmippQcProtCompareReprojections`` with ``numberOfThreads = 3`` (2 chunk
  threads), CTF used, no ranking.

Printed per workload and size: wall time, particles/s, peak memory (the
maximum resident set of ``/usr/bin/time`` for the command line, the protocol
process's VmHWM for the protocol; both count the resident pages of
memory-mapped files), peak memory over the first size's, and the disk of the
outputs (``--out`` folder / the protocol's folder). For the protocol the
peak memory and seconds of each step kind follow.

Usage::

    .venv/bin/python benchmarks/scale.py [--sizes 10000 40000 200000]
        [--workloads cli protocol] [--output-stacks all] [--keep]

Everything is written under ``--root`` (default ``/work/bench-scale-<pid>``,
on the big disk) and deleted at the end unless ``--keep``.
"""

import argparse
import os
import shutil
import subprocess
import sys
import time

import numpy as np

BOX, PIXEL, VOLTAGE, CS, AMP = 256, 1.27, 300.0, 2.7, 0.1
MAP_BOX = 96  # the map at 256 * 1.27 / 96 = 3.387 Å/px: working box 96, as in issue 21
PER_STACK = 500


def log(text):
    print(text, flush=True)


def makeTile(root, n, seed=0):
    """Simulate the tile (float16 stack), the map, and the tile's metadata."""
    import mrcfile

    from xmipp_qc.core import simulate as sim
    from xmipp_qc.formats.mrc import write_volume

    blobs = sim.phantom_blobs(BOX, seed=seed)
    ps = sim.simulate_particles(blobs, n, box=BOX, snr=0.5, pixel_size_a=PIXEL,
                                max_shift_px=4.0, ctf=True, outlier_fraction=0.01,
                                outlier_kinds=("junk",), dtype=np.float32, seed=seed + 1)
    tile = os.path.join(root, "tile.mrcs")
    with mrcfile.new(tile, overwrite=True) as mrc:
        mrc.set_data(ps.images.astype(np.float16))
        mrc.set_image_stack()
        mrc.voxel_size = PIXEL
    scale = MAP_BOX / BOX  # the same blobs on the map's coarser grid
    small = sim.Blobs(blobs.centers * scale, blobs.sigmas * scale, blobs.amplitudes)
    write_volume(os.path.join(root, "map.mrc"), sim.blobs_volume(small, MAP_BOX, np.float32),
                 PIXEL * BOX / MAP_BOX)
    return ps


def writeStar(root, n, ps):
    """``particles_<n>.star``: n rows tiling the tile's metadata, one linked stack per
    PER_STACK rows (``stacks/mic_<k>.mrcs`` -> tile.mrcs)."""
    from xmipp_qc.formats.relion_particles import shifts_to_origins

    os.makedirs(os.path.join(root, "stacks"), exist_ok=True)
    t = len(ps.images)
    origins = shifts_to_origins(ps.shifts, BOX) * PIXEL  # Å
    lines = ["", "data_optics", "", "loop_", "_rlnOpticsGroupName #1", "_rlnOpticsGroup #2",
             "_rlnVoltage #3", "_rlnSphericalAberration #4", "_rlnAmplitudeContrast #5",
             "_rlnImagePixelSize #6", "_rlnImageSize #7", "_rlnImageDimensionality #8",
             f"opticsGroup1 1 {VOLTAGE} {CS} {AMP} {PIXEL} {BOX} 2", "", "data_particles", "",
             "loop_"]
    labels = ["ImageName", "MicrographName", "DefocusU", "DefocusV", "DefocusAngle",
              "OpticsGroup", "AngleRot", "AngleTilt", "AnglePsi", "OriginXAngst",
              "OriginYAngst"]
    lines += [f"_rln{lab} #{j + 1}" for j, lab in enumerate(labels)]
    path = os.path.join(root, f"particles_{n}.star")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
        for i in range(n):
            k, j = divmod(i, t)
            stack = f"stacks/mic_{i // PER_STACK:05d}.mrcs"
            if i % PER_STACK == 0 and not os.path.exists(os.path.join(root, stack)):
                os.symlink(os.path.join(root, "tile.mrcs"), os.path.join(root, stack))
            a = ps.angles[j]
            fh.write(f"{j + 1:06d}@{stack} mic_{i // PER_STACK:05d}.mrc "
                     f"{ps.defocus_u[j]:.2f} {ps.defocus_v[j]:.2f} {ps.defocus_angle[j]:.2f} 1 "
                     f"{a[0]:.4f} {a[1]:.4f} {a[2]:.4f} {origins[j, 0]:.3f} "
                     f"{origins[j, 1]:.3f}\n")
    return path


def diskBytes(folder):
    total = 0
    for dirpath, _, files in os.walk(folder):
        for f in files:
            fp = os.path.join(dirpath, f)
            if not os.path.islink(fp):
                total += os.stat(fp).st_blocks * 512
    return total


def runCli(root, star, n, args):
    out = os.path.join(root, f"out_{n}")
    cmd = [sys.executable, "-m", "xmipp_qc.cli", "compare-reprojections", "--images", star,
           "--volume", os.path.join(root, "map.mrc"), "--out", out, "--use-ctf",
           "--threads", "2", "--quiet"]
    if args.output_stacks:
        cmd += ["--output-stacks", args.output_stacks]
    # /usr/bin/time forks the command: a child forked from this (large) process would
    # count this process's resident memory at the fork in its own ru_maxrss
    peak = os.path.join(root, "peak_kb.txt")
    t0 = time.time()
    subprocess.run(["/usr/bin/time", "-f", "%M", "-o", peak, *cmd], check=True)
    wall = time.time() - t0
    disk = diskBytes(out)
    shutil.rmtree(out)
    with open(peak) as fh:
        peak_mb = int(fh.read().split()[-1]) / 1024.0
    return {"wall": wall, "peak_mb": peak_mb, "disk_gb": disk / 1e9}


_FINAL = r"""
import glob, os, sys
import numpy as np
from xmipp_qc.commands.compare_reprojections import _read_again
from xmipp_qc.commands.compare_reprojections_inputs import Grid
from xmipp_qc.commands.compare_reprojections_outputs import (
    in_row_order, map_summary, write_particles_star, write_ranking, write_selection)
from xmipp_qc.core.chunk_result import ChunkResult
from xmipp_qc.core.compare_policy import finalize_map
from xmipp_qc.core.pipeline import CompareOptions
from xmipp_qc.native_threads import limit_blas_threads
limit_blas_threads()  # as the command line does
run, star, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
base = [ChunkResult.load(f) for f in sorted(glob.glob(os.path.join(run, "vol1", "chunk_*.npz")))]
m = sum(len(r.ids) for r in base)
results = [ChunkResult(r.ids + t * m, r.angles, r.shifts, r.matched, r.match_corr,
                       r.match_margin, r.summary)
           for t in range(n // m) for r in base]
del base
final = finalize_map(results, matching=False)
del results
np.savez(os.path.join(out, "scores.npz"), **final)
final = in_row_order(final, n)
class A:
    pixel_size, relion_project = None, False
particles = _read_again(A, star, n)
grid = Grid.of(particles, [3.3867], True)
star_path = write_particles_star(particles, final, grid, "vol1", out, np.arange(n))
selection = write_selection(particles, final, "vol1", out)
summary = {**map_summary(1, star, final, star_path, grid.pixel_a), **selection}
write_ranking(out, {"vol1": {"ids": final["ids"], "cost": final["cost"]}}, [summary],
              particles, grid, CompareOptions(pixel_size_a=grid.pixel_a), "cost")
"""


def runFinal(root, stars, ps, args):
    """The whole-set steps alone at each size, from a 2,000-particle run's chunk results."""
    small = writeStar(root, 2000, ps)
    run = os.path.join(root, "out_small")
    subprocess.run([sys.executable, "-m", "xmipp_qc.cli", "compare-reprojections", "--images",
                    small, "--volume", os.path.join(root, "map.mrc"), "--out", run,
                    "--use-ctf", "--threads", "2", "--output-stacks", "none", "--quiet"],
                   check=True)
    rows = []
    for n in stars:
        if n % 2000:
            raise ValueError(f"the final workload tiles 2,000 particles: {n} is not a multiple")
        out = os.path.join(root, f"final_{n}")
        os.makedirs(out)
        peak = os.path.join(root, "peak_kb.txt")
        t0 = time.time()
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", peak, sys.executable, "-c", _FINAL,
                        os.path.join(run, "run"), stars[n], str(n), out], check=True)
        wall = time.time() - t0
        with open(peak) as fh:
            rows.append((n, {"wall": wall, "peak_mb": int(fh.read().split()[-1]) / 1024.0,
                             "disk_gb": diskBytes(out) / 1e9}))
        shutil.rmtree(out)
        log(f"final {n}: {rows[-1][1]}")
    report("whole-set steps of the command line alone (tiled chunk results of 2,000 "
           "particles)", rows)


def report(title, rows):
    log(f"\n{title}")
    log(f"{'particles':>10}{'wall s':>9}{'particles/s':>13}{'peak MB':>9}{'x first':>9}"
        f"{'disk GB':>9}")
    first = rows[0][1]["peak_mb"]
    for n, r in rows:
        log(f"{n:>10,}{r['wall']:>9.1f}{n / r['wall']:>13.1f}{r['peak_mb']:>9.0f}"
            f"{r['peak_mb'] / first:>9.3f}{r['disk_gb']:>9.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 40000, 200000])
    parser.add_argument("--workloads", nargs="+", default=["cli", "protocol"])
    parser.add_argument("--tile", type=int, default=500)
    parser.add_argument("--output-stacks", default=None,
                        help="--output-stacks of the command line (default: its default)")
    parser.add_argument("--root", default=f"/work/bench-scale-{os.getpid()}")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if "protocol" in args.workloads:
        import headless_scipion  # noqa: F401  (before anything imports pyworkflow)
    os.makedirs(args.root, exist_ok=True)
    try:
        t0 = time.time()
        ps = makeTile(args.root, args.tile)
        stars = {n: writeStar(args.root, n, ps) for n in args.sizes}
        log(f"input: tile of {args.tile} particles, box {BOX} at {PIXEL} Å/px, CTF, given "
            f"angles; STAR files of {args.sizes} rows in {time.time() - t0:.0f} s; "
            f"load {os.getloadavg()[0]:.1f}")
        if "cli" in args.workloads:
            rows = []
            for n in args.sizes:
                rows.append((n, runCli(args.root, stars[n], n, args)))
                log(f"cli {n}: {rows[-1][1]}")
            report("command line, -j 2, --use-ctf, default chunk size, output stacks "
                   f"{args.output_stacks or 'default'}", rows)
        if "final" in args.workloads:
            runFinal(args.root, stars, ps, args)
        if "protocol" in args.workloads:
            from scale_protocol import protocolRows

            protocolRows(args.root, stars, ps, args, report)
    finally:
        if not args.keep:
            shutil.rmtree(args.root, ignore_errors=True)


if __name__ == "__main__":
    main()
