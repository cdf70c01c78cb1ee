"""``xmipp-qc compare-reprojections``: does each map explain a RELION particle set?

Reads a particle STAR file (RELION 3.0 or 3.1+) and one or more maps (MRC), brings
images and maps to a common sampling (Fourier cropping; the coarser input and,
unless ``--no-downsample``, at least 3 Å/px), then, chunk by chunk
(:mod:`xmipp_qc.core.pipeline`): projection matching when there are no angles
(or ``--no-assignment``), local refinement, reprojection (with each particle's
CTF whenever the STAR has one, unless ``--no-ctf``) and residual scores; finally
set statistics, outlier flags and the ranking of the maps. The first lines on
stderr say whether the CTF is applied and why, and name the pixel sizes of the
maps and the images (and where each came from) when they differ
(:mod:`xmipp_qc.core.run_notes`).

Writes, for map k (``volK``) in ``--out``:

* ``volK_particles.star``: the input STAR, every row and column, with the
  refined alignment in ``rlnAngle*``/``rlnOrigin*`` (input pixels) and the
  scores appended as ``xmippQc*`` columns (one STAR per map, so that each is a
  valid RELION input with that map's alignment);
* ``volK_reprojections.mrcs``, ``volK_residuals.mrcs``, ``volK_aligned.mrcs``:
  at the working sampling, in the aligned frame; with ``--output-stacks all``
  (default) one slot per input row, with ``flagged`` only the flagged rows and
  the ``--keep-worst`` worst rows by each score the viewer sorts by
  (:mod:`xmipp_qc.core.saved_images`; the STAR's ``xmippQcImage*`` columns say
  which slot, ``none`` for a row without images), with ``none`` no stack;
* ``volK_kept.star`` and ``volK_flagged.star``: the input STAR (every block,
  optics included, every value as read) with only the rows this map explains
  and only those it flags (outliers and failed images), ready for the next
  RELION job;
* ``volK_report.png``: outlier-score histogram and the worst images;
* ``volK_micrographs.star``: one row per micrograph (``rlnMicrographName``
  in the STAR): particles, flagged, outlier rate, median cost and, with
  ``--use-ctf``, the CTF check (suspect 0/1, best defocus scale, gain;
  :mod:`xmipp_qc.core.ctf_check`), drawn in ``volK_ctf_check.png``;
* ``ranking.json`` (and ``ranking.png`` with several maps);
* ``run/``: the run folder's small files (``run.json``, chunk inputs, chunk
  results, ``volK/scores.npz``: the set scores in chunk order).

The checks before any work are in
:mod:`xmipp_qc.commands.compare_reprojections_inputs`, the writers of these
files in :mod:`xmipp_qc.commands.compare_reprojections_outputs`.
"""

from __future__ import annotations

import argparse
import logging
import os

import numpy as np

from xmipp_qc.commands.compare_reprojections_inputs import (
    Grid,
    check_options,
    check_stacks,
    load_maps,
    run_notes,
)
from xmipp_qc.commands.compare_reprojections_micrographs import ctf_line, micrograph_summary
from xmipp_qc.commands.compare_reprojections_outputs import (
    in_row_order,
    map_summary,
    write_particles_star,
    write_ranking,
    write_report,
    write_selection,
)
from xmipp_qc.core.saved_images import OUTPUT_STACKS, STACK_NAMES
from xmipp_qc.core.symmetry import VALID_SYMMETRY_FORMS

log = logging.getLogger(__name__)

