"""What input compare reprojections can take: maps, and each image with its alignment.

Numeric policy, shared by the ``xmipp-qc`` command and the protocols through
:mod:`xmipp_qc.core.pipeline`. A map that cannot be compared stops the run with
a sentence saying why (:func:`map_problem`; the caller adds the file name). An
image that cannot be compared is kept and flagged with its reason
(:func:`image_input_reasons`), never dropped and never allowed to distort the
scores of the others. Conventions of :mod:`xmipp_qc.core`: shifts in px of the
working sampling, Xmipp ZYZ angles in degrees.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from xmipp_qc.core.reasons import reason

__all__ = [
    "MAX_ABS_VALUE",
    "MAX_SHIFT_FRACTION",
    "MIN_BOX",
    "image_input_reasons",
    "map_problem",
]

#: Smallest working box (px) the comparison supports: projection matching needs
#: a polar mask radius above 4 px (box 8 fails there; 9, 10, 11 and 12 were run
#: with given and with matched angles).
MIN_BOX = 9

#: A given shift longer than this fraction of the box (vector norm, px) is not
#: an alignment but a damaged or foreign value: the particle centre would sit
#: half way to the edge of the image or beyond.
MAX_SHIFT_FRACTION = 0.25

#: Largest image value processed: beyond it sums of squares over a box
#: overflow float32 (``(1e12)^2 * 512^2 ~ 3e29`` still fits; ``1e19`` does not).
#: Real cryo-EM images are below 1e5 in any unit.
MAX_ABS_VALUE = 1e12


def map_problem(volume: ArrayLike) -> str | None:
    """Why a map cannot be compared with images, or None.

    Parameters
    ----------
    volume : array_like, shape (N, N, N)
        The map ``[z, y, x]``, at any sampling.

    Returns
    -------
    str or None
        E.g. ``"map has 1 non-finite voxel (NaN or Inf)"``,
        ``"map is constant (every voxel 0): nothing to reproject"``,
        ``"map box of 2 px is too small (need at least 9 px)"``.
    """
    v = np.asarray(volume)
    if v.ndim != 3 or len(set(v.shape)) != 1:
        return f"map must be a cubic 3D array, got shape {v.shape}"
    if v.shape[0] < MIN_BOX:
        return f"map box of {v.shape[0]} px is too small (need at least {MIN_BOX} px)"
    bad = int(np.size(v) - np.count_nonzero(np.isfinite(v)))
    if bad:
        return f"map has {bad} non-finite voxel{'s' * (bad > 1)} (NaN or Inf)"
    lo, hi = float(np.min(v)), float(np.max(v))
    if lo == hi:
        return f"map is constant (every voxel {lo:g}): nothing to reproject"
    if max(abs(lo), abs(hi)) > MAX_ABS_VALUE:
        return f"map values too large (max |value| {max(abs(lo), abs(hi)):.3g})"
    return None


def image_input_reasons(images: NDArray, angles: NDArray | None,
                        shifts: NDArray | None) -> NDArray[np.str_]:
    """Why each image cannot be compared as given ("" when it can).

    Parameters
    ----------
    images : ndarray, shape (n, N, N)
        Images at the working sampling.
    angles : ndarray, shape (n, 3), or None
        Given Xmipp angles (degrees); None when they are to be found by matching.
    shifts : ndarray, shape (n, 2), or None
        Given shifts (px, working sampling); None when they are not used.

    Returns
    -------
    ndarray of str, shape (n,)
        :func:`~xmipp_qc.core.reasons.reason` strings: ``non_finite_image``,
        ``image_values_too_large:<max |value|>``, ``non_finite_angles``,
        ``non_finite_shift`` or ``given_shift_too_large:<length in px>`` (the first
        that applies; categories in :data:`xmipp_qc.core.reasons.REASONS`).
    """
    x = np.asarray(images)
    n, box = len(x), x.shape[-1]
    reasons = np.full(n, "", dtype=object)
    flat = x.reshape(n, -1)
    finite = np.isfinite(flat).all(axis=1)
    peak = np.abs(np.where(finite[:, None], flat, 0)).max(axis=1) if flat.size else np.zeros(n)
    checks: list[tuple[NDArray, object]] = []
    if shifts is not None:
        s = np.asarray(shifts, dtype=np.float64)
        s_ok = np.isfinite(s).all(axis=1)
        norm = np.hypot(*np.where(s_ok[:, None], s, 0.0).T)
        limit = MAX_SHIFT_FRACTION * box
        checks.append((s_ok & (norm > limit),
                       lambda i: reason("given_shift_too_large", norm[i])))
        checks.append((~s_ok, reason("non_finite_shift")))
    if angles is not None:
        checks.append((~np.isfinite(np.asarray(angles, dtype=np.float64)).all(axis=1),
                       reason("non_finite_angles")))
    checks.append((finite & (peak > MAX_ABS_VALUE),
                   lambda i: reason("image_values_too_large", peak[i])))
    checks.append((~finite, reason("non_finite_image")))
    for mask, why in checks:  # later checks take precedence
        for i in np.flatnonzero(mask):
            reasons[i] = why(i) if callable(why) else why
    return reasons.astype(str)
