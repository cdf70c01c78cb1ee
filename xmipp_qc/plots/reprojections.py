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
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
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
BEST_COLOR = "tab:green"  # the best map of a ranking (red means flagged everywhere else)
_COLUMNS = ("aligned image", "reprojection", "residual")


def worst_indices(scores: ArrayLike, k: int) -> np.ndarray:
    """Return the indices of the ``k`` highest finite scores, worst (highest) first."""
    s = np.asarray(scores, dtype=np.float64)
    idx = np.flatnonzero(np.isfinite(s))
    return idx[np.argsort(-s[idx], kind="stable")][: max(0, int(k))]


#: Words, unit and bad side of the per-image scores: name -> (label, bad side), the
#: bad side +1 when a high value is bad, -1 when a low value is, 0 for both sides.
SCORE_WORDS = {
    "outlierScore": ("outlier score (robust z, σ)", +1),
    "zScoreGray": ("gray z-score: map explains the image (σ)", -1),
    "zScoreGrayInit": ("gray z-score at the given angles (σ)", -1),
    "zScoreResCov": ("residual covariance z-score (σ)", +1),
    "zScoreResMean": ("residual mean z-score (σ)", 0),
    "zScoreResVar": ("residual variance z-score (σ)", +1),
    "zResMean": ("residual mean z-score (σ)", 0),
    "zResStd": ("residual std z-score (σ)", +1),
    "cost": ("cost: correlation with the reprojection", -1),
    "corrIdx": ("correlation index", -1),
    "imedValue": ("IMED distance (a.u.)", +1),
    "angleChange": ("refinement angle move (°)", +1),
    "shiftChange": ("refinement shift move (px)", +1),
}


