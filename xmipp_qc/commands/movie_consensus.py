"""``xmipp-qc movie-consensus``: do two motion-correction runs agree, movie by movie?

Reads per-movie trajectory files of two runs (RELION motion STAR, MotionCor2
stdout or ``-Full.log``, or ``frame,x,y`` CSV; see :mod:`xmipp_qc.formats.motion`),
pairs them by movie name (:func:`~xmipp_qc.formats.motion.movie_name`: the file
name without known suffixes such as ``_shifts``, ``.star``, ``.log``,
``-Patch-Full.log``, ``.csv``), compares each pair with
:func:`xmipp_qc.core.trajectories.compare_trajectories` and writes to ``--out``:

``consensus.csv``
    One row per movie (sorted by name, taken as acquisition order): name,
    decision, reason, message, every metric, and the two input files.
``micrographs_accepted.star`` and ``micrographs_discarded.star``
    The reference run's micrographs as RELION micrograph STARs
    (:mod:`xmipp_qc.formats.relion_micrographs`: ``data_optics`` and
    ``data_micrographs`` with ``rlnMicrographName``, ``rlnMicrographMetadata``
    for RELION inputs, ``rlnAccumMotionTotal/Early/Late`` in Å and the metrics
    as ``xmippQc*`` columns), for a RELION CTF job or ``relion_star_handler``.
``summary.json``
    Counts per reason, thresholds and inputs used, unreadable files with their
    error, and duplicate movie names.
``plots/<name>.png`` and ``consensus_*.png`` (with ``--plots``)
    The superposed trajectories of each compared movie and dataset plots.

A file that cannot be read makes its movie "invalid" (the error is in the
message and in ``summary.json``); a movie found in one run only is "missing".
Neither stops the run; the exit code is 0 when the run completed.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import logging
import os
from collections import Counter
from dataclasses import asdict, replace
from typing import Optional

log = logging.getLogger(__name__)

NAME = "movie-consensus"
HELP = ("Compare the global motion trajectories of two motion-correction runs, movie by "
        "movie (RELION STAR, MotionCor2 logs, CSV).")

FIELDS = ("accepted", "reason", "message", "n_frames", "corr_x", "corr_y", "corr", "rmse_px",
          "max_error_px", "rmse_a", "max_error_a", "scale", "rotation_deg", "total_ref_px",
          "early_ref_px", "late_ref_px", "total_sec_px", "early_sec_px", "late_sec_px")
COLUMNS = ("name", "decision", *FIELDS[1:], "reference_file", "secondary_file")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--reference", required=True, metavar="PATTERN",
      help="Glob of the reference run's trajectory files (quote it), e.g. "
           "'MotionCorr/job002/Movies/*.star'. Its shifts, pixel size, dose and micrographs "
           "are the reference.")
    a("--secondary", required=True, metavar="PATTERN",
      help="Glob of the secondary run's trajectory files.")
    a("--out", required=True, metavar="DIR",
      help="Output folder: new, empty, or an earlier run's results, replaced when this run "
           "succeeds; a failed run leaves it as it was.")
    a("--overwrite", action="store_true",
      help="Replace --out even if it holds files that are not movie-consensus results.")
    a("--min-corr", type=float, default=0.75, metavar="R",
      help="Minimum correlation per moving axis, -1 to 1; -1: off (default %(default)s).")
    a("--min-range", type=float, default=3.0, metavar="PX",
      help="An axis is correlated only if it moves more than this, px, in both runs; other "
           "axes must agree to half of it RMS (default %(default)s).")
    a("--max-rmse", type=float, default=1.0, metavar="PX",
      help="Maximum RMSE after superposition, px of the reference movie; 0: off "
           "(default %(default)s).")
    a("--scale-tolerance", type=float, default=0.1, metavar="T",
      help="Accept a path scale secondary/reference in [1-T, 1/(1-T)]; 0: off "
           "(default %(default)s).")
    a("--allow-rotation", action="store_true",
      help="Superpose with the best proper rotation too.")
    a("--max-rotation", type=float, default=5.0, metavar="DEG",
      help="With --allow-rotation: largest accepted angle, degrees (default %(default)s).")
    a("--binning", type=float, default=1.0, metavar="RATIO",
      help="Secondary px / reference px (default %(default)s: RELION and MotionCor2 both "
           "write unbinned movie px; RELION's --bin_factor does not change them).")
    a("--pixel-size", type=float, default=None, metavar="A",
      help="Reference movie pixel size, Å/px (default: from each reference file; "
           "RELION: --angpix).")
    a("--dose-per-frame", type=float, default=None, metavar="E_A2",
      help="Dose per frame, e/Å², for early/late motion (default: from each reference "
           "file, else early = 0; RELION: --dose_per_frame).")
    a("--early-dose", type=float, default=4.0, metavar="E_A2",
      help="Accumulated dose, e/Å², ending early motion (default %(default)s, as RELION).")
    a("--micrographs", metavar="STAR",
      help="The reference run's micrograph STAR, e.g. RELION's "
           "MotionCorr/jobNNN/corrected_micrographs.star: the micrograph STARs written are "
           "then its blocks (optics included, values as read) with only the accepted / "
           "discarded rows (matched by micrograph file name = movie name) and the metrics "
           "appended. Default: built from the reference files and the options below.")
    a("--micrograph-name", default="{folder}/{name}.mrc", metavar="TEMPLATE",
      help="rlnMicrographName of each movie in the micrograph STARs; {folder} is the "
           "reference file's folder, {name} the movie name (default %(default)s, RELION's "
           "layout: MotionCorr/jobNNN/Movies/x.star -> x.mrc).")
    a("--voltage", type=float, default=300.0, metavar="KV",
      help="rlnVoltage of the micrograph STARs' optics, kV (default: the RELION reference "
           "file's, else %(default)s; RELION: relion_import --kV).")
    a("--cs", type=float, default=2.7, metavar="MM",
      help="rlnSphericalAberration, mm (default %(default)s; RELION: --Cs).")
    a("--amplitude-contrast", type=float, default=0.1, metavar="Q0",
      help="rlnAmplitudeContrast (default %(default)s; RELION: --Q0).")
    a("--plots", action="store_true",
      help="Write a PNG per movie and dataset plots.")


def _check_options(args: argparse.Namespace) -> None:
    """Every option value, before any work (ValueError listing the problems)."""
    from xmipp_qc.core import option_checks as check

    inf = float("inf")
    problems = (check.in_range("--min-corr", args.min_corr, -1, 1)
                + check.in_range("--min-range", args.min_range, 0, inf)
                + check.in_range("--max-rmse", args.max_rmse, 0, inf)
                + check.in_range("--scale-tolerance", args.scale_tolerance, 0, 1,
                                 high_open=True)
                + check.in_range("--max-rotation", args.max_rotation, 0, 180)
                + check.positive("--binning", args.binning)
                + check.positive("--pixel-size", args.pixel_size, optional=True)
                + check.in_range("--dose-per-frame", args.dose_per_frame, 0, inf, optional=True)
                + check.in_range("--early-dose", args.early_dose, 0, inf))
    if problems:
        raise ValueError("; ".join(problems))


def _pairing_warnings(ref_files: dict, sec_files: dict, duplicates: list) -> list:
    """Warnings about the pairing of the two runs' files (also in ``summary.json``)."""
    warnings = []
    for run, files, pattern in (("reference", ref_files, "--reference"),
                                ("secondary", sec_files, "--secondary")):
        if not files:
            warnings.append(f"{pattern} matches no file: every movie is missing in the "
                            f"{run} run")
    if ref_files and sec_files and not set(ref_files) & set(sec_files):
        warnings.append(
            f"no movie name is in both runs (reference e.g. {min(ref_files)!r}, secondary "
            f"e.g. {min(sec_files)!r}): every movie is 'missing'; names are the file names "
            "without suffixes such as _shifts, .star, .log, -Patch-Full.log, .csv")
    if duplicates:
        d = duplicates[0]
        warnings.append(f"{len(duplicates)} file(s) give a movie name already taken in their "
                        f"run and were ignored, e.g. {d['ignored']} ({d['name']!r}, kept "
                        f"{d['kept']})")
    return warnings