NAME = "compare-reprojections"
HELP = ("Score how well 3D maps explain a particle STAR file: residuals, outlier "
        "flags, ranking of the maps.")


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
    ctf = parser.add_mutually_exclusive_group()
    ctf.add_argument("--no-ctf", action="store_true",
                     help="Do not apply the particles' CTF to their reprojections (by default "
                          "it is applied whenever the STAR has rlnDefocusU/V/Angle; RELION: "
                          "without --ctf).")
    ctf.add_argument("--use-ctf", action="store_true",
                     help="Require the CTF: stop if the STAR has no rlnDefocusU/V/Angle. "
                          "Applying it is the default (kept for old scripts; RELION: --ctf).")
    a("--no-ctf-check", action="store_true",
      help="With the CTF: skip the per-micrograph CTF check (defocus x0.2..x5, "
           "astigmatism turned 90 deg, phase flipped, no CTF tried at each particle's "
           "final alignment).")
    a("--no-downsample", action="store_true",
      help="Keep the input sampling instead of Fourier cropping to >= 3 Å/px.")
    a("--symmetry", default="c1", metavar="GROUP",
      help="Point group of the maps, Xmipp names: "
           f"{VALID_SYMMETRY_FORMS.replace('%', '%%')} (default %(default)s; RELION: --sym).")
    a("--angular-sampling", type=float, default=5.0, metavar="DEG",
      help="Gallery step of projection matching, degrees (default %(default)s; "
           "RELION sets it with --healpix_order).")
    a("--search-shift", type=float, metavar="PX",
      help="Shift range of projection matching (with --no-assignment), px of the working "
           "sampling (default 20%% of the box: picks are often that far off-centre).")
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
      help="Flag threshold on the outlier score (default %(default)s). The score says how "
           "much worse than the set's typical particle the map explains an image, in units "
           "of the typical particles' own spread; with --no-assignment it combines the "
           "correlation (cost), the gray z-score, the residual's structure at large scales "
           "(ice, carbon, aggregates: resLowPower) and how far off-centre the particle was "
           "found; xmippQcOutlierPart* columns give each one's part.")
    a("--rank-score", default="cost", metavar="SCORE",
      help="Score that ranks the maps (default %(default)s; e.g. imedValue, resStd).")
    a("--chunk-size", type=int, default=256, metavar="N",
      help="Images processed together; memory grows with it (default %(default)s).")
    a("--threads", "-j", type=int, default=1, metavar="N",
      help="Chunks processed at the same time, one core each (default %(default)s; "
           "RELION: --j).")
    a("--worst", type=int, default=6, metavar="N",
      help="Worst images shown in each report (default %(default)s).")
    a("--output-stacks", choices=OUTPUT_STACKS, default="all", metavar="{all,flagged,none}",
      help="Which rows get their aligned, reprojection and residual images saved, "
           "3 x 4 x B^2 bytes per row at the working box B (3 x 37 KB at B = 96: 11 GB per "
           "100,000 rows): all (every row), flagged (the flagged rows and the --keep-worst "
           "worst by each score, typically a few %% of 'all'), none (no stack, nothing on "
           "disk; the report's worst images are recomputed). Memory does not depend on it "
           "(default %(default)s).")
    a("--keep-worst", type=int, default=50, metavar="N",
      help="With --output-stacks flagged: also save the N worst images by each of "
           "outlierScore, cost, zScoreResCov, zScoreGray and imedValue (default "
           "%(default)s).")


def _options(args, grid: Grid, use_ctf: bool):
    from xmipp_qc.core.compare_policy import compare_options

    return compare_options(
        grid.pixel_a, resolution_a=args.resol, sigma=args.sigma,
        angular_step=args.angular_sampling, symmetry=args.symmetry, use_ctf=use_ctf,
        optimize_gray=args.optimize_gray, refine=not args.no_refine,
        max_shift_px=args.max_shift, match_shift_px=args.search_shift,
        max_angle_deg=args.max_angle, mask_radius=args.mask_radius,
        ctf_check=not getattr(args, "no_ctf_check", False))


def _chunks(particles, chunk: int) -> list:
    """Row chunks sharing box, pixel size and acquisition (one CTF model each)."""
    from xmipp_qc.core.compare_policy import plan_chunks

    acq = particles.acquisition
    keys = {"box": particles.box, "pixel": particles.pixel_size_a}
    keys.update({k: acq[k] for k in acq if k != "phase_shift_deg"})
    return plan_chunks(keys, particles.n, chunk)


def _read_chunk(particles, rows: np.ndarray, grid: Grid) -> np.ndarray:
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


def _chunk_inputs(particles, rows, grid: Grid, args, use_ctf: bool) -> dict:
    from xmipp_qc.core.pipeline import shifts_to_work

    box, px = int(particles.box[rows[0]]), float(particles.pixel_size_a[rows[0]])
    kw = {"ids": rows}
    if particles.angles is not None and not args.no_assignment:
        kw["angles"] = particles.angles[rows]
        kw["shifts"] = shifts_to_work(particles.shifts[rows], grid.exact_pixel(box, px), px)
    if use_ctf:
        kw["defocus"] = particles.defocus[rows]
        kw["acquisition"] = {k: (v[rows] if k == "phase_shift_deg" else float(v[rows[0]]))
                             for k, v in particles.acquisition.items()}
    return kw


