"""``xmipp-qc compare-reprojections``: does each map explain a RELION particle set?

Reads a particle STAR file (RELION 3.0 or 3.1+) and one or more maps (MRC), brings
images and maps to a common sampling (Fourier cropping; the coarser input and,
unless ``--no-downsample``, at least 3 Å/px), then, chunk by chunk
(:mod:`xmipp_qc.core.pipeline`): projection matching when there are no angles
(or ``--no-assignment``), local refinement, reprojection (with the CTF if
``--use-ctf``) and residual scores; finally set statistics, outlier flags and
the ranking of the maps. The decisions (working grid, options, chunks, set
statistics) are those of the protocol (:mod:`xmipp_qc.core.compare_policy`) and
the chunks run through the same worker (:mod:`xmipp_qc.compare_run`, run folder
``--out/run``), ``--threads`` at a time, with progress on stderr.

Writes, for map k (``volK``) in ``--out``:

* ``volK_particles.star``: the input STAR, every row and column, with the
  refined alignment in ``rlnAngle*``/``rlnOrigin*`` (input pixels) and the
  scores appended as ``xmippQc*`` columns (one STAR per map, so that each is a
  valid RELION input with that map's alignment);
* ``volK_reprojections.mrcs``, ``volK_residuals.mrcs``, ``volK_aligned.mrcs``:
  one slot per input row, at the working sampling, in the aligned frame;
* ``volK_report.png``: outlier-score histogram and the worst images;
* ``ranking.json`` (and ``ranking.png`` with several maps);
* ``run/``: the run folder's small files (``run.json``, chunk inputs, chunk
  results, ``volK/scores.npz``: the set scores in chunk order).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from dataclasses import asdict, dataclass

import numpy as np

NAME = "compare-reprojections"
HELP = ("Score how well 3D maps explain a particle STAR file: residuals, outlier "
        "flags, ranking of the maps.")

#: finalize() keys that are not written as xmippQc* columns (the alignment goes to rln*).
_NOT_COLUMNS = ("ids", "angles", "shifts")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--images", required=True, help="Particle STAR file (RELION 3.0 or 3.1+).")
    a("--volume", required=True, action="append", help="Map (MRC); repeat to rank several.")
    a("--out", required=True, help="Output folder (created).")
    a("--no-assignment", action="store_true",
      help="Ignore the STAR's angles: find them by projection matching.")
    a("--no-refine", action="store_true", help="Keep the given/matched alignment as is.")
    a("--optimize-gray", action="store_true",
      help="Write the gray-fitted reprojection a*P+b (scores always use the fit).")
    a("--use-ctf", action="store_true", help="Apply each particle's CTF to its reprojection.")
    a("--no-downsample", action="store_true", help="Do not bring the data to >= 3 Å/px.")
    a("--symmetry", default="c1", help="Point group of the maps (Xmipp names, e.g. c1, d6).")
    a("--angular-sampling", type=float, default=5.0, help="Matching gallery step (degrees).")
    a("--max-shift", type=float, help="Refinement shift bound (px of the working sampling; "
      "default 5%% of the box).")
    a("--max-angle", type=float, help="Refinement rotation bound (degrees; default 5).")
    a("--resol", type=float, help="Low-pass the comparison at this resolution (Å; ignored "
      "at or below twice the working pixel size).")
    a("--sigma", type=float, help="Width of that low-pass edge (Fourier px; default 3).")
    a("--mask-radius", type=float, help="Comparison disc radius (px, working sampling).")
    a("--pixel-size", type=float, help="Override the images' pixel size (Å/px).")
    a("--volume-pixel-size", type=float,
      help="Pixel size of the maps (Å/px; default: MRC header, else the images').")
    a("--relion-project", action="store_true",
      help="Images made by relion_project (odd boxes shifted by +1 px).")
    a("--threshold", type=float, default=3.5, help="Outlier-score flag threshold.")
    a("--rank-score", default="cost", help="Score that ranks the maps (default cost).")
    a("--chunk-size", type=int, default=256, help="Images processed together.")
    a("--threads", "-j", type=int, default=1, help="Chunks processed at the same time.")
    a("--quiet", "-q", action="store_true", help="No progress messages on stderr.")
    a("--worst", type=int, default=6, help="Worst images shown in each report.")


@dataclass(frozen=True)
class _Grid:
    """Working box and sampling (:func:`xmipp_qc.core.pipeline.common_sampling`)."""

    box: int
    pixel_a: float

    @classmethod
    def of(cls, particles, map_pixels, downsample: bool) -> _Grid:
        """The run's grid (:func:`xmipp_qc.core.compare_policy.working_grid`)."""
        from xmipp_qc.core.compare_policy import working_grid

        groups = zip(particles.box.tolist(), particles.pixel_size_a.tolist())
        return cls(*working_grid(list(groups), map_pixels, downsample=downsample))

    def cropped(self, box: int, pixel_a: float) -> int:
        """Box of an input of this box and pixel size after Fourier resizing."""
        from xmipp_qc.core.resample import resized_box

        return resized_box(box, pixel_a, self.pixel_a)[0]

    def exact_pixel(self, box: int, pixel_a: float) -> float:
        """Exact pixel size of that input on the working grid (converts its shifts)."""
        from xmipp_qc.core.compare_policy import exact_pixel

        return exact_pixel(box, pixel_a, self.pixel_a)

    def fit(self, data: np.ndarray, pixel_a: float, ndim: int) -> np.ndarray:
        """Images (ndim 2) or a map (ndim 3) on the working grid."""
        from xmipp_qc.core.pipeline import to_working_grid

        return to_working_grid(data, pixel_a, self.box, self.pixel_a, ndim=ndim)[0]


