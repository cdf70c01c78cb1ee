"""Rotations in Xmipp's ZYZ Euler convention (see :mod:`xmipp_qc.core`).

* Euler angles <-> matrices: :func:`euler_to_matrix`, :func:`matrix_to_euler`.
* Symmetry-aware distances: :func:`rotation_distance` (geodesic angle of the
  relative rotation; Xmipp's ``SymList::computeDistance`` instead averages the
  angles between corresponding matrix rows) and :func:`direction_distance`
  (Xmipp's ``projdir_mode``). Orientation ``E`` is equivalent to ``E @ S.T`` for
  proper group elements ``S`` and to ``diag(1, 1, -1) @ E @ S.T`` for improper
  ones (:func:`equivalent_orientations`).
* Scipion ``Transform`` 4x4 matrices as the Xmipp plugin writes them
  (``ALIGN_PROJ``: the inverse ``[[E.T, E.T @ s], [0, 1]]``; ``ALIGN_2D``:
  ``[[Rz(psi), s], [0, 1]]`` with a mirror negating row 0 of the 2x2 block):
  :func:`angles_shifts_to_transform`, :func:`transform_to_angles_shifts`,
  :func:`alignment_2d_to_transform`, :func:`transform_to_alignment_2d`,
  :func:`unflip_projection_alignment`.
"""

from __future__ import annotations

import warnings

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.spatial.transform import Rotation

