"""Sub-grid polish of a matched projection direction.

Projection matching (:mod:`xmipp_qc.core.matching`) finds the best direction
on a discrete gallery; its grid error (up to about half a step) adds to the
noise error. This module refines the whole orientation off the grid from the
correlations at the gallery directions around the best one:

1. A :class:`Stencil` lists, once per gallery, the directions within
   :func:`stencil_radius` of every gallery direction (2.05 steps, at least
   10.25 deg, at most 4 steps), over all
   orientations equivalent under the symmetry group
   (:func:`xmipp_qc.core.geometry.equivalent_orientations`). Each neighbour
   ``j`` of direction ``i`` (orientation ``E_i = E(rot_i, tilt_i, 0)``, Xmipp
   ZYZ) is stored in the image frame of ``E_i`` as ``M_j = Rz(h_j) G(u_j, v_j) E_i``:
   tangent-plane coordinates ``(u, v) = theta (cos phi, sin phi)`` in radians
   (azimuthal equidistant) of its direction in that frame,
   ``p = E_i d_j = (sin theta cos phi, sin theta sin phi, cos theta)``, the
   geodesic rotation ``G`` with ``G p = e_z`` and an in-plane twist ``h_j``
   (degrees).
2. :func:`stencil_correlations` gives, per image, the correlation of every
   stencil reference at the image's shift, maximised over psi in a window
   around the psi predicted from the best one.
3. :func:`polish_orientations` fits a cubic polynomial of those correlations
   in ``(u, v)`` (10 coefficients from about 13 points: a quadratic would be
   biased by the asymmetry of the correlation peak, about 0.3 deg at a 5 deg
   step on exact projections), takes its local maximum by Newton steps from the
   grid point (clipped to one step; the grid point if the fit has no maximum
   there), fits the in-plane angle of each neighbour's best orientation
   (``psi_j + h_j - psi_0``, degrees) linearly in ``(u, v)`` and returns
   ``Rz(psi_0 + t*) G(u*, v*) E_i`` as Xmipp Euler angles.

The rotation ``Rz(a)`` is ``euler_to_matrix((0, 0, a))``, so ``Rz(psi) E_i`` is
the orientation ``(rot_i, tilt_i, psi)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from xmipp_qc.core.geometry import equivalent_orientations, euler_to_matrix, matrix_to_euler
from xmipp_qc.core.peaks import parabolic_peak
from xmipp_qc.core.polar import rotational_correlation

__all__ = ["Stencil", "build_stencil", "polish_orientations", "stencil_correlations",
           "stencil_radius"]  # fmt: skip

_STENCIL_STEPS = 2.05  # stencil radius in angular steps (12 neighbours on Xmipp's grid)
_STENCIL_MIN_DEG = 10.25  # ... at least (a finer gallery fits the same region, denser)
_STENCIL_MAX_STEPS = 4.0  # ... at most (bounds the stencil size of very fine galleries)
_PSI_SAMPLES = 1440  # psi samples of the neighbour correlations (0.25 deg)

_MAX_MOVE_STEPS = 1.0  # the polished direction stays within this many steps


@dataclass(frozen=True)
class Stencil:
    """Neighbours of every gallery direction, in the image frame of that direction.

    Attributes
    ----------
    index : ndarray of int, shape (n_ref, K)
        Gallery index of each stencil point; column 0 is the direction itself;
        rows are padded with it (``valid`` False).
    valid : ndarray of bool, shape (n_ref, K)
    uv : ndarray of shape (n_ref, K, 2)
        Tangent-plane coordinates ``(u, v)`` in radians (module docstring).
    twist : ndarray of shape (n_ref, K)
        In-plane angle ``h`` in degrees of the neighbour's (symmetry-equivalent)
        orientation relative to ``G(u, v) E_i``.
    cubic : ndarray of shape (n_ref, 10, K)
        Least-squares operator to the coefficients of the cubic polynomial in
        ``w = (u, v) / step`` (monomials ``1, u, v, u^2, v^2, uv, u^3, u^2 v,
        u v^2, v^3``).
    lin : ndarray of shape (n_ref, 3, K)
        Least-squares operator to ``(a, b_u, b_v)`` of ``a + b . w``.
    frames : ndarray of shape (n_ref, 3, 3)
        ``E_i``, the orientation ``(rot_i, tilt_i, 0)`` of each gallery direction.
    step : float
        The gallery's angular step in radians.
    """

    index: NDArray[np.int64]
    valid: NDArray[np.bool_]
    uv: NDArray[np.float64]
    twist: NDArray[np.float64]
    cubic: NDArray[np.float64]
    lin: NDArray[np.float64]
    frames: NDArray[np.float64]
    step: float


def _geodesic(uv: NDArray) -> NDArray[np.float64]:
    """Rotations ``G`` (..., 3, 3) with ``G p = e_z`` for the direction ``p`` at ``(u, v)``."""
    u, v = uv[..., 0], uv[..., 1]
    vec = np.stack([v, -u, np.zeros_like(u)], axis=-1)
    return Rotation.from_rotvec(vec.reshape(-1, 3)).as_matrix().reshape(uv.shape[:-1] + (3, 3))


def _pairs(e: NDArray, copies: NDArray, owner: NDArray, near: list) -> tuple:
    """Stencil points of all directions, deduplicated, sorted by (centre, order found).

    Returns centre (p,), gallery index (p,), ``(u, v)`` (p, 2) and twist (p,) degrees;
    each centre comes first in its group, one point per direction.
    """
    n = len(e)
    counts = np.array([len(ids) for ids in near])
    centre = np.concatenate([np.arange(n), np.repeat(np.arange(n), counts)])
    ids = np.concatenate([ids for ids in near if len(ids)]).astype(np.int64)
    mats = np.concatenate([e, copies[ids]])
    index = np.concatenate([np.arange(n), owner[ids]])
    p = np.einsum("pij,pj->pi", e[centre], mats[:, 2, :])
    theta = np.arccos(np.clip(p[:, 2], -1.0, 1.0))
    rho = np.hypot(p[:, 0], p[:, 1])
    uv = p[:, :2] * np.where(rho > 1e-12, theta / np.maximum(rho, 1e-12), 0.0)[:, None]
    key = np.column_stack([centre, np.round(uv, 9)])
    _, first = np.unique(key, axis=0, return_index=True)  # first = centre itself
    keep = first[np.lexsort((first, centre[first]))]
    centre, index, uv, mats = centre[keep], index[keep], uv[keep], mats[keep]
    rz = mats @ np.transpose(e[centre], (0, 2, 1)) @ np.transpose(_geodesic(uv), (0, 2, 1))
    return centre, index, uv, np.degrees(np.arctan2(rz[:, 0, 1], rz[:, 0, 0]))


def stencil_radius(step_deg: float) -> float:
    """Stencil radius in degrees for a gallery step in degrees.

    2.05 steps (the 12 nearest directions of Xmipp's grid, enough for the 10
    coefficients of the cubic), widened to 10.25 deg for finer galleries so that
    they fit the correlation over the same region as a 5 deg one with more
    samples (over 2 steps of 3 deg the fit is noisier: a 3 deg gallery was
    worse than a 5 deg one on the small maps of the panel), and at most 4 steps.
    """
    steps = min(max(_STENCIL_STEPS, _STENCIL_MIN_DEG / step_deg), _STENCIL_MAX_STEPS)
    return steps * step_deg


def build_stencil(angles: NDArray, symmetry: str, step_deg: float,
                  radius_deg: float | None = None) -> Stencil:  # fmt: skip
    """Stencils of all gallery directions (symmetry-aware).

    Parameters
    ----------
    angles : ndarray of shape (n_ref, 3)
        Gallery orientations ``(rot, tilt, 0)``, Xmipp ZYZ, degrees.
    symmetry : str
        Xmipp point group of the map.
    step_deg : float
        Angular step of the gallery, degrees.
    radius_deg : float, optional
        Neighbours within this angle (between directions) in degrees; default
        :func:`stencil_radius`.

    Returns
    -------
    Stencil
    """
    n = len(angles)
    flat = np.column_stack([angles[:, :2], np.zeros(n)])
    e = euler_to_matrix(flat)
    copies = equivalent_orientations(flat, symmetry)  # (n, k, 3, 3)
    owner = np.repeat(np.arange(n), copies.shape[1])
    copies = copies.reshape(-1, 3, 3)
    radius = stencil_radius(step_deg) if radius_deg is None else radius_deg
    chord = 2 * math.sin(math.radians(radius) / 2)
    near = cKDTree(copies[:, 2, :]).query_ball_point(e[:, 2, :], chord)
    centre, idx, uv_p, twist_p = _pairs(e, copies, owner, near)
    start = np.searchsorted(centre, np.arange(n))
    col = np.arange(len(centre)) - start[centre]
    k = int(col.max()) + 1
    index = np.repeat(np.arange(n)[:, None], k, axis=1)
    valid = np.zeros((n, k), dtype=bool)
    uv, twist = np.zeros((n, k, 2)), np.zeros((n, k))
    index[centre, col], valid[centre, col], uv[centre, col], twist[centre, col] = (
        idx, True, uv_p, twist_p)  # fmt: skip
    step = math.radians(step_deg)
    design = _monomials(uv / step) * valid[..., None]  # padded rows are zero
    cubic = np.linalg.pinv(design)  # ... and so are their columns here
    lin = np.linalg.pinv(design[..., :3])
    return Stencil(index, valid, uv, twist, cubic, lin, e, step)


def _monomials(w: NDArray) -> NDArray[np.float64]:
    """Return the 10 monomials of degree <= 3 of ``w = (u, v)``, (..., 2) -> (..., 10)."""
    u, v = w[..., 0], w[..., 1]
    return np.stack([np.ones_like(u), u, v, u * u, v * v, u * v,
                     u**3, u * u * v, u * v * v, v**3], axis=-1)  # fmt: skip


def stencil_correlations(g: NDArray, refs: NDArray, den: NDArray, psi_pred: NDArray,
                         n_theta: int, window_deg: float) -> tuple:  # fmt: skip
    """Correlation of each image with its stencil references, maximised over psi near a prediction.

    Parameters
    ----------
    g : ndarray of shape (n, n_rings, n_m), complex
        Angular coefficients of each image brought into register at its shift
        (:meth:`xmipp_qc.core.polar.PolarGrid.ring_coefficients`).
    refs : ndarray of shape (n, K, n_m, n_rings), complex
        Weighted reference coefficients (:attr:`xmipp_qc.core.gallery.Level.coeffs`).
    den : ndarray of shape (n, K)
        Normalisation (``||CTF P|| ||I||``) of each correlation.
    psi_pred : ndarray of shape (n, K)
        Predicted psi of each reference, degrees.
    n_theta : int
        Ring length of the polar grid.
    window_deg : float
        Psi is searched within this many degrees of the prediction.

    Returns
    -------
    corr : ndarray of shape (n, K)
        Peak correlation (parabolic interpolation over 0.25 deg psi samples).
    psi : ndarray of shape (n, K)
        Its psi, degrees in [0, 360).
    """
    x = np.einsum("nkm,njmk->njm", g, np.conj(refs))
    c = rotational_correlation(x, _PSI_SAMPLES, n_theta, axis=-1)  # (n, K, psi)
    d_psi = 360.0 / _PSI_SAMPLES
    half = int(math.ceil(window_deg / d_psi))
    centre = np.rint(psi_pred / d_psi).astype(np.int64)
    j = (centre[..., None] + np.arange(-half - 1, half + 2)) % _PSI_SAMPLES
    cw = np.take_along_axis(c, j, axis=-1).astype(np.float64)
    i = cw[..., 1:-1].argmax(axis=-1)[..., None] + 1
    off, peak = parabolic_peak(*(np.take_along_axis(cw, i + o, axis=-1)[..., 0]
                                 for o in (-1, 0, 1)))  # fmt: skip
    psi = ((np.take_along_axis(j, i, axis=-1)[..., 0] + off) * d_psi) % 360.0
    return peak / den, psi


def _cubic_peak(coef: NDArray, limit: float, iterations: int = 6) -> tuple:
    """Local maximum ``w`` (n, 2) near 0 of cubics with coefficients (10, n); ok (n,) bool.

    Newton steps from ``w = 0``, each clipped to ``|w| <= limit``; ``ok`` is False
    (and ``w = 0``) where a Hessian on the way is not negative definite.
    """
    _, bu, bv, cuu, cvv, cuv, d30, d21, d12, d03 = coef
    w = np.zeros((coef.shape[1], 2))
    ok = np.ones(coef.shape[1], dtype=bool)
    for _ in range(iterations):
        x, y = w[:, 0], w[:, 1]
        gx = bu + 2 * cuu * x + cuv * y + 3 * d30 * x * x + 2 * d21 * x * y + d12 * y * y
        gy = bv + 2 * cvv * y + cuv * x + d21 * x * x + 2 * d12 * x * y + 3 * d03 * y * y
        hxx, hyy = 2 * cuu + 6 * d30 * x + 2 * d21 * y, 2 * cvv + 6 * d03 * y + 2 * d12 * x
        hxy = cuv + 2 * d21 * x + 2 * d12 * y
        det = hxx * hyy - hxy**2
        ok &= (hxx < 0) & (det > 1e-12 * (np.abs(hxx) + np.abs(hyy)) ** 2)
        safe = np.where(ok, det, 1.0)
        w = w - np.where(ok, 1.0, 0.0)[:, None] * np.stack(
            [hyy * gx - hxy * gy, hxx * gy - hxy * gx], axis=1) / safe[:, None]  # fmt: skip
        w *= np.minimum(1.0, limit / np.maximum(np.hypot(w[:, 0], w[:, 1]), 1e-12))[:, None]
    return np.where(ok[:, None], w, 0.0), ok


def polish_orientations(stencil: Stencil, ref: NDArray, psi0: NDArray, corr: NDArray,
                        psi: NDArray) -> tuple:  # fmt: skip
    """Off-grid orientations from the stencil correlations of the best gallery directions.

    Parameters
    ----------
    stencil : Stencil
    ref : ndarray of int, shape (n,)
        Best gallery direction of each image.
    psi0 : ndarray of shape (n,)
        Its psi, degrees.
    corr, psi : ndarray of shape (n, K)
        Correlation and best psi (degrees) of each stencil point of ``ref``
        (:func:`stencil_correlations`; padded columns are ignored).

    Returns
    -------
    angles : ndarray of shape (n, 3)
        Xmipp ``(rot, tilt, psi)`` in degrees; ``(rot_ref, tilt_ref, psi0)``
        where the fitted correlation has no maximum.
    moved : ndarray of shape (n,)
        Angle in degrees between the polished direction and the grid direction
        (at most ``_MAX_MOVE_STEPS`` steps).
    """
    valid = stencil.valid[ref]
    c = np.where(valid, corr, 0.0)
    w, ok = _cubic_peak(np.einsum("npk,nk->pn", stencil.cubic[ref], c), _MAX_MOVE_STEPS)
    t = (psi + stencil.twist[ref] - psi0[:, None] + 180.0) % 360.0 - 180.0
    a, bu, bv = np.einsum("npk,nk->pn", stencil.lin[ref], np.where(valid, t, 0.0))
    twist = np.where(ok, a + bu * w[:, 0] + bv * w[:, 1], 0.0)
    flat = np.zeros((len(ref), 3))
    flat[:, 2] = psi0 + twist
    e = stencil.frames[ref]
    grid = matrix_to_euler(e)
    grid[:, 2] = (psi0 + 180.0) % 360.0 - 180.0  # the range of matrix_to_euler's psi
    mats = euler_to_matrix(flat) @ _geodesic(w * stencil.step) @ e
    angles = np.where(ok[:, None], matrix_to_euler(mats), grid)
    return angles, np.degrees(np.hypot(w[:, 0], w[:, 1]) * stencil.step)
