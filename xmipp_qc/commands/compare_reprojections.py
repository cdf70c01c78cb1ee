"""``xmipp-qc compare-reprojections``: does each map explain a RELION particle set?

Reads a particle STAR file (RELION 3.0 or 3.1+) and one or more maps (MRC), brings
images and maps to a common sampling (Fourier cropping; the coarser input and,
unless ``--no-downsample``, at least 3 Å/px), then, chunk by chunk
(:mod:`xmipp_qc.core.pipeline`): projection matching when there are no angles
(or ``--no-assignment``), local refinement, reprojection (with the CTF if
``--use-ctf``) and residual scores; finally set statistics, outlier flags and
the ranking of the maps.

Writes, for map k (``volK``) in ``--out``:

* ``volK_particles.star``: the input STAR, every row and column, with the
  refined alignment in ``rlnAngle*``/``rlnOrigin*`` (input pixels) and the
  scores appended as ``xmippQc*`` columns (one STAR per map, so that each is a
  valid RELION input with that map's alignment);
* ``volK_reprojections.mrcs``, ``volK_residuals.mrcs``, ``volK_aligned.mrcs``:
  one slot per input row, at the working sampling, in the aligned frame;
* ``volK_kept.star`` and ``volK_flagged.star``: the input STAR (every block,
  optics included, every value as read) with only the rows this map explains
  and only those it flags (outliers and failed images), ready for the next
  RELION job;
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
from dataclasses import asdict, dataclass

import numpy as np

from xmipp_qc.core.symmetry import VALID_SYMMETRY_FORMS

log = logging.getLogger(__name__)

NAME = "compare-reprojections"
HELP = ("Score how well 3D maps explain a particle STAR file: residuals, outlier "
        "flags, ranking of the maps.")

#: finalize() keys that are not written as xmippQc* columns (the alignment goes to rln*).
_NOT_COLUMNS = ("ids", "angles", "shifts")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--images", required=True, metavar="STAR",
      help="Particle STAR file, RELION 3.0 or 3.1+ (RELION: --i).")
    a("--volume", required=True, action="append", metavar="MRC",
      help="Map to compare with (MRC); repeat to rank several (RELION: --ref).")
    a("--out", required=True, metavar="DIR",
      help="Output folder: new, empty, or an earlier run's results, replaced when this run "
           "succeeds; a failed run leaves it as it was (RELION: --o, a folder here).")
    a("--overwrite", action="store_true",
      help="Replace --out even if it holds files that are not compare-reprojections results.")
    a("--no-assignment", action="store_true",
      help="Ignore the STAR's angles: find them by projection matching.")
    a("--no-refine", action="store_true",
      help="Keep the given/matched alignment as is (RELION: --skip_align).")
    a("--optimize-gray", action="store_true",
      help="Write the gray-fitted reprojection a*P+b (scores always use the fit).")
    a("--use-ctf", action="store_true",
      help="Apply each particle's CTF to its reprojection (RELION: --ctf).")
    a("--no-downsample", action="store_true",
      help="Keep the input sampling instead of Fourier cropping to >= 3 Å/px.")
    a("--symmetry", default="c1", metavar="GROUP",
      help="Point group of the maps, Xmipp names: "
           f"{VALID_SYMMETRY_FORMS.replace('%', '%%')} (default %(default)s; RELION: --sym).")
    a("--angular-sampling", type=float, default=5.0, metavar="DEG",
      help="Gallery step of projection matching, degrees (default %(default)s; "
           "RELION sets it with --healpix_order).")
    a("--max-shift", type=float, metavar="PX",
      help="Refinement shift bound, px of the working sampling (default 5%% of the box; "
           "RELION: --offset_range).")
    a("--max-angle", type=float, metavar="DEG",
      help="Refinement rotation bound, degrees (default 5).")
    a("--resol", type=float, metavar="A",
      help="Low-pass the comparison at this resolution, Å (default: none).")
    a("--sigma", type=float, metavar="FPX",
      help="With --resol: width of the low-pass edge, Fourier px (default 0.02 x box).")
    a("--mask-radius", type=float, metavar="PX",
      help="Radius of the comparison disc, px of the working sampling (default: half the "
           "box; RELION gives a diameter in Å: --particle_diameter).")
    a("--pixel-size", type=float, metavar="A",
      help="Pixel size of every image, Å/px (default: from the STAR; RELION: --angpix).")
    a("--volume-pixel-size", type=float, metavar="A",
      help="Pixel size of the maps, Å/px (default: MRC header, else the images').")
    a("--relion-project", action="store_true",
      help="Images made by relion_project (odd boxes shifted by +1 px).")
    a("--threshold", type=float, default=3.5, metavar="Z",
      help="Outlier-score flag threshold, robust z units (default %(default)s).")
    a("--rank-score", default="cost", metavar="SCORE",
      help="Score that ranks the maps (default %(default)s; e.g. imedValue, resStd).")
    a("--chunk-size", type=int, default=256, metavar="N",
      help="Images processed together; memory grows with it (default %(default)s).")
    a("--threads", "-j", type=int, default=1, metavar="N",
      help="Chunks processed at the same time, one core each (default %(default)s; "
           "RELION: --j).")
    a("--worst", type=int, default=6, metavar="N",
      help="Worst images shown in each report (default %(default)s).")


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


def _check_options(args) -> None:
    """Every option value, before any work (ValueError listing the problems)."""
    from xmipp_qc.core import option_checks as check
    from xmipp_qc.core.compare_results import SCORE_DIRECTIONS

    problems = (check.at_least("--chunk-size", args.chunk_size, 1)
                + check.at_least("--threads", args.threads, 1)
                + check.at_least("--worst", args.worst, 0)
                + check.finite("--threshold", args.threshold)
                + check.choice("--rank-score", args.rank_score, SCORE_DIRECTIONS)
                + check.symmetry("--symmetry", args.symmetry)
                + check.positive("--angular-sampling", args.angular_sampling))
    for opt in ("max_shift", "max_angle", "mask_radius"):
        problems += check.in_range(f"--{opt.replace('_', '-')}", getattr(args, opt), 0,
                                   float("inf"), optional=True)
    for opt in ("resol", "sigma", "pixel_size", "volume_pixel_size"):
        problems += check.positive(f"--{opt.replace('_', '-')}", getattr(args, opt),
                                   optional=True)
    if problems:
        raise ValueError("; ".join(problems))


def _check_stacks(particles) -> None:
    """Every stack readable, every row's item inside it, boxes as the STAR says."""
    from xmipp_qc.formats.mrc import stack_shape

    names = particles.block.text("rlnImageName")
    stacks = np.array(particles.stacks, dtype=object)
    for s in dict.fromkeys(particles.stacks):
        rows = np.flatnonzero(stacks == s)
        first = f"{particles.path} row {rows[0] + 1} ({names[rows[0]]})"
        if not os.path.exists(s):
            raise ValueError(f"{first}: image stack {s} does not exist")
        n, ny, nx = stack_shape(s)
        beyond = rows[particles.items[rows] >= n]
        if beyond.size:
            raise ValueError(f"{particles.path} row {beyond[0] + 1} ({names[beyond[0]]}): "
                             f"item {particles.items[beyond[0]] + 1} is beyond the {n} "
                             f"image(s) of {s}")
        wrong = rows[particles.box[rows] != nx]
        if wrong.size or ny != nx:
            raise ValueError(f"{first}: {s} holds {ny} x {nx} px images, the STAR says "
                             f"{particles.box[rows[0]]} px")


