"""Pass 2 of the residual analysis: set statistics, outlier flags.

Works on the concatenated per-image summaries of
:func:`xmipp_qc.core.residuals.summarize_chunk` alone, so a set of any size is
scored without holding its images or residuals (the residual covariances'
divergence is :mod:`xmipp_qc.core.spd_divergence`). Scores that are NaN for invalid
images never enter a median, mean, standard deviation or centroid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

import numpy as np
from numpy.typing import ArrayLike, NDArray

from xmipp_qc.core.reasons import reason
from xmipp_qc.core.residuals import ChunkSummary

__all__ = [
    "EXTREME_SCALE_FACTOR",
    "MATCHED_OUTLIER_COMPONENTS",
    "OUTLIER_COMPONENTS",
    "OUTLIER_THRESHOLD",
    "SetStatistics",
    "combined_location_scale",
    "half_sample_mode",
    "mode_location_scale",
    "robust_z",
    "set_statistics",
]


#: Components of the combined outlier score: summary or set score name -> +1 when
#: a high value is bad, -1 when a low value is bad. Components absent from a
#: summary (e.g. refinement moves when there was no refinement) are skipped.
#: The defaults are the ones that separate planted outliers best on simulated
#: particles (xmipp_qc/tests/core/test_outliers.py): the evidence that the map
#: explains the image at the given and at the refined parameters, in noise units
#: (``zScoreGrayInit``, ``zScoreGray``), and how much and how far local
#: refinement had to move to explain it (``corrGain``, ``angleChange``, see
#: :meth:`xmipp_qc.core.refine.RefineResult.scores`).
OUTLIER_COMPONENTS: dict[str, int] = {
    "zScoreGrayInit": -1,
    "zScoreGray": -1,
    "corrGain": +1,
    "angleChange": +1,
}

#: Components of ``outlierScore`` when the angles come from projection matching.
#: The refinement's gain and move say little there (matching already found the
#: best orientation, even for junk), so the score asks three questions of the
#: image at its best alignment instead:
#:
#: * does the map explain it? ``cost`` (the masked correlation) and
#:   ``zScoreGray`` (the fitted scale of the reprojection in standard errors);
#: * is there structure the map does not explain? ``resLowPower``, the share of
#:   the residual's power at scales of a quarter of the box and larger: ice,
#:   carbon edges, aggregates and neighbours leave it, noise does not;
#: * where did the search have to put the particle? ``offCentre``: a search
#:   over a wide shift range finds *something* for an image without a centred
#:   particle, and for junk it is far from the pick (RELION β-gal tutorial
#:   particles: median 7.8 px for junk, 3.7 px for good particles in a 64 px box).
#:
#: On real β-gal particles (benchmarks/real_particles.py) each component alone
#: separates junk from good particles with ROC AUC 0.72-0.82 and their mean
#: with 0.90; the residual-covariance divergence of the earlier default
#: separates them with 0.56 only. On matched synthetic averages with junk
#: (xmipp_qc/tests/test_protocol_compare_reprojections*.py) both sets reach 1.0.
MATCHED_OUTLIER_COMPONENTS: dict[str, int] = {
    "cost": -1,
    "zScoreGray": -1,
    "resLowPower": +1,
    "offCentre": +1,
}

#: Default flag threshold on ``outlierScore`` (a robust z-score; 3.5 is the
#: modified z-score cut of Iglewicz and Hoaglin).
OUTLIER_THRESHOLD = 3.5

#: An image whose std (``imageStd``) is more than this factor above or below the
#: set's median is flagged "extreme image scale" and kept out of every set
#: statistic: no real particle set varies a hundredfold in scale, while a
#: damaged image (a stray multiplier, an unnormalised stack) does.
EXTREME_SCALE_FACTOR = 100.0

#: Floor of each oriented component z-score in the combination: good evidence on
#: one component can offset bad evidence on another by at most this much.
_FLOOR = -1.0


def robust_location_scale(values: ArrayLike, valid: ArrayLike | None = None) -> list[float]:
    """``[median, 1.4826 MAD]`` of the valid finite entries (the scale of :func:`robust_z`).

    Parameters
    ----------
    values : array_like, shape (n,)
    valid : array_like of bool, shape (n,), optional
        Entries defining the median and MAD; default all finite ones.

    Returns
    -------
    list of two floats
        ``[location, scale]``; NaN location if no entry is valid. If the MAD is
        0 the mean absolute deviation (times 1.2533) is the scale, and if that
        is 0 too, the scale is 1.
    """
    x = np.asarray(values, dtype=np.float64)
    sel = np.isfinite(x) if valid is None else (np.asarray(valid, dtype=bool) & np.isfinite(x))
    if not sel.any():
        return [float("nan"), 1.0]
    med = np.median(x[sel])
    dev = np.abs(x[sel] - med)
    scale = 1.4826 * np.median(dev)
    if scale <= 0:
        scale = 1.2533 * dev.mean() or 1.0
    return [float(med), float(scale)]


def half_sample_mode(values: ArrayLike) -> float:
    """Half-sample mode of finite values (Bickel and Frühwirth, 2006).

    Repeatedly keeps the densest half of the sorted values (the shortest
    interval holding half of them) until three or fewer remain; their mean is
    the mode. Robust to up to half of the values forming a second population.

    Parameters
    ----------
    values : array_like, shape (n,)
        NaN and infinite entries are ignored.

    Returns
    -------
    float
        NaN when no value is finite.
    """
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return float("nan")
    while len(x) > 3:
        h = (len(x) + 1) // 2
        i = int(np.argmin(x[h - 1:] - x[: len(x) - h + 1]))
        x = x[i: i + h]
    return float(x.mean())


def mode_location_scale(values: ArrayLike, valid: ArrayLike | None = None) -> list[float]:
    """``[mode, left sigma]``: the location and scale of the low side of a score.

    For a score where high is bad, the location is the half-sample mode
    (:func:`half_sample_mode`) and the scale the root mean square distance
    to it of the values below it, i.e. both describe the images the map
    explains, however many junk images lie above. On one Gaussian population
    they are its mean and standard deviation, as :func:`robust_location_scale`
    gives; on a set with 45% junk (real β-gal particles picked by LoG) the
    median and MAD are pulled up and widened by the junk, which then hides
    below a 3.5 threshold.

    Parameters
    ----------
    values : array_like, shape (n,)
    valid : array_like of bool, shape (n,), optional
        Entries to use; default all finite ones.

    Returns
    -------
    list of two floats
        Falls back to :func:`robust_location_scale` with fewer than 10 valid
        values or a zero scale.
    """
    x = np.asarray(values, dtype=np.float64)
    sel = np.isfinite(x) if valid is None else (np.asarray(valid, dtype=bool) & np.isfinite(x))
    if sel.sum() < 10:
        return robust_location_scale(x, sel)
    mode = half_sample_mode(x[sel])
    low = x[sel][x[sel] <= mode] - mode
    scale = float(np.sqrt(np.mean(low * low))) if len(low) else 0.0
    if not scale > 0:
        return robust_location_scale(x, sel)
    return [mode, scale]


#: Valid images from which the combined score's location and scale are those of
#: its low mode (:func:`combined_location_scale`); fewer give too noisy a mode.
MODE_MIN_IMAGES = 200


def combined_location_scale(combined: ArrayLike, unfloored: ArrayLike,
                            valid: ArrayLike | None = None) -> list[float]:
    """Location and scale that turn the combined component score into ``outlierScore``.

    With at least :data:`MODE_MIN_IMAGES` valid images they are those of the
    images the map explains: the mode and left sigma
    (:func:`mode_location_scale`) of the mean of the oriented component
    z-scores before their floor (the floor piles good images onto a few values,
    which would make a spike of the mode), so that junk is flagged even when it
    is half of the set. With fewer, a mode is too noisy to stand on, and they
    are the median and robust scale of the floored combination
    (:func:`robust_location_scale`).

    Parameters
    ----------
    combined : array_like, shape (n,)
        Mean of the floored oriented component z-scores.
    unfloored : array_like, shape (n,)
        Mean of the same z-scores without the floor.
    valid : array_like of bool, shape (n,), optional
        Images that define the statistics; default the finite ones.

    Returns
    -------
    list of two floats
    """
    c = np.asarray(combined, dtype=np.float64)
    sel = np.isfinite(c) if valid is None else (np.asarray(valid, dtype=bool) & np.isfinite(c))
    if sel.sum() < MODE_MIN_IMAGES:
        return robust_location_scale(c, sel)
    return mode_location_scale(unfloored, sel)


def robust_z(values: ArrayLike, valid: ArrayLike | None = None) -> NDArray[np.float64]:
    """Robust z-score ``(x - median) / (1.4826 MAD)`` over the valid entries.

    Parameters
    ----------
    values : array_like, shape (n,)
    valid : array_like of bool, shape (n,), optional
        Entries defining the median and MAD; default all finite ones.

    Returns
    -------
    ndarray, shape (n,), float64
        NaN where ``values`` is not finite, or everywhere if no entry is valid.
        The scale is that of :func:`robust_location_scale`.
    """
    x = np.asarray(values, dtype=np.float64)
    med, scale = robust_location_scale(x, valid)
    return (x - med) / scale


@dataclass(frozen=True)
class SetStatistics:
    """Pass 2 of the residual analysis: set-level scores of every image.

    Attributes
    ----------
    scores : dict of str to ndarray of shape (n,)
        ``zResMean``/``zResStd``: signed z-scores (mean and std ddof 0 over
        the valid images) of ``resMean``/``resStd``; ``zScoreResMean`` and
        ``zScoreResVar``: their absolute values (Xmipp's names; "Var" is the
        std, as in Xmipp). ``resCovDivergence``: JBLD of the residual
        covariance to the set's JBLD centroid (>= 0, higher is worse);
        ``zScoreResCov``: its robust z-score. ``zScoreGray``: ``(a -
        median(a)) / grayASE``, robustly standardised over the set: how many
        standard errors the fitted scale of the reprojection falls below
        (negative) the set's typical scale, i.e. how much less of the image the
        map explains than expected at this noise level (normalised per image,
        so orientation and defocus, which change the signal, are accounted
        for). ``zScoreGrayInit``: the same from ``grayInit``/``grayInitSE``
        (the fit at the input angles and shifts) when the summary has them. ``outlierScore``: the
        combined score (higher is worse). ``outlierPart<Component>`` (e.g.
        ``outlierPartCost``): each component's share of it, in its units, so
        that a user sees why an image was flagged (``outlierScore`` is the sum
        of the parts minus a constant of the set). NaN for invalid images.
    is_outlier : ndarray of bool, shape (n,)
        ``outlierScore > threshold``, or the image could not be scored.
    reasons : ndarray of str, shape (n,)
        Why an image was flagged (:func:`~xmipp_qc.core.reasons.reason` strings).
    centroid : ndarray, shape (d, d)
        JBLD centroid of the valid residual covariances.
    threshold : float
    """

    scores: Mapping[str, NDArray[np.float64]]
    is_outlier: NDArray[np.bool_]
    reasons: NDArray[np.str_]
    centroid: NDArray[np.float64]
    threshold: float


def _failure_note(reasons: NDArray[np.str_]) -> str:
    """``"; failed: 48 x 'input shift of 833 px ...', 2 x '...'"`` (one example per kind)."""
    kinds: dict[str, list] = {}
    for r in reasons[reasons != ""]:
        kinds.setdefault(re.sub(r"[-+]?\d[\d.e+-]*", "#", r), []).append(r)
    if not kinds:
        return ""
    top = sorted(kinds.values(), key=len, reverse=True)[:3]
    return "; failed: " + ", ".join(f"{len(v)} x {v[0]!r}" for v in top)


def set_reasons(summary: ChunkSummary, median_std: float | None = None
                ) -> tuple[NDArray[np.str_], float | None]:
    """Per-image reasons, plus those only the set reveals: extreme scale, broken covariance.

    Parameters
    ----------
    summary : ChunkSummary
    median_std : float, optional
        Typical ``imageStd`` of the set (a reference's); default the median over
        this summary's valid images (needs 3 of them).

    Returns
    -------
    reasons : ndarray of str, shape (n,)
        Empty for the images that can enter set statistics.
    median_std : float or None
        The typical ``imageStd`` used (None if it could not be known).
    """
    reasons = np.asarray(summary.reasons, dtype=object).copy()
    ok = reasons == ""
    broken = ok & ~np.isfinite(summary.covariances.reshape(summary.n, -1)).all(axis=1)
    reasons[broken] = reason("non_finite_covariance")
    std = summary.scores.get("imageStd")
    good = ok & ~broken & (np.isfinite(std) & (std > 0) if std is not None else False)
    if median_std is None and std is not None and good.sum() >= 3:
        median_std = float(np.median(std[good]))
    if std is not None and median_std is not None:
        med = median_std
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = std / med
        far = ok & ~broken & ~((ratio <= EXTREME_SCALE_FACTOR)
                               & (ratio >= 1.0 / EXTREME_SCALE_FACTOR))
        for i in np.flatnonzero(far):
            reasons[i] = reason("extreme_image_scale", ratio[i])
    return reasons.astype(str), median_std


def set_statistics(summary: ChunkSummary, *, components: Mapping[str, int] | None = None,
                   threshold: float = OUTLIER_THRESHOLD) -> SetStatistics:
    """Pass 2: set statistics and outlier flags from the per-image summaries alone.

    Invalid images (non-empty ``summary.reasons``, a non-finite residual
    covariance, or an ``imageStd`` more than :data:`EXTREME_SCALE_FACTOR` from
    the set's median) are excluded from every median, mean, std and the
    centroid, get NaN set scores and are flagged with their reason, so that no
    single image can change the scores of the others.

    Parameters
    ----------
    summary : ChunkSummary
        Concatenated summaries of the whole set (:meth:`ChunkSummary.concatenate`).
    components : mapping of str to {+1, -1}, optional
        Components of ``outlierScore`` (default :data:`OUTLIER_COMPONENTS`):
        each is robustly z-scored, oriented so that positive is bad and floored
        at -1 (so a very good value cannot hide a bad one); their mean is
        robustly z-scored again into ``outlierScore``.
    threshold : float
        Flag threshold on ``outlierScore`` (default :data:`OUTLIER_THRESHOLD`).

    Returns
    -------
    SetStatistics
    """
    from xmipp_qc.core.reference_statistics import (
        reference_statistics,
        score_with_reference,
    )

    if not np.isfinite(threshold):
        raise ValueError(f"the outlier threshold must be a finite number, got {threshold}")
    reasons, _ = set_reasons(summary)
    if (reasons == "").sum() < 3:
        raise ValueError(f"need at least 3 valid images for set statistics, got "
                         f"{(reasons == '').sum()} of {summary.n}{_failure_note(reasons)}")
    reference = reference_statistics(summary, components=components, threshold=threshold)
    return score_with_reference(summary, reference)