def _load_maps(args, particles):
    from xmipp_qc.formats.mrc import read_volume

    maps = []
    for path in args.volume:
        vol, px = read_volume(path)
        if args.volume_pixel_size:
            px = args.volume_pixel_size
        elif px is None:
            px = float(np.max(particles.pixel_size_a))
            print(f"warning: {path} has no pixel size; assuming the images' {px:g} Å/px",
                  file=sys.stderr)
        maps.append((path, vol, float(px)))
    return maps


def _options(args, grid: _Grid):
    from xmipp_qc.core.compare_policy import compare_options

    return compare_options(
        grid.pixel_a, resolution_a=args.resol, sigma=args.sigma,
        angular_step=args.angular_sampling, symmetry=args.symmetry, use_ctf=args.use_ctf,
        optimize_gray=args.optimize_gray, refine=not args.no_refine,
        max_shift_px=args.max_shift, max_angle_deg=args.max_angle,
        mask_radius=args.mask_radius)


def _chunks(particles, chunk: int) -> list:
    """Row chunks sharing box, pixel size and acquisition (one CTF model each)."""
    from xmipp_qc.core.compare_policy import plan_chunks

    acq = particles.acquisition
    keys = {"box": particles.box, "pixel": particles.pixel_size_a}
    keys.update({k: acq[k] for k in acq if k != "phase_shift_deg"})
    return plan_chunks(keys, particles.n, chunk)


def _read_chunk(particles, rows: np.ndarray, grid: _Grid) -> np.ndarray:
    from xmipp_qc.formats.mrc import read_images

    box, px = int(particles.box[rows[0]]), float(particles.pixel_size_a[rows[0]])
    stacks = np.array(particles.stacks, dtype=object)[rows]
    images = np.empty((len(rows), box, box), dtype=np.float32)
    for s in np.unique(stacks):
        sel = np.flatnonzero(stacks == s)
        block = read_images(s, particles.items[rows[sel]])
        if block.shape[1:] != (box, box):
            raise ValueError(f"{s} holds {block.shape[2]} px images, the STAR says {box} px")
        images[sel] = block
    return grid.fit(images, px, 2)


def _chunk_inputs(particles, rows, grid: _Grid, args) -> dict:
    from xmipp_qc.core.pipeline import shifts_to_work

    box, px = int(particles.box[rows[0]]), float(particles.pixel_size_a[rows[0]])
    kw = {"ids": rows}
    if particles.angles is not None and not args.no_assignment:
        kw["angles"] = particles.angles[rows]
        kw["shifts"] = shifts_to_work(particles.shifts[rows], grid.exact_pixel(box, px), px)
    if args.use_ctf:
        if particles.defocus is None:
            raise ValueError("--use-ctf needs rlnDefocusU/V/Angle in the STAR file")
        kw["defocus"] = particles.defocus[rows]
        kw["acquisition"] = {k: (v[rows] if k == "phase_shift_deg" else float(v[rows[0]]))
                             for k, v in particles.acquisition.items()}
    return kw