def _load_maps(args, particles):
    from xmipp_qc.core.input_checks import map_problem
    from xmipp_qc.formats.mrc import read_volume

    maps = []
    for path in args.volume:
        vol, px = read_volume(path)
        problem = map_problem(vol)
        if problem:
            raise ValueError(f"{path}: {problem}")
        if args.volume_pixel_size:
            px = args.volume_pixel_size
        elif px is None:
            px = float(np.max(particles.pixel_size_a))
            log.warning("%s has no pixel size; assuming the images' %g Å/px", path, px)
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
            raise ValueError(f"{particles.path}: --use-ctf needs rlnDefocusU/V/Angle columns")
        kw["defocus"] = particles.defocus[rows]
        kw["acquisition"] = {k: (v[rows] if k == "phase_shift_deg" else float(v[rows[0]]))
                             for k, v in particles.acquisition.items()}
    return kw


def _prepare(folder: str, particles, maps, grid: _Grid, options, chunks, args) -> None:
    """The run folder of :mod:`xmipp_qc.compare_run`: images, maps, chunk inputs, run.json."""
    from xmipp_qc import compare_run
    from xmipp_qc.formats.mrc import StackWriter, write_volume

    os.makedirs(folder, exist_ok=True)
    matching = particles.angles is None or args.no_assignment
    compare_run.write_run(folder, options, maps=range(1, len(maps) + 1),
                          stacks=("reprojections", "residuals", "aligned"), matching=matching)
    for k, (_, vol, px) in enumerate(maps, start=1):
        write_volume(compare_run.path(folder, "volume", k), grid.fit(vol, px, 3), grid.pixel_a)
    with StackWriter(compare_run.path(folder, "images"), particles.n, grid.box,
                     grid.pixel_a) as images:
        for c, rows in enumerate(chunks):
            images.write(rows, _read_chunk(particles, rows, grid))
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
    from xmipp_qc.formats.relion_particles import write_particles

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


