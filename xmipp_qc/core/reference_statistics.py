"""Outlier scores against FIXED reference statistics (streaming burn-in).

:func:`xmipp_qc.core.outliers.set_statistics` standardises every score over the
set it is given, so a flag can change when more images arrive. In streaming the
flag of an emitted image must be final: the location and scale of every score
are estimated once, on a burn-in set (:func:`reference_statistics`), and every
later image is scored against them alone (:func:`score_with_reference`).

Scoring the burn-in set against its own reference gives the same scores and
flags as :func:`~xmipp_qc.core.outliers.set_statistics` on that set (to
rounding): the estimators are the same (mean and std ddof 0 for ``zResMean``
and ``zResStd``; median and 1.4826 MAD, or 1.2533 mean absolute deviation, or
1, for every robust z; the JBLD centroid of the residual covariances).

The reference is a JSON-ready dict, so a protocol saves it with its run and a
"continue" reuses it.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from numpy.typing import NDArray

from xmipp_qc.core.outliers import (
    _FLOOR,
    OUTLIER_COMPONENTS,
    OUTLIER_THRESHOLD,
    SetStatistics,
    combined_location_scale,
    robust_location_scale,
    set_reasons,
)
from xmipp_qc.core.reasons import OUTLIER
from xmipp_qc.core.residuals import ChunkSummary
from xmipp_qc.core.spd_divergence import jbld, jbld_centroid

__all__ = ["part_name", "reference_statistics", "score_with_reference"]


def _mean_sd(x: NDArray, ok: NDArray) -> list[float]:
    sd = x[ok].std()
    return [float(x[ok].mean()), float(sd if sd > 0 else 1.0)]


def _z(x: NDArray, loc_scale) -> NDArray[np.float64]:
    return (np.asarray(x, dtype=np.float64) - loc_scale[0]) / loc_scale[1]


def _gray_ratio(s: Mapping[str, NDArray], a: str, se: str, median_a: float) -> NDArray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return (s[a] - median_a) / s[se]


def _set_scores(summary: ChunkSummary, ref: Mapping[str, Any],
                ok: NDArray[np.bool_]) -> dict[str, NDArray]:
    """Compute the set scores of the ``ok`` images given the reference (not yet combined)."""
    s, loc = summary.scores, ref["location_scale"]
    out: dict[str, NDArray] = {"zResMean": _z(s["resMean"], loc["resMean"]),
                               "zResStd": _z(s["resStd"], loc["resStd"])}
    out["zScoreResMean"] = np.abs(out["zResMean"])
    out["zScoreResVar"] = np.abs(out["zResStd"])
    div = np.full(summary.n, np.nan)
    if ok.any():
        div[ok] = jbld(summary.covariances[ok], np.asarray(ref["centroid"]))
    out["resCovDivergence"] = div
    out["zScoreResCov"] = _z(div, loc["resCovDivergence"])
    out["zScoreGray"] = _z(_gray_ratio(s, "grayA", "grayASE", ref["median_grayA"]),
                           loc["grayRatio"])
    if "grayInitRatio" in loc and "grayInit" in s and "grayInitSE" in s:
        out["zScoreGrayInit"] = _z(_gray_ratio(s, "grayInit", "grayInitSE",
                                               ref["median_grayInit"]), loc["grayInitRatio"])
    return out


def _oriented(merged: Mapping[str, NDArray], ref: Mapping[str, Any]) -> dict:
    """Each available component's oriented z-score (high is bad): ``{name: (n,)}``."""
    loc = ref["location_scale"]
    parts = {k: sign * _z(merged[k], loc[k])
             for k, sign in ref["components"].items() if k in merged and k in loc}
    if not parts:
        raise ValueError(f"none of the outlier components {list(ref['components'])} "
                         "is available")
    return parts


def _component_parts(merged: Mapping[str, NDArray], ref: Mapping[str, Any]) -> dict:
    """Floor the oriented component z-scores at ``_FLOOR``: ``{name: (n,)}``."""
    return {k: np.maximum(v, _FLOOR) for k, v in _oriented(merged, ref).items()}


def part_name(component: str) -> str:
    """Score name of a component's share of ``outlierScore``: ``outlierPart<Component>``."""
    return "outlierPart" + component[0].upper() + component[1:]


