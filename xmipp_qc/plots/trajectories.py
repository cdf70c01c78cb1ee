"""Figures of the movie-alignment consensus: pure functions of arrays and dicts.

Every function builds a :class:`matplotlib.figure.Figure` directly (no pyplot
state, no display needed) and returns it; save it with ``fig.savefig(path)``.
Inputs are numpy arrays or the dicts of
:meth:`xmipp_qc.core.trajectories.TrajectoryComparison.as_dict` (one per movie,
optionally with a ``"name"`` key), in acquisition order. Shifts are in px of the
reference movie; Angstrom axes are added when the pixel size is known.
This module must not import pyworkflow (it is used by the command line too).
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from numpy.typing import ArrayLike

from xmipp_qc.core.trajectories import superpose

__all__ = [
    "REF_COLOR",
    "SEC_COLOR",
    "plot_accumulated_motion",
    "plot_corr_vs_rmse",
    "plot_metric_histograms",
    "plot_trajectory_pair",
]

REF_COLOR = "tab:blue"
SEC_COLOR = "tab:orange"
_ACCEPT_COLOR = "tab:green"
_DISCARD_COLOR = "tab:red"


def _title(metrics: Optional[Mapping], name: Optional[str]) -> str:
    head = name or "trajectories"
    if not metrics:
        return head
    decision = "accepted" if metrics.get("accepted") else f"discarded: {metrics.get('reason')}"
    return (f"{head} ({decision})\n"
            f"corr {metrics.get('corr', 0):.3f}  RMSE {metrics.get('rmse_px', 0):.2f} px  "
            f"max {metrics.get('max_error_px', 0):.2f} px  scale {metrics.get('scale', 1):.2f}")


def _angstrom_axes(ax, pixel_size_a: float) -> None:
    """Twin Angstrom axes (top and right) that follow the px axes."""
    top = ax.secondary_xaxis("top", functions=(lambda v: v * pixel_size_a,
                                               lambda v: v / pixel_size_a))
    right = ax.secondary_yaxis("right", functions=(lambda v: v * pixel_size_a,
                                                   lambda v: v / pixel_size_a))
    top.set_xlabel("x shift (Å)")
    right.set_ylabel("y shift (Å)")


def plot_trajectory_pair(
    frames: ArrayLike, ref: ArrayLike, sec: ArrayLike, *, metrics: Optional[Mapping] = None,
    pixel_size_a: Optional[float] = None, allow_rotation: bool = False,
    name: Optional[str] = None,
) -> Figure:
    """Plot both runs of one movie after superposition.

    Parameters
    ----------
    frames : array_like of shape (F,)
        Common frame numbers (1-based).
    ref, sec : array_like of shape (F, 2)
        ``(x, y)`` shifts of those frames in px of the reference movie (the
        secondary already multiplied by the binning).
    metrics : mapping, optional
        ``TrajectoryComparison.as_dict()``; decision and metrics go in the title.
    pixel_size_a : float, optional
        A/px; adds Angstrom axes on top and right.
    allow_rotation : bool
        Superpose with the best proper rotation, as the comparison did.
    name : str, optional
        Movie name for the title.

    Returns
    -------
    Figure
        The reference at its own position, the secondary superposed on it
        (centred, optionally rotated); frame numbers every ceil(F/10) frames and a
        large marker on the first frame.
    """
    frames = np.asarray(frames)
    ref_c, sec_fit, _ = superpose(ref, sec, allow_rotation=allow_rotation)
    centre = np.asarray(ref, dtype=np.float64).mean(axis=0)
    fig = Figure(figsize=(6, 4.8))  # fixed margins: a layout engine costs 5x the time
    fig.subplots_adjust(left=0.13, right=0.86, bottom=0.11, top=0.76)
    ax = fig.add_subplot()
    for data, color, label in ((ref_c + centre, REF_COLOR, "reference"),
                               (sec_fit + centre, SEC_COLOR, "secondary (superposed)")):
        ax.plot(data[:, 0], data[:, 1], "-", color=color, lw=1.5, label=label)
        ax.plot(data[:, 0], data[:, 1], ".", color=color, ms=4)
        ax.plot(data[0, 0], data[0, 1], "o", color=color, ms=9, mec="black")
    step = max(1, math.ceil(frames.size / 10))
    for k in range(0, frames.size, step):
        ax.annotate(str(int(frames[k])), (ref_c[k, 0] + centre[0], ref_c[k, 1] + centre[1]),
                    textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("x shift (px)")
    ax.set_ylabel("y shift (px)")
    ax.set_aspect("equal", adjustable="datalim")
    fig.legend(fontsize=8, loc="upper left", ncols=2, bbox_to_anchor=(0.01, 0.90))
    if pixel_size_a and pixel_size_a > 0:
        _angstrom_axes(ax, float(pixel_size_a))
    # a figure title: an axes title above the Angstrom axis costs half the drawing time
    fig.suptitle(_title(metrics, name), fontsize=9, y=0.985)
    return fig


def _column(results: Sequence[Mapping], key: str) -> np.ndarray:
    return np.array([float(r.get(key, 0.0)) for r in results], dtype=np.float64)


def _accepted(results: Sequence[Mapping]) -> np.ndarray:
    return np.array([bool(r.get("accepted")) for r in results], dtype=bool)


#: Decisions without metrics: never plotted, always counted.
NOT_COMPARED = ("missing", "invalid")
#: Words and units of the metrics of ``TrajectoryComparison.as_dict()``.
METRIC_WORDS = {
    "corr": "min correlation over active axes",
    "corr_x": "x shift correlation", "corr_y": "y shift correlation",
    "rmse_px": "RMSE after superposition (px)",
    "max_error_px": "max error after superposition (px)",
    "rmse_a": "RMSE after superposition (Å)",
    "scale": "scale (secondary / reference path length)",
    "rotation_deg": "rotation (°)",
    "total_ref_px": "total motion of the reference (px)",
}


def _movie_ids(results: Sequence[Mapping]) -> np.ndarray:
    """Movie id of each result (``id``, else its 1-based position)."""
    return np.array([int(r.get("id", k + 1)) for k, r in enumerate(results)], dtype=int)


def _not_plotted(results: Sequence[Mapping]) -> str:
    counts = {why: sum(r.get("reason") == why for r in results) for why in NOT_COMPARED}
    parts = [f"{n} {why}" for why, n in counts.items() if n]
    return f"; not plotted (no metrics): {', '.join(parts)}" if parts else ""


def robust_limit(values: ArrayLike, spread: float = 5.0) -> float:
    """Upper axis limit ``q75 + spread*IQR`` (at least 1.15 x q75, never above the max + 5%)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 1.0
    q25, q75 = np.percentile(v, [25, 75])
    top = max(q75 + spread * (q75 - q25), 1.15 * q75, 1e-9)
    return float(min(top, v.max() * 1.05 if v.max() > 0 else 1.0))