__all__ = [
    "alignment_2d_to_transform",
    "angles_shifts_to_transform",
    "direction_distance",
    "equivalent_orientations",
    "euler_to_matrix",
    "matrix_to_euler",
    "rotation_distance",
    "transform_to_alignment_2d",
    "transform_to_angles_shifts",
    "unflip_projection_alignment",
]


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
        ``(rot, tilt, psi)`` in degrees with tilt in [0, 180]. At tilt 0 or 180
        only ``rot + psi`` (or ``rot - psi``) is defined; psi is then 0.
    """
    m = np.asarray(matrices, dtype=np.float64)
    mt = np.transpose(m.reshape(-1, 3, 3), (0, 2, 1))
    with warnings.catch_warnings():
        # Gimbal lock (tilt 0 or 180) is expected, e.g. for the pole of a
        # gallery: scipy then sets the third angle to 0, which is what we want.
        warnings.filterwarnings("ignore", message="Gimbal lock", category=UserWarning)
        ang = Rotation.from_matrix(mt).as_euler("ZYZ", degrees=True)
    return ang[0] if m.ndim == 2 else ang


# --------------------------------------------------------------------------
# Symmetry-aware angular distances
# --------------------------------------------------------------------------
_FLIP_Z = np.diag([1.0, 1.0, -1.0])


def _pair_matrices(angles1: ArrayLike, angles2: ArrayLike) -> tuple:
    """Broadcast two angle arrays (3,) or (n, 3) to matrices (n, 3, 3) each."""
    a1 = np.asarray(angles1, dtype=np.float64)
    a2 = np.asarray(angles2, dtype=np.float64)
    if a1.shape[-1:] != (3,) or a2.shape[-1:] != (3,) or a1.ndim > 2 or a2.ndim > 2:
        raise ValueError(f"angles must have shape (3,) or (n, 3), got {a1.shape} and {a2.shape}")
    b1, b2 = np.broadcast_arrays(a1.reshape(-1, 3), a2.reshape(-1, 3))
    return euler_to_matrix(b1), euler_to_matrix(b2), a1.ndim == 1 and a2.ndim == 1


def _group(symmetry: str) -> tuple:
    """Proper (p, 3, 3) and improper (q, 3, 3) matrices of a point group."""
    from xmipp_qc.core.symmetry import symmetry_matrices

    mats = symmetry_matrices(symmetry)
    improper = np.linalg.det(mats) < 0
    return mats[~improper], mats[improper]


def equivalent_orientations(angles: ArrayLike, symmetry: str = "c1") -> NDArray[np.float64]:
    """Euler matrices giving exactly the same projection as ``angles`` for a symmetric map.

    Parameters
    ----------
    angles : array_like, shape (3,) or (n, 3)
        Xmipp ``(rot, tilt, psi)`` in degrees.
    symmetry : str
        Xmipp point-group name (see :mod:`xmipp_qc.core.symmetry`).

    Returns
    -------
    ndarray of float64, shape (k, 3, 3) or (n, k, 3, 3)
        ``E @ S.T`` for each proper ``S`` and ``diag(1, 1, -1) @ E @ S.T`` for each
        improper ``S`` (a proper rotation: the improper element mirrors the map
        along the beam, which the line integral does not see). All are proper.
    """
    a = np.asarray(angles, dtype=np.float64)
    if a.shape[-1:] != (3,) or a.ndim > 2:
        raise ValueError(f"angles must have shape (3,) or (n, 3), got {a.shape}")
    e = euler_to_matrix(a.reshape(-1, 3))[:, None]  # (n, 1, 3, 3)
    proper, improper = _group(symmetry)
    out = [e @ np.transpose(proper, (0, 2, 1))]
    if len(improper):
        out.append(_FLIP_Z @ e @ np.transpose(improper, (0, 2, 1)))
    out = np.concatenate(out, axis=1)
    return out[0] if a.ndim == 1 else out


def rotation_distance(
    angles1: ArrayLike, angles2: ArrayLike, symmetry: str = "c1"
) -> NDArray[np.float64]:
    """Geodesic angle between orientations, minimised over the map's symmetry.

    Parameters
    ----------
    angles1, angles2 : array_like, shape (3,) or (n, 3)
        Xmipp ``(rot, tilt, psi)`` in degrees; broadcast against each other.
    symmetry : str
        Xmipp point-group name; equivalent orientations as in
        :func:`equivalent_orientations`.

    Returns
    -------
    float or ndarray of float64, shape (n,)
        Smallest rotation angle in degrees, in [0, 180], between ``E1`` and any
        orientation equivalent to ``E2`` (accurate to ~1e-12 degrees near 0).
    """
    e1, e2, scalar = _pair_matrices(angles1, angles2)
    proper, improper = _group(symmetry)
    rel = np.einsum("nji,njk->nik", e1, e2)  # E1.T E2; tr(E1.T E2 S.T) = <E1.T E2, S>
    cands = [rel]
    mats = [proper]
    if len(improper):
        cands.append(np.einsum("nji,jl,nlk->nik", e1, _FLIP_Z, e2))
        mats.append(improper)
    traces = np.concatenate([np.einsum("nij,kij->nk", c, m) for c, m in zip(cands, mats)], axis=1)
    best = np.argmax(traces, axis=1)
    all_mats = np.concatenate(mats)
    use_flip = best >= len(proper)
    e2b = np.where(use_flip[:, None, None], np.einsum("ij,njk->nik", _FLIP_Z, e2), e2)
    e2b = np.einsum("nij,nkj->nik", e2b, all_mats[best])  # E2 S.T (or flipped)
    half_sin = np.linalg.norm(e1 - e2b, axis=(1, 2)) / (2.0 * np.sqrt(2.0))
    half_cos = np.sqrt(np.clip((1.0 + traces[np.arange(len(best)), best]) / 4.0, 0.0, None))
    ang = np.degrees(2.0 * np.arctan2(half_sin, half_cos))
    return ang[0] if scalar else ang


def direction_distance(
    angles1: ArrayLike, angles2: ArrayLike, symmetry: str = "c1", *, mirror: bool = False
) -> NDArray[np.float64]:
    """Angle between projection directions, minimised over the map's symmetry.

    Parameters
    ----------
    angles1, angles2 : array_like, shape (3,) or (n, 3)
        Xmipp ``(rot, tilt, psi)`` in degrees (psi is irrelevant); broadcast.
    symmetry : str
        Xmipp point-group name. The direction ``d`` (third row of ``E``) is
        equivalent to ``S d`` for proper ``S`` and ``-S d`` for improper ``S``
        (same projection image, see :func:`equivalent_orientations`).
    mirror : bool
        Also treat ``d`` and ``-d`` as equivalent (their projections are mirror
        images), as projection matching with mirrors and Xmipp's asymmetric units
        of improper groups do.

    Returns
    -------
    float or ndarray of float64, shape (n,)
        Angle in degrees, in [0, 180] (in [0, 90] with ``mirror``).
    """
    e1, e2, scalar = _pair_matrices(angles1, angles2)
    proper, improper = _group(symmetry)
    d1, d2 = e1[:, 2, :], e2[:, 2, :]
    copies = np.concatenate([np.einsum("kij,nj->nki", proper, d2),
                             -np.einsum("kij,nj->nki", improper, d2)], axis=1)  # fmt: skip
    if mirror:
        copies = np.concatenate([copies, -copies], axis=1)
    dots = np.einsum("ni,nki->nk", d1, copies)
    best = copies[np.arange(len(d1)), np.argmax(dots, axis=1)]
    cross = np.linalg.norm(np.cross(d1, best), axis=1)
    ang = np.degrees(np.arctan2(cross, np.einsum("ni,ni->n", d1, best)))
    return ang[0] if scalar else ang


# --------------------------------------------------------------------------
# Scipion Transform (4x4) <-> Xmipp alignment parameters
# --------------------------------------------------------------------------
# Scipion's xmipp3 plugin (convert.py: matrixFromGeometry / rowToAlignment /
# alignmentToRow) stores, for shifts s = (shiftX, shiftY, shiftZ) in px:
#   ALIGN_PROJ  M = inverse([[E, -s], [0, 1]]) = [[E.T, E.T @ s], [0, 1]]
#   ALIGN_2D    M = [[Rz(psi), s], [0, 1]], Rz(psi)[:2, :2] = [[c, s], [-s, c]];
#               a mirror (flip) negates the first row of the 2x2 block only
#               (the x translation is kept) and sets M[2, 2] = -1.


def _as_transforms(matrix: ArrayLike) -> tuple:
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape[-2:] != (4, 4) or m.ndim not in (2, 3):
        raise ValueError(f"transform matrices must have shape (4, 4) or (n, 4, 4), got {m.shape}")
    if not np.allclose(m[..., 3, :], [0.0, 0.0, 0.0, 1.0], atol=1e-6):
        raise ValueError("the last row of a transform matrix must be (0, 0, 0, 1)")
    return m.reshape(-1, 4, 4), m.ndim == 2


def _check_rotation(r: NDArray, what: str) -> None:
    gram = np.einsum("nji,njk->nik", r, r)
    if not np.allclose(gram, np.eye(r.shape[-1]), atol=1e-5):
        raise ValueError(f"{what} is not orthonormal (scaled or sheared transform)")
    if np.any(np.linalg.det(r) < 0):
        raise ValueError(f"{what} has det < 0 (a mirror); not a valid projection alignment")


def angles_shifts_to_transform(
    angles: ArrayLike, shifts: ArrayLike, *, inverse: bool = True
) -> NDArray[np.float64]:
    """Scipion 4x4 transform of Xmipp angles and shifts (``matrixFromGeometry``).

    Parameters
    ----------
    angles : array_like, shape (3,) or (n, 3)
        Xmipp ``(rot, tilt, psi)`` in degrees.
    shifts : array_like, shape (2,), (3,), (n, 2) or (n, 3)
        ``(shiftX, shiftY[, shiftZ])`` in px, Xmipp's sign (see :mod:`xmipp_qc.core`).
    inverse : bool
        True for ``ALIGN_PROJ`` (Scipion stores the inverse,
        ``M = [[E.T, E.T @ s], [0, 1]]``); False for ``ALIGN_3D``
        (``M = [[E, s], [0, 1]]``).

    Returns
    -------
    ndarray of float64, shape (4, 4) or (n, 4, 4)
    """
    a = np.asarray(angles, dtype=np.float64)
    s = np.asarray(shifts, dtype=np.float64)
    if s.shape[-1] not in (2, 3) or a.shape[-1:] != (3,):
        raise ValueError(f"need angles (..., 3) and shifts (..., 2 or 3), got {a.shape}, {s.shape}")
    s3 = np.zeros(np.broadcast_shapes(a.shape, s.shape[:-1] + (3,)))
    s3[..., : s.shape[-1]] = s
    e = euler_to_matrix(np.broadcast_to(a, s3.shape).reshape(-1, 3))
    s3 = s3.reshape(-1, 3)
    out = np.zeros((len(e), 4, 4))
    out[:, 3, 3] = 1.0
    if inverse:
        out[:, :3, :3] = np.transpose(e, (0, 2, 1))
        out[:, :3, 3] = np.einsum("nji,nj->ni", e, s3)
    else:
        out[:, :3, :3] = e
        out[:, :3, 3] = s3
    return out[0] if a.ndim == 1 and s.ndim == 1 else out


def transform_to_angles_shifts(matrix: ArrayLike, *, inverse: bool = True) -> tuple:
    """Xmipp angles and shifts of a Scipion 4x4 transform (``geometryFromMatrix``).

    Parameters
    ----------
    matrix : array_like, shape (4, 4) or (n, 4, 4)
        Scipion ``Transform.getMatrix()``; rigid, rotation part det +1.
    inverse : bool
        True for ``ALIGN_PROJ`` (the stored matrix is the inverse), False for
        ``ALIGN_3D``; see :func:`angles_shifts_to_transform`.

    Returns
    -------
    angles : ndarray of float64, shape (3,) or (n, 3)
        Xmipp ``(rot, tilt, psi)`` in degrees, tilt in [0, 180].
    shifts : ndarray of float64, shape (2,) or (n, 2)
        ``(shiftX, shiftY)`` in px (shiftZ, zero for images, is dropped).

    Raises
    ------
    ValueError
        For a wrong shape, a non-rigid matrix or a mirror (det < 0), which
        Scipion's Xmipp plugin also rejects for projection alignments.
    """
    m, single = _as_transforms(matrix)
    _check_rotation(m[:, :3, :3], "the rotation part")
    if inverse:
        e = np.transpose(m[:, :3, :3], (0, 2, 1))
        s = np.einsum("nij,nj->ni", e, m[:, :3, 3])
    else:
        e, s = m[:, :3, :3], m[:, :3, 3]
    angles = matrix_to_euler(e)
    return (angles[0], s[0, :2]) if single else (angles, s[:, :2])


def alignment_2d_to_transform(
    psi: ArrayLike, shifts: ArrayLike, flip: ArrayLike = False
) -> NDArray[np.float64]:
    """Scipion 4x4 ``ALIGN_2D`` transform of an in-plane alignment (``rowToAlignment``).

    Parameters
    ----------
    psi : float or array_like, shape (n,)
        In-plane angle in degrees (Xmipp ``anglePsi``, plus ``angleRot`` if set).
    shifts : array_like, shape (2,) or (n, 2)
        ``(shiftX, shiftY)`` in px, Xmipp's sign.
    flip : bool or array_like of bool, shape (n,)
        Xmipp ``flip`` (mirror in x).

    Returns
    -------
    ndarray of float64, shape (4, 4) or (n, 4, 4)
        ``[[Rz(psi), s], [0, 1]]``; with flip, row 0 of the 2x2 block negated
        and ``M[2, 2] = -1`` (so the 3x3 block keeps det +1), as Scipion writes.
    """
    p = np.asarray(psi, dtype=np.float64)
    s = np.asarray(shifts, dtype=np.float64)
    f = np.asarray(flip, dtype=bool)
    if s.shape[-1:] != (2,):
        raise ValueError(f"shifts must have shape (2,) or (n, 2), got {s.shape}")
    n = np.broadcast_shapes(p.shape, s.shape[:-1], f.shape)
    p, f = np.broadcast_to(p, n).reshape(-1), np.broadcast_to(f, n).reshape(-1)
    s = np.broadcast_to(s, n + (2,)).reshape(-1, 2)
    out = euler_to_matrix(np.column_stack([np.zeros_like(p), np.zeros_like(p), p]))
    out = np.concatenate([np.concatenate([out, np.zeros((len(p), 3, 1))], axis=2),
                          np.tile([[[0.0, 0.0, 0.0, 1.0]]], (len(p), 1, 1))], axis=1)  # fmt: skip
    out[:, :2, 3] = s
    out[f, 0, :2] *= -1.0
    out[f, 2, 2] = -1.0
    return out if n else out[0]


def transform_to_alignment_2d(matrix: ArrayLike) -> tuple:
    """In-plane alignment of a Scipion 4x4 ``ALIGN_2D`` transform (``alignmentToRow``).

    Parameters
    ----------
    matrix : array_like, shape (4, 4) or (n, 4, 4)
        ``Transform.getMatrix()`` of a 2D-aligned image.

    Returns
    -------
    psi : float or ndarray of float64, shape (n,)
        Degrees in (-180, 180].
    shifts : ndarray of float64, shape (2,) or (n, 2)
        ``(shiftX, shiftY)`` in px (the translation column, never negated).
    flip : bool or ndarray of bool, shape (n,)
        True when the 2x2 block has det < 0 (mirror in x).
    """
    m, single = _as_transforms(matrix)
    r = m[:, :2, :2].copy()
    flip = np.linalg.det(r) < 0
    r[flip, 0, :] *= -1.0
    _check_rotation(r, "the 2x2 in-plane block")
    psi = np.degrees(np.arctan2(r[:, 0, 1], r[:, 0, 0]))
    shifts = m[:, :2, 3].copy()
    return (float(psi[0]), shifts[0], bool(flip[0])) if single else (psi, shifts, flip)


def unflip_projection_alignment(
    angles: ArrayLike, shifts: ArrayLike, flip: ArrayLike
) -> tuple:
    """Remove Xmipp's ``flip`` from a 3D alignment, as Scipion's ``rowToAlignment``.

    ``(rot, tilt, psi, shiftX, shiftY, flip=1)`` is the same projection geometry
    as ``(rot, tilt + 180, -psi, -shiftX, shiftY, flip=0)``.

    Parameters
    ----------
    angles : array_like, shape (3,) or (n, 3)
        Xmipp ``(rot, tilt, psi)`` in degrees.
    shifts : array_like, shape (2,) or (n, 2)
        ``(shiftX, shiftY)`` in px.
    flip : bool or array_like of bool, shape (n,)
        Xmipp ``flip`` flags.

    Returns
    -------
    angles, shifts : ndarray of float64
        Same shapes as the inputs, with flipped rows converted.
    """
    a = np.array(angles, dtype=np.float64)
    s = np.array(shifts, dtype=np.float64)
    f = np.broadcast_to(np.asarray(flip, dtype=bool), a.shape[:-1])
    a[f, 1] += 180.0
    a[f, 2] *= -1.0
    s[f, 0] *= -1.0
    return a, s