def _params(args: argparse.Namespace):
    from xmipp_qc.core.trajectories import ConsensusParams

    return ConsensusParams(
        min_corr=args.min_corr, min_range_px=args.min_range,
        max_rmse_px=args.max_rmse if args.max_rmse > 0 else None,
        scale_tolerance=args.scale_tolerance if args.scale_tolerance > 0 else None,
        allow_rotation=args.allow_rotation, max_rotation_deg=args.max_rotation,
    )


def _collect(pattern: str, duplicates: list) -> dict:
    """Map movie name -> file for every file matching the glob (first in sorted order wins)."""
    from xmipp_qc.formats.motion import movie_name

    files: dict = {}
    for path in sorted(glob.glob(pattern, recursive=True)):
        if not os.path.isfile(path):
            continue
        name = movie_name(path)
        if name in files:
            duplicates.append({"name": name, "kept": files[name], "ignored": path})
        else:
            files[name] = path
    return files


def _read(path: str, run: str, unreadable: list):
    from xmipp_qc.formats.motion import TrajectoryFormatError, read_trajectory

    try:
        return read_trajectory(path), None
    except (TrajectoryFormatError, OSError, UnicodeError) as exc:
        unreadable.append({"file": path, "run": run, "error": str(exc)})
        return None, f"{run} file unreadable: {exc}"


