"""Interpolation of a complex 3D spectrum block: trilinear and cubic B-spline gathers.

Used by :class:`xmipp_qc.core.projection.FourierProjector`. The block is a
C-ordered ``[z, y, x]`` array flattened to 1D with strides ``(sz, sy, 1)``;
a sample is given by the flat index of its first tap (``base``) and its
fractional position ``(z, y, x)`` inside the cell, in voxel units of the block.

``linear``
    Trilinear interpolation (2 taps per axis, nodes ``floor .. floor+1``).
``cubic``
    Cubic B-spline interpolation (4 taps per axis, nodes ``floor-1 ..
    floor+2``) of B-spline *coefficients*: the caller prefilters the data (the
    projector does it exactly in real space, see its module docstring).

Speed: neighbouring taps are packed in the rows of one table
(:func:`pack_taps`) so that one ``np.take`` reads several taps, and the
weighting runs on long tap-major arrays with complex weights (no casts inside
the products).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["TAPS", "bspline_weights", "interp_cubic", "interp_linear", "pack_taps"]

TAPS = {"linear": 2, "cubic": 4}  # taps per axis of each interpolation


def bspline_weights(t: NDArray) -> NDArray:
    """Cubic B-spline weights of the nodes ``floor-1 .. floor+2``.

    Parameters
    ----------
    t : ndarray of any shape, float32 or float64
        Fractional positions in [0, 1) (voxel units) inside the cell.

    Returns
    -------
    ndarray of shape (4,) + t.shape, dtype of ``t``
        Weights of the 4 nodes; they sum to 1.
    """
    t2 = t * t
    u = 1 - t
    w = np.empty((4,) + t.shape, dtype=t.dtype)
    np.multiply(u * u, u * (1 / 6), out=w[0])
    np.multiply(t2, t * (1 / 6), out=w[3])
    np.multiply(t2, 0.5 * t - 1, out=w[1])
    w[1] += 2 / 3
    np.subtract(1 - w[0], w[1] + w[3], out=w[2])
    return w


def interp_linear(table: NDArray, rows: NDArray, base: NDArray, frac: NDArray) -> NDArray:
    """Trilinear interpolation at P points.

    Parameters
    ----------
    table : ndarray of shape (L, K), complex
        Packed table of :func:`pack_taps` (K = 1, 2, 4 or 8 taps per row).
    rows : ndarray of shape (8 // K,), intp
        Row offsets of the taps not packed in a row, (z, y) order.
    base : ndarray of shape (P,), intp
        Flat indices of the lower corners (nodes ``floor``).
    frac : ndarray of shape (3, P), float
        Fractions (z, y, x) inside the cells, in [0, 1).

    Returns
    -------
    ndarray of shape (P,), dtype of ``table``
    """
    idx = base[:, None] + rows if rows.size > 1 else base
    g = np.take(table, idx, axis=0).reshape(base.size, -1)  # (P, 8)
    g = np.ascontiguousarray(g.T).reshape(2, 2, 2, -1)  # (z, y, x, P)
    t = frac.astype(table.dtype)  # complex weights: no casting inside the products
    g = g[:, :, 0] + (g[:, :, 1] - g[:, :, 0]) * t[2]
    g = g[:, 0] + (g[:, 1] - g[:, 0]) * t[1]
    return g[0] + (g[1] - g[0]) * t[0]


def interp_cubic(table: NDArray, rows: NDArray, base: NDArray, frac: NDArray) -> NDArray:
    """Tricubic B-spline interpolation at P points.

    Parameters
    ----------
    table : ndarray of shape (L, 4) or (L, 1), complex
        Table of :func:`pack_taps` with the 4 x taps packed in a row, or unpacked.
    rows : ndarray of shape (16,) or (64,), intp
        Row offsets: the 16 (z, y) offsets for a packed table, all 64 (z, y, x)
        offsets (x fastest) for an unpacked one.
    base : ndarray of shape (P,), intp
        Flat indices of the first tap (nodes ``floor-1`` on every axis).
    frac : ndarray of shape (3, P), float
        Fractions (z, y, x) inside the cells, in [0, 1).

    Returns
    -------
    ndarray of shape (P,), dtype of ``table``

    Notes
    -----
    The gather is ``(z, y, P, x)``. z and y are contracted first, on the
    real view of that array (contiguous float products and sums, with each
    weight repeated over the 4 x taps and the real and imaginary parts), x
    last, on only 4 values per point (84 multiply-adds per point, as for any
    separable order, but no strided pass over the 64 taps).
    """
    p = base.size
    if table.shape[1] == 4:
        g = np.take(table, rows[:, None] + base, axis=0, mode="clip")  # (16, P, 4)
    else:  # unpacked table: rows hold all 64 offsets, x fastest
        g = np.take(table[:, 0], rows.reshape(16, 1, 4) + base[:, None], mode="clip")
    real = g.real.dtype
    wz, wy, wx = bspline_weights(frac.astype(real, copy=False)).transpose(1, 0, 2)  # (4, P) each
    gf = g.view(real).reshape(4, 4, 8 * p)  # (z, y, P * (4 x taps, re/im))
    gf *= np.repeat(wz, 8, axis=1)[:, None, :]
    h = gf[0] + gf[1]
    h += gf[2]
    h += gf[3]  # (y, 8P)
    h *= np.repeat(wy, 8, axis=1)
    hy = h[0] + h[1]
    hy += h[2]
    hy += h[3]
    hx = hy.view(g.dtype).reshape(p, 4)  # (P, x) complex
    out = hx[:, 0] * wx[0]
    for i in range(1, 4):
        out += hx[:, i] * wx[i]
    return out


def pack_taps(
    flat: NDArray, taps: int, strides: NDArray, max_bytes: int
) -> tuple[NDArray, NDArray]:
    """Pack neighbouring taps of a flattened block into the rows of one table.

    Row ``i`` of the table holds ``flat[i + o]`` for the packed offsets ``o``:
    the innermost x taps, then y and z while ``max_bytes`` allows (at most x
    for cubic, where wider rows do not pay), so one ``take`` reads several taps.

    Parameters
    ----------
    flat : ndarray of shape (L,), complex
        The C-ordered block, flattened.
    taps : int
        Taps per axis (2 linear, 4 cubic).
    strides : ndarray of shape (3,), int
        Flat strides (sz, sy, 1) of the block.
    max_bytes : int
        Memory allowed for the table; 0 leaves it unpacked.

    Returns
    -------
    table : ndarray of shape (L, K), dtype of ``flat``
        K = taps ** k for k packed axes (1 when unpacked).
    rows : ndarray of shape (taps ** (3 - k),), intp
        Offsets of the rows still needed per point, (z, y) order.
    """
    sz, sy, _ = strides
    axes = [np.arange(taps) * sz, np.arange(taps) * sy, np.arange(taps)]
    k = 0
    max_k = 3 if taps == 2 else 1
    while k < max_k and flat.nbytes * taps ** (k + 1) <= max_bytes:
        k += 1
    if k == 0:  # no room: unpacked, every tap is a row offset
        return flat[:, None], sum(np.ix_(*axes)).ravel().astype(np.intp)
    packed = axes[3 - k :]
    rows = axes[: 3 - k]
    p_off = sum(np.ix_(*packed)).ravel() if k > 1 else packed[0]
    r_off = sum(np.ix_(*rows)).ravel() if len(rows) > 1 else (rows[0] if rows else np.zeros(1))
    ext = np.concatenate([flat, np.zeros(int(p_off.max()), flat.dtype)])
    table = np.stack([ext[o : o + flat.size] for o in p_off], axis=1)
    return table, np.asarray(r_off, dtype=np.intp)
