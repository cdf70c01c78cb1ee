"""The files a ``xmipp-qc compare-reprojections`` run writes for each map, and the ranking.

For map k (prefix ``volK``) in the output folder: ``volK_particles.star`` (the
input STAR with the refined alignment in ``rlnAngle*``/``rlnOrigin*``, input
pixels, and the scores as ``xmippQc*`` columns: :func:`write_particles_star`),
``volK_kept.star``/``volK_flagged.star`` (:func:`write_selection`),
``volK_report.png`` (:func:`write_report`); and ``ranking.json`` (plus
``ranking.png`` with several maps: :func:`write_ranking`). Scores arrive as
:func:`xmipp_qc.core.compare_policy.finalize_map` gives them, in chunk order, and
are put in STAR row order by :func:`in_row_order`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict

import numpy as np

from xmipp_qc.commands.compare_reprojections_inputs import Grid

__all__ = ["NOT_COLUMNS", "in_row_order", "map_summary", "score_label", "write_particles_star",
           "write_ranking", "write_report", "write_selection"]

#: finalize() keys that are not written as xmippQc* columns (the alignment goes to rln*).
NOT_COLUMNS = ("ids", "angles", "shifts")


def in_row_order(final: dict, n: int) -> dict:
    """Set scores sorted by row id (RuntimeError unless every row 0..n-1 is there once)."""
    order = np.argsort(final["ids"], kind="stable")
    if len(order) != n or not np.array_equal(final["ids"][order], np.arange(n)):
        raise RuntimeError("the pipeline lost or duplicated particles")
    return {k: np.asarray(v)[order] for k, v in final.items()}


def score_label(key: str) -> str:
    """STAR label of a score: ``match_corr`` -> ``xmippQcMatchCorr``."""
    return "xmippQc" + "".join(p[:1].upper() + p[1:] for p in key.split("_"))


def write_particles_star(particles, final: dict, grid: Grid, prefix: str, out: str,
                         slots: np.ndarray | None = None) -> str:
    """``prefix_particles.star``: the input STAR, refined alignment (input px), scores.

    ``slots``: 0-based slot of each row in the ``prefix_<stack>.mrcs`` stacks, -1
    for a row whose images were not saved (written ``none``); None: no stacks,
    no image columns.
    """
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
    cols = {score_label(k): v for k, v in final.items() if k not in NOT_COLUMNS}
    for label, stack in (() if slots is None else
                         (("ImageRef", "reprojections"), ("ImageResidual", "residuals"),
                          ("ImageAligned", "aligned"))):
        cols[f"xmippQc{label}"] = np.array([f"{i + 1:06d}@{prefix}_{stack}.mrcs" if i >= 0
                                            else "none" for i in slots.tolist()])
    path = os.path.join(out, f"{prefix}_particles.star")
    write_particles(path, particles, cols, angles=angles, shifts=shifts)
    return path


def write_selection(particles, final: dict, prefix: str, out: str) -> dict:
    """``prefix_kept.star`` and ``prefix_flagged.star``: the input STAR, every block and
    value as read, with only the rows not flagged / flagged (outliers and failures)."""
    from xmipp_qc.formats.star import select_rows, write_star

    flagged = np.asarray(final["isOutlier"], dtype=bool)
    names = {}
    for what, rows in (("kept", np.flatnonzero(~flagged)), ("flagged", np.flatnonzero(flagged))):
        names[f"{what}_star"] = name = f"{prefix}_{what}.star"
        write_star(os.path.join(out, name), select_rows(particles.blocks, particles.table, rows))
    return {**names, "n_kept": int((~flagged).sum())}


def write_report(final: dict, prefix: str, out: str, title: str, threshold: float,
                 worst: np.ndarray, stacks: list) -> str:
    """``prefix_report.png``: outlier-score histogram and the ``worst`` rows' images
    (``stacks``: their aligned, reprojection and residual images)."""
    from xmipp_qc.plots.reprojections import plot_report

    labels = [f"row {i + 1}\nscore {final['outlierScore'][i]:.1f}" for i in worst]
    fig = plot_report(final["outlierScore"], threshold, *stacks, is_outlier=final["isOutlier"],
                      labels=labels, title=title)
    path = os.path.join(out, f"{prefix}_report.png")
    fig.savefig(path, dpi=90)
    return path


def map_summary(k: int, path: str, final: dict, star: str, pixel: float) -> dict:
    """Counts and mean cost of map k, for ``ranking.json`` and the log."""
    from xmipp_qc.core.reasons import is_failure

    failed = is_failure(final["reason"])
    return {"key": f"vol{k}", "path": os.path.abspath(path), "star": os.path.basename(star),
            "pixel_a_after_resampling": pixel,
            "n_images": int(len(final["ids"])), "n_failed": int(failed.sum()),
            "n_outliers": int((final["isOutlier"] & ~failed).sum()),
            "mean_cost": float(np.nanmean(final["cost"]))}


def write_ranking(out: str, finals: dict, summaries: list, particles, grid, options,
                  score: str) -> dict:
    """``ranking.json`` (and ``ranking.png`` with several maps): the maps ranked by ``score``."""
    from xmipp_qc.core.pipeline import rank

    table = rank(finals, score=score)
    if len(summaries) > 1:
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
    return table
