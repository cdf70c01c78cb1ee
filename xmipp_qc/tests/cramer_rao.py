"""The information limit of an orientation estimate: the Cramér-Rao bound.

Used by the accuracy tests (``tests/core/test_alignment_panel.py``) and by
``benchmarks/alignment.py --panel`` to tell how close to the true angles ANY
unbiased estimator can get on given images, so that a refinement error can be
judged against what the data allow rather than against a fixed number.

Model of one image (conventions of :mod:`xmipp_qc.core`: Xmipp ZYZ Euler
angles in degrees, Xmipp shifts in px with ``I(r) = P(r + s)``)::

    I = a * (CTF * P(w, s)) + b + white Gaussian noise of variance sigma^2

with the orientation ``Rotation.from_rotvec(w) @ E`` (``w`` a small rotation
vector, radians, as in :class:`xmipp_qc.core.refine.LocalRefiner`), the shift
``s``, and the gray model ``a, b`` as nuisance parameters. The Fisher
information over the 7 parameters is ``J = D^T D / sigma^2``, with ``D`` the
derivatives of the noiseless image over its pixels (central differences of
the independent line projector :func:`xmipp_qc.tests.panel.line_projections`,
at ``a = 1, b = 0``). The bound on the covariance of ``w`` is the 3 x 3 block
of ``J^-1`` (shift and gray fitted at the same time). The predicted error of
an efficient estimator is the length of ``w ~ N(0, C)``: its median is what
the tests compare with.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from xmipp_qc.core.ctf import apply_ctf
from xmipp_qc.core.geometry import euler_to_matrix, matrix_to_euler
from xmipp_qc.tests.panel import line_projections

_STEP_DEG = 0.25  # central-difference step of the angles (degrees)
_STEP_PX = 0.25  # central-difference step of the shifts (px)


def image_derivatives(volume: NDArray, angles: NDArray, shifts: NDArray,
                      ctf: NDArray | None = None) -> NDArray[np.float64]:  # fmt: skip
    """Derivatives of one noiseless image by its 7 parameters, shape (7, N*N).

    Parameters
    ----------
    volume : ndarray of shape (N, N, N)
        The map ``[z, y, x]``.
    angles : ndarray of shape (3,)
        Xmipp Euler angles, degrees.
    shifts : ndarray of shape (2,)
        Xmipp shift, px.
    ctf : ndarray of shape (N, N//2+1), optional
        The image's CTF (``rfft2`` layout).

    Returns
    -------
    ndarray of shape (7, N*N)
        Rows: ``d/dw_x, d/dw_y, d/dw_z`` (per radian), ``d/ds_x, d/ds_y`` (per
        px), ``d/da`` (the image itself) and ``d/db`` (ones).
    """
    e = euler_to_matrix(np.asarray(angles, dtype=np.float64).reshape(3))
    h = np.radians(_STEP_DEG)
    ang, sh = [], []
    for j in range(3):
        for sign in (1.0, -1.0):
            turn = Rotation.from_rotvec(sign * h * np.eye(3)[j]).as_matrix()
            ang.append(matrix_to_euler(turn @ e))
            sh.append(shifts)
    for j in range(2):
        for sign in (1.0, -1.0):
            ang.append(angles)
            sh.append(np.asarray(shifts, float) + sign * _STEP_PX * np.eye(2)[j])
    ang.append(angles)
    sh.append(shifts)
    p = line_projections(volume, np.reshape(ang, (-1, 3)), np.reshape(sh, (-1, 2)))
    p = p if ctf is None else apply_ctf(p, ctf)
    p = p.reshape(len(p), -1)
    d_rot = (p[0:6:2] - p[1:6:2]) / (2 * h)
    d_shift = (p[6:10:2] - p[7:10:2]) / (2 * _STEP_PX)
    return np.vstack([d_rot, d_shift, p[10:], np.ones((1, p.shape[1]))])


def orientation_bound(volume: NDArray, angles: NDArray, shifts: NDArray, sigma: float,
                      ctf: NDArray | None = None) -> NDArray[np.float64]:  # fmt: skip
    """Cramér-Rao bound on the rotation-vector covariance of each image, (n, 3, 3), rad^2.

    Parameters
    ----------
    volume : ndarray of shape (N, N, N)
    angles : ndarray of shape (n, 3)
        True Xmipp Euler angles, degrees.
    shifts : ndarray of shape (n, 2)
        True Xmipp shifts, px.
    sigma : float
        Standard deviation of the white noise (image units).
    ctf : ndarray of shape (n, N, N//2+1), optional
        Each image's CTF.

    Returns
    -------
    ndarray of shape (n, 3, 3)
        The rotation block of the inverse Fisher information (shift and gray
        fitted jointly).
    """
    out = np.empty((len(angles), 3, 3))
    for i, (a, s) in enumerate(zip(angles, shifts)):
        d = image_derivatives(volume, a, s, None if ctf is None else ctf[i])
        fisher = d @ d.T / sigma**2
        out[i] = np.linalg.inv(fisher)[:3, :3]
    return out


def predicted_median_error(bound: NDArray, samples: int = 200, seed: int = 0) -> float:
    """Median geodesic error (degrees) of an efficient estimator with covariances ``bound``.

    Parameters
    ----------
    bound : ndarray of shape (n, 3, 3)
        Rotation-vector covariances, rad^2 (:func:`orientation_bound`).
    samples : int
        Gaussian draws per image.
    seed : int
        Random state.

    Returns
    -------
    float
        Median over images and draws of ``|w|``, ``w ~ N(0, bound_i)``, degrees.
    """
    rng = np.random.default_rng(seed)
    chol = np.linalg.cholesky(bound)
    w = np.einsum("nij,nsj->nsi", chol, rng.normal(size=(len(bound), samples, 3)))
    return float(np.degrees(np.median(np.linalg.norm(w, axis=-1))))

