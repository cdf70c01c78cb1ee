"""Evidence that a local refinement's angular move is more than noise or model error.

The local refinement (:class:`xmipp_qc.core.refine.LocalRefiner`) fits each
image's Fourier band ``0 < |k| <= f`` (``D`` real degrees of freedom: the
number of full-plane Fourier samples in the band, DC excluded) by
``F_I ~ a F_P(R, s)``, ``P`` the (CTF-filtered) reprojection at orientation
``R`` and shift ``s``. Two nested models are compared:

* ``M0``: the input orientation; gray scale ``a`` and shift ``s`` fitted (3
  parameters);
* ``M1``: the orientation fitted too (3 more parameters).

**Noise weighting.** The noise power ``sigma^2(k)`` of each ring (rings merged
to at least 32 samples, :func:`shell_groups`) is the mean power of the
residuals of ``M0`` and ``M1`` there (both, so that neither hypothesis sets
the weights in its own favour): real noise is not white, and the model
errors that the map cannot explain (another projector, another map, the
CTF's errors) count as noise where they are (mostly the highest rings), not
at the band's average. Each ring is weighted by ``1 / sigma^2(k)`` and ``c0``, ``c1`` are
the weighted correlations of image and reprojection under ``M0`` and ``M1``
(``RSS = |I|^2 (1 - c^2)`` with ``a`` fitted).

**1. The gain must beat the noise** (likelihood-ratio test). If the input
orientation is right, the gain ``(RSS0 - RSS1) / sigma^2`` is chi-square with
3 degrees of freedom and ``RSS1 / sigma^2`` with ``D - 6``, so ::

    F = [(c1^2 - c0^2) / 3] / [(1 - c1^2) / (D - 6)]   ~   F(3, D - 6)

and the move is kept only when ``F`` exceeds the ``1 - alpha`` quantile of
``F(3, D - 6)`` (:func:`move_threshold`): where the input orientation is
right, a share ``alpha`` of the images still moves (a false move); a move of
``d`` standard errors is kept with a probability that grows with ``d`` (the
noncentrality is ``d^2``: about 0.7 at ``d = 3``, 0.98 at ``d = 4.5`` for
``alpha = 0.05``). The test is scale-free: noiseless images made by another
projector have a tiny residual but also a tiny gain.

**2. The gain must not come at the cost of part of the band.** A real
orientation error is seen at every frequency (the change of a projection
under a rotation grows with ``|k|``): correcting it improves, in expectation,
the fit of every part of the band. A model difference (the aliasing of a
real-space projector near Nyquist, an interpolation artefact) can be fitted
by a small rotation that gains at the highest rings and loses at lower ones.
The band is cut into 3 parts of equal width in ``|k|`` (:func:`band_parts`)
and the move is refused when the weighted gain of the lower or the middle
part, ``g = (RSS0 - RSS1) / sigma^2`` over that part, is below ``-9``
(:data:`PART_LOSS_LIMIT`). For a right move whose part has noncentrality
``l``, ``g ~ l + 2 sqrt(l) Z``; ``P(g < -9)`` is largest at ``l = 9`` and then
``Phi(-3) = 0.13 %``: a genuine move is refused by a part with probability at
most 0.13 % (0.3 % for the two). The top part is not checked: an input
orientation far off (beyond the resolution of the top rings, e.g. 8 deg off
with the move capped at 2 deg) decorrelates them, and a move towards the
truth need not improve them.

Correlations at or below 0 count as 0 (no fit at all).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import fdtri  # F quantile (scipy.stats is slow to import)

__all__ = ["MOVE_PARAMETERS", "NULL_PARAMETERS", "N_PARTS", "PART_LOSS_LIMIT", "band_parts",
           "move_statistic", "move_threshold", "shell_groups", "whitened_gains"]

MOVE_PARAMETERS = 3
"""Parameters the move adds to the null model (the three rotation angles)."""

NULL_PARAMETERS = 3
"""Parameters fitted in the null model (gray scale and the two shift components)."""

N_PARTS = 3
"""Parts of equal width in ``|k|`` the band is cut into for the consistency check
(all but the top one are checked)."""

PART_LOSS_LIMIT = 9.0
"""A kept move loses at most this (noise units, ``(RSS0 - RSS1) / sigma^2``) in any part."""


def move_statistic(corr_start: ArrayLike, corr_moved: ArrayLike, dof: float) -> NDArray:
    """F statistic of the correlation gain of a move (module docstring).

    Parameters
    ----------
    corr_start : array_like, shape (n,)
        Band correlation at the input orientation (shift fitted), ``c0``.
    corr_moved : array_like, shape (n,)
        Band correlation after the move, ``c1``.
    dof : float
        Real degrees of freedom ``D`` of the band (Fourier samples in it).

    Returns
    -------
    ndarray, shape (n,), float64
        ``F >= 0`` (0 where the move does not improve the fit; ``inf`` where
        the moved reprojection explains the band exactly).
    """
    c0 = np.clip(np.asarray(corr_start, dtype=np.float64), 0.0, 1.0)
    c1 = np.clip(np.asarray(corr_moved, dtype=np.float64), 0.0, 1.0)
    gain = np.maximum(c1 * c1 - c0 * c0, 0.0) / MOVE_PARAMETERS
    resid = (1.0 - c1 * c1) / _residual_dof(dof)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = gain / resid
    return np.where(gain > 0, np.where(resid > 0, f, np.inf), 0.0)


def move_threshold(alpha: float, dof: float) -> float:
    """Return the ``1 - alpha`` quantile of ``F(3, D - 6)``, which a kept move's F exceeds.

    Parameters
    ----------
    alpha : float
        False-move rate in [0, 1] (0: no move is kept, 1: no threshold).
    dof : float
        Real degrees of freedom ``D`` of the band.

    Returns
    -------
    float
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"the false-move rate alpha must be in [0, 1], got {alpha}")
    if alpha == 0.0:
        return np.inf
    if alpha == 1.0:
        return 0.0
    return float(fdtri(MOVE_PARAMETERS, _residual_dof(dof), 1.0 - alpha))


