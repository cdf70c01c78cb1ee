"""Exact, slow real-space reference projector (line integrals by ray sampling).

Conventions are those of :mod:`xmipp_qc.core`: volumes ``[z, y, x]``, origin at
voxel ``N // 2``, Xmipp ZYZ Euler angles with ``P(x, y) = integral of
V(E.T @ [x, y, z]) dz``. Used to validate the Fourier projector
(:mod:`xmipp_qc.core.projection`, which re-exports :func:`project_real_space`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from xmipp_qc.core.geometry import euler_to_matrix

__all__ = ["project_real_space"]


def project_real_space(volume: ArrayLike, angles: ArrayLike, *, order: int = 1) -> NDArray:
    """Slow reference projector: sums of interpolated samples along each ray.

    Samples ``V(E.T @ [x, y, z])`` at unit steps of z covering the box diagonal
    (zero outside the box) and sums them; exact for ``E = I``.

    Parameters
    ----------
    volume : array_like of shape (N, N, N)
        Real map ``[z, y, x]``, origin at ``N // 2``.
    angles : array_like of shape (n, 3) or (3,)
        Xmipp Euler angles in degrees.
    order : int
        Spline order of :func:`scipy.ndimage.map_coordinates` (0 to 5).

    Returns
    -------
    ndarray of shape (n, N, N), float64
        Line integrals in voxel units, origin at ``N // 2``.
    """
    vol = np.asarray(volume, dtype=np.float64)
    if vol.ndim != 3 or len(set(vol.shape)) != 1:
        raise ValueError(f"volume must be a cubic 3D array, got shape {vol.shape}")
    if order not in range(6):
        raise ValueError(f"order must be 0..5, got {order}")
    n = vol.shape[0]
    mats = np.atleast_3d(euler_to_matrix(np.atleast_2d(angles))).reshape(-1, 3, 3)
    coeffs = ndimage.spline_filter(vol, order, mode="grid-constant") if order > 1 else vol
    g = np.arange(n, dtype=np.float64) - n // 2
    half = int(np.ceil(n * np.sqrt(3) / 2)) + 1
    zs = np.arange(-half, half + 1, dtype=np.float64)
    yy, xx = np.meshgrid(g, g, indexing="ij")
    out = np.zeros((mats.shape[0], n, n))
    for i, e in enumerate(mats):
        for z in zs:
            pts = e.T @ np.stack([xx.ravel(), yy.ravel(), np.full(xx.size, z)])  # (x, y, z)
            zyx = pts[::-1] + n // 2
            out[i] += ndimage.map_coordinates(
                coeffs, zyx, order=order, mode="grid-constant", prefilter=False
            ).reshape(n, n)
    return out