def _prepare(folder: str, particles, maps, grid: Grid, options, chunks, args) -> None:
    """The run folder of :mod:`xmipp_qc.compare_run`: images, maps, chunk inputs, run.json."""
    from xmipp_qc import compare_run
    from xmipp_qc.formats.mrc import StackWriter, write_volume

    os.makedirs(folder, exist_ok=True)
    matching = particles.angles is None or args.no_assignment
    compare_run.write_run(folder, options, maps=range(1, len(maps) + 1),
                          stacks=STACK_NAMES if args.output_stacks == "all" else (),
                          matching=matching)
    for k, (_, vol, px) in enumerate(maps, start=1):
        write_volume(compare_run.path(folder, "volume", k), grid.fit(vol, px, 3), grid.pixel_a)
    with StackWriter(compare_run.path(folder, "images"), particles.n, grid.box,
                     grid.pixel_a) as images:
        for c, rows in enumerate(chunks):
            images.write(rows, _read_chunk(particles, rows, grid))
            compare_run.write_chunk_input(folder, c, positions=rows,
                                          **_chunk_inputs(particles, rows, grid, args,
                                                          options.use_ctf))


def _process(folder: str, n_maps: int, chunks, n_images: int, args) -> None:
    from xmipp_qc import compare_run

    jobs = [(k, c) for k in range(1, n_maps + 1) for c in range(len(chunks))]
    log = logging.getLogger("xmipp_qc.compare_run")
    log.info("%d images x %d maps: %d chunks of up to %d images, %d at a time", n_images,
             n_maps, len(jobs), args.chunk_size, args.threads)
    progress = compare_run.Progress(len(jobs), n_images * n_maps)
    compare_run.run_local(folder, jobs, threads=args.threads, progress=progress)


def _clean(folder: str, n_maps: int, n_chunks: int) -> None:
    """Remove the run folder's image files (kept: run.json, chunk inputs and results)."""
    from xmipp_qc import compare_run

    for k in range(1, n_maps + 1):
        os.remove(compare_run.path(folder, "volume", k))
        for c in range(n_chunks):
            for name in STACK_NAMES:
                p = compare_run.path(folder, name, k, c)
                if os.path.exists(p):
                    os.remove(p)
    os.remove(compare_run.path(folder, "images"))


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

    check_options(args)
    folder = OutputFolder(args.out, NAME, overwrite=args.overwrite)
    particles = read_particles(args.images, pixel_size_a=args.pixel_size,
                               relion_project=args.relion_project)
    if args.use_ctf and particles.defocus is None:
        raise ValueError(f"{args.images}: --use-ctf needs rlnDefocusU/V/Angle columns")
    check_stacks(particles)
    maps, sources = load_maps(args, particles)
    grid = Grid.of(particles, [px for _, _, px in maps], not args.no_downsample)
    if grid.box < MIN_BOX:
        raise ValueError(f"{particles.path}: the working box would be {grid.box} px at "
                         f"{grid.pixel_a:g} Å/px; need at least {MIN_BOX} px "
                         "(try --no-downsample)")
    ctf = run_notes(args, particles, maps, sources, grid)
    with folder as out:
        summaries, table = _run(args, particles, maps, grid, out, ctf.applied)
    for m in summaries:
        log.info("%s %s: %d outliers, %d failed of %d, mean cost %.3f; kept %d in %s, "
                 "flagged %d in %s", m["key"], m["path"], m["n_outliers"], m["n_failed"],
                 m["n_images"], m["mean_cost"], m["n_kept"],
                 os.path.join(args.out, m["kept_star"]), m["n_images"] - m["n_kept"],
                 os.path.join(args.out, m["flagged_star"]))
        if "ctf_suspect" in m:
            log.info("%s CTF check: %s", m["key"], ctf_line(m))
        elif args.use_ctf and "micrographs_star" not in m:
            log.info("%s CTF check: the STAR has no rlnMicrographName; no micrograph table",
                     m["key"])
    log.info("best map: %s (by %s); results in %s", table["best"], table["score"], args.out)
    return 0


