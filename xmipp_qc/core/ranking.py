"""Ranking of several maps by how well each explains the same images.

Input is a score matrix ``(n_images, n_maps)``: the score of every image against
every map (e.g. the masked correlation ``cost`` after local refinement). Scores
are first oriented so that higher is always better (Xmipp's ranking takes the
maximum mean ``cost`` even when gray optimisation turns the cost into an L1
error, and so picks the worst map). Images with a non-finite score for any map
are left out of every map's statistics (the comparison is paired) and counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import rankdata

__all__ = ["MapRanking", "rank_maps", "roc_auc"]


@dataclass(frozen=True)
class MapRanking:
    """Result of :func:`rank_maps`; per-map arrays are in input map order.

    Attributes
    ----------
    order : ndarray of int, shape (k,)
        Map indices from best to worst (by ``mean``).
    mean, median : ndarray, shape (k,)
        Mean and median oriented score (higher is better) over the paired images.
    fraction_best : ndarray, shape (k,)
        Fraction of the images whose highest oriented score is this map's
        (ties share the image equally); sums to 1.
    n_images : int
        Images used (finite score for every map).
    n_excluded : int
        Images left out because a score was not finite.
    best, runner_up : int
        ``order[0]`` and ``order[1]`` (``runner_up`` is -1 for one map).
    difference : float
        Mean paired difference best - runner-up (>= 0).
    ci_low, ci_high : float
        Percentile paired-bootstrap confidence interval of ``difference``.
    confidence : float
        Level of the interval, e.g. 0.95.
    mean_ci_low, mean_ci_high : ndarray, shape (k,)
        Percentile bootstrap interval of each map's mean (same resamples of
        the images for every map, drawn after those of ``difference``).
    """

    order: NDArray[np.int64]
    mean: NDArray[np.float64]
    median: NDArray[np.float64]
    fraction_best: NDArray[np.float64]
    n_images: int
    n_excluded: int
    best: int
    runner_up: int
    difference: float
    ci_low: float
    ci_high: float
    confidence: float
    mean_ci_low: NDArray[np.float64] = None
    mean_ci_high: NDArray[np.float64] = None

    @property
    def significant(self) -> bool:
        """True when the confidence interval of the difference excludes 0."""
        return bool(self.ci_low > 0)


def _bootstrap_mean(d: NDArray, n_boot: int, rng: np.random.Generator,
                    block: int = 256) -> NDArray[np.float64]:
    """Means of ``n_boot`` resamples (with replacement) of ``d``, in bounded memory."""
    n = len(d)
    per = max(1, min(block, 4_000_000 // max(n, 1)))
    out = np.empty(n_boot)
    for s in range(0, n_boot, per):
        k = min(per, n_boot - s)
        out[s:s + k] = d[rng.integers(0, n, size=(k, n))].mean(axis=1)
    return out


def rank_maps(scores: ArrayLike, *, higher_is_better: bool = True, n_boot: int = 2000,
              confidence: float = 0.95, seed: int = 0) -> MapRanking:
    """Rank maps by their per-image scores, with a paired bootstrap interval.

    Parameters
    ----------
    scores : array_like, shape (n_images, n_maps)
        Score of each image against each map.
    higher_is_better : bool
        False for errors (L1, L2, IMED): they are negated first.
    n_boot : int
        Bootstrap resamples of the images.
    confidence : float
        Level of the interval, in (0, 1).
    seed : int
        Seed of the bootstrap (the result is deterministic).

    Returns
    -------
    MapRanking
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] < 1:
        raise ValueError(f"scores must be (n_images, n_maps), got shape {s.shape}")
    if not 0 < confidence < 1 or n_boot < 1:
        raise ValueError("confidence must be in (0, 1) and n_boot >= 1")
    s = s if higher_is_better else -s
    keep = np.isfinite(s).all(axis=1)
    s = s[keep]
    if len(s) < 2:
        raise ValueError(f"need at least 2 images with finite scores for every map, got {len(s)}")
    mean, median = s.mean(axis=0), np.median(s, axis=0)
    top = s == s.max(axis=1, keepdims=True)
    fraction = (top / top.sum(axis=1, keepdims=True)).mean(axis=0)
    order = np.argsort(-mean, kind="stable")
    best = int(order[0])
    runner = int(order[1]) if len(order) > 1 else -1
    if runner < 0:
        diff, lo, hi = 0.0, 0.0, 0.0
    else:
        d = s[:, best] - s[:, runner]
        boots = _bootstrap_mean(d, n_boot, np.random.default_rng(seed))
        alpha = 0.5 * (1.0 - confidence)
        diff = float(d.mean())
        lo, hi = (float(v) for v in np.quantile(boots, [alpha, 1.0 - alpha]))
    rng = np.random.default_rng(seed + 1)
    alpha = 0.5 * (1.0 - confidence)
    means = np.stack([_bootstrap_mean(s[:, j], n_boot, np.random.default_rng(rng.integers(
        2**32))) for j in range(s.shape[1])])
    mlo, mhi = np.quantile(means, [alpha, 1.0 - alpha], axis=1)
    return MapRanking(order=order, mean=mean, median=median, fraction_best=fraction,
                      n_images=int(len(s)), n_excluded=int((~keep).sum()), best=best,
                      runner_up=runner, difference=diff, ci_low=lo, ci_high=hi,
                      confidence=float(confidence), mean_ci_low=mlo, mean_ci_high=mhi)


def roc_auc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Area under the ROC curve by the Mann-Whitney statistic.

    Parameters
    ----------
    scores : array_like, shape (n,)
        Higher means "more likely positive". Non-finite scores rank lowest.
    labels : array_like of bool, shape (n,)
        True for positives.

    Returns
    -------
    float
        ``P(score_pos > score_neg) + P(tie) / 2``, in [0, 1].
    """
    x = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"scores {x.shape} and labels {y.shape} must be equal 1-D shapes")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("roc_auc needs at least one positive and one negative label")
    x = np.where(np.isfinite(x), x, -np.inf)
    r = rankdata(x)
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
