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
    ax.legend(fontsize=8, loc="best")
    if pixel_size_a and pixel_size_a > 0:
        _angstrom_axes(ax, float(pixel_size_a))
    # a figure title: an axes title above the Angstrom axis costs half the drawing time
    fig.suptitle(_title(metrics, name), fontsize=9, y=0.985)
    return fig


def _column(results: Sequence[Mapping], key: str) -> np.ndarray:
    return np.array([float(r.get(key, 0.0)) for r in results], dtype=np.float64)


def _accepted(results: Sequence[Mapping]) -> np.ndarray:
    return np.array([bool(r.get("accepted")) for r in results], dtype=bool)


def plot_corr_vs_rmse(
    results: Sequence[Mapping], *, min_corr: Optional[float] = None,
    max_rmse_px: Optional[float] = None,
) -> Figure:
    """Scatter of RMSE against correlation, one point per movie, with thresholds.

    Parameters
    ----------
    results : sequence of mapping
        ``as_dict()`` of each movie; movies with reason "missing" or "invalid"
        have no metrics and are left out.
    min_corr, max_rmse_px : float, optional
        Thresholds drawn as dashed lines (vertical at ``min_corr``, horizontal at
        ``max_rmse_px``) when given and > -1 / > 0.

    Returns
    -------
    Figure
        Accepted movies in green, discarded ones in red.
    """
    rows = [r for r in results if r.get("reason") not in ("missing", "invalid")]
    corr, rmse, ok = _column(rows, "corr"), _column(rows, "rmse_px"), _accepted(rows)
    fig = Figure(figsize=(5.5, 4.5), constrained_layout=True)
    ax = fig.add_subplot()
    for mask, color, label in ((ok, _ACCEPT_COLOR, "accepted"),
                               (~ok, _DISCARD_COLOR, "discarded")):
        ax.scatter(corr[mask], rmse[mask], s=14, color=color,
                   label=f"{label} ({int(mask.sum())})")
    if min_corr is not None and min_corr > -1:
        ax.axvline(min_corr, color="gray", ls="--", lw=1)
    if max_rmse_px is not None and max_rmse_px > 0:
        ax.axhline(max_rmse_px, color="gray", ls="--", lw=1)
    ax.set_xlabel("min correlation over active axes")
    ax.set_ylabel("RMSE after superposition (px)")
    ax.set_title(f"Movie consensus: {len(rows)} movies compared", fontsize=9)
    ax.legend(fontsize=8)
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
        ``as_dict()`` of each movie ("missing"/"invalid" ones are left out).
    metrics : sequence of str
        Keys to plot, one panel each.
    bins : int
        Number of bins per panel.

    Returns
    -------
    Figure
        Panels in a grid of two columns; accepted and discarded stacked.
    """
    rows = [r for r in results if r.get("reason") not in ("missing", "invalid")]
    ok = _accepted(rows)
    ncols = 2
    nrows = max(1, math.ceil(len(metrics) / ncols))
    fig = Figure(figsize=(8, 2.8 * nrows), constrained_layout=True)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, key in zip(axes, metrics):
        values = _column(rows, key)
        ax.hist([values[ok], values[~ok]], bins=bins, stacked=True,
                color=[_ACCEPT_COLOR, _DISCARD_COLOR], label=["accepted", "discarded"])
        ax.set_xlabel(key)
        ax.set_ylabel("movies")
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=8)
    return fig


def plot_accumulated_motion(results: Sequence[Mapping]) -> Figure:
    """Accumulated motion per movie over acquisition order (RELION total/early/late).

    Parameters
    ----------
    results : sequence of mapping
        ``as_dict()`` of each movie in acquisition order; "missing" and
        "invalid" movies are left out (their x position is kept).

    Returns
    -------
    Figure
        Reference total, early and late (px) as lines, the secondary total as
        a dashed line, and discarded movies marked with red crosses.
    """
    idx = np.array([k for k, r in enumerate(results)
                    if r.get("reason") not in ("missing", "invalid")], dtype=int)
    rows = [results[k] for k in idx]
    fig = Figure(figsize=(8, 4), constrained_layout=True)
    ax = fig.add_subplot()
    for key, style, label in (("total_ref_px", "-", "total (reference)"),
                              ("early_ref_px", "-", "early (reference)"),
                              ("late_ref_px", "-", "late (reference)"),
                              ("total_sec_px", "--", "total (secondary)")):
        ax.plot(idx, _column(rows, key), style, lw=1, marker=".", ms=3, label=label)
    bad = ~_accepted(rows)
    ax.plot(idx[bad], _column(rows, "total_ref_px")[bad], "x", color=_DISCARD_COLOR, ms=7,
            label="discarded")
    ax.set_xlabel("movie (acquisition order)")
    ax.set_ylabel("accumulated motion (px)")
    ax.legend(fontsize=8, ncols=3)
    return fig
