"""Rotations in Xmipp's ZYZ Euler convention (see :mod:`xmipp_qc.core`)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.spatial.transform import Rotation

__all__ = ["euler_to_matrix", "matrix_to_euler"]


def euler_to_matrix(angles: ArrayLike) -> NDArray[np.float64]:
    """Rotation matrices of Xmipp Euler angles.

    Parameters
    ----------
    angles : array_like of shape (3,) or (n, 3)
        ``(rot, tilt, psi)`` in degrees, Xmipp ZYZ convention.

    Returns
    -------
    ndarray of shape (3, 3) or (n, 3, 3)
        ``E = Rz(psi) Ry(tilt) Rz(rot)`` as Xmipp's ``Euler_angles2matrix``; a
        projection integrates ``V(E.T @ [x, y, z])`` along z.
    """
    a = np.asarray(angles, dtype=np.float64)
    mats = Rotation.from_euler("ZYZ", a.reshape(-1, 3), degrees=True).as_matrix()
    mats = np.transpose(mats, (0, 2, 1))
    return mats[0] if a.ndim == 1 else mats


def matrix_to_euler(matrices: ArrayLike) -> NDArray[np.float64]:
    """Xmipp Euler angles of rotation matrices (inverse of :func:`euler_to_matrix`).

    Parameters
    ----------
    matrices : array_like of shape (3, 3) or (n, 3, 3)
        Proper rotation matrices in Xmipp's convention.

    Returns
    -------
    ndarray of shape (3,) or (n, 3)
        ``(rot, tilt, psi)`` in degrees with tilt in [0, 180].
    """
    m = np.asarray(matrices, dtype=np.float64)
    mt = np.transpose(m.reshape(-1, 3, 3), (0, 2, 1))
    ang = Rotation.from_matrix(mt).as_euler("ZYZ", degrees=True)
    return ang[0] if m.ndim == 2 else ang
