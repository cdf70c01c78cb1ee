"""A panel of maps and an independent projector for the alignment accuracy checks.

Used by the accuracy tests (``xmipp_qc/tests/core/test_alignment_panel.py``)
and by ``benchmarks/alignment.py`` (the panel table), so that both measure the
same thing. Nothing here is used by the package itself.

The images are made by :func:`line_projections`, a real-space line integral
through the voxel map (cubic B-spline interpolation, unit steps along the
beam): an independent projector, not the Fourier central-slice projector of
:mod:`xmipp_qc.core.projection` that the gallery and the refinement use, so
that the small model differences between two projectors of the same map are
part of the test, as they are with real data. :func:`trilinear_projections`
is the same line integral with trilinear interpolation (the classic
real-space projector: no prefilter, sharper at grid-aligned views and
aliased near Nyquist), a cruder and more different second projector for the
refinement's "stays at the true angles" checks.

Conventions of :mod:`xmipp_qc.core`: volumes ``[z, y, x]`` and images
``[y, x]`` with the origin at ``N // 2``; Xmipp ZYZ Euler angles in degrees;
Xmipp shifts in px (``I(r) = P(r + s)``). The SNR is, as in
:func:`xmipp_qc.core.simulate.simulate_particles`, the variance of the
noiseless (CTF-applied) images over the whole box divided by the variance of
the added white Gaussian noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from xmipp_qc.core.ctf import apply_ctf, ctf_image
from xmipp_qc.core.geometry import euler_to_matrix
from xmipp_qc.core.resample import fourier_resize
from xmipp_qc.core.simulate import phantom_volume, random_angles
from xmipp_qc.tests.shared_data import SHARED_DATA

RIBOSOME = SHARED_DATA / "relion-projections-70S" / "clean70SRibosome_vol_65p.mrc"
RIBOSOME_PIXEL_A = 5.0  # the header is unset; ASPIRE used 5 A/px
RESCALED_BOXES = (24, 48, 96, 128)


@dataclass(frozen=True)
class PanelMap:
    """One map of the panel.

    Attributes
    ----------
    name : str
        Short label (the panel table's first column).
    volume : ndarray of shape (N, N, N), float32
        The map ``[z, y, x]``, origin ``N // 2``.
    symmetry : str
        Its Xmipp point group.
    pixel_size_a : float
        Sampling in Å/px (sets the CTF).
    """

    name: str
    volume: NDArray[np.float32]
    symmetry: str
    pixel_size_a: float

    @property
    def box(self) -> int:
        """Box size N in px."""
        return self.volume.shape[0]


@dataclass(frozen=True)
class PanelImages:
    """Simulated images of a panel map with their ground truth.

    Attributes
    ----------
    images : ndarray of shape (n, N, N), float32
    angles : ndarray of shape (n, 3)
        True Xmipp Euler angles, degrees.
    shifts : ndarray of shape (n, 2)
        True Xmipp shifts, px.
    ctf : ndarray of shape (n, N, N//2+1) or None
        The CTF applied to each image (``rfft2`` layout), if any.
    """

    images: NDArray[np.float32]
    angles: NDArray[np.float64]
    shifts: NDArray[np.float64]
    ctf: NDArray[np.float32] | None


def line_projections(volume: NDArray, angles: NDArray, shifts: NDArray | None = None,
                     *, order: int = 3) -> NDArray[np.float64]:  # fmt: skip
    """Real-space line integrals ``P(r + s) = sum_z V(E^T [x + s_x, y + s_y, z])``.

    Parameters
    ----------
    volume : ndarray of shape (N, N, N)
        Map ``[z, y, x]``, origin ``N // 2``; only its density within ``N / 2 + 2``
        px of the origin is integrated (zero outside the box).
    angles : ndarray of shape (n, 3)
        Xmipp Euler angles (degrees).
    shifts : ndarray of shape (n, 2), optional
        Xmipp shifts (px), applied exactly by moving the sampled lines.
    order : int
        Spline order of the interpolation (3: cubic B-spline, 1: trilinear,
        :func:`trilinear_projections`).

    Returns
    -------
    ndarray of shape (n, N, N), float64
        Unit-step sums along the beam (voxel units, like the Fourier projector).
    """
    vol = np.asarray(volume, dtype=np.float64)
    n_box = vol.shape[0]
    coef = ndimage.spline_filter(vol, order=order, mode="constant") if order > 1 else vol
    g = np.arange(n_box, dtype=np.float64) - n_box // 2
    mats = euler_to_matrix(np.atleast_2d(angles)).reshape(-1, 3, 3)
    s = np.zeros((len(mats), 2)) if shifts is None else np.asarray(shifts, float).reshape(-1, 2)
    out = np.empty((len(mats), n_box, n_box))
    z, y, x = np.meshgrid(g, g, g, indexing="ij")  # beam axis first
    for i, (e, (sx, sy)) in enumerate(zip(mats, s)):
        pts = e.T @ np.stack([(x + sx).ravel(), (y + sy).ravel(), z.ravel()])  # (3, P): x, y, z
        inside = (pts**2).sum(axis=0) <= (n_box / 2 + 2) ** 2  # the map's sphere (+ taps)
        coords = pts[::-1, inside] + n_box // 2  # volume index order (z, y, x)
        vals = np.zeros(pts.shape[1])
        vals[inside] = ndimage.map_coordinates(coef, coords, order=order, mode="constant",
                                               cval=0.0, prefilter=False)  # fmt: skip
        out[i] = vals.reshape(n_box, n_box, n_box).sum(axis=0)
    return out


def trilinear_projections(volume: NDArray, angles: NDArray,
                          shifts: NDArray | None = None) -> NDArray[np.float64]:  # fmt: skip
    """Real-space line integrals with trilinear interpolation, ``sum_z V(E^T [x + s, z])``.

    Each ray through the pixel ``(x + s_x, y + s_y)`` is sampled at unit steps
    ``z = -N//2 .. N - N//2 - 1`` along the beam and the map is interpolated
    trilinearly between its 8 nearest voxels (zero outside the box; only the
    density within ``N / 2 + 2`` px of the origin). Same conventions, shapes
    and units as :func:`line_projections` (``order=1``).
    """
    return line_projections(volume, angles, shifts, order=1)


def _ribosome() -> tuple[NDArray[np.float32], float]:
    from xmipp_qc.formats.mrc import read_volume

    vol, _ = read_volume(str(RIBOSOME))
    return vol, RIBOSOME_PIXEL_A


def compact_volume(box: int = 30) -> NDArray[np.float32]:
    """A compact, irregular small particle filling ~70% of a small box.

    A dense cluster of 24 overlapping Gaussians (sigma 1.2 to 2 px) within a
    radius of ``0.32 N`` of the centre, plus an off-centre knob: a small
    globular protein as seen at a coarse sampling.
    """
    rng = np.random.default_rng(30)
    g = np.arange(box, dtype=np.float64) - box // 2
    z, y, x = np.meshgrid(g, g, g, indexing="ij")
    vol = np.zeros((box, box, box))
    d = rng.normal(size=(24, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    centers = d * 0.32 * box * rng.uniform(0.1, 1.0, (24, 1)) ** (1 / 3)
    centers = np.vstack([centers, [0.3 * box, 0.05 * box, -0.1 * box]])
    for (cx, cy, cz), sig in zip(centers, rng.uniform(1.2, 2.0, 25)):
        vol += np.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * sig * sig))
    return vol.astype(np.float32)


def assembly_volume(box: int = 64, symmetry: str = "d7") -> NDArray[np.float32]:
    """A ring assembly: 14 chiral four-lobed subunits in two stacked rings (D7).

    The subunit (lobes of sigma 1.5 to 3 px, within 5 px of its centre) sits
    at a radius of ``0.22 N`` and a height of ``0.1 N`` and is copied by the
    matrices of ``symmetry`` (Xmipp setting of
    :func:`xmipp_qc.core.symmetry.symmetry_matrices`), like GroEL seen at low
    resolution.
    """
    from xmipp_qc.core.symmetry import symmetry_matrices

    scale = box / 64.0
    lobes = np.array([[0.0, 0.0, 0.0], [3.0, 2.0, 3.0], [-2.0, 3.5, -2.0], [4.0, -1.5, -0.5]])
    centre = np.array([0.22 * box, 0.0, 0.1 * box])
    sigmas = np.array([3.0, 2.0, 2.0, 1.5]) * scale
    amps = np.array([1.0, 0.8, 0.9, 1.2])
    g = np.arange(box, dtype=np.float64) - box // 2
    z, y, x = np.meshgrid(g, g, g, indexing="ij")
    vol = np.zeros((box, box, box))
    for mat in symmetry_matrices(symmetry):
        for c, sig, a in zip(centre + lobes * scale, sigmas, amps):
            cx, cy, cz = mat @ c
            vol += a * np.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * sig * sig))
    return vol.astype(np.float32)


def panel_maps(*, rescaled_boxes: tuple[int, ...] = RESCALED_BOXES,
               with_ribosome: bool = True) -> list[PanelMap]:  # fmt: skip
    """The maps of the accuracy panel.

    ``phantom`` (the blob phantom of :mod:`xmipp_qc.core.simulate`, box 64),
    ``compact30`` (:func:`compact_volume`), ``d7-assembly``
    (:func:`assembly_volume`, box 64), ``70S`` (the ASPIRE/RELION 70S ribosome
    map, box 65, 5 Å/px) and ``70S@N`` (the same map Fourier-rescaled to each
    of ``rescaled_boxes``; same physical extent, coarser or finer sampling).
    The ribosome maps need ``../shared/data`` (``with_ribosome=False`` skips them).
    """
    maps = [
        PanelMap("phantom", phantom_volume(64, seed=0, dtype=np.float32), "c1", 3.0),
        PanelMap("compact30", compact_volume(30), "c1", 3.0),
        PanelMap("d7-assembly", assembly_volume(64, "d7"), "d7", 3.0),
    ]
    if with_ribosome:
        vol, px = _ribosome()
        maps.append(PanelMap("70S", vol, "c1", px))
        for box in rescaled_boxes:
            small = fourier_resize(vol, box).astype(np.float32)
            maps.append(PanelMap(f"70S@{box}", small, "c1", px * vol.shape[0] / box))
    return maps


def simulate_images(pmap: PanelMap, n: int, *, snr: float | None = 1.0, ctf: bool = False,
                    max_shift_px: float = 0.0, seed: int = 0,
                    order: int = 3) -> PanelImages:  # fmt: skip
    """Noisy line-integral projections of a panel map at uniform random orientations.

    Parameters
    ----------
    pmap : PanelMap
    n : int
        Number of images.
    snr : float or None
        Signal-to-noise ratio (module docstring); None for noiseless images.
    ctf : bool
        Apply a CTF (300 kV, Cs 2.7 mm, 10% amplitude contrast, mean defocus
        1 to 2.5 µm, astigmatism up to 500 Å).
    max_shift_px : float
        Shifts uniform in a disc of this radius (px).
    seed : int
        Random state.
    order : int
        Interpolation of the line integrals (3: cubic B-spline, 1: trilinear);
        the angles, shifts and CTFs of a seed do not depend on it.

    Returns
    -------
    PanelImages
    """
    rng = np.random.default_rng(seed)
    angles = random_angles(n, rng)
    r, phi = max_shift_px * np.sqrt(rng.uniform(0, 1, n)), rng.uniform(0, 2 * np.pi, n)
    shifts = np.column_stack([r * np.cos(phi), r * np.sin(phi)])
    clean = line_projections(pmap.volume, angles, shifts, order=order)
    h = None
    if ctf:
        mean = rng.uniform(1e4, 2.5e4, n)
        astig = rng.uniform(0, 500, n)
        h = ctf_image(pmap.box, pmap.pixel_size_a, mean + astig, mean - astig,
                      rng.uniform(0, 180, n), voltage_kv=300.0, cs_mm=2.7,
                      amplitude_contrast=0.1).astype(np.float32)  # fmt: skip
        clean = apply_ctf(clean, h)
    images = clean if snr is None else add_noise(clean, snr, rng)
    return PanelImages(images.astype(np.float32), angles, shifts, h)


def add_noise(images: NDArray, snr: float, seed=0) -> NDArray[np.float32]:
    """White Gaussian noise at ``snr`` = mean image variance / noise variance.

    Parameters
    ----------
    images : ndarray of shape (n, N, N)
        Noiseless images.
    snr : float
        Signal-to-noise ratio (> 0).
    seed : int or numpy.random.Generator
        Random state.

    Returns
    -------
    ndarray of shape (n, N, N), float32
    """
    rng = np.random.default_rng(seed)
    x = np.asarray(images, dtype=np.float64)
    return (x + rng.normal(0.0, noise_sigma(x, snr), x.shape)).astype(np.float32)


def noise_sigma(images: NDArray, snr: float) -> float:
    """Standard deviation of the noise :func:`add_noise` adds to ``images`` at ``snr``."""
    x = np.asarray(images, dtype=np.float64)
    return float(np.sqrt(x.var(axis=(1, 2)).mean() / snr))


def exhaustive_match(volume: NDArray, images: NDArray, step: float,
                     symmetry: str = "c1") -> NDArray[np.float64]:  # fmt: skip
    """Brute-force projection matching: the oracle of the matching tests.

    Every direction of :func:`xmipp_qc.core.sampling.sample_directions` at
    ``step`` (asymmetric unit of a proper point group) times every in-plane
    rotation ``psi = 0, step, 2 step, ...``; no shifts (centred images), no
    refinement, no band limit: the orientation with the highest Pearson
    correlation inside the disc of radius ``N / 2``. The references are cubic
    pad-2 Fourier projections (0.05 % from the exact line integral).

    Parameters
    ----------
    volume : ndarray of shape (N, N, N)
    images : ndarray of shape (n, N, N)
        Centred images.
    step : float
        Direction and psi sampling, degrees.
    symmetry : str
        Proper Xmipp point group of the map.

    Returns
    -------
    ndarray of shape (n, 3)
        Xmipp Euler angles, degrees.
    """
    from xmipp_qc.core.projection import FourierProjector
    from xmipp_qc.core.sampling import sample_directions

    n_box = volume.shape[0]
    dirs = np.asarray(sample_directions(step, symmetry), dtype=np.float64)[:, :2]
    refs = FourierProjector(np.asarray(volume, np.float32), pad=2, interpolation="cubic")
    refs = refs.project(np.column_stack([dirs, np.zeros(len(dirs))]))
    g = np.arange(n_box, dtype=np.float64) - n_box // 2
    y, x = np.meshgrid(g, g, indexing="ij")
    disc = (x * x + y * y <= (n_box / 2) ** 2).ravel()
    ref_n = _standardise(refs.reshape(len(refs), -1)[:, disc])
    psis = np.arange(0.0, 360.0, step)
    out = np.empty((len(images), 3))
    for i, img in enumerate(np.asarray(images, dtype=np.float64)):
        rows = []
        for psi in np.radians(psis):  # J(r) = I(R(-psi) r) = P(rot, tilt, 0)(r)
            c, s = np.cos(psi), np.sin(psi)
            coords = np.stack([-s * x + c * y, c * x + s * y]) + n_box // 2
            rows.append(ndimage.map_coordinates(img, coords, order=3, mode="constant").ravel())
        scores = _standardise(np.array(rows)[:, disc]) @ ref_n.T  # (n_psi, n_ref)
        k_psi, k_ref = np.unravel_index(np.argmax(scores), scores.shape)
        out[i] = [dirs[k_ref, 0], dirs[k_ref, 1], psis[k_psi]]
    return out


def _standardise(rows: NDArray) -> NDArray[np.float64]:
    """Rows with zero mean and unit norm (for Pearson correlations by dot products)."""
    r = rows - rows.mean(axis=1, keepdims=True)
    return r / np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-30)

