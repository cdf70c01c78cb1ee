"""Sub-sample peaks of sampled correlations.

Used by projection matching (:mod:`xmipp_qc.core.matching`) for psi and shift,
and by the direction polish (:mod:`xmipp_qc.core.direction_polish`) for psi.
Offsets are in units of the sample spacing.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["GRID_3X3", "parabolic_peak", "quadratic_peak_3x3", "two_psi_peaks"]

#: Offsets ``(u, v)`` of a 3 x 3 grid, row by row (v = -1, 0, 1), shape (9, 2).
GRID_3X3 = np.array([(u, v) for v in (-1, 0, 1) for u in (-1, 0, 1)], dtype=np.float64)
_QUAD = np.linalg.pinv(np.column_stack([np.ones(9), GRID_3X3, GRID_3X3**2,
                                        GRID_3X3[:, 0] * GRID_3X3[:, 1]]))  # fmt: skip


def parabolic_peak(y0: NDArray, y1: NDArray, y2: NDArray) -> tuple:
    """Vertex of the parabola through three equally spaced samples around a maximum.

    Parameters
    ----------
    y0, y1, y2 : ndarray, same shape
        Values at offsets -1, 0 and +1 (``y1`` the sampled maximum).

    Returns
    -------
    offset : ndarray
        Vertex position in [-0.5, 0.5] samples from ``y1``; 0 where the
        samples are not concave.
    value : ndarray
        The parabola's value at ``offset``.
    """
    curv = y0 - 2 * y1 + y2
    concave = curv < 0
    offset = np.where(concave, 0.5 * (y0 - y2) / np.where(concave, curv, -1.0), 0.0)
    offset = np.clip(offset, -0.5, 0.5)
    return offset, y1 - 0.25 * (y0 - y2) * offset


def quadratic_peak_3x3(values: NDArray) -> NDArray[np.float64]:
    """Peak offset of a quadratic fitted to samples on :data:`GRID_3X3`.

    Parameters
    ----------
    values : ndarray of shape (n, 9)
        Samples at :data:`GRID_3X3`.

    Returns
    -------
    ndarray of shape (n, 2)
        ``(u, v)`` of the fitted maximum clipped to [-1, 1]^2; the best sample's
        offset where the fit has no maximum.
    """
    _, bu, bv, du, dv, duv = _QUAD @ values.T.astype(np.float64)
    det = 4 * du * dv - duv**2
    ok = (du < 0) & (det > 1e-12 * (np.abs(du) + np.abs(dv)) ** 2)
    safe = np.where(ok, det, 1.0)
    u = np.where(ok, (-2 * dv * bu + duv * bv) / safe, 0.0)
    v = np.where(ok, (-2 * du * bv + duv * bu) / safe, 0.0)
    fallback = GRID_3X3[values.argmax(axis=1)]
    return np.where(ok[:, None], np.clip(np.stack([u, v], 1), -1, 1), fallback)


def two_psi_peaks(c: NDArray, min_sep_deg: float) -> NDArray:
    """Best and distinct second psi of correlations over psi, offsets and neighbours.

    Parameters
    ----------
    c : ndarray of shape (m, K, n_psi, n_o, n_nb)
        Correlations of m images x K candidates at ``n_psi`` psi samples over
        [0, 360) deg, ``n_o`` shift offsets and ``n_nb`` neighbour directions.
    min_sep_deg : float
        The second peak is the best among psi more than this many degrees from
        the best.

    Returns
    -------
    ndarray of shape (5, m, K, n_nb)
        Rows: best value, its psi index, its offset index, the second value
        (-inf if no psi is far enough), its psi index.
    """
    n_psi = c.shape[2]
    io = c.argmax(axis=3)
    cs = np.take_along_axis(c, io[:, :, :, None], axis=3)[:, :, :, 0]  # (m, K, n_psi, n_nb)
    ip = cs.argmax(axis=2)
    best = np.take_along_axis(cs, ip[:, :, None], axis=2)[:, :, 0]
    ioff = np.take_along_axis(io, ip[:, :, None], axis=2)[:, :, 0]
    j = np.arange(n_psi)[None, None, :, None]
    sep = np.abs((j - ip[:, :, None, :] + n_psi / 2) % n_psi - n_psi / 2) * (360.0 / n_psi)
    cs = np.where(sep > min_sep_deg, cs, -np.inf)
    ip2 = cs.argmax(axis=2)
    second = np.take_along_axis(cs, ip2[:, :, None], axis=2)[:, :, 0]
    return np.stack([best, ip, ioff, second, ip2])
