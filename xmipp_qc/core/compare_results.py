"""Set-level results of compare reprojections: one map's set, and several maps.

:func:`finalize` turns the chunk results of one map
(:class:`xmipp_qc.core.chunk_result.ChunkResult`, images not needed) into per-image
set scores and outlier flags (:func:`xmipp_qc.core.outliers.set_statistics`);
:func:`rank` compares maps on the images they share
(:func:`xmipp_qc.core.ranking.rank_maps`), always oriented so that the first
map is the best (Xmipp ranks by the maximum ``cost`` even when ``cost`` is an
L1 error). Both are re-exported by :mod:`xmipp_qc.core.pipeline`.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from xmipp_qc.core.reasons import split_reasons
from xmipp_qc.core.residuals import ChunkSummary

__all__ = ["SCORE_DIRECTIONS", "burn_in_reference", "finalize", "rank"]

#: Per-image arrays of a chunk result that :func:`finalize` concatenates.
_CHUNK_ARRAYS = ("ids", "angles", "shifts", "matched", "match_corr", "match_margin")

#: Scores that may rank maps, and whether a higher value is better. Set-relative
#: scores (z-scores, ``outlierScore``) are not comparable across maps.
SCORE_DIRECTIONS: dict[str, bool] = {
    "cost": True,
    "corrIdx": True,
    "corrMask": True,
    "corrWeight": True,
    "imedValue": False,
    "resStd": False,
}


def _same_scores(parts: list[ChunkSummary]) -> list[ChunkSummary]:
    """Give every chunk the same score names (NaN where a chunk lacks one).

    A chunk whose images all failed has no refinement scores.
    """
    names = list(dict.fromkeys(k for p in parts for k in p.scores))
    return [p if list(p.scores) == names else
            ChunkSummary({k: p.scores.get(k, np.full(p.n, np.nan)) for k in names},
                         p.covariances, p.reasons) for p in parts]


def finalize(results: Sequence[Any], reference: Mapping[str, Any] | None = None,
             **set_options: Any) -> dict[str, NDArray]:
    """Set statistics of all chunks of one map, from their summaries alone.

    Parameters
    ----------
    results : sequence of ChunkResult
        Every chunk of the set (images not needed).
    reference : dict, optional
        Fixed reference statistics (:func:`burn_in_reference`): the images are
        scored against them (:func:`~xmipp_qc.core.reference_statistics.score_with_reference`)
        instead of against each other; ``set_options`` are then ignored.
    **set_options
        Keyword arguments of :func:`xmipp_qc.core.outliers.set_statistics`
        (``components``, ``threshold``).

    Returns
    -------
    dict of str to ndarray of shape (n,) (or (n, 3), (n, 2))
        In the results' order: ``ids``, ``angles``, ``shifts``, ``matched``,
        ``match_corr``, ``match_margin``; every summary score; the set scores
        (``zScoreResMean``, ``zScoreResVar``: absolute z, Xmipp's names;
        ``zResMean``, ``zResStd``: signed; ``resCovDivergence``: raw JBLD;
        ``zScoreResCov``: its robust z, one-sided (higher is worse, not an
        absolute value); ``zScoreGray``; ``outlierScore``); ``isOutlier``;
        ``reason`` (why flagged or failed: a category of
        :data:`xmipp_qc.core.reasons.REASONS`, "" otherwise) and ``reasonValue``
        (the number behind it, NaN when the category has none).
    """
    if not results:
        raise ValueError("finalize needs at least one chunk result")
    from xmipp_qc.core.outliers import set_statistics

    summary = ChunkSummary.concatenate(_same_scores([r.summary for r in results]))
    if reference is None:
        stats = set_statistics(summary, **set_options)
    else:
        from xmipp_qc.core.reference_statistics import score_with_reference

        stats = score_with_reference(summary, reference)
    out: dict[str, NDArray] = {k: np.concatenate([getattr(r, k) for r in results])
                               for k in _CHUNK_ARRAYS}
    out.update(summary.scores)
    out.update(stats.scores)
    out["isOutlier"] = stats.is_outlier
    out["reason"], out["reasonValue"] = split_reasons(stats.reasons)
    return out


def burn_in_reference(results: Sequence[Any], **set_options: Any) -> dict[str, Any]:
    """Estimate the reference statistics of a burn-in set of chunk results (JSON dict).

    ``finalize(results, reference=burn_in_reference(results, **o))`` equals
    ``finalize(results, **o)`` to rounding; later chunks scored with the same
    reference keep the scale of the burn-in
    (:mod:`xmipp_qc.core.reference_statistics`).
    """
    from xmipp_qc.core.reference_statistics import reference_statistics

    if not results:
        raise ValueError("burn_in_reference needs at least one chunk result")
    summary = ChunkSummary.concatenate(_same_scores([r.summary for r in results]))
    return reference_statistics(summary, **set_options)


def rank(results_per_map: Mapping[Any, Mapping[str, NDArray]], *, score: str = "cost",
         **rank_options: Any) -> dict[str, Any]:
    """Rank maps by one per-image score over the images they share (paired).

    Parameters
    ----------
    results_per_map : mapping of map key to :func:`finalize` output
        Images are paired by ``ids``; an image missing or failed for a map is
        left out of every map's statistics (counted in ``n_excluded``).
    score : str
        A key of :data:`SCORE_DIRECTIONS`; default ``cost`` (the masked
        correlation of image and gray-fitted reprojection, higher is better).
        Lower-is-better scores are negated, so the first map is always best.
    **rank_options
        ``n_boot``, ``confidence``, ``seed`` of :func:`~xmipp_qc.core.ranking.rank_maps`.

    Returns
    -------
    dict
        JSON-ready table: ``score``, ``higher_is_better``, ``maps`` (a list,
        best first, of ``map``, ``rank``, ``mean``, ``median``,
        ``fraction_best`` and ``ci_low``/``ci_high``, the bootstrap interval of
        the mean), ``best``, ``runner_up``, ``difference``,
        ``ci_low``, ``ci_high``, ``confidence``, ``significant``,
        ``n_images``, ``n_excluded``.
    """
    from xmipp_qc.core.ranking import rank_maps

    if score not in SCORE_DIRECTIONS:
        raise ValueError(f"cannot rank by {score!r}; choose from {sorted(SCORE_DIRECTIONS)}")
    keys = list(results_per_map)
    if not keys:
        raise ValueError("no maps to rank")
    all_ids = np.unique(np.concatenate([np.asarray(results_per_map[k]["ids"]) for k in keys]))
    matrix = np.full((len(all_ids), len(keys)), np.nan)
    for j, k in enumerate(keys):
        res = results_per_map[k]
        matrix[np.searchsorted(all_ids, np.asarray(res["ids"])), j] = res[score]
    r = rank_maps(matrix, higher_is_better=SCORE_DIRECTIONS[score], **rank_options)
    sign = 1.0 if SCORE_DIRECTIONS[score] else -1.0
    ci = np.sort([sign * r.mean_ci_low, sign * r.mean_ci_high], axis=0)  # (2, k)
    maps = [{"map": keys[j], "rank": pos + 1, "mean": sign * float(r.mean[j]),
             "median": sign * float(r.median[j]), "fraction_best": float(r.fraction_best[j]),
             "ci_low": float(ci[0, j]), "ci_high": float(ci[1, j])}
            for pos, j in enumerate(r.order)]
    return {"score": score, "higher_is_better": SCORE_DIRECTIONS[score], "maps": maps,
            "best": keys[r.best], "runner_up": keys[r.runner_up] if r.runner_up >= 0 else None,
            "difference": r.difference, "ci_low": r.ci_low, "ci_high": r.ci_high,
            "confidence": r.confidence, "significant": r.significant,
            "n_images": r.n_images, "n_excluded": r.n_excluded}