def _residual_dof(dof: float) -> float:
    return max(float(dof) - MOVE_PARAMETERS - NULL_PARAMETERS, 1.0)


def shell_groups(radius_px: ArrayLike, weights: ArrayLike, min_samples: float = 32.0) -> NDArray:
    """Group the band's samples into rings of at least ``min_samples`` Fourier samples.

    Parameters
    ----------
    radius_px : array_like, shape (S,)
        Radius ``|k| N`` of each band sample (Fourier pixels).
    weights : array_like, shape (S,)
        Full-plane samples each stored sample stands for (1 or 2, ``rfft2`` layout).
    min_samples : float
        Least weight of a group: unit rings are merged outwards until reached
        (the last group takes what is left).

    Returns
    -------
    ndarray of int, shape (S,)
        Group index of each sample, 0 at the lowest frequencies.
    """
    ring = np.rint(np.asarray(radius_px, dtype=np.float64)).astype(np.int64)
    count = np.bincount(ring, weights=np.asarray(weights, dtype=np.float64))
    group, acc, current = np.zeros(len(count), dtype=np.int64), 0.0, 0
    for r, c in enumerate(count):
        group[r] = current
        acc += c
        if acc >= min_samples:
            current, acc = current + 1, 0.0
    if acc > 0 and current > 0:  # a short last group joins the previous one
        group[group == current] = current - 1
    return group[ring]


def band_parts(radius_px: ArrayLike, band_px: float) -> NDArray:
    """Part (0 .. N_PARTS - 1) of each band sample: equal widths in ``|k|``, lowest first.

    Parameters
    ----------
    radius_px : array_like, shape (S,)
        Radius ``|k| N`` of each band sample (Fourier pixels).
    band_px : float
        Radius of the band ``f N`` (Fourier pixels).

    Returns
    -------
    ndarray of int, shape (S,)
    """
    r = np.asarray(radius_px, dtype=np.float64)
    return np.clip((N_PARTS * r / band_px).astype(np.int64), 0, N_PARTS - 1)


def whitened_gains(image: NDArray, start: NDArray, moved: NDArray, weights: NDArray,
                   groups: NDArray, parts: NDArray) -> tuple[NDArray, NDArray, NDArray]:
    """Correlations and per-part fit gains of a move, each ring weighted by 1 / its noise power.

    The noise power of each ring group is the mean power of the two models'
    residuals there (gray scale fitted; module docstring).

    Parameters
    ----------
    image, start, moved : ndarray, shape (n, S), complex
        Band samples of the images and of the reprojections at the input and
        moved parameters (shifts applied).
    weights : ndarray, shape (S,)
        Full-plane samples each stored sample stands for.
    groups : ndarray of int, shape (S,)
        Ring group of each sample (:func:`shell_groups`).
    parts : ndarray of int, shape (S,)
        Frequency part of each sample (0 .. P-1, :func:`band_parts`).

    Returns
    -------
    c_start, c_moved : ndarray, shape (n,)
        Whitened band correlations at the input and moved parameters.
    part_gain : ndarray, shape (n, P)
        ``(RSS_start - RSS_moved) / sigma^2`` over each part (whitened; the
        gray scale fitted at each model): negative where the move fits that
        part of the band worse.
    """
    onehot = np.zeros((len(groups), int(groups.max()) + 1))
    onehot[np.arange(len(groups)), groups] = weights

    def dot(a, b, w):
        return np.einsum("ns,ns->n", w * a.conj(), b).real

    def resid(p, w):
        a = dot(p, image, w) / np.maximum(dot(p, p, w), 1e-300)
        return np.abs(image - a[:, None] * p) ** 2

    both = 0.5 * (resid(start, weights) + resid(moved, weights))
    power = (both @ onehot) / np.maximum(onehot.sum(axis=0), 1e-300)
    scale = (np.abs(image) ** 2 @ weights) / weights.sum()  # mean image power per sample
    floor = np.maximum(1e-12 * scale, 1e-30)[:, None]  # exact fits: no infinite weights
    w = weights / np.maximum(power, floor)[:, groups]
    gain = w * (resid(start, w) - resid(moved, w))  # (n, S)
    sel = np.zeros((len(parts), int(parts.max()) + 1))
    sel[np.arange(len(parts)), parts] = 1.0

    def corr(p):
        den = np.sqrt(dot(p, p, w) * dot(image, image, w))
        return np.where(den > 0, dot(p, image, w) / np.where(den > 0, den, 1.0), 0.0)

    return corr(start), corr(moved), gain @ sel