def _write_selection(particles, final: dict, prefix: str, out: str) -> dict:
    """``prefix_kept.star`` and ``prefix_flagged.star``: the input STAR, every block and
    value as read, with only the rows not flagged / flagged (outliers and failures)."""
    from xmipp_qc.formats.star import select_rows, write_star

    flagged = np.asarray(final["isOutlier"], dtype=bool)
    names = {}
    for what, rows in (("kept", np.flatnonzero(~flagged)), ("flagged", np.flatnonzero(flagged))):
        names[f"{what}_star"] = name = f"{prefix}_{what}.star"
        write_star(os.path.join(out, name), select_rows(particles.blocks, particles.table, rows))
    return {**names, "n_kept": int((~flagged).sum())}


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


def run(args: argparse.Namespace) -> int:
    """Run the command; bad input raises ValueError/OSError naming the culprit.

    Options, the output folder, the STAR file, the stacks and the maps are all
    checked before any image is processed; results are written to a staging
    folder swapped in as ``--out`` only when the run succeeds
    (:class:`~xmipp_qc.commands.output_folder.OutputFolder`). The decisions
    (working grid, options, chunks) are :mod:`xmipp_qc.core.compare_policy`'s
    and the chunks run through :mod:`xmipp_qc.compare_run`, as in the protocol.
    """
    from xmipp_qc.commands.output_folder import OutputFolder
    from xmipp_qc.core.input_checks import MIN_BOX
    from xmipp_qc.formats.relion_particles import read_particles

    _check_options(args)
    folder = OutputFolder(args.out, NAME, overwrite=args.overwrite)
    particles = read_particles(args.images, pixel_size_a=args.pixel_size,
                               relion_project=args.relion_project)
    if args.use_ctf and particles.defocus is None:
        raise ValueError(f"{args.images}: --use-ctf needs rlnDefocusU/V/Angle columns")
    _check_stacks(particles)
    maps = _load_maps(args, particles)
    grid = _Grid.of(particles, [px for _, _, px in maps], not args.no_downsample)
    if grid.box < MIN_BOX:
        raise ValueError(f"{particles.path}: the working box would be {grid.box} px at "
                         f"{grid.pixel_a:g} Å/px; need at least {MIN_BOX} px "
                         "(try --no-downsample)")
    with folder as out:
        summaries, table = _run(args, particles, maps, grid, out)
    for m in summaries:
        log.info("%s %s: %d outliers, %d failed of %d, mean cost %.3f; kept %d in %s, "
                 "flagged %d in %s", m["key"], m["path"], m["n_outliers"], m["n_failed"],
                 m["n_images"], m["mean_cost"], m["n_kept"],
                 os.path.join(args.out, m["kept_star"]), m["n_images"] - m["n_kept"],
                 os.path.join(args.out, m["flagged_star"]))
    log.info("best map: %s (by %s); results in %s", table["best"], table["score"], args.out)
    return 0


def _run(args: argparse.Namespace, particles, maps, grid: _Grid, out: str):
    from xmipp_qc import compare_run
    from xmipp_qc.core.compare_policy import finalize_map
    from xmipp_qc.core.pipeline import rank

    options = _options(args, grid)
    chunks = _chunks(particles, args.chunk_size)
    folder = os.path.join(out, "run")
    _prepare(folder, particles, maps, grid, options, chunks, args)
    _process(folder, len(maps), chunks, particles.n, args)
    matching = compare_run.read_run(folder)["matching"]
    finals, summaries = {}, []
    for k, (path, vol, px) in enumerate(maps, start=1):
        try:
            final = finalize_map(compare_run.load_results(folder, k, range(len(chunks))),
                                 matching=matching, threshold=args.threshold)
        except ValueError as exc:
            raise ValueError(f"{args.images} against {path}: {exc}") from None
        np.savez(os.path.join(folder, f"vol{k}", "scores.npz"), **final)
        _gather(folder, k, chunks, particles.n, grid, out)
        final = _in_row_order(final, particles.n)
        star = _write_star(particles, final, grid, f"vol{k}", out)
        selection = _write_selection(particles, final, f"vol{k}", out)
        _write_report(final, f"vol{k}", out, os.path.basename(path), args.threshold,
                      args.worst)
        finals[f"vol{k}"] = final
        summaries.append({**_map_summary(k, path, final, star,
                                         grid.exact_pixel(vol.shape[0], px)), **selection})
    _clean(folder, len(maps), len(chunks))
    table = rank(finals, score=args.rank_score)
    if len(maps) > 1:
        from xmipp_qc.plots.reprojections import plot_ranking

        plot_ranking(table).savefig(os.path.join(out, "ranking.png"), dpi=90)
    groups = sorted(set(zip(particles.box.tolist(), particles.pixel_size_a.tolist())))
    report = {"working_box": grid.box, "working_pixel_a": grid.pixel_a,
              "image_groups": [{"box": b, "pixel_a": p, "cropped_box": grid.cropped(b, p),
                                "pixel_a_after_resampling": grid.exact_pixel(b, p)}
                               for b, p in groups],
              "options": asdict(options), "maps": summaries, "ranking": table}
    with open(os.path.join(out, "ranking.json"), "w") as fh:
        json.dump(report, fh, indent=2)
    return summaries, table