def _prepare(folder: str, particles, maps, grid: _Grid, options, chunks, args) -> None:
    """The run folder of :mod:`xmipp_qc.compare_run`: images, maps, chunk inputs, run.json."""
    import mrcfile

    from xmipp_qc import compare_run
    from xmipp_qc.formats.mrc import write_volume

    os.makedirs(folder, exist_ok=True)
    matching = particles.angles is None or args.no_assignment
    compare_run.write_run(folder, options, maps=range(1, len(maps) + 1),
                          stacks=("reprojections", "residuals", "aligned"), matching=matching)
    for k, (_, vol, px) in enumerate(maps, start=1):
        write_volume(compare_run.path(folder, "volume", k), grid.fit(vol, px, 3), grid.pixel_a)
    shape = (particles.n, grid.box, grid.box)
    with mrcfile.new_mmap(compare_run.path(folder, "images"), shape=shape, mrc_mode=2,
                          overwrite=True) as mrc:
        mrc.voxel_size = grid.pixel_a
        for c, rows in enumerate(chunks):
            mrc.data[rows] = _read_chunk(particles, rows, grid)
            compare_run.write_chunk_input(folder, c, positions=rows,
                                          **_chunk_inputs(particles, rows, grid, args))


def _process(folder: str, n_maps: int, chunks, n_images: int, args) -> None:
    from xmipp_qc import compare_run

    jobs = [(k, c) for k in range(1, n_maps + 1) for c in range(len(chunks))]
    log = logging.getLogger("xmipp_qc.compare_run")
    log.info("%d images x %d maps: %d chunks of up to %d images, %d at a time", n_images,
             n_maps, len(jobs), args.chunk_size, args.threads)
    progress = compare_run.Progress(len(jobs), n_images * n_maps)
    compare_run.run_local(folder, jobs, threads=args.threads, progress=progress)


def _gather(folder: str, k: int, chunks, n: int, grid: _Grid, out: str) -> None:
    """Chunk stacks of map k -> ``volK_<stack>.mrcs``, one slot per input row."""
    from xmipp_qc import compare_run
    from xmipp_qc.formats.mrc import StackWriter, read_images

    for name in ("reprojections", "residuals", "aligned"):
        with StackWriter(os.path.join(out, f"vol{k}_{name}.mrcs"), n, grid.box,
                         grid.pixel_a) as w:
            for c, rows in enumerate(chunks):
                w.write(rows, read_images(compare_run.path(folder, name, k, c)))


def _clean(folder: str, n_maps: int, n_chunks: int) -> None:
    """Remove the run folder's image files (kept: run.json, chunk inputs and results)."""
    from xmipp_qc import compare_run

    for k in range(1, n_maps + 1):
        os.remove(compare_run.path(folder, "volume", k))
        for c in range(n_chunks):
            for name in ("reprojections", "residuals", "aligned"):
                os.remove(compare_run.path(folder, name, k, c))
    os.remove(compare_run.path(folder, "images"))


def _in_row_order(final: dict, n: int) -> dict:
    order = np.argsort(final["ids"], kind="stable")
    if len(order) != n or not np.array_equal(final["ids"][order], np.arange(n)):
        raise RuntimeError("the pipeline lost or duplicated particles")
    return {k: np.asarray(v)[order] for k, v in final.items()}


def _label(key: str) -> str:
    """STAR label of a score: ``match_corr`` -> ``xmippQcMatchCorr``."""
    return "xmippQc" + "".join(p[:1].upper() + p[1:] for p in key.split("_"))


def _write_star(particles, final: dict, grid: _Grid, prefix: str, out: str) -> str:
    from xmipp_qc.core.pipeline import shifts_to_input
    from xmipp_qc.formats.star import write_particles

    work_px = np.array([grid.exact_pixel(b, p) for b, p in
                        zip(particles.box.tolist(), particles.pixel_size_a.tolist())])
    shifts = shifts_to_input(final["shifts"], work_px[:, None], particles.pixel_size_a[:, None])
    angles = final["angles"]
    failed = ~np.isfinite(angles).all(axis=1) | ~np.isfinite(shifts).all(axis=1)
    if failed.any():  # failed matching: keep the input alignment (the reason says why)
        angles = angles.copy()
        angles[failed] = 0.0 if particles.angles is None else particles.angles[failed]
        shifts[failed] = particles.shifts[failed]
    cols = {_label(k): v for k, v in final.items() if k not in _NOT_COLUMNS}
    slots = np.arange(1, particles.n + 1)
    for label, stack in (("ImageRef", "reprojections"), ("ImageResidual", "residuals"),
                         ("ImageAligned", "aligned")):
        cols[f"xmippQc{label}"] = np.array([f"{i:06d}@{prefix}_{stack}.mrcs" for i in slots])
    path = os.path.join(out, f"{prefix}_particles.star")
    write_particles(path, particles, cols, angles=angles, shifts=shifts)
    return path