def robust_range(values: ArrayLike, spread: float = 5.0) -> tuple[float, float]:
    """Range ``[q25 - spread*IQR, q75 + spread*IQR]`` cut to the data (finite values).

    The bulk of the data keeps its shape while a few far values (junk images
    with huge scores) do not squash it into one bin; callers draw the values
    beyond the range at its edges and say how many.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0, 1.0
    q25, q75 = np.percentile(v, [25, 75])
    iqr = q75 - q25 or (np.percentile(v, 95) - np.percentile(v, 5)) or 1.0
    lo, hi = max(v.min(), q25 - spread * iqr), min(v.max(), q75 + spread * iqr)
    return (float(lo), float(hi)) if hi > lo else (float(lo) - 0.5, float(lo) + 0.5)


def draw_outlier_histogram(ax, scores: ArrayLike, threshold: Optional[float] = None, *,
                           is_outlier: Optional[ArrayLike] = None, bins: int = 40,
                           label: str = "outlier score", bad_side: int = +1,
                           title: Optional[str] = None, legend: bool = True) -> dict:
    """Histogram of a per-image score, flagged images stacked in red.

    Parameters
    ----------
    ax : matplotlib Axes
    scores : array_like of shape (n,)
        Score per image; NaN (failed images) are counted in the title, not drawn.
    threshold : float, optional
        Flag threshold of this score (only scores that have one): drawn as a
        dashed line on the bad side(s), labelled with the count beyond it.
    is_outlier : array_like of bool, shape (n,), optional
        Flags (default ``scores > threshold``; none without a threshold).
    bins : int
        Number of bins over the drawn range.
    label : str
        Axis words (with the unit).
    bad_side : {+1, -1, 0}
        Where outliers lie: high values, low values, both sides.
    title : str, optional
        First title line (e.g. the score and the map); counts follow.
    legend : bool
        Draw the legend outside the data (right of the axes).

    Returns
    -------
    dict
        ``flagged``, ``failed``, ``clipped_low``, ``clipped_high`` counts.
    """
    s = np.asarray(scores, dtype=np.float64)
    ok = np.isfinite(s)
    if is_outlier is None:
        flag = np.zeros(s.shape, bool) if threshold is None else _beyond(s, threshold, bad_side)
    else:
        flag = np.asarray(is_outlier, dtype=bool)
    lo, hi = robust_range(s[ok])
    if threshold is not None:
        lines = [threshold] if bad_side >= 0 else [-threshold]
        lines = [-threshold, threshold] if bad_side == 0 else lines
        lo, hi = min(lo, *lines), max(hi, *lines)
        pad = 0.03 * (hi - lo)
        lo, hi = lo - pad, hi + pad
    edges = np.linspace(lo, hi, bins + 1)
    clipped = np.clip(s, lo, hi)
    n_lo, n_hi = int((ok & (s < lo)).sum()), int((ok & (s > hi)).sum())
    ax.hist([clipped[ok & ~flag], clipped[ok & flag]], bins=edges, stacked=True,
            color=[KEPT_COLOR, OUTLIER_COLOR],
            label=[f"kept ({int((ok & ~flag).sum())})", f"flagged ({int((ok & flag).sum())})"])
    if threshold is not None:
        n_beyond = int((ok & _beyond(s, threshold, bad_side)).sum())
        for i, x in enumerate(lines):
            ax.axvline(x, color="k", linestyle="--", lw=1,
                       label=f"threshold {threshold:g}: {n_beyond} beyond" if i == 0 else None)
    _mark_clipped(ax, lo, hi, n_lo, n_hi)
    ax.set_xlim(lo, hi)
    ax.set_xlabel(label)
    ax.set_ylabel("images")
    counts = f"{int((ok & flag).sum())} of {s.size} images flagged"
    if (~ok).any():
        counts += f", {int((~ok).sum())} failed"
    if n_lo or n_hi:
        counts += f"; {n_lo + n_hi} beyond the axis, drawn at its edge"
    ax.set_title(counts if title is None else f"{title}\n{counts}", fontsize="small")
    if legend:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="x-small",
                  borderaxespad=0.0)
    return {"flagged": int((ok & flag).sum()), "failed": int((~ok).sum()),
            "clipped_low": n_lo, "clipped_high": n_hi}


def _beyond(s, threshold, bad_side):
    with np.errstate(invalid="ignore"):
        if bad_side > 0:
            return s > threshold
        if bad_side < 0:
            return s < -threshold
        return np.abs(s) > threshold


def _mark_clipped(ax, lo, hi, n_lo, n_hi):
    """Arrows at the axis edges saying how many values lie beyond them."""
    for n, x, ha, arrow in ((n_lo, lo, "left", "\u2190"), (n_hi, hi, "right", "\u2192")):
        if n:
            ax.annotate(f"{arrow} {n} beyond", (x, 1.0), xycoords=("data", "axes fraction"),
                        xytext=(0, -12), textcoords="offset points", ha=ha, va="top",
                        fontsize="x-small", color=OUTLIER_COLOR)


def plot_outlier_histogram(scores: ArrayLike, threshold: float, *,
                           is_outlier: Optional[ArrayLike] = None, bins: int = 40,
                           label: str = "outlier score (robust z, σ)",
                           title: Optional[str] = None) -> Figure:
    """Histogram of the outlier score with its threshold (:func:`draw_outlier_histogram`)."""
    fig = Figure(figsize=(7.2, 4.0), layout="constrained")
    draw_outlier_histogram(fig.add_subplot(), scores, threshold, is_outlier=is_outlier,
                           bins=bins, label=label, title=title)
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
    fig = Figure(figsize=(8.0, 3.6 + 1.6 * k))
    outer = fig.add_gridspec(2, 1, height_ratios=[3.2, max(1.6 * k, 0.1)], hspace=0.35)
    fig.subplots_adjust(left=0.1, right=0.72)  # the histogram's legend on the right
    draw_outlier_histogram(fig.add_subplot(outer[0]), scores, threshold, is_outlier=is_outlier,
                           label=SCORE_WORDS["outlierScore"][0])
    draw_worst_images(fig, outer[1], aligned, reprojections, residuals, labels)
    if title:
        fig.suptitle(title)
    return fig


def plot_ranking(table: Mapping[str, Any],
                 names: Optional[Mapping[Any, str]] = None) -> Figure:
    """Bar chart of the maps' mean score, best first, from :func:`xmipp_qc.core.pipeline.rank`.

    Parameters
    ----------
    table : mapping
        The ranking table; each map's bootstrap interval of its mean
        (``ci_low``/``ci_high`` of the map) is drawn as an error bar when present.
    names : mapping, optional
        Display name per map key (e.g. ``{1: "map 1: class001.mrc"}``).

    The best map's bar is highlighted; the title gives the paired difference to
    the runner-up with its bootstrap confidence interval.
    """
    maps = list(table["maps"])
    names = names or {}
    fig = Figure(figsize=(max(6.4, 1.6 * len(maps) + 2.5), 4.6), layout="constrained")
    ax = fig.add_subplot()
    labels = [names.get(m["map"], names.get(str(m["map"]), f"map {m['map']}")) for m in maps]
    means = np.array([float(m["mean"]) for m in maps])
    colors = [BEST_COLOR if i == 0 else KEPT_COLOR for i in range(len(maps))]
    x = np.arange(len(maps))
    bars = ax.bar(x, means, color=colors)
    if len(bars):
        bars[0].set_label("best map")
    if all("ci_low" in m and "ci_high" in m for m in maps):
        lo = np.array([float(m["ci_low"]) for m in maps])
        hi = np.array([float(m["ci_high"]) for m in maps])
        ax.errorbar(x, means, yerr=[means - lo, hi - means], fmt="none", ecolor="k",
                    capsize=6, lw=1.2,
                    label=f"{100 * table['confidence']:.0f}% bootstrap interval of the mean")
    fig.legend(loc="outside lower center", fontsize="small", ncols=2)
    ax.bar_label(bars, labels=[f"{v:.3g}" for v in means], label_type="center",
                 color="white", fontsize="small")
    ax.set_xticks(x, labels, rotation=15 if max(map(len, labels)) > 12 else 0, ha="right"
                  if max(map(len, labels)) > 12 else "center")
    lo_y, hi_y = float(np.min(means)), float(np.max(means))
    direction = "higher" if table.get("higher_is_better", True) else "lower"
    score = SCORE_WORDS.get(table.get("score", ""), (table.get("score", "score"), 0))[0]
    ax.set_ylabel(f"mean {score}\n({direction} is better)")
    if lo_y > 0 and hi_y > 0:
        ax.set_ylim(0, hi_y * 1.15)
    n = table["n_images"]
    if table.get("runner_up") is not None:
        best = names.get(table["best"], f"map {table['best']}")
        runner = names.get(table["runner_up"], f"map {table['runner_up']}")
        verdict = "" if table.get("significant", True) else " (not significant)"
        ax.set_title(f"Ranking of {len(maps)} maps by mean {table.get('score')} over {n} "
                     f"images: best {best}\nlead over {runner}: {table['difference']:.3g} "
                     f"({100 * table['confidence']:.0f}% CI {table['ci_low']:.3g} to "
                     f"{table['ci_high']:.3g}){verdict}", fontsize="small")
    else:
        ax.set_title(f"one map, {n} images", fontsize="small")
    return fig


def plot_score_histograms(scores: Mapping[str, ArrayLike], threshold: float, *,
                          is_outlier: Optional[ArrayLike] = None,
                          names: Optional[Sequence[str]] = None, bins: int = 40,
                          map_name: str = "") -> Figure:
    """One histogram per score, flagged images stacked in red.

    The threshold is drawn on the outlier score only, the one score that has one.

    Parameters
    ----------
    scores : mapping of str to array_like of shape (n,)
        Per-image scores of :func:`xmipp_qc.core.pipeline.finalize`.
    threshold : float
        Flag threshold on ``outlierScore``.
    is_outlier : array_like of bool, shape (n,), optional
        Flags; default ``scores["outlierScore"] > threshold``.
    names : sequence of str, optional
        Scores to draw, in order (default: every key of ``scores``).
    bins : int
        Bins per histogram.
    map_name : str
        The map the scores belong to, in every panel title.
    """
    names = list(scores) if names is None else [k for k in names if k in scores]
    if not names:
        raise ValueError("no scores to draw")
    if is_outlier is None and "outlierScore" in scores:
        is_outlier = np.asarray(scores["outlierScore"], dtype=np.float64) > threshold
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(4.6 * cols, 3.3 * rows + 0.5), layout="constrained")
    for i, name in enumerate(names):
        words, side = SCORE_WORDS.get(name, (name, +1))
        title = name + (f" of {map_name}" if map_name else "")
        draw_outlier_histogram(fig.add_subplot(rows, cols, i + 1), scores[name],
                               threshold if name == "outlierScore" else None,
                               is_outlier=is_outlier, bins=bins, label=words, bad_side=side,
                               title=title, legend=False)
    handles = [Patch(color=KEPT_COLOR), Patch(color=OUTLIER_COLOR),
               Line2D([], [], color="k", ls="--", lw=1)]
    fig.legend(handles, ["kept", f"flagged (outlier score > {threshold:g})",
                         "threshold of the outlier score"],
               loc="outside lower center", ncols=3, fontsize="small")
    return fig