def _run(args: argparse.Namespace, particles, maps, grid: Grid, out: str, use_ctf: bool):
    """Prepare, process, then per map the set scores and images, then the STAR files.

    Memory does not grow with the particle count beyond a few per-particle
    numbers: the STAR text table is released while the chunks run and read
    again for the outputs, the maps are freed once in the run folder, images
    are written and read one chunk at a time.
    """

    options = _options(args, grid, use_ctf)
    chunks = _chunks(particles, args.chunk_size)
    folder = os.path.join(out, "run")
    _prepare(folder, particles, maps, grid, options, chunks, args)
    maps[:] = [(path, vol.shape[0], px) for path, vol, px in maps]  # free: in the run folder
    n, path = particles.n, particles.path
    particles.blocks = {}  # the STAR text: read again for the outputs
    _process(folder, len(maps), chunks, n, args)
    slots = [_map_scores_and_images(args, folder, k, p, chunks, n, grid, out)
             for k, (p, _, _) in enumerate(maps, start=1)]
    particles = _read_again(args, path, n)
    finals, summaries = {}, []
    for k, (map_path, map_box, px) in enumerate(maps, start=1):
        final = in_row_order(_load_scores(folder, k), n)
        star = write_particles_star(particles, final, grid, f"vol{k}", out,
                                    None if args.output_stacks == "none" else slots[k - 1])
        selection = write_selection(particles, final, f"vol{k}", out)
        finals[f"vol{k}"] = {key: final[key] for key in ("ids", args.rank_score) if key in final}
        summaries.append({**map_summary(k, map_path, final, star,
                                        grid.exact_pixel(map_box, px)), **selection,
                          "output_stacks": args.output_stacks,
                          "n_saved_images": int((slots[k - 1] >= 0).sum()),
                          **micrograph_summary(particles, final, _load_ctf_corr(folder, k),
                                         f"vol{k}", out,
                                         f"map vol{k}: {os.path.basename(map_path)}")})
    _clean(folder, len(maps), len(chunks))
    table = write_ranking(out, finals, summaries, particles, grid, options, args.rank_score)
    return summaries, table


def _map_scores_and_images(args, folder: str, k: int, path: str, chunks, n: int, grid: Grid,
                           out: str) -> np.ndarray:
    """Set scores of map k (``run/volK/scores.npz``), its saved stacks and report.

    Returns the 0-based stack slot of each row (-1: not saved).
    """
    from xmipp_qc import compare_run
    from xmipp_qc.core.compare_policy import finalize_map
    from xmipp_qc.core.saved_images import rows_to_save
    from xmipp_qc.plots.reprojections import worst_indices
    from xmipp_qc.saved_stacks import SavedImages

    results = compare_run.load_results(folder, k, range(len(chunks)))
    try:
        final = finalize_map(results, matching=compare_run.read_run(folder)["matching"],
                             threshold=args.threshold)
    except ValueError as exc:
        raise ValueError(f"{args.images} against {path}: {exc}") from None
    np.savez(os.path.join(folder, f"vol{k}", "scores.npz"), **final)
    if results and all(r.ctf_corr is not None for r in results):  # the CTF check's, row order
        ids = np.concatenate([r.ids for r in results])
        np.save(os.path.join(folder, f"vol{k}", "ctf_corr.npy"),
                np.concatenate([r.ctf_corr for r in results])[np.argsort(ids, kind="stable")])
    del results
    final = in_row_order(final, n)
    saved = SavedImages(folder, k, chunks, n, args.output_stacks)
    saved.write(rows_to_save(final, args.output_stacks, n_worst=max(args.keep_worst, args.worst)),
                {name: os.path.join(out, f"vol{k}_{name}.mrcs") for name in STACK_NAMES},
                grid.box, grid.pixel_a)
    worst = worst_indices(final["outlierScore"], args.worst)
    write_report(final, f"vol{k}", out, os.path.basename(path), args.threshold, worst,
                 saved.images(worst))
    return saved.slot


def _load_ctf_corr(folder: str, k: int):
    """The CTF check's correlations of map k in row order, or None (no CTF check)."""
    fn = os.path.join(folder, f"vol{k}", "ctf_corr.npy")
    return np.load(fn) if os.path.exists(fn) else None


def _load_scores(folder: str, k: int) -> dict:
    with np.load(os.path.join(folder, f"vol{k}", "scores.npz"), allow_pickle=False) as z:
        return {key: z[key] for key in z.files}


def _read_again(args, path: str, n: int):
    """The particle STAR, read again for the outputs (it must not have changed)."""
    from xmipp_qc.formats.relion_particles import read_particles

    particles = read_particles(path, pixel_size_a=args.pixel_size,
                               relion_project=args.relion_project)
    if particles.n != n:
        raise ValueError(f"{path} changed during the run: {particles.n} rows, {n} before")
    return particles
