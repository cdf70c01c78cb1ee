"""Seeded phantom maps: sums of 3D Gaussian blobs, with exact analytic projections.

A :class:`Blobs` map is voxelised by :func:`blobs_volume` and projected
exactly (line integrals, no interpolation) by :func:`project_blobs`, so tests
know the true image of any orientation. Re-exported by
:mod:`xmipp_qc.core.simulate`.

Conventions of :mod:`xmipp_qc.core`: volumes ``[z, y, x]`` and images
``[y, x]`` with the origin at ``N // 2``; blob centres ``(x, y, z)`` and sigmas
in px; Xmipp ZYZ Euler angles in degrees; an image with Xmipp shift ``s`` is
``I(r) = P(r + s)``. Every random generator takes a ``seed`` (int, Generator or
None) and is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from xmipp_qc.core.simulate_motion import SeedLike, rng_from

__all__ = ["Blobs", "blobs_volume", "phantom_blobs", "phantom_volume", "project_blobs"]


@dataclass(frozen=True)
class Blobs:
    """A map as a sum of isotropic 3D Gaussians ``a * exp(-|p - c|^2 / (2 s^2))``.

    Attributes
    ----------
    centers : ndarray of shape (k, 3)
        Blob centres (x, y, z) in px relative to the box origin ``N // 2``.
    sigmas : ndarray of shape (k,)
        Standard deviations in px.
    amplitudes : ndarray of shape (k,)
        Peak densities.
    """

    centers: NDArray[np.float64]
    sigmas: NDArray[np.float64]
    amplitudes: NDArray[np.float64]

    @property
    def masses(self) -> NDArray[np.float64]:
        """Integrated density of each blob, shape (k,)."""
        return self.amplitudes * (2 * np.pi) ** 1.5 * self.sigmas**3

    def subset(self, keep: NDArray[np.bool_]) -> Blobs:
        """Return the blobs where ``keep`` is true."""
        return Blobs(self.centers[keep], self.sigmas[keep], self.amplitudes[keep])

    def mirrored(self) -> Blobs:
        """Return the enantiomer (x negated): the map of the opposite hand."""
        return Blobs(self.centers * np.array([-1.0, 1.0, 1.0]), self.sigmas, self.amplitudes)


def phantom_blobs(
    box: int, *, seed: SeedLike = 0, n_blobs: int = 12, symmetry: str = "c1"
) -> Blobs:
    """Random chiral arrangement of Gaussian blobs that fits in a box.

    Parameters
    ----------
    box : int
        Box size N in px (odd or even, at least 16).
    seed : int, Generator or None
        Random state.
    n_blobs : int
        Number of blobs of the asymmetric unit.
    symmetry : str
        Point group (Xmipp names, see :mod:`xmipp_qc.core.symmetry`); every blob
        is replicated by the group's matrices so that the map has that symmetry.

    Returns
    -------
    Blobs
        Centres within a radius of ``0.3 N``, sigmas ``0.035 N`` to ``0.06 N``
        (at least 1.5 px), amplitudes 0.5 to 1.5.
    """
    if box < 16:
        raise ValueError(f"box must be at least 16 px, got {box}")
    rng = rng_from(seed)
    radius = 0.3 * box
    direction = rng.normal(size=(n_blobs, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    centers = direction * radius * rng.uniform(0.15, 1.0, size=(n_blobs, 1)) ** (1 / 3)
    sigmas = np.maximum(rng.uniform(0.035, 0.06, size=n_blobs) * box, 1.5)
    amplitudes = rng.uniform(0.5, 1.5, size=n_blobs)
    if symmetry.lower() != "c1":
        from xmipp_qc.core.symmetry import symmetry_matrices

        mats = symmetry_matrices(symmetry)
        centers = np.concatenate([centers @ m.T for m in mats])
        sigmas = np.tile(sigmas, len(mats))
        amplitudes = np.tile(amplitudes, len(mats))
    return Blobs(centers, sigmas, amplitudes)


def _grid(box: int) -> NDArray[np.float64]:
    return np.arange(box, dtype=np.float64) - box // 2


def blobs_volume(blobs: Blobs, box: int, dtype: type = np.float64) -> NDArray:
    """Sample a blob map on the voxel grid.

    Parameters
    ----------
    blobs : Blobs
        The map.
    box : int
        Box size N.
    dtype : numpy dtype
        Output dtype.

    Returns
    -------
    ndarray of shape (N, N, N)
        Densities indexed ``[z, y, x]``, origin at ``N // 2``.
    """
    g = _grid(box)
    vol = np.zeros((box, box, box), dtype=np.float64)
    for (cx, cy, cz), s, a in zip(blobs.centers, blobs.sigmas, blobs.amplitudes):
        gx, gy, gz = (np.exp(-((g - c) ** 2) / (2 * s * s)) for c in (cx, cy, cz))
        vol += a * gz[:, None, None] * gy[None, :, None] * gx[None, None, :]
    return vol.astype(dtype, copy=False)


def phantom_volume(
    box: int,
    *,
    seed: SeedLike = 0,
    n_blobs: int = 12,
    symmetry: str = "c1",
    dtype: type = np.float64,
) -> NDArray:
    """Voxelised :func:`phantom_blobs` map, shape (N, N, N), indexed ``[z, y, x]``."""
    blobs = phantom_blobs(box, seed=seed, n_blobs=n_blobs, symmetry=symmetry)
    return blobs_volume(blobs, box, dtype)


def project_blobs(
    blobs: Blobs,
    angles: NDArray,
    shifts: NDArray | None = None,
    *,
    box: int,
    dtype: type = np.float64,
) -> NDArray:
    """Exact line-integral projections of a blob map.

    Parameters
    ----------
    blobs : Blobs
        The map.
    angles : ndarray of shape (n, 3)
        Xmipp Euler angles (rot, tilt, psi) in degrees.
    shifts : ndarray of shape (n, 2), optional
        Xmipp image shifts in px: the image is ``I(r) = P(r + s)``.
    box : int
        Image size N.
    dtype : numpy dtype
        Output dtype.

    Returns
    -------
    ndarray of shape (n, N, N)
        ``P(x, y) = integral of V(E.T @ [x, y, z]) dz``: each blob projects to a
        2D Gaussian of peak ``sqrt(2 pi) s a`` centred at ``(E c)_xy - s``.
    """
    from xmipp_qc.core.geometry import euler_to_matrix

    mats = euler_to_matrix(np.atleast_2d(angles))
    pos = np.einsum("nij,kj->nki", mats[:, :2, :], blobs.centers)  # (n, k, 2)
    if shifts is not None:
        pos = pos - np.asarray(shifts, dtype=np.float64)[:, None, :]
    g = _grid(box)
    two_s2 = 2 * blobs.sigmas[None, :, None] ** 2
    gx = np.exp(-((g[None, None, :] - pos[..., 0:1]) ** 2) / two_s2)
    gy = np.exp(-((g[None, None, :] - pos[..., 1:2]) ** 2) / two_s2)
    weight = np.sqrt(2 * np.pi) * blobs.sigmas * blobs.amplitudes
    return np.einsum("nky,nkx,k->nyx", gy, gx, weight).astype(dtype, copy=False)

