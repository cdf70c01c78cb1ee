"""Reference gallery of one map for projection matching, in polar Fourier form.

:class:`Gallery` projects a map at the directions of
:func:`xmipp_qc.core.sampling.sample_directions` (the asymmetric unit of the
symmetry group, ``psi = 0``; Xmipp ZYZ Euler angles in degrees, see
:mod:`xmipp_qc.core`), masks the projections with a disk inside ``N / 2`` (so
that their support is invariant under in-plane rotation) and stores the
angular Fourier coefficients of their rings (:mod:`xmipp_qc.core.polar`) for a
fine and a coarse search level. It is built once per map and reused for every
chunk of images by :func:`xmipp_qc.core.matching.match_images`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from xmipp_qc.core.direction_polish import Stencil, build_stencil
from xmipp_qc.core.geometry import equivalent_orientations, euler_to_matrix
from xmipp_qc.core.polar import PolarGrid, apply_mask, soft_disk
from xmipp_qc.core.sampling import directions_to_angles, sample_directions
from xmipp_qc.core.search_band import MIN_COARSE_RINGS, default_band
from xmipp_qc.core.symmetry import symmetry_matrices

__all__ = ["Gallery"]

_CROWTHER = 2.0  # coarse band x coarse step (rad) x particle diameter (px)


@dataclass(frozen=True)
class Level:
    """References of one search level.

    Attributes
    ----------
    angles : ndarray of shape (n_ref, 3)
        Orientations ``(rot, tilt, 0)`` in degrees.
    coeffs : ndarray of shape (n_ref, n_m, n_rings), complex64
        ``w_k b_m(k)``: ring weight times angular Fourier coefficient ``m`` of
        ring ``k`` (:meth:`xmipp_qc.core.polar.PolarGrid.ring_coefficients`).
    power : ndarray of shape (n_rings, n_ref), float32
        ``w_k sum_theta |F(k, theta)|^2`` over full rings.
    """

    angles: NDArray[np.float64]
    coeffs: NDArray[np.complex64]
    power: NDArray[np.float32]


def _prepare_refs(proj: NDArray, grid: PolarGrid, mask: NDArray, n_rings: int, n_m: int) -> tuple:
    """Return (coeffs (n, n_m, n_rings), power (n_rings, n)) of masked references."""
    half = grid.sample(apply_mask(proj, mask))[:, :n_rings]
    w = grid.weights[:n_rings]
    power = (2 * w[None, :] * (np.abs(half) ** 2).sum(axis=-1)).astype(np.float32)
    coeffs = grid.ring_coefficients(half, n_m) * w[None, :, None]
    return np.ascontiguousarray(coeffs.transpose(0, 2, 1)), power.T


def _project_all(projector, angles: NDArray, chunk: int = 256) -> NDArray[np.float32]:
    """Projections (n, N, N) float32 computed in chunks."""
    out = [np.asarray(projector.project(angles[i : i + chunk]), dtype=np.float32)
           for i in range(0, len(angles), chunk)]  # fmt: skip
    return np.concatenate(out)


def _as_projector(projector_or_volume):
    """Return the argument if it is a projector, else a FourierProjector of the volume."""
    if hasattr(projector_or_volume, "project") and hasattr(projector_or_volume, "box"):
        return projector_or_volume
    vol = np.asarray(projector_or_volume)
    if vol.ndim != 3:
        raise ValueError("expected a projector (with .project and .box) or a 3D volume")
    from xmipp_qc.core.projection import FourierProjector

    return FourierProjector(vol, pad=2, interpolation="linear")


@dataclass(frozen=True)
class Gallery:
    """Reference projections of one map in polar Fourier form, reusable across images.

    Build with :meth:`build`. Attributes are read-only.

    Attributes
    ----------
    box : int
        Image size N in px.
    angular_step, coarse_step : float
        Direction sampling of the fine and coarse levels, degrees.
    symmetry : str
        Xmipp point-group name; directions cover its asymmetric unit.
    grid : PolarGrid
        Polar sampling of the fine level (band ``grid.max_freq`` cycles/px;
        ``grid.radius_px`` is the mask radius).
    mask : ndarray of shape (N, N), float32
        Soft circular mask of the references (3 px cosine edge inside the radius).
    fine, coarse : Level
        Reference coefficients of the two search levels.
    coarse_rings, coarse_m : int
        Rings and angular coefficients of the coarse level.
    neighbours : ndarray of int, shape (n_coarse, n_nb)
        Fine directions within ``coarse_step`` of each coarse one (symmetry-aware),
        padded by repetition.
    close : ndarray of bool, shape (n_coarse, n_coarse)
        Coarse directions within ``coarse_step`` of each other (symmetry-aware).
    """

    box: int
    angular_step: float
    coarse_step: float
    symmetry: str
    grid: PolarGrid
    mask: NDArray[np.float32]
    fine: Level
    coarse: Level
    coarse_rings: int
    coarse_m: int
    neighbours: NDArray[np.int64]
    close: NDArray[np.bool_]

    @property
    def angles(self) -> NDArray[np.float64]:
        """Fine gallery orientations ``(rot, tilt, 0)``, shape (n_ref, 3), degrees."""
        return self.fine.angles

    @cached_property
    def stencil(self) -> Stencil:
        """Fine directions around each fine direction, for the sub-grid polish.

        Built by :meth:`build` (:func:`xmipp_qc.core.direction_polish.build_stencil`,
        symmetry-aware, within :func:`~xmipp_qc.core.direction_polish.stencil_radius`).
        """
        return build_stencil(self.fine.angles, self.symmetry, self.angular_step)

    @classmethod
    def build(
        cls,
        projector_or_volume,
        *,
        angular_step: float = 5.0,
        symmetry: str = "c1",
        max_freq: float | None = None,
        mask_radius: float | None = None,
        coarse_step: float | None = None,
        coarse_freq: float | None = None,
    ) -> Gallery:
        """Project a map at the gallery directions and precompute its polar transforms.

        Parameters
        ----------
        projector_or_volume : FourierProjector or array_like of shape (N, N, N)
            Anything with ``box`` and ``project(angles) -> (n, N, N)``
            (:class:`xmipp_qc.core.projection.FourierProjector`), or a volume
            ``[z, y, x]`` (projected with a pad-2 trilinear FourierProjector).
        angular_step : float
            Fine direction sampling in degrees (> 0).
        symmetry : str
            Xmipp point group, e.g. ``"c1"``, ``"d2"``.
        max_freq : float, optional
            Band of the comparison in cycles/px; default
            :func:`~xmipp_qc.core.search_band.default_band` (Xmipp's 0.25 from
            N = 64, up to 0.5 at small boxes).
        mask_radius : float, optional
            Particle radius in px, at most ``N / 2`` (default); references are
            masked by a disk of this radius with a 3 px cosine edge inside it, so
            that their support is rotation invariant.
        coarse_step : float, optional
            Direction sampling of the coarse search in degrees (default
            ``2 * angular_step``); ``<= angular_step`` searches the fine
            directions exhaustively at the coarse band.
        coarse_freq : float, optional
            Band of the coarse search in cycles/px; default
            ``min(max_freq / 2, 2 / (coarse_step_rad * 2 mask_radius))``, twice the
            resolution the coarse directions sample (Crowther), so that the
            coarse search costs the same at any box size (0.125 at N = 64).

        Returns
        -------
        Gallery
        """
        proj = _as_projector(projector_or_volume)
        box = int(proj.box)
        max_freq, radius, coarse_step, coarse_freq = _defaults(
            box, angular_step, max_freq, mask_radius, coarse_step, coarse_freq)
        grid = PolarGrid.create(box, max_freq, radius, box / math.sqrt(2))
        mask = soft_disk(box, radius)
        fine_angles = _directions(angular_step, symmetry)
        fine = cls._level(proj, fine_angles, grid, mask, grid.n_rings, grid.n_m)
        n_rc = int(math.floor(coarse_freq * box + 1e-9))
        n_mc = min(grid.n_m, int(math.ceil(2 * np.pi * coarse_freq * grid.radius_px)) + 2)
        if coarse_step <= angular_step:
            coarse_step = float(angular_step)
            coeffs = np.ascontiguousarray(fine.coeffs[:, :n_mc, :n_rc])
            coarse = Level(fine.angles, coeffs, np.ascontiguousarray(fine.power[:n_rc]))
        else:
            c_angles = _directions(coarse_step, symmetry)
            coarse = cls._level(proj, c_angles, grid, mask, n_rc, n_mc)
        nb, close = _neighbourhoods(coarse.angles, fine.angles, symmetry, coarse_step)
        gallery = cls(box, float(angular_step), coarse_step, symmetry, grid, mask, fine, coarse,
                      n_rc, n_mc, nb, close)  # fmt: skip
        _ = gallery.stencil  # built with the gallery, not in the first match
        return gallery

    @staticmethod
    def _level(proj, angles: NDArray, grid: PolarGrid, mask: NDArray, n_rings: int, n_m: int):
        angles = np.column_stack([angles[:, :2], np.zeros(len(angles))])
        coeffs, power = [], []
        for i in range(0, len(angles), 256):
            c, p = _prepare_refs(_project_all(proj, angles[i : i + 256]), grid, mask, n_rings, n_m)
            coeffs.append(c)
            power.append(p)
        return Level(angles, np.concatenate(coeffs), np.concatenate(power, axis=1))


def _directions(step: float, symmetry: str) -> NDArray[np.float64]:
    """Return the gallery orientations ``(rot, tilt, 0)``, degrees, shape (n, 3).

    Xmipp's asymmetric unit (:func:`xmipp_qc.core.sampling.sample_directions`);
    for groups with improper elements (e.g. ``ci``, ``cs``, ``dnh``) Xmipp's
    unit assumes a mirror search, so the antipodal directions are added
    instead: a mirrored projection is the projection from the opposite side.
    """
    angles = np.asarray(sample_directions(step, symmetry), dtype=np.float64)
    if np.linalg.det(symmetry_matrices(symmetry)).min() > 0:
        return angles
    d = euler_to_matrix(angles)[:, 2, :]
    both = np.concatenate([d, -d])
    _, keep = np.unique(np.round(both, 6), axis=0, return_index=True)
    return directions_to_angles(both[np.sort(keep)])


def _defaults(box: int, step: float, max_freq, mask_radius, coarse_step, coarse_freq) -> tuple:
    """Return validated ``(max_freq, mask_radius, coarse_step, coarse_freq)`` with defaults."""
    if not step > 0:
        raise ValueError(f"angular_step must be positive, got {step}")
    max_freq = default_band(box) if max_freq is None else float(max_freq)
    radius = box / 2 if mask_radius is None else float(mask_radius)
    if not 4 < radius <= box / 2:
        raise ValueError(f"mask_radius must be in (4, N/2] px, got {radius}")
    coarse_step = 2.0 * step if coarse_step is None else float(coarse_step)
    if coarse_freq is None:  # Crowther: the coarse step resolves ~1 / (step * diameter)
        crowther = _CROWTHER / (math.radians(coarse_step) * 2 * radius)
        coarse_freq = max(min(max_freq / 2, crowther), min(max_freq, MIN_COARSE_RINGS / box))
    coarse_freq = float(coarse_freq)
    if not 1.0 / box <= coarse_freq <= max_freq:
        raise ValueError(f"coarse_freq must be in [1/N, max_freq], got {coarse_freq}")
    return max_freq, radius, coarse_step, coarse_freq


def _neighbourhoods(coarse: NDArray, fine: NDArray, symmetry: str, radius_deg: float) -> tuple:
    """Return the fine neighbours and the mutual closeness of coarse directions.

    Neighbours: fine directions within ``radius_deg`` of each coarse one, over
    the directions of all orientations equivalent under the symmetry
    (:func:`xmipp_qc.core.geometry.equivalent_orientations`), padded by
    repetition to (n_coarse, n_nb); closeness: (n_coarse, n_coarse) bool.
    """
    d_fine, d_coarse = euler_to_matrix(fine)[:, 2, :], euler_to_matrix(coarse)[:, 2, :]
    cos_r = math.cos(math.radians(radius_deg) * 1.0001)
    near = np.empty((len(coarse), len(fine)), dtype=bool)
    close = np.empty((len(coarse), len(coarse)), dtype=bool)
    for i, a in enumerate(coarse):
        copies = equivalent_orientations(a, symmetry)[:, 2, :]  # (k, 3) unit vectors
        cos_f = (d_fine @ copies.T).max(axis=1)
        near[i] = cos_f >= cos_r
        near[i, np.argmax(cos_f)] = True
        close[i] = (d_coarse @ copies.T).max(axis=1) >= cos_r
    nb = np.empty((len(coarse), near.sum(axis=1).max()), dtype=np.int64)
    for i, row in enumerate(near):
        idx = np.flatnonzero(row)
        nb[i] = np.concatenate([idx, np.full(nb.shape[1] - len(idx), idx[0])])
    return nb, close