def _compare_one(ref_file: Optional[str], sec_file: Optional[str], args, params,
                 unreadable: list):
    """Compare one movie; return (TrajectoryComparison, ref, sec, pixel size or None)."""
    from xmipp_qc.core.trajectories import compare_trajectories, missing_comparison

    if ref_file is None or sec_file is None:
        which = "reference" if ref_file is None else "secondary"
        return missing_comparison(which), None, None, None
    ref, err_ref = _read(ref_file, "reference", unreadable)
    sec, err_sec = _read(sec_file, "secondary", unreadable)
    if ref is None or sec is None:  # all metrics 0, as for any "invalid" result
        invalid = replace(missing_comparison(), reason="invalid", message=err_ref or err_sec)
        return invalid, None, None, None
    pixel_size = args.pixel_size if args.pixel_size is not None else ref.pixel_size_a
    dose = args.dose_per_frame if args.dose_per_frame is not None else ref.dose_per_frame
    res = compare_trajectories(
        ref.frames, ref.shifts, sec.frames, sec.shifts, binning=args.binning,
        pixel_size_a=pixel_size, dose_per_frame=dose, pre_exposure=ref.pre_exposure or 0.0,
        early_dose=args.early_dose, params=params)
    return res, ref, sec, pixel_size


def _row(name: str, result, ref_file: Optional[str], sec_file: Optional[str]) -> dict:
    row = {"name": name, "decision": "accepted" if result.accepted else "discarded"}
    row.update({k: v for k, v in result.as_dict().items() if k != "accepted"})
    row.update(reference_file=ref_file or "", secondary_file=sec_file or "")
    return row


def _write_csv(path: str, rows: list) -> None:
    with open(f"{path}.part", "w", newline="") as fh:  # complete under its name, or absent
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(f"{path}.part", path)


def _plot_movie(path: str, name: str, result, ref, sec, pixel_size, args) -> None:
    from xmipp_qc.core.trajectories import match_frames
    from xmipp_qc.plots.trajectories import plot_trajectory_pair

    i_ref, i_sec = match_frames(ref.frames, sec.frames)
    fig = plot_trajectory_pair(
        ref.frames[i_ref], ref.shifts[i_ref], sec.shifts[i_sec] * args.binning,
        metrics=result.as_dict(), pixel_size_a=pixel_size, allow_rotation=args.allow_rotation,
        name=name)
    fig.savefig(path, dpi=80)


def _plot_dataset(out: str, results: list, params) -> None:
    from xmipp_qc.plots import trajectories as plots

    plots.plot_corr_vs_rmse(results, min_corr=params.min_corr,
                            max_rmse_px=params.max_rmse_px).savefig(
        os.path.join(out, "consensus_corr_rmse.png"), dpi=90)
    plots.plot_metric_histograms(results).savefig(
        os.path.join(out, "consensus_histograms.png"), dpi=90)
    plots.plot_accumulated_motion(results).savefig(
        os.path.join(out, "consensus_accumulated_motion.png"), dpi=90)


