"""``xmipp-qc movie-consensus``: do two motion-correction runs agree, movie by movie?

Reads per-movie trajectory files of two runs (RELION motion STAR, MotionCor2
stdout or ``-Full.log``, or ``frame,x,y`` CSV; see :mod:`xmipp_qc.formats.motion`),
pairs them by movie name (:func:`~xmipp_qc.formats.motion.movie_name`: the file
name without known suffixes such as ``_shifts``, ``.star``, ``.log``,
``-Patch-Full.log``, ``.csv``), compares each pair with
:func:`xmipp_qc.core.trajectories.compare_trajectories` and writes to ``--out``:

``consensus.csv`` and ``consensus.star``
    One row per movie (sorted by name, taken as acquisition order): name,
    decision, reason, message, every metric, and the two input files.
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
import os
import sys
from collections import Counter
from dataclasses import asdict, replace
from typing import Optional

NAME = "movie-consensus"
HELP = ("Compare the global motion trajectories of two motion-correction runs, movie by "
        "movie (RELION STAR, MotionCor2 logs, CSV).")

FIELDS = ("accepted", "reason", "message", "n_frames", "corr_x", "corr_y", "corr", "rmse_px",
          "max_error_px", "rmse_a", "max_error_a", "scale", "rotation_deg", "total_ref_px",
          "early_ref_px", "late_ref_px", "total_sec_px", "early_sec_px", "late_sec_px")
COLUMNS = ("name", "decision", *FIELDS[1:], "reference_file", "secondary_file")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reference", required=True, metavar="PATTERN",
                        help="Glob of the reference run's trajectory files (quote it), e.g. "
                             "'run1/*.star'. Its shifts, pixel size and dose are the reference.")
    parser.add_argument("--secondary", required=True, metavar="PATTERN",
                        help="Glob of the secondary run's trajectory files.")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="Output folder: new, empty, or an earlier run's results (replaced "
                             "when this run succeeds; a failed run leaves it as it was).")
    parser.add_argument("--overwrite", action="store_true",
                        help="Replace --out even if it holds files that are not "
                             "movie-consensus results.")
    parser.add_argument("--min-corr", type=float, default=0.75,
                        help="Minimum correlation per moving axis (-1: off; default %(default)s).")
    parser.add_argument("--min-range", type=float, default=3.0, metavar="PX",
                        help="An axis is correlated only if it moves more than this (px) in "
                             "both runs; other axes must agree to half of it RMS "
                             "(default %(default)s).")
    parser.add_argument("--max-rmse", type=float, default=1.0, metavar="PX",
                        help="Maximum RMSE after superposition in px of the reference movie "
                             "(0: off; default %(default)s).")
    parser.add_argument("--scale-tolerance", type=float, default=0.1,
                        help="Accept path scale secondary/reference in [1-t, 1/(1-t)] "
                             "(0: off; default %(default)s).")
    parser.add_argument("--allow-rotation", action="store_true",
                        help="Superpose with the best proper rotation too.")
    parser.add_argument("--max-rotation", type=float, default=5.0, metavar="DEG",
                        help="With --allow-rotation: largest accepted angle (default %(default)s).")
    parser.add_argument("--binning", type=float, default=1.0,
                        help="Secondary px / reference px (default %(default)s: RELION and "
                             "MotionCor2 both write unbinned movie px).")
    parser.add_argument("--pixel-size", type=float, default=None, metavar="A",
                        help="Reference pixel size (Å/px); default: from each reference file.")
    parser.add_argument("--dose-per-frame", type=float, default=None, metavar="E_A2",
                        help="Dose per frame (e/Å²) for early/late motion; default: from each "
                             "reference file, else early = 0.")
    parser.add_argument("--early-dose", type=float, default=4.0, metavar="E_A2",
                        help="Accumulated dose (e/Å²) ending early motion (default %(default)s).")
    parser.add_argument("--plots", action="store_true",
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
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _star_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.6f}"
    text = str(value)
    if text == "" or any(c.isspace() for c in text) or text.startswith(("_", "#", "'", '"')):
        return '"' + text.replace('"', "'") + '"'
    return text


def _write_star(path: str, rows: list) -> None:
    labels = ["_qc" + "".join(p.capitalize() for p in col.split("_")) for col in COLUMNS]
    lines = ["", "# version 30001", "", "data_consensus", "", "loop_"]
    lines += [f"{label} #{k + 1}" for k, label in enumerate(labels)]
    lines += [" ".join(_star_value(row[col]) for col in COLUMNS) for row in rows]
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n\n")


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


def _run_movies(args, params, ref_files: dict, sec_files: dict, unreadable: list, out: str):
    rows, results = [], []
    plot_dir = os.path.join(out, "plots")
    for name in sorted(set(ref_files) | set(sec_files)):
        ref_file, sec_file = ref_files.get(name), sec_files.get(name)
        result, ref, sec, pixel_size = _compare_one(ref_file, sec_file, args, params,
                                                    unreadable)
        rows.append(_row(name, result, ref_file, sec_file))
        results.append({"name": name, **result.as_dict()})
        if args.plots and ref is not None and result.reason != "invalid":
            os.makedirs(plot_dir, exist_ok=True)
            _plot_movie(os.path.join(plot_dir, f"{name}.png"), name, result, ref, sec,
                        pixel_size, args)
    return rows, results


def run(args: argparse.Namespace) -> int:
    """Run the command; bad options or no input raise ValueError naming the culprit.

    Results go to a staging folder swapped in as ``--out`` only when the run
    succeeds (:class:`~xmipp_qc.commands.output_folder.OutputFolder`); warnings
    (nothing paired, duplicate names, unusable files) go to stderr and to
    ``summary.json``.
    """
    from xmipp_qc.commands.output_folder import OutputFolder

    _check_options(args)
    params = _params(args)
    folder = OutputFolder(args.out, NAME, overwrite=args.overwrite)
    duplicates: list = []
    unreadable: list = []
    ref_files = _collect(args.reference, duplicates)
    sec_files = _collect(args.secondary, duplicates)
    if not ref_files and not sec_files:
        raise ValueError(f"no file matches {args.reference!r} or {args.secondary!r}")
    warnings = _pairing_warnings(ref_files, sec_files, duplicates)
    with folder as out:
        rows, results = _run_movies(args, params, ref_files, sec_files, unreadable, out)
        if unreadable:
            warnings.append(f"{len(unreadable)} file(s) could not be used (their movies are "
                            f"'invalid'), e.g. {unreadable[0]['error']}")
        _write_csv(os.path.join(out, "consensus.csv"), rows)
        _write_star(os.path.join(out, "consensus.star"), rows)
        if args.plots:
            _plot_dataset(out, results, params)
        summary = _summary(rows, params, args, unreadable, duplicates, warnings)
        with open(os.path.join(out, "summary.json"), "w") as fh:
            json.dump(summary, fh, indent=2, allow_nan=False)
    for w in warnings:
        print(f"xmipp-qc {NAME}: warning: {w}", file=sys.stderr)
    print(f"{summary['n_movies']} movies: {summary['n_accepted']} accepted, "
          f"{summary['n_discarded']} discarded "
          f"({', '.join(f'{k} {v}' for k, v in summary['counts'].items() if v)}); "
          f"{len(unreadable)} unreadable file(s). Results in {args.out}")
    return 0
