"""Metrics of movie-alignment trajectories, used by :mod:`.trajectories`.

Frame matching, superposition (translation, optionally the best proper
rotation), per-axis correlation, spread ratio and RELION's accumulated motion.
Conventions of :mod:`xmipp_qc.core`: ``(x, y)`` columns in px, degrees, frames
numbered from 1.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "accumulated_motion", "axis_correlations", "best_rotation_deg", "match_frames",
    "spread_ratio", "superpose",
]

_TINY = 1e-12


def axis_correlations(ref_c: NDArray, sec_c: NDArray) -> NDArray[np.float64]:
    """Pearson correlation of each axis of two centred trajectories, never NaN.

    Parameters
    ----------
    ref_c, sec_c : ndarray of shape (F, 2)
        Centred (zero-mean) ``(x, y)`` trajectories in px.

    Returns
    -------
    ndarray of shape (2,)
        ``(corr_x, corr_y)`` in [-1, 1]. An axis whose variance is below 1e-12
        px^2 in both runs gets 1.0; in only one run, 0.0.
    """
    n = ref_c.shape[0]
    va = np.einsum("ij,ij->j", ref_c, ref_c) / n
    vb = np.einsum("ij,ij->j", sec_c, sec_c) / n
    cov = np.einsum("ij,ij->j", ref_c, sec_c) / n
    out = np.empty(2)
    for k in range(2):
        if va[k] < _TINY or vb[k] < _TINY:
            out[k] = 1.0 if (va[k] < _TINY and vb[k] < _TINY) else 0.0
        else:
            out[k] = min(1.0, max(-1.0, cov[k] / math.sqrt(va[k] * vb[k])))
    return out


def best_rotation_deg(ref_c: NDArray, sec_c: NDArray) -> float:
    """Angle of the proper rotation that best maps ``sec_c`` onto ``ref_c``.

    The 2-D Kabsch problem ``min_R sum ||ref_c - R sec_c||^2`` over proper
    rotations (det R = +1, never a reflection) has the closed form
    ``theta = atan2(sum(sx ry - sy rx), sum(sx rx + sy ry))``, identical to an
    SVD solution with the determinant fix ``diag(1, sign det)``.

    Parameters
    ----------
    ref_c, sec_c : ndarray of shape (F, 2)
        Centred ``(x, y)`` trajectories in px.

    Returns
    -------
    float
        Counter-clockwise angle in degrees, in (-180, 180]; 0.0 if undefined.
    """
    cross = float(np.sum(sec_c[:, 0] * ref_c[:, 1] - sec_c[:, 1] * ref_c[:, 0]))
    dot = float(np.sum(sec_c * ref_c))
    if abs(cross) < _TINY and abs(dot) < _TINY:
        return 0.0
    return math.degrees(math.atan2(cross, dot))


def superpose(
    ref: ArrayLike, sec: ArrayLike, *, allow_rotation: bool = False
) -> tuple[NDArray[np.float64], NDArray[np.float64], float]:
    """Superpose a secondary trajectory on a reference one.

    Parameters
    ----------
    ref, sec : array_like of shape (F, 2)
        ``(x, y)`` shifts in px of the same F frames, in the same units.
    allow_rotation : bool
        Also apply the best proper rotation of :func:`best_rotation_deg`.

    Returns
    -------
    ref_c : ndarray of shape (F, 2)
        Reference minus its mean (px).
    sec_fit : ndarray of shape (F, 2)
        Secondary minus its mean, rotated when ``allow_rotation`` (px).
    angle_deg : float
        The best-fit rotation angle, computed (and reported) in both modes.
    """
    r = np.asarray(ref, dtype=np.float64)
    s = np.asarray(sec, dtype=np.float64)
    if r.shape != s.shape or r.ndim != 2 or r.shape[1] != 2:
        raise ValueError(f"ref and sec must both have shape (F, 2); got {r.shape}, {s.shape}")
    ref_c = r - r.sum(axis=0) / r.shape[0]
    sec_c = s - s.sum(axis=0) / s.shape[0]
    angle = best_rotation_deg(ref_c, sec_c)
    if allow_rotation and angle != 0.0:
        c, sn = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        sec_c = sec_c @ np.array([[c, sn], [-sn, c]])
    return ref_c, sec_c, angle


def accumulated_motion(
    frames: ArrayLike, shifts: ArrayLike, *, dose_per_frame: Optional[float] = None,
    pre_exposure: float = 0.0, early_dose: float = 4.0,
) -> tuple[float, float, float]:
    """Accumulated motion as RELION's ``rlnAccumMotionTotal/Early/Late``.

    Parameters
    ----------
    frames : array_like of shape (F,)
        1-based frame numbers (any order; sorted here).
    shifts : array_like of shape (F, 2)
        Cumulative ``(x, y)`` shifts in px.
    dose_per_frame : float or None
        Dose per frame in e/A^2. None or <= 0: early = 0 and late = total.
    pre_exposure : float
        Dose before the first frame (e/A^2).
    early_dose : float
        Accumulated dose (e/A^2) separating early from late motion (RELION's
        ``--dose_motionstats_cutoff``, default 4).

    Returns
    -------
    total, early, late : float
        ``total`` is the sum of the Euclidean steps between consecutive frames
        (px). The step ending at frame n is early when the dose at the end of
        frame n, ``pre_exposure + n * dose_per_frame``, is at most
        ``early_dose``; ``late = total - early``.
    """
    f = np.asarray(frames, dtype=np.float64)
    s = np.asarray(shifts, dtype=np.float64)
    if f.size < 2:
        return 0.0, 0.0, 0.0
    if not (f[1:] > f[:-1]).all():
        order = np.argsort(f, kind="stable")
        f, s = f[order], s[order]
    d = s[1:] - s[:-1]
    steps = np.sqrt(d[:, 0] ** 2 + d[:, 1] ** 2)
    total = float(steps.sum())
    if dose_per_frame is None or not dose_per_frame > 0:
        return total, 0.0, total
    cutoff_frame = (early_dose - pre_exposure) / dose_per_frame
    early = float(steps[f[1:] <= cutoff_frame + 1e-9].sum())
    return total, early, total - early


def match_frames(frames_ref: ArrayLike, frames_sec: ArrayLike) -> tuple[NDArray, NDArray]:
    """Find the frames both runs aligned, matched by frame number.

    Parameters
    ----------
    frames_ref, frames_sec : array_like of shape (F,) and (G,)
        Frame numbers (unique within each run).

    Returns
    -------
    i_ref, i_sec : ndarray of int, shape (C,)
        ``frames_ref[i_ref] == frames_sec[i_sec]``, in increasing frame order
        (array order when both runs list the same frames).
    """
    frames_ref, frames_sec = np.asarray(frames_ref), np.asarray(frames_sec)
    if frames_ref.shape == frames_sec.shape and np.array_equal(frames_ref, frames_sec):
        idx = np.arange(frames_ref.size)
        return idx, idx
    _, i_ref, i_sec = np.intersect1d(frames_ref, frames_sec, return_indices=True)
    return i_ref, i_sec


def spread_ratio(ref_c: NDArray, sec_c: NDArray) -> float:
    """RMS distance from the centroid, secondary / reference (``scale`` of the consensus)."""
    spread_ref = math.sqrt(float(np.einsum("ij,ij->", ref_c, ref_c)) / ref_c.shape[0])
    spread_sec = math.sqrt(float(np.einsum("ij,ij->", sec_c, sec_c)) / sec_c.shape[0])
    if max(spread_ref, spread_sec) < 1e-6:
        return 1.0
    return min(spread_sec / max(spread_ref, _TINY), 1e12)