def _summary(rows: list, params, args, unreadable: list, duplicates: list,
             warnings: list) -> dict:
    from xmipp_qc.core.trajectories import REASONS

    counts = Counter(row["reason"] for row in rows)
    return {
        "n_movies": len(rows),
        "n_accepted": sum(row["decision"] == "accepted" for row in rows),
        "n_discarded": sum(row["decision"] != "accepted" for row in rows),
        "counts": {reason: counts.get(reason, 0) for reason in REASONS},
        "thresholds": asdict(params),
        "inputs": {"reference": args.reference, "secondary": args.secondary,
                   "binning": args.binning, "pixel_size_a": args.pixel_size,
                   "dose_per_frame": args.dose_per_frame, "early_dose": args.early_dose},
        "unreadable": unreadable,
        "duplicates": duplicates,
        "warnings": warnings,
    }


def _micrograph(name: str, ref_file: str, result, ref, pixel_size, args):
    """RELION micrograph row of a movie of the reference run."""
    from xmipp_qc.formats.relion_micrographs import MicrographRow, Optics

    optics = motion = None
    if pixel_size is not None and pixel_size > 0:
        extra = ref.extra if ref is not None else {}
        binning = float(extra.get("binning") or extra.get("ft_bin") or 1.0)
        voltage = float(extra.get("voltage_kv") or args.voltage)
        optics = Optics(float(pixel_size), float(pixel_size) * binning, voltage, args.cs,
                        args.amplitude_contrast)
        motion = tuple(getattr(result, f"{k}_ref_px") * pixel_size
                       for k in ("total", "early", "late"))
    is_relion = ref_file.lower().endswith(".star")  # RELION's per-movie motion STAR
    metrics = {f"xmippQc{''.join(p.capitalize() for p in k.split('_'))}": v
               for k, v in result.as_dict().items() if k not in ("accepted", "message")}
    mic = args.micrograph_name.format(folder=os.path.dirname(ref_file) or ".", name=name)
    return MicrographRow(mic, optics, ref_file if is_relion else None, motion, metrics)


def _read_micrographs(path: str) -> tuple:
    """``(blocks, table)`` of ``--micrographs`` (ValueError/OSError naming the file)."""
    from xmipp_qc.formats.relion_micrographs import micrograph_table
    from xmipp_qc.formats.star import read_star

    blocks = read_star(path)
    return blocks, micrograph_table(blocks, path)


def _select_micrographs(args, rows: list, mics: dict, source: tuple, out: str) -> tuple:
    """The micrograph STARs as rows of ``--micrographs``, values as read, metrics appended."""
    from xmipp_qc.formats.motion import movie_name
    from xmipp_qc.formats.relion_micrographs import select_micrographs
    from xmipp_qc.formats.star import write_star

    blocks, table = source
    index: dict = {}
    for i, mic in enumerate(blocks[table].text("rlnMicrographName")):
        index.setdefault(movie_name(os.path.splitext(os.path.basename(mic))[0]), i)
    unmatched = sorted(set(mics) - set(index))
    if unmatched:
        log.warning("%d reference movie(s) have no row in %s, e.g. %s", len(unmatched),
                    args.micrographs, unmatched[0])
    log.info("%d of the %d micrographs of %s were compared", len(set(index) & set(mics)),
             len(index), args.micrographs)
    written = []
    for decision in ("accepted", "discarded"):
        names = [r["name"] for r in rows if r["decision"] == decision and r["name"] in index
                 and r["name"] in mics]
        labels = list(mics[names[0]].extra) if names else []
        path = os.path.join(out, f"micrographs_{decision}.star")
        write_star(path, select_micrographs(blocks, table, [index[n] for n in names], {
            label: [mics[n].extra[label] for n in names] for label in labels}))
        written += [os.path.basename(path), len(names)]
    return tuple(written)


def _write_micrographs(args, rows: list, mics: dict, source: Optional[tuple],
                       out: str) -> tuple:
    """``micrographs_accepted.star`` and ``micrographs_discarded.star`` (reference movies)."""
    from xmipp_qc.formats.relion_micrographs import write_micrographs

    if source is not None:
        return _select_micrographs(args, rows, mics, source, out)

    # an unreadable reference file has no pixel size: it takes the run's first optics
    # (one acquisition per run) and zero motion, like its other metrics
    known = next((m.optics for m in mics.values() if m.optics is not None), None)
    if known is None and mics:
        log.warning("no pixel size in the reference files: the micrograph STARs have no "
                    "optics block (give --pixel-size for a RELION 3.1+ table)")
    elif known is not None:
        mics = {k: m if m.optics is not None else replace(m, optics=known, motion_a=(0.0,) * 3)
                for k, m in mics.items()}
    written = []
    for decision in ("accepted", "discarded"):
        chosen = [mics[r["name"]] for r in rows
                  if r["decision"] == decision and r["name"] in mics]
        path = os.path.join(out, f"micrographs_{decision}.star")
        write_micrographs(path, chosen)
        written += [os.path.basename(path), len(chosen)]
    return tuple(written)


