"""Similarity of experimental images and their reprojections, as Xmipp measures it.

Every function takes stacks ``images`` and ``projections`` of shape ``(n, N, N)``
(or single ``(N, N)`` images), indexed ``[y, x]`` with the origin at pixel
``N // 2`` (see :mod:`xmipp_qc.core`). ``images`` are the experimental images
already brought into register with the reprojections (refined shift applied)
and ``projections`` the reprojections ``P`` of the map at the image's angles
(with the image's CTF if one is used). Scores are computed in float64 and
returned as ``(n,)`` float64 arrays. The definitions are those of Xmipp's
``angular_continuous_assign2`` (labels ``cost``, ``corrIdx``, ``corrMask``,
``corrWeight``, ``imedValue``), with the deviations stated per function.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from xmipp_qc.core.transform import circular_mask

__all__ = [
    "correlation_index",
    "correlation_masked",
    "correlation_weighted",
    "fit_gray",
    "imed_distance",
    "masked_correlation",
    "similarity_scores",
]

_EPS = 1e-300


def _pair(images: ArrayLike, projections: ArrayLike) -> tuple[NDArray, NDArray]:
    """Validate and promote two image stacks to float64 ``(n, N, N)``."""
    a = np.asarray(images, dtype=np.float64)
    p = np.asarray(projections, dtype=np.float64)
    if a.ndim == 2:
        a = a[None]
    if p.ndim == 2:
        p = p[None]
    if a.ndim != 3 or a.shape[1] != a.shape[2]:
        raise ValueError(f"images must be (n, N, N) or (N, N), got shape {np.shape(images)}")
    if p.shape != a.shape:
        raise ValueError(f"projections shape {p.shape} differs from images shape {a.shape}")
    return a, p


def _moments(x: NDArray, p: NDArray, mask: NDArray) -> tuple[NDArray, ...]:
    """Means and (co)variances (ddof 0) of two stacks over the True pixels of ``mask``.

    Returns ``(mean_x, mean_p, var_x, var_p, cov_xp, count)``, each (n,) but count.
    """
    w = np.asarray(mask, dtype=np.float64).ravel()
    cnt = w.sum()
    xf, pf = x.reshape(len(x), -1), p.reshape(len(p), -1)
    mx, mp = xf @ w / cnt, pf @ w / cnt
    vx = np.maximum((xf * xf) @ w / cnt - mx * mx, 0.0)
    vp = np.maximum((pf * pf) @ w / cnt - mp * mp, 0.0)
    cxp = (xf * pf) @ w / cnt - mx * mp
    return mx, mp, vx, vp, cxp, cnt


def _pearson(a: NDArray, p: NDArray, mask: NDArray) -> NDArray[np.float64]:
    """Pearson correlation over the True pixels of ``mask``; NaN if either is constant."""
    _, _, va, vp, cap, _ = _moments(a, p, mask)
    den = np.sqrt(va * vp)
    out = np.full(len(a), np.nan)
    ok = den > 0
    out[ok] = np.clip(cap[ok] / den[ok], -1.0, 1.0)
    return out


def masked_correlation(images: ArrayLike, projections: ArrayLike,
                       mask: ArrayLike | None = None) -> NDArray[np.float64]:
    """Pearson correlation of image and reprojection inside a mask (Xmipp ``cost``).

    ``cost = sum_m (I - mean_m I)(P - mean_m P) / sqrt(sum_m (I - mean_m I)^2
    sum_m (P - mean_m P)^2)`` over the mask pixels m. Higher is better, in
    [-1, 1]. Xmipp's correlation-mode cost of ``continuous_assign2`` without its
    ``(N - 1) / N`` factor. NaN when either image is constant in the mask.

    Parameters
    ----------
    images, projections : array_like, shape (n, N, N) or (N, N)
        Aligned images and reprojections.
    mask : array_like of bool, shape (N, N), optional
        Default: the disc of radius ``N // 2`` (:func:`~xmipp_qc.core.transform.circular_mask`).

    Returns
    -------
    ndarray, shape (n,)
    """
    a, p = _pair(images, projections)
    m = circular_mask(a.shape[-1], dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    return _pearson(a, p, m)


def correlation_index(images: ArrayLike, projections: ArrayLike) -> NDArray[np.float64]:
    """Pearson correlation over the whole box (Xmipp ``corrIdx``).

    Higher is better. Xmipp correlates the *masked* image with the *unmasked*
    reprojection over the full square (bug 8 of the reference study); here both
    are unmasked, so ``corrIdx`` is the plain full-box correlation.

    Parameters
    ----------
    images, projections : array_like, shape (n, N, N) or (N, N)

    Returns
    -------
    ndarray, shape (n,)
    """
    a, p = _pair(images, projections)
    return _pearson(a, p, np.ones(a.shape[1:], dtype=bool))


def correlation_masked(images: ArrayLike, projections: ArrayLike) -> NDArray[np.float64]:
    """Correlation on the pixels where the reprojection is bright (Xmipp ``corrMask``).

    With ``th = std(P)`` (ddof 0, whole box), the means are taken over
    ``{P >= th}`` and the sums over ``{P > th}`` (as Xmipp's
    ``correlationMasked``): ``sum (P - mu_P)(I - mu_I) / sqrt(sum (P - mu_P)^2
    sum (I - mu_I)^2)``. Higher is better; 0 when the set is empty.

    Parameters
    ----------
    images, projections : array_like, shape (n, N, N) or (N, N)

    Returns
    -------
    ndarray, shape (n,)
    """
    a, p = _pair(images, projections)
    th = p.std(axis=(-2, -1))[:, None, None]
    ge = (p >= th).astype(np.float64)
    gt = (p > th).astype(np.float64)
    nge = np.maximum(ge.sum(axis=(-2, -1)), 1.0)
    mp = (p * ge).sum(axis=(-2, -1)) / nge
    ma = (a * ge).sum(axis=(-2, -1)) / nge
    dp = (p - mp[:, None, None]) * gt
    da = (a - ma[:, None, None]) * gt
    num = (dp * da).sum(axis=(-2, -1))
    den = np.sqrt((dp * dp).sum(axis=(-2, -1)) * (da * da).sum(axis=(-2, -1)))
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def correlation_weighted(images: ArrayLike, projections: ArrayLike) -> NDArray[np.float64]:
    """Difference-weighted correlation (Xmipp ``corrWeight``).

    With ``D = P - I``, ``W = {|D| > std(D)}``, unweighted means ``mu`` over W
    and weights ``w = |D|``: ``sum_W w (P - mu_P)(I - mu_I) / sqrt(sum_W w
    (P - mu_P)^2 sum_W w (I - mu_I)^2)``. Higher is better; -1 when W is empty.
    Xmipp first re-aligns I to P with a full rigid 2D search; here the image is
    used as aligned by the local refinement (no second, unconstrained alignment).

    Parameters
    ----------
    images, projections : array_like, shape (n, N, N) or (N, N)

    Returns
    -------
    ndarray, shape (n,)
    """
    a, p = _pair(images, projections)
    d = p - a
    ad = np.abs(d)
    sel = ad > d.std(axis=(-2, -1))[:, None, None]
    cnt = sel.sum(axis=(-2, -1))
    cw = np.maximum(cnt, 1)
    mp = np.where(sel, p, 0.0).sum(axis=(-2, -1)) / cw
    ma = np.where(sel, a, 0.0).sum(axis=(-2, -1)) / cw
    w = np.where(sel, ad, 0.0)
    dp = p - mp[:, None, None]
    da = a - ma[:, None, None]
    num = (w * dp * da).sum(axis=(-2, -1))
    den = np.sqrt((w * dp * dp).sum(axis=(-2, -1)) * (w * da * da).sum(axis=(-2, -1)))
    out = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    return np.where(cnt > 0, out, -1.0)


def imed_distance(images: ArrayLike, projections: ArrayLike) -> NDArray[np.float64]:
    """IMage Euclidean Distance of the reprojection and the masked image (``imedValue``).

    With ``d = P - I * disc`` (disc of radius ``N // 2``; Xmipp zeroes the image
    outside it), ``IMED = sqrt(sum_{p in Omega} sum_{|D|_inf <= 3} g(D) d(p)
    d(p + D))``, ``g(D) = (2 pi)^(-1/2) exp(-|D|^2 / 2)`` (Xmipp's factor, Wang
    et al., IEEE PAMI 27:1334, 2005) and ``Omega`` = disc pixels at least 3 px
    from the border. Lower is better; it has the units of the image values (the
    intensity scale is not fitted, as in Xmipp). Negative sums are clipped to 0.

    Parameters
    ----------
    images, projections : array_like, shape (n, N, N) or (N, N)

    Returns
    -------
    ndarray, shape (n,)
    """
    a, p = _pair(images, projections)
    n_box = a.shape[-1]
    disc = circular_mask(n_box, dtype=bool)
    d = p - a * disc
    k = np.exp(-0.5 * np.arange(-3, 4) ** 2)
    gd = ndimage.correlate1d(d, k, axis=1, mode="constant")
    gd = ndimage.correlate1d(gd, k, axis=2, mode="constant") / np.sqrt(2.0 * np.pi)
    omega = disc.copy()
    omega[:3, :] = omega[-3:, :] = omega[:, :3] = omega[:, -3:] = False
    total = (d * gd * omega).sum(axis=(-2, -1))
    return np.sqrt(np.maximum(total, 0.0))


def fit_gray(images: ArrayLike, projections: ArrayLike,
             mask: ArrayLike | None = None) -> tuple[NDArray, NDArray, NDArray]:
    """Least-squares gray-level model ``I ~ a P + b`` inside a mask.

    Parameters
    ----------
    images, projections : array_like, shape (n, N, N) or (N, N)
    mask : array_like of bool, shape (N, N), optional
        Default: the disc of radius ``N // 2`` (:func:`~xmipp_qc.core.transform.circular_mask`).

    Returns
    -------
    a, b : ndarray, shape (n,)
        ``a = cov_m(I, P) / var_m(P)``, ``b = mean_m(I) - a mean_m(P)``. NaN for a
        constant reprojection.
    se_a : ndarray, shape (n,)
        Standard error of ``a`` under white residual noise:
        ``std_m(I - a P - b) / sqrt(sum_m (P - mean_m P)^2)``.
    """
    x, p = _pair(images, projections)
    m = circular_mask(x.shape[-1], dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    mx, mp, sxx, spp, sxp, cnt = _moments(x, p, m)
    ok = spp > 1e-12 * np.maximum(mp * mp, 1e-300)
    a = np.full(len(x), np.nan)
    a[ok] = sxp[ok] / spp[ok]
    b = mx - a * mp
    se = np.full(len(x), np.nan)
    var_res = np.maximum(sxx[ok] - a[ok] * sxp[ok], 0.0)
    se[ok] = np.sqrt(var_res / (spp[ok] * cnt))
    return a, b, se


def similarity_scores(images: ArrayLike, projections: ArrayLike,
                      mask: ArrayLike | None = None) -> dict[str, NDArray[np.float64]]:
    """All Xmipp similarity measures of aligned images and reprojections.

    Parameters
    ----------
    images, projections : array_like, shape (n, N, N) or (N, N)
    mask : array_like of bool, shape (N, N), optional
        Mask of ``cost``; default disc of radius ``N // 2``.

    Returns
    -------
    dict of str to ndarray of shape (n,)
        ``cost`` (:func:`masked_correlation`), ``corrIdx``, ``corrMask``,
        ``corrWeight`` (higher is better) and ``imedValue`` (lower is better).
    """
    return {
        "cost": masked_correlation(images, projections, mask),
        "corrIdx": correlation_index(images, projections),
        "corrMask": correlation_masked(images, projections),
        "corrWeight": correlation_weighted(images, projections),
        "imedValue": imed_distance(images, projections),
    }
