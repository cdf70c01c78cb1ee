"""Residuals of images against reprojections, in two passes with bounded memory.

Pass 1, :func:`summarize_chunk`, turns a chunk of aligned images and their
reprojections (stacks ``(n, N, N)`` indexed ``[y, x]``, origin ``N // 2``, see
:mod:`xmipp_qc.core`) into a :class:`ChunkSummary`: a few floats and one small
``(d, d)`` covariance matrix per image, cheap to keep for 10^5 images. Pass 2,
:func:`xmipp_qc.core.outliers.set_statistics`, needs the concatenated summaries only: signed and
absolute z-scores, a covariance-structure divergence and one combined outlier
score with a per-image flag.

The residual is ``E = I - (a P + b)`` inside the mask, with ``a, b`` fitted by
least squares (so it does not depend on the arbitrary intensity scale of the
map; Xmipp uses ``P - I`` without a fit). With ``resolution_a`` the images,
reprojections and residuals are low-passed (raised cosine) before every
comparison. Images that cannot be scored (non-finite values, constant image or
reprojection in the mask) get NaN scores and a non-empty ``reasons`` entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from xmipp_qc.core.reasons import reason
from xmipp_qc.core.similarity import fit_gray, similarity_scores
from xmipp_qc.core.transform import circular_mask, low_pass

__all__ = [
    "ChunkSummary",
    "gray_residuals",
    "low_band_share",
    "residual_covariances",
    "summarize_chunk",
]


def gray_residuals(images: ArrayLike, projections: ArrayLike,
                   mask: ArrayLike | None = None) -> tuple[NDArray, NDArray, NDArray, NDArray]:
    """Residual of the least-squares gray model inside a mask.

    Parameters
    ----------
    images, projections : array_like, shape (n, N, N) or (N, N)
        Aligned images and their reprojections.
    mask : array_like of bool, shape (N, N), optional
        Default disc of radius ``N // 2``.

    Returns
    -------
    residuals : ndarray, shape (n, N, N), float64
        ``(I - a P - b) * mask``.
    a, b, se_a : ndarray, shape (n,)
        See :func:`xmipp_qc.core.similarity.fit_gray`.
    """
    x = np.asarray(images, dtype=np.float64)
    p = np.asarray(projections, dtype=np.float64)
    x, p = (x[None], p[None]) if x.ndim == 2 else (x, p)
    m = circular_mask(x.shape[-1], dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    a, b, se = fit_gray(x, p, m)
    res = (x - a[:, None, None] * p - b[:, None, None]) * m
    return res, a, b, se


def residual_covariances(residuals: ArrayLike, mask: ArrayLike | None = None, *,
                         patch: int = 3, shrinkage: float = 0.02,
                         batch: int = 64) -> NDArray[np.float32]:
    """Well-conditioned local covariance of residual images.

    The samples are the ``patch x patch`` neighbourhoods (``d = patch**2``
    values, row-major) centred on every mask pixel whose neighbourhood lies in
    the mask. Their covariance ``C`` is normalised to unit mean variance
    (``C / (tr C / d)``, so it describes the spatial structure of the residual,
    not its scale, which :func:`summarize_chunk` reports as ``resStd``) and
    shrunk towards the identity, ``(1 - shrinkage) C + shrinkage I``, so that
    every eigenvalue is at least ``shrinkage``. White noise gives about ``I``.
    Each residual is divided by its peak first (the normalised ``C`` does not
    change), so no value, however large, overflows the float32 products.
    Xmipp's column covariance of an ``N x N`` image is singular instead.

    Parameters
    ----------
    residuals : array_like, shape (n, N, N)
    mask : array_like of bool, shape (N, N), optional
        Default disc of radius ``N // 2``.
    patch : int
        Odd neighbourhood size in px.
    shrinkage : float
        In (0, 1].
    batch : int
        Images processed at once (bounds temporary memory).

    Returns
    -------
    ndarray, shape (n, d, d), float32
        Symmetric positive definite; NaN for an all-zero residual.
    """
    r = np.asarray(residuals)
    if r.ndim != 3:
        raise ValueError(f"residuals must be (n, N, N), got {r.shape}")
    if patch < 1 or patch % 2 == 0:
        raise ValueError(f"patch must be a positive odd integer, got {patch}")
    if not 0 < shrinkage <= 1:
        raise ValueError(f"shrinkage must be in (0, 1], got {shrinkage}")
    n_box, h = r.shape[-1], patch // 2
    m = circular_mask(n_box, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    inner = np.zeros_like(m)
    inner[h:n_box - h, h:n_box - h] = True
    offs = [(dy, dx) for dy in range(-h, h + 1) for dx in range(-h, h + 1)]
    for dy, dx in offs:
        inner &= np.roll(m, (-dy, -dx), axis=(0, 1))
    yy, xx = np.nonzero(inner)
    if yy.size <= patch * patch:
        raise ValueError("mask too small for the covariance neighbourhood")
    d = patch * patch
    out = np.empty((len(r), d, d), dtype=np.float32)
    for s in range(0, len(r), batch):
        blk = np.asarray(r[s:s + batch], dtype=np.float64)
        peak = np.abs(blk).max(axis=(1, 2), initial=0.0, where=np.isfinite(blk))
        blk = (blk / np.where(peak > 0, peak, 1.0)[:, None, None]).astype(np.float32)
        v = np.stack([blk[:, yy + dy, xx + dx] for dy, dx in offs], axis=1)
        v -= v.mean(axis=2, keepdims=True)
        c = np.matmul(v, np.transpose(v, (0, 2, 1))).astype(np.float64) / yy.size
        tr = np.trace(c, axis1=1, axis2=2) / d
        with np.errstate(invalid="ignore", divide="ignore"):
            c = c / tr[:, None, None]
        c = (1.0 - shrinkage) * c + shrinkage * np.eye(d)
        c[~(tr > 0)] = np.nan
        out[s:s + batch] = c
    return out


@dataclass(frozen=True)
class ChunkSummary:
    """Per-image summaries of one or more chunks (pass 1 of the residual analysis).

    Attributes
    ----------
    scores : dict of str to ndarray of shape (n,), float64
        Named per-image scores (see :func:`summarize_chunk`), NaN where invalid.
    covariances : ndarray, shape (n, d, d), float32
        Residual covariances of :func:`residual_covariances`.
    reasons : ndarray, shape (n,), str
        Empty for a valid image, otherwise why it was not scored.
    """

    scores: Mapping[str, NDArray[np.float64]]
    covariances: NDArray[np.float32]
    reasons: NDArray[np.str_] = field(default_factory=lambda: np.array([], dtype=str))

    @property
    def n(self) -> int:
        """Number of images."""
        return len(self.reasons)

    @property
    def valid(self) -> NDArray[np.bool_]:
        """Images with an empty reason, shape (n,)."""
        return self.reasons == ""

    @staticmethod
    def concatenate(parts: Sequence[ChunkSummary]) -> ChunkSummary:
        """Join chunk summaries in order (their score names must agree)."""
        if not parts:
            raise ValueError("no summaries to concatenate")
        names = list(parts[0].scores)
        if any(list(p.scores) != names for p in parts):
            raise ValueError("chunk summaries have different score names")
        return ChunkSummary(
            scores={k: np.concatenate([p.scores[k] for p in parts]) for k in names},
            covariances=np.concatenate([p.covariances for p in parts]),
            reasons=np.concatenate([np.asarray(p.reasons, dtype=object) for p in parts])
            .astype(str),
        )


def _invalid_reasons(x: NDArray, p: NDArray, m: NDArray) -> NDArray[np.str_]:
    """Why each image cannot be scored ("" when it can)."""
    reasons = np.full(len(x), "", dtype=object)
    fin_x = np.isfinite(x.sum(axis=(1, 2)))
    fin_p = np.isfinite(p.sum(axis=(1, 2)))
    for arr, fin, why in ((p, fin_p, reason("constant_reprojection")),
                          (x, fin_x, reason("constant_image"))):
        am = arr[:, m]
        reasons[fin & (am.max(axis=1) == am.min(axis=1))] = why
    reasons[~fin_p] = reason("non_finite_reprojection")
    reasons[~fin_x] = reason("non_finite_image")
    return reasons.astype(str)


def _support_mean(res: NDArray, p: NDArray, m: NDArray) -> NDArray[np.float64]:
    """Mean residual where the reprojection has signal: ``|P - mean_m P| > std_m P``."""
    w = m.ravel().astype(np.float64)
    pf = p.reshape(len(p), -1)
    mu = pf @ w / w.sum()
    sd = np.sqrt(np.maximum((pf * pf) @ w / w.sum() - mu * mu, 0.0))
    sup = (np.abs(pf - mu[:, None]) > sd[:, None]) & m.ravel()
    return (res.reshape(len(p), -1) * sup).sum(axis=1) / np.maximum(sup.sum(axis=1), 1)


#: Highest spatial frequency, in cycles per box, of :func:`low_band_share`: the
#: residual's structure at scales of a quarter of the box and larger.
LOW_BAND_CYCLES = 4


def low_band_share(residuals: ArrayLike, cycles: int = LOW_BAND_CYCLES) -> NDArray[np.float64]:
    """Share of each residual's power at 1 to ``cycles`` cycles per box.

    A particle the map explains leaves noise in its residual, whose power is
    spread over all frequencies as the set's noise spectrum is; ice, carbon
    edges, aggregates and neighbours leave structure larger than the particle's
    details (blobs, gradients), which the gray fit cannot remove. The DC term
    is excluded (the fit's offset removes it).

    Parameters
    ----------
    residuals : array_like, shape (n, N, N)
        Residuals ``I - (a P + b)``, zero outside the comparison mask.
    cycles : int
        Upper edge of the low band in cycles per box (ring radius ``k <=
        cycles + 0.5`` Fourier px, i.e. wavelengths of ``N / cycles`` px and
        longer).

    Returns
    -------
    ndarray, shape (n,), float64
        Power in ``0 < |k| <= cycles`` divided by the power at every ``|k| >
        0`` (0 for a zero residual).
    """
    r = np.asarray(residuals, dtype=np.float64)
    n_box = r.shape[-1]
    ky = np.fft.fftfreq(n_box)[:, None] * n_box
    kx = np.fft.rfftfreq(n_box)[None, :] * n_box
    k = np.hypot(ky, kx)
    weight = np.where((kx == 0) | ((n_box % 2 == 0) & (kx == n_box // 2)), 1.0, 2.0)
    power = np.abs(np.fft.rfft2(r)) ** 2 * weight  # each half-plane term counts twice
    total = power.sum(axis=(1, 2)) - power[:, 0, 0]
    low = (power * ((k > 0) & (k <= cycles + 0.5))).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, low / total, 0.0)


def summarize_chunk(images: ArrayLike, projections: ArrayLike, *,
                    mask_radius: float | None = None, pixel_size_a: float = 1.0,
                    resolution_a: float | None = None, patch: int = 3,
                    extra: Mapping[str, ArrayLike] | None = None,
                    reasons: ArrayLike | None = None) -> ChunkSummary:
    """Pass 1: per-image residual and similarity summaries of one chunk.

    Parameters
    ----------
    images, projections : array_like, shape (n, N, N)
        Aligned images and reprojections (with the image's CTF if used).
    mask_radius : float, optional
        Disc radius in px; default ``N // 2``.
    pixel_size_a : float
        Sampling in Å/px (only used with ``resolution_a``).
    resolution_a : float, optional
        Low-pass every comparison at this resolution in Å (Xmipp's ``resol``).
    patch : int
        Neighbourhood size of :func:`residual_covariances`.
    extra : mapping of str to array_like of shape (n,), optional
        Further per-image scores to carry (e.g. the refinement's moves).
    reasons : array_like of str, shape (n,), optional
        Reasons known before scoring (e.g. a non-finite input angle); a
        non-empty entry marks the image invalid with that reason.

    Returns
    -------
    ChunkSummary
        Scores: ``cost``, ``corrIdx``, ``corrMask``, ``corrWeight`` (higher is
        better), ``imedValue`` (lower is better) of
        :func:`~xmipp_qc.core.similarity.similarity_scores`; ``grayA``,
        ``grayB``, ``grayASE`` (fit ``I ~ a P + b`` and the standard error of
        ``a``); ``imageStd``, the image's std in the mask (its scale);
        ``resMean``, the mean residual where the reprojection has
        signal (``|P - mean_m P| > std_m P`` in the mask; over the whole mask
        it is 0 by construction of ``b``); ``resStd``, the residual RMS (= std,
        ddof 0) in the mask; ``resLowPower``, the share of the residual's
        power at scales of a quarter of the box and larger
        (:func:`low_band_share`); and the ``extra`` scores.
    """
    x = np.asarray(images, dtype=np.float64)
    p = np.asarray(projections, dtype=np.float64)
    if x.ndim != 3 or x.shape != p.shape or x.shape[1] != x.shape[2]:
        raise ValueError(f"images {x.shape} and projections {p.shape} must be equal (n, N, N)")
    m = circular_mask(x.shape[-1], mask_radius, dtype=bool)
    found = _invalid_reasons(x, p, m)
    given = np.full(len(x), "") if reasons is None else np.asarray(reasons, dtype=str)
    reasons = np.where(given != "", given, found).astype(str)
    ok = reasons == ""
    x = np.where(ok[:, None, None], x, 0.0)
    p = np.where(ok[:, None, None], p, 0.0)
    x[~ok, 0, 0] = p[~ok, 0, 0] = 1.0  # placeholders, scored then discarded
    if resolution_a is not None:
        x = low_pass(x, resolution_a, pixel_size_a, edge="above")
        p = low_pass(p, resolution_a, pixel_size_a, edge="above")
    scores = similarity_scores(x, p, m)
    res, a, b, se = gray_residuals(x, p, m)
    scores.update(grayA=a, grayB=b, grayASE=se, imageStd=x[:, m].std(axis=1),
                  resMean=_support_mean(res, p, m),
                  resStd=np.sqrt(np.maximum((res * res).reshape(len(x), -1) @ m.ravel(), 0)
                                 / m.sum()),
                  resLowPower=low_band_share(res))
    for k, v in (extra or {}).items():
        v = np.asarray(v, dtype=np.float64)
        if v.shape != (len(x),):
            raise ValueError(f"extra score {k!r} has shape {v.shape}, expected ({len(x)},)")
        scores[k] = v.copy()
    for v in scores.values():
        v[~ok] = np.nan
    cov = residual_covariances(res, m, patch=patch)
    cov[~ok] = np.nan
    return ChunkSummary(scores=scores, covariances=cov, reasons=reasons)