def _write_report(final: dict, prefix: str, out: str, title: str, threshold: float,
                  k: int) -> str:
    from xmipp_qc.formats.mrc import read_images
    from xmipp_qc.plots.reprojections import plot_report, worst_indices

    worst = worst_indices(final["outlierScore"], k)
    stacks = [read_images(os.path.join(out, f"{prefix}_{s}.mrcs"), worst)
              for s in ("aligned", "reprojections", "residuals")]
    labels = [f"row {i + 1}\nscore {final['outlierScore'][i]:.1f}" for i in worst]
    fig = plot_report(final["outlierScore"], threshold, *stacks, is_outlier=final["isOutlier"],
                      labels=labels, title=title)
    path = os.path.join(out, f"{prefix}_report.png")
    fig.savefig(path, dpi=90)
    return path


def _map_summary(k: int, path: str, final: dict, star: str, pixel: float) -> dict:
    failed = ~np.isin(final["reason"], ["", "outlier score above threshold"])
    return {"key": f"vol{k}", "path": os.path.abspath(path), "star": os.path.basename(star),
            "pixel_a_after_resampling": pixel,
            "n_images": int(len(final["ids"])), "n_failed": int(failed.sum()),
            "n_outliers": int((final["isOutlier"] & ~failed).sum()),
            "mean_cost": float(np.nanmean(final["cost"]))}


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted."""

    @property
    def stream(self):
        """The current ``sys.stderr``."""
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def _configure_logging(quiet: bool) -> None:
    """Progress (INFO of the ``xmipp_qc`` logger) on stderr unless ``quiet``."""
    logger = logging.getLogger("xmipp_qc")
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter(f"xmipp-qc {NAME}: %(message)s"))
        logger.addHandler(handler)


def run(args: argparse.Namespace) -> int:
    _configure_logging(args.quiet)
    try:
        return _run(args)
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"xmipp-qc {NAME}: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from xmipp_qc import compare_run
    from xmipp_qc.core.compare_policy import finalize_map
    from xmipp_qc.core.pipeline import rank
    from xmipp_qc.formats.star import read_particles

    if args.threads < 1 or args.chunk_size < 1:
        raise ValueError("--threads and --chunk-size must be >= 1")
    os.makedirs(args.out, exist_ok=True)
    particles = read_particles(args.images, pixel_size_a=args.pixel_size,
                               relion_project=args.relion_project)
    maps = _load_maps(args, particles)
    grid = _Grid.of(particles, [px for _, _, px in maps], not args.no_downsample)
    options = _options(args, grid)
    chunks = _chunks(particles, args.chunk_size)
    folder = os.path.join(args.out, "run")
    shutil.rmtree(folder, ignore_errors=True)  # never mix a previous run's chunks
    _prepare(folder, particles, maps, grid, options, chunks, args)
    _process(folder, len(maps), chunks, particles.n, args)
    matching = compare_run.read_run(folder)["matching"]
    results = []
    for k in range(1, len(maps) + 1):
        final = finalize_map(compare_run.load_results(folder, k, range(len(chunks))),
                             matching=matching, threshold=args.threshold)
        np.savez(os.path.join(folder, f"vol{k}", "scores.npz"), **final)
        _gather(folder, k, chunks, particles.n, grid, args.out)
        results.append(final)
    _clean(folder, len(maps), len(chunks))
    finals, summaries = {}, []
    for k, ((path, vol, px), res) in enumerate(zip(maps, results), start=1):
        final = _in_row_order(res, particles.n)
        star = _write_star(particles, final, grid, f"vol{k}", args.out)
        _write_report(final, f"vol{k}", args.out, os.path.basename(path), args.threshold,
                      args.worst)
        finals[f"vol{k}"] = final
        summaries.append(_map_summary(k, path, final, star,
                                      grid.exact_pixel(vol.shape[0], px)))
    table = rank(finals, score=args.rank_score)
    if len(maps) > 1:
        from xmipp_qc.plots.reprojections import plot_ranking

        plot_ranking(table).savefig(os.path.join(args.out, "ranking.png"), dpi=90)
    groups = sorted(set(zip(particles.box.tolist(), particles.pixel_size_a.tolist())))
    report = {"working_box": grid.box, "working_pixel_a": grid.pixel_a,
              "image_groups": [{"box": b, "pixel_a": p, "cropped_box": grid.cropped(b, p),
                                "pixel_a_after_resampling": grid.exact_pixel(b, p)}
                               for b, p in groups],
              "options": asdict(options), "maps": summaries, "ranking": table}
    with open(os.path.join(args.out, "ranking.json"), "w") as fh:
        json.dump(report, fh, indent=2)
    for m in summaries:
        print(f"{m['key']} {m['path']}: {m['n_outliers']} outliers, {m['n_failed']} failed of "
              f"{m['n_images']}, mean cost {m['mean_cost']:.3f}")
    print(f"best map: {table['best']} (by {table['score']}); results in {args.out}")
    return 0