def reference_statistics(summary: ChunkSummary, *,
                         components: Mapping[str, int] | None = None,
                         threshold: float = OUTLIER_THRESHOLD) -> dict[str, Any]:
    """Location and scale of every set score, estimated on a burn-in set.

    Parameters
    ----------
    summary : ChunkSummary
        Concatenated per-image summaries of the burn-in images (>= 3 valid).
    components : mapping of str to {+1, -1}, optional
        Components of the combined outlier score (default
        :data:`~xmipp_qc.core.outliers.OUTLIER_COMPONENTS`).
    threshold : float
        Flag threshold on ``outlierScore``.

    Returns
    -------
    dict
        JSON-ready: ``n_images``, ``n_valid``, ``threshold``, ``components``,
        ``centroid`` (d x d list), ``median_grayA`` (and ``median_grayInit``),
        ``location_scale``: ``{name: [location, scale]}`` of ``resMean`` and
        ``resStd`` (mean, std), and (median, robust scale) of
        ``resCovDivergence``, ``grayRatio`` (``(a - median a) / se``),
        ``grayInitRatio``, every component and ``combined``, the location and
        scale of the mean of the floored oriented component z-scores
        (:func:`~xmipp_qc.core.outliers.combined_location_scale`).
    """
    reasons, median_std = set_reasons(summary)
    ok = reasons == ""
    if ok.sum() < 3:
        raise ValueError(f"need at least 3 valid images for reference statistics, "
                         f"got {ok.sum()}")
    s = summary.scores
    comps = dict(components or OUTLIER_COMPONENTS)
    centroid = jbld_centroid(summary.covariances[ok])
    ref: dict[str, Any] = {"n_images": int(summary.n), "n_valid": int(ok.sum()),
                           "threshold": float(threshold), "components": comps,
                           "centroid": centroid.tolist(),
                           "median_grayA": float(np.median(s["grayA"][ok])),
                           "median_imageStd": median_std}
    loc = {"resMean": _mean_sd(s["resMean"], ok), "resStd": _mean_sd(s["resStd"], ok)}
    div = np.full(summary.n, np.nan)
    div[ok] = jbld(summary.covariances[ok], centroid)
    loc["resCovDivergence"] = robust_location_scale(div, ok)
    loc["grayRatio"] = robust_location_scale(_gray_ratio(s, "grayA", "grayASE",
                                                     ref["median_grayA"]), ok)
    if "grayInit" in s and "grayInitSE" in s:
        ref["median_grayInit"] = float(np.median(s["grayInit"][ok]))
        loc["grayInitRatio"] = robust_location_scale(_gray_ratio(
            s, "grayInit", "grayInitSE", ref["median_grayInit"]), ok)
    ref["location_scale"] = loc
    merged = {**s, **_set_scores(summary, ref, ok)}
    for k in comps:
        if k in merged:
            loc[k] = robust_location_scale(np.asarray(merged[k], dtype=np.float64), ok)
    oriented = np.array(list(_oriented(merged, ref).values()))
    loc["combined"] = combined_location_scale(np.maximum(oriented, _FLOOR).mean(axis=0),
                                              oriented.mean(axis=0), ok)
    return ref


def score_with_reference(summary: ChunkSummary,
                         reference: Mapping[str, Any]) -> SetStatistics:
    """Set scores and flags of images against fixed reference statistics.

    Each image's scores depend on that image and ``reference`` alone, so they
    never change when other images arrive.

    Parameters
    ----------
    summary : ChunkSummary
        Per-image summaries of any number of images (invalid ones allowed).
    reference : dict
        From :func:`reference_statistics` (or its JSON round trip).

    Returns
    -------
    SetStatistics
        As :func:`~xmipp_qc.core.outliers.set_statistics`, with the reference's
        centroid and threshold.
    """
    reasons, _ = set_reasons(summary, reference.get("median_imageStd"))
    ok = reasons == ""
    out = _set_scores(summary, reference, ok)
    merged = {**summary.scores, **out}
    parts = _component_parts(merged, reference)
    loc, scale = reference["location_scale"]["combined"]
    out["outlierScore"] = _z(np.mean(list(parts.values()), axis=0), [loc, scale])
    for k, v in parts.items():  # outlierScore = sum of the parts - loc / scale
        out[part_name(k)] = v / (len(parts) * scale)
    for v in out.values():
        v[~ok] = np.nan
    threshold = float(reference["threshold"])
    flag = ~ok | (out["outlierScore"] > threshold)
    reasons = np.where(ok, np.where(flag, OUTLIER, ""), reasons)
    return SetStatistics(scores=out, is_outlier=flag, reasons=reasons.astype(str),
                         centroid=np.asarray(reference["centroid"]), threshold=threshold)
