"""Figures of compare reprojections: pure functions of arrays and dicts.

Every function builds a :class:`matplotlib.figure.Figure` directly (no pyplot
state, no display needed) and returns it; save it with ``fig.savefig(path)``.
Inputs are the per-image arrays of :func:`xmipp_qc.core.pipeline.finalize`
(``outlierScore``, ``isOutlier``, ...), image stacks ``(k, N, N)`` in the
aligned frame (aligned image, reprojection, residual) and the ranking table of
:func:`xmipp_qc.core.pipeline.rank`. Used by the ``xmipp-qc
compare-reprojections`` command and the protocol's viewer; must not import
pyworkflow.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.gridspec import GridSpecFromSubplotSpec
from numpy.typing import ArrayLike

__all__ = [
    "OUTLIER_COLOR",
    "KEPT_COLOR",
    "draw_outlier_histogram",
    "draw_worst_images",
    "plot_outlier_histogram",
    "plot_ranking",
    "plot_report",
    "plot_score_histograms",
    "plot_worst_images",
    "worst_indices",
]

KEPT_COLOR = "tab:blue"
OUTLIER_COLOR = "tab:red"
_COLUMNS = ("aligned image", "reprojection", "residual")


def worst_indices(scores: ArrayLike, k: int) -> np.ndarray:
    """Return the indices of the ``k`` highest finite scores, worst (highest) first."""
    s = np.asarray(scores, dtype=np.float64)
    idx = np.flatnonzero(np.isfinite(s))
    return idx[np.argsort(-s[idx], kind="stable")][: max(0, int(k))]


def draw_outlier_histogram(ax, scores: ArrayLike, threshold: float, *,
                           is_outlier: Optional[ArrayLike] = None, bins: int = 40,
                           label: str = "outlier score") -> None:
    """Draw the histogram of finite scores, split at the flag, and the threshold line.

    Parameters
    ----------
    ax : matplotlib Axes
    scores : array_like of shape (n,)
        Score per image (higher is worse); NaN (failed images) are counted in
        the title, not drawn.
    threshold : float
        Flag threshold, drawn as a dashed vertical line.
    is_outlier : array_like of bool, shape (n,), optional
        Flags (default ``scores > threshold``); flagged images are stacked in red.
    bins : int
        Number of bins over the finite range.
    label : str
        Name of the score for the x axis.
    """
    s = np.asarray(scores, dtype=np.float64)
    ok = np.isfinite(s)
    flag = (s > threshold) if is_outlier is None else np.asarray(is_outlier, dtype=bool)
    lo = min(np.min(s[ok]), threshold) if ok.any() else threshold - 1
    hi = max(np.max(s[ok]), threshold) if ok.any() else threshold + 1
    edges = np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
    ax.hist([s[ok & ~flag], s[ok & flag]], bins=edges, stacked=True,
            color=[KEPT_COLOR, OUTLIER_COLOR], label=["kept", "flagged"])
    ax.axvline(threshold, color="k", linestyle="--", label=f"threshold {threshold:g}")
    ax.set_xlabel(label)
    ax.set_ylabel("images")
    ax.set_title(f"{int((ok & flag).sum())} of {s.size} images above the threshold"
                 + (f", {int((~ok).sum())} failed" if (~ok).any() else ""))
    ax.legend(loc="upper right", fontsize="small")


def plot_outlier_histogram(scores: ArrayLike, threshold: float, *,
                           is_outlier: Optional[ArrayLike] = None, bins: int = 40,
                           label: str = "outlier score") -> Figure:
    """Histogram of a per-image score with its threshold (:func:`draw_outlier_histogram`)."""
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    draw_outlier_histogram(fig.add_subplot(), scores, threshold, is_outlier=is_outlier,
                           bins=bins, label=label)
    return fig


def _show(ax, img: np.ndarray, symmetric: bool) -> None:
    img = np.asarray(img, dtype=np.float64)
    finite = img[np.isfinite(img)]
    if symmetric:
        v = float(np.max(np.abs(finite))) if finite.size else 1.0
        ax.imshow(img, cmap="RdBu_r", vmin=-v or -1, vmax=v or 1, origin="lower")
    else:
        ax.imshow(img, cmap="gray", origin="lower")
    ax.set_xticks([])
    ax.set_yticks([])


def draw_worst_images(fig: Figure, spec, aligned: ArrayLike, reprojections: ArrayLike,
                      residuals: ArrayLike, labels: Optional[Sequence[str]] = None) -> list:
    """Draw one row per image (aligned image, reprojection, residual) into a subplot spec.

    Parameters
    ----------
    fig : Figure
    spec : SubplotSpec
        Region of ``fig`` to fill (e.g. ``fig.add_gridspec(1, 1)[0]``).
    aligned, reprojections, residuals : array_like of shape (k, N, N)
        Images ``[y, x]`` (drawn with row 0 at the bottom, x to the right);
        residuals on a symmetric red-blue scale.
    labels : sequence of str, optional
        Row labels (e.g. the item id and its score).

    Returns
    -------
    list of list of Axes
        ``k`` rows of 3 axes.
    """
    stacks = [np.asarray(a) for a in (aligned, reprojections, residuals)]
    k = len(stacks[0])
    if any(len(s) != k for s in stacks):
        raise ValueError("aligned, reprojections and residuals must have the same length")
    if k == 0:
        return []
    grid = GridSpecFromSubplotSpec(k, 3, subplot_spec=spec, wspace=0.05, hspace=0.15)
    rows = []
    for i in range(k):
        axes = [fig.add_subplot(grid[i, j]) for j in range(3)]
        for j, ax in enumerate(axes):
            _show(ax, stacks[j][i], symmetric=j == 2)
            if i == 0:
                ax.set_title(_COLUMNS[j], fontsize="small")
        if labels is not None:
            axes[0].set_ylabel(labels[i], fontsize="small")
        rows.append(axes)
    return rows


def plot_worst_images(aligned: ArrayLike, reprojections: ArrayLike, residuals: ArrayLike,
                      labels: Optional[Sequence[str]] = None) -> Figure:
    """Grid of images with their reprojections and residuals (see :func:`draw_worst_images`)."""
    k = max(1, len(np.asarray(aligned)))
    fig = Figure(figsize=(5.0, 1.7 * k + 0.4))
    draw_worst_images(fig, fig.add_gridspec(1, 1)[0], aligned, reprojections, residuals, labels)
    return fig


def plot_report(scores: ArrayLike, threshold: float, aligned: ArrayLike,
                reprojections: ArrayLike, residuals: ArrayLike, *,
                is_outlier: Optional[ArrayLike] = None,
                labels: Optional[Sequence[str]] = None, title: Optional[str] = None) -> Figure:
    """One-page report: score histogram on top, the worst images below.

    Parameters
    ----------
    scores, threshold, is_outlier
        As in :func:`draw_outlier_histogram` (all images of the set).
    aligned, reprojections, residuals, labels
        The worst images, as in :func:`draw_worst_images` (e.g. selected with
        :func:`worst_indices`).
    title : str, optional
        Figure title (e.g. the map's name).
    """
    k = len(np.asarray(aligned))
    fig = Figure(figsize=(6.4, 3.6 + 1.6 * k))
    outer = fig.add_gridspec(2, 1, height_ratios=[3.2, max(1.6 * k, 0.1)], hspace=0.35)
    draw_outlier_histogram(fig.add_subplot(outer[0]), scores, threshold, is_outlier=is_outlier)
    draw_worst_images(fig, outer[1], aligned, reprojections, residuals, labels)
    if title:
        fig.suptitle(title)
    return fig


def plot_ranking(table: Mapping[str, Any]) -> Figure:
    """Bar chart of the maps' mean score, best first, from :func:`xmipp_qc.core.pipeline.rank`.

    The best map's bar is highlighted; the title gives the paired difference to
    the runner-up with its bootstrap confidence interval.
    """
    maps = list(table["maps"])
    fig = Figure(figsize=(max(4.0, 1.2 * len(maps) + 2), 3.6), layout="constrained")
    ax = fig.add_subplot()
    names = [str(m["map"]) for m in maps]
    means = [float(m["mean"]) for m in maps]
    colors = [OUTLIER_COLOR if i == 0 else KEPT_COLOR for i in range(len(maps))]
    ax.bar(names, means, color=colors)
    direction = "higher" if table.get("higher_is_better", True) else "lower"
    ax.set_ylabel(f"mean {table.get('score', 'score')} ({direction} is better)")
    if table.get("runner_up") is not None:
        ax.set_title(f"best {table['best']}: +{table['difference']:.3g} over {table['runner_up']} "
                     f"({100 * table['confidence']:.0f}% CI {table['ci_low']:.3g} to "
                     f"{table['ci_high']:.3g}, {table['n_images']} images)", fontsize="small")
    else:
        ax.set_title(f"one map, {table['n_images']} images", fontsize="small")
    return fig


def plot_score_histograms(scores: Mapping[str, ArrayLike], threshold: float, *,
                          is_outlier: Optional[ArrayLike] = None,
                          names: Optional[Sequence[str]] = None, bins: int = 40) -> Figure:
    """One histogram per score, flagged images stacked in red, with the flag threshold.

    Parameters
    ----------
    scores : mapping of str to array_like of shape (n,)
        Per-image scores of :func:`xmipp_qc.core.pipeline.finalize`; robust
        z-scores such as ``outlierScore`` and ``zScoreResCov`` share the scale
        of ``threshold``.
    threshold : float
        Flag threshold on ``outlierScore`` (drawn on every panel for reference).
    is_outlier : array_like of bool, shape (n,), optional
        Flags; default ``scores["outlierScore"] > threshold``.
    names : sequence of str, optional
        Scores to draw, in order (default: every key of ``scores``).
    bins : int
        Bins per histogram.
    """
    names = list(scores) if names is None else [k for k in names if k in scores]
    if not names:
        raise ValueError("no scores to draw")
    if is_outlier is None and "outlierScore" in scores:
        is_outlier = np.asarray(scores["outlierScore"], dtype=np.float64) > threshold
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(4.0 * cols, 3.0 * rows), layout="constrained")
    for i, name in enumerate(names):
        draw_outlier_histogram(fig.add_subplot(rows, cols, i + 1), scores[name], threshold,
                               is_outlier=is_outlier, bins=bins, label=name)
    return fig