def _run_movies(args, params, ref_files: dict, sec_files: dict, unreadable: list, out: str):
    rows, results, mics = [], [], {}
    plot_dir = os.path.join(out, "plots")
    for name in sorted(set(ref_files) | set(sec_files)):
        ref_file, sec_file = ref_files.get(name), sec_files.get(name)
        result, ref, sec, pixel_size = _compare_one(ref_file, sec_file, args, params,
                                                    unreadable)
        log.debug("%s: %s (%s)", name, "accepted" if result.accepted else "discarded",
                  result.reason)
        rows.append(_row(name, result, ref_file, sec_file))
        results.append({"name": name, **result.as_dict()})
        if ref_file is not None:
            mics[name] = _micrograph(name, ref_file, result, ref, pixel_size, args)
        if args.plots and ref is not None and result.reason != "invalid":
            os.makedirs(plot_dir, exist_ok=True)
            _plot_movie(os.path.join(plot_dir, f"{name}.png"), name, result, ref, sec,
                        pixel_size, args)
    return rows, results, mics


def _prepare(args: argparse.Namespace) -> tuple:
    """Thresholds and the ``--micrographs`` table; ValueError with the user's message."""
    params = _params(args)
    try:
        args.micrograph_name.format(folder="", name="")
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"--micrograph-name {args.micrograph_name!r}: only {{folder}} and "
                         f"{{name}} can be used ({exc})") from None
    try:
        return params, _read_micrographs(args.micrographs) if args.micrographs else None
    except (ValueError, OSError, UnicodeError) as exc:
        raise ValueError(f"--micrographs: {exc}") from None


def _write_summary(path: str, summary: dict) -> None:
    with open(f"{path}.part", "w") as fh:  # complete under its name, or absent
        json.dump(summary, fh, indent=2, allow_nan=False)
    os.replace(f"{path}.part", path)


def run(args: argparse.Namespace) -> int:
    """Run the command; bad options or no input raise ValueError naming the culprit.

    Results go to a staging folder swapped in as ``--out`` only when the run
    succeeds (:class:`~xmipp_qc.commands.output_folder.OutputFolder`); warnings
    (nothing paired, duplicate names, unusable files) go to stderr and to
    ``summary.json``.
    """
    from xmipp_qc.commands.output_folder import OutputFolder

    _check_options(args)
    params, source = _prepare(args)
    folder = OutputFolder(args.out, NAME, overwrite=args.overwrite)
    duplicates: list = []
    unreadable: list = []
    ref_files = _collect(args.reference, duplicates)
    sec_files = _collect(args.secondary, duplicates)
    if not ref_files and not sec_files:
        raise ValueError(f"no file matches {args.reference!r} or {args.secondary!r}")
    warnings = _pairing_warnings(ref_files, sec_files, duplicates)
    with folder as out:
        rows, results, mics = _run_movies(args, params, ref_files, sec_files, unreadable, out)
        if unreadable:
            warnings.append(f"{len(unreadable)} file(s) could not be used (their movies are "
                            f"'invalid'), e.g. {unreadable[0]['error']}")
        _write_csv(os.path.join(out, "consensus.csv"), rows)
        stars = _write_micrographs(args, rows, mics, source, out)
        if args.plots:
            _plot_dataset(out, results, params)
        summary = _summary(rows, params, args, unreadable, duplicates, warnings)
        _write_summary(os.path.join(out, "summary.json"), summary)
    for w in warnings:
        log.warning("%s: %s", NAME, w)
    log.info("%d movies: %d accepted, %d discarded (%s); %d unreadable file(s). Results in "
             "%s: consensus.csv, micrographs %s (%d) and %s (%d)", summary["n_movies"],
             summary["n_accepted"], summary["n_discarded"],
             ", ".join(f"{k} {v}" for k, v in summary["counts"].items() if v), len(unreadable),
             args.out, *stars)
    return 0