def _far_points(ax, x, y, top, color):
    """Points above ``top`` drawn as triangles at the top edge; returns how many."""
    far = y > top
    if far.any():
        ax.plot(x[far], np.full(far.sum(), top), "^", color=color, ms=8, mec="black",
                clip_on=False, zorder=5)
    return int(far.sum())


def plot_corr_vs_rmse(
    results: Sequence[Mapping], *, min_corr: Optional[float] = None,
    max_rmse_px: Optional[float] = None,
) -> Figure:
    """Scatter of RMSE against correlation, one point per compared movie, with thresholds.

    Parameters
    ----------
    results : sequence of mapping
        ``as_dict()`` of each movie; movies with reason "missing" or "invalid"
        have no metrics: they are counted in the title, not drawn.
    min_corr, max_rmse_px : float, optional
        Thresholds drawn as labelled dashed lines (vertical at ``min_corr``,
        horizontal at ``max_rmse_px``) when given and > -1 / > 0.

    Returns
    -------
    Figure
        Accepted movies in green, discarded ones in red; the legend counts add
        up to the movies plotted; RMSEs far above the bulk are drawn as
        triangles at the top edge and counted.
    """
    rows = [r for r in results if r.get("reason") not in NOT_COMPARED]
    corr, rmse, ok = _column(rows, "corr"), _column(rows, "rmse_px"), _accepted(rows)
    fig = Figure(figsize=(7.6, 4.8), layout="constrained")
    ax = fig.add_subplot()
    top = robust_limit(np.r_[rmse, max_rmse_px or 0.0])
    shown = np.minimum(rmse, top)
    for mask, color, label in ((ok, _ACCEPT_COLOR, "accepted"),
                               (~ok, _DISCARD_COLOR, "discarded")):
        ax.scatter(corr[mask], shown[mask], s=16, color=color,
                   label=f"{label} ({int(mask.sum())})")
    n_far = _far_points(ax, corr, rmse, top, "gray")
    if min_corr is not None and min_corr > -1:
        ax.axvline(min_corr, color="gray", ls="--", lw=1,
                   label=f"min correlation {min_corr:g}")
    if max_rmse_px is not None and max_rmse_px > 0:
        ax.axhline(max_rmse_px, color="gray", ls=":", lw=1.2,
                   label=f"max RMSE {max_rmse_px:g} px")
    if n_far:
        ax.plot([], [], "^", color="gray", mec="black", label=f"RMSE above {top:.3g} px "
                f"({n_far}), at the top edge")
    ax.set_ylim(0, top * 1.02)
    ax.set_xlabel(METRIC_WORDS["corr"])
    ax.set_ylabel(METRIC_WORDS["rmse_px"])
    ax.set_title(f"Correlation vs RMSE: {len(rows)} of {len(results)} movies compared"
                 f"{_not_plotted(results)}", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def plot_metric_histograms(
    results: Sequence[Mapping],
    metrics: Sequence[str] = ("corr", "rmse_px", "max_error_px", "scale"),
    *, bins: int = 30,
) -> Figure:
    """Histogram of each metric over the compared movies.

    Parameters
    ----------
    results : sequence of mapping
        ``as_dict()`` of each movie ("missing"/"invalid" ones are counted in
        the title, not drawn).
    metrics : sequence of str
        Keys to plot, one panel each.
    bins : int
        Number of bins per panel.

    Returns
    -------
    Figure
        Panels in a grid of two columns; accepted and discarded stacked; far
        values are drawn in the edge bins and counted in the panel title.
    """
    rows = [r for r in results if r.get("reason") not in NOT_COMPARED]
    ok = _accepted(rows)
    ncols = 2
    nrows = max(1, math.ceil(len(metrics) / ncols))
    fig = Figure(figsize=(9, 2.9 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, key in zip(axes, metrics):
        values = _column(rows, key)
        lo, hi = _robust_range(values)
        edges = np.linspace(lo, hi, bins + 1)
        clipped = np.clip(values, lo, hi)
        ax.hist([clipped[ok], clipped[~ok]], bins=edges, stacked=True,
                color=[_ACCEPT_COLOR, _DISCARD_COLOR], label=["accepted", "discarded"])
        n_out = int(((values < lo) | (values > hi)).sum())
        ax.set_title(f"{key}: {len(rows)} movies" + (f"; {n_out} beyond the axis, drawn "
                                                       "at its edge" if n_out else ""),
                     fontsize=9)
        ax.set_xlabel(METRIC_WORDS.get(key, key))
        ax.set_ylabel("movies")
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    fig.suptitle(f"Metrics of {len(rows)} of {len(results)} movies compared "
                 f"({int(ok.sum())} accepted, {int((~ok).sum())} discarded)"
                 f"{_not_plotted(results)}", fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=8)
    return fig


def _robust_range(values: np.ndarray, spread: float = 5.0) -> tuple[float, float]:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return 0.0, 1.0
    q25, q75 = np.percentile(v, [25, 75])
    iqr = q75 - q25 or (v.max() - v.min()) or 1.0
    lo, hi = max(v.min(), q25 - spread * iqr), min(v.max(), q75 + spread * iqr)
    return (float(lo), float(hi)) if hi > lo else (float(lo) - 0.5, float(lo) + 0.5)


def plot_accumulated_motion(results: Sequence[Mapping]) -> Figure:
    """Accumulated motion per movie, by movie id (RELION total/early/late).

    Parameters
    ----------
    results : sequence of mapping
        ``as_dict()`` of each movie (with its ``id``; else the position,
        1-based, is the id); "missing" and "invalid" movies are left out and
        counted in the title.

    Returns
    -------
    Figure
        Reference total, early and late (px) as lines, the secondary total as
        a dashed line, discarded movies marked with red crosses; values far
        above the bulk are drawn as triangles at the top edge and counted.
    """
    rows = [r for r in results if r.get("reason") not in NOT_COMPARED]
    ids = _movie_ids(results)[[k for k, r in enumerate(results)
                               if r.get("reason") not in NOT_COMPARED]]
    fig = Figure(figsize=(9, 4.4), layout="constrained")
    ax = fig.add_subplot()
    series = (("total_ref_px", "-", "total (reference)", REF_COLOR),
              ("early_ref_px", "-", "early (reference)", "tab:cyan"),
              ("late_ref_px", "-", "late (reference)", "tab:purple"),
              ("total_sec_px", "--", "total (secondary)", SEC_COLOR))
    top = robust_limit(np.concatenate([_column(rows, k) for k, _, _, _ in series]))
    n_far = 0
    for key, style, label, color in series:
        y = _column(rows, key)
        line, = ax.plot(ids, np.minimum(y, top), style, lw=1, marker=".", ms=3, label=label,
                        color=color)
        n_far += _far_points(ax, ids, y, top, line.get_color())
    bad = ~_accepted(rows)
    ax.plot(ids[bad], np.minimum(_column(rows, "total_ref_px")[bad], top), "x",
            color=_DISCARD_COLOR, ms=7, label="discarded")
    if n_far:
        ax.plot([], [], "^", color="gray", mec="black",
                label=f"above {top:.3g} px ({n_far}), at the top edge")
    ax.set_ylim(0, top * 1.05)
    ax.set_xlabel("movie id")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("accumulated motion (px)")
    ax.set_title(f"Accumulated motion of {len(rows)} of {len(results)} movies"
                 f"{_not_plotted(results)}", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig
