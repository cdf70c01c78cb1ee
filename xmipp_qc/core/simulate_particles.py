"""Seeded particle sets: noisy projections of a blob map, with planted outliers.

:func:`simulate_particles` makes the images and the metadata a user's data set
would carry (:class:`ParticleSet`: reported and true alignment, CTF,
acquisition), with outliers of the kinds in :data:`OUTLIER_KINDS`;
:func:`random_angles` and :func:`perturb_angles` draw the orientations.
Re-exported by :mod:`xmipp_qc.core.simulate`.

Conventions of :mod:`xmipp_qc.core`: images ``(n, N, N)`` indexed ``[y, x]``,
origin at ``N // 2``; Xmipp ZYZ Euler angles in degrees; Xmipp shifts in px
(``I(r) = P(r + s)``); defocus in Å, its angle in degrees, voltage in kV, Cs in
mm, pixel size in Å/px. Every generator takes a ``seed`` (int, Generator or
None) and is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from xmipp_qc.core.simulate_blobs import Blobs, phantom_blobs, project_blobs
from xmipp_qc.core.simulate_motion import SeedLike, rng_from

__all__ = [
    "OUTLIER_KINDS",
    "ParticleSet",
    "perturb_angles",
    "random_angles",
    "simulate_particles",
]


#: Outlier kinds of :func:`simulate_particles`.
OUTLIER_KINDS = (
    "wrong_conformation",
    "junk",
    "misassigned_angles",
    "mirrored_hand",
    "missing_domain",
    "large_shift",
)


@dataclass(frozen=True)
class ParticleSet:
    """Simulated images with the metadata a user's data set would carry.

    Attributes
    ----------
    images : ndarray of shape (n, N, N)
        Noisy images (CTF applied if simulated), indexed ``[y, x]``.
    angles, shifts : ndarray of shape (n, 3) and (n, 2)
        The alignment REPORTED with the images (degrees; px, Xmipp convention).
    true_angles, true_shifts : ndarray of shape (n, 3) and (n, 2)
        The alignment that generated each image.
    kinds : ndarray of str, shape (n,)
        ``""`` for a good image, else one of :data:`OUTLIER_KINDS`.
    defocus_u, defocus_v, defocus_angle : ndarray of shape (n,) or None
        CTF of each image (Å, Å, degrees), None when no CTF was simulated.
    pixel_size_a, voltage_kv, cs_mm, amplitude_contrast, snr : float
        Acquisition parameters and the signal-to-noise ratio.
    """

    images: NDArray
    angles: NDArray[np.float64]
    shifts: NDArray[np.float64]
    true_angles: NDArray[np.float64]
    true_shifts: NDArray[np.float64]
    kinds: NDArray[np.str_]
    defocus_u: NDArray[np.float64] | None
    defocus_v: NDArray[np.float64] | None
    defocus_angle: NDArray[np.float64] | None
    pixel_size_a: float
    voltage_kv: float
    cs_mm: float
    amplitude_contrast: float
    snr: float

    @property
    def is_outlier(self) -> NDArray[np.bool_]:
        """True for the planted outliers, shape (n,)."""
        return self.kinds != ""


def random_angles(n: int, seed: SeedLike = None) -> NDArray[np.float64]:
    """Uniformly distributed orientations as Xmipp Euler angles, shape (n, 3), degrees."""
    from scipy.spatial.transform import Rotation

    from xmipp_qc.core.geometry import matrix_to_euler

    rot = Rotation.random(n, random_state=rng_from(seed).integers(2**31))
    return np.atleast_2d(matrix_to_euler(rot.as_matrix()))


def perturb_angles(angles: ArrayLike, degrees: ArrayLike, seed: SeedLike = None) -> NDArray:
    """Rotate each orientation by a given geodesic angle about a random axis.

    Parameters
    ----------
    angles : array_like of shape (n, 3)
        Xmipp Euler angles, degrees.
    degrees : float or array_like of shape (n,)
        Rotation angle of each perturbation, degrees.
    seed : int, numpy.random.Generator or None
        Random state of the axes (uniform on the sphere).

    Returns
    -------
    ndarray of shape (n, 3)
        Xmipp Euler angles, degrees, each ``degrees`` away from its input.
    """
    from scipy.spatial.transform import Rotation

    from xmipp_qc.core.geometry import euler_to_matrix, matrix_to_euler

    angles = np.asarray(angles, dtype=np.float64).reshape(-1, 3)
    if len(angles) == 0:
        return angles
    rng = rng_from(seed)
    axes = rng.normal(size=(len(angles), 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    turn = np.broadcast_to(np.radians(np.asarray(degrees, dtype=np.float64)), len(angles))
    q = Rotation.from_rotvec(axes * turn[:, None]).as_matrix()
    return np.atleast_2d(matrix_to_euler(q @ euler_to_matrix(angles)))


def _missing_domain(blobs: Blobs, rng: np.random.Generator, fraction: float = 0.1) -> Blobs:
    """Remove a compact group of blobs holding about ``fraction`` of the mass."""
    seed_blob = rng.integers(len(blobs.sigmas))
    order = np.argsort(np.linalg.norm(blobs.centers - blobs.centers[seed_blob], axis=1))
    share = np.cumsum(blobs.masses[order]) / blobs.masses.sum()
    n_drop = int(np.argmin(np.abs(share - fraction))) + 1
    keep = np.ones(len(order), dtype=bool)
    keep[order[:n_drop]] = False
    return blobs.subset(keep)


def _variant_blobs(kind: str, blobs: Blobs, box: int, rng: np.random.Generator) -> Blobs:
    if kind == "mirrored_hand":
        return blobs.mirrored()
    if kind == "missing_domain":
        return _missing_domain(blobs, rng)
    if kind == "junk":
        return phantom_blobs(box, seed=rng, n_blobs=len(blobs.sigmas))
    if kind == "wrong_conformation":
        moved = blobs.centers.copy()
        idx = rng.choice(len(moved), size=max(2, len(moved) // 4), replace=False)
        moved[idx] += rng.normal(size=(len(idx), 3)) * 0.12 * box
        return Blobs(moved, blobs.sigmas, blobs.amplitudes)
    return blobs


def _assign_kinds(
    n: int, fraction: float, kinds: tuple[str, ...], rng: np.random.Generator
) -> NDArray[np.str_]:
    unknown = set(kinds) - set(OUTLIER_KINDS)
    if unknown:
        raise ValueError(f"unknown outlier kinds {sorted(unknown)}; choose from {OUTLIER_KINDS}")
    per_kind = int(round(fraction * n))
    if per_kind * len(kinds) > n:
        raise ValueError(f"{per_kind} outliers of each of {len(kinds)} kinds exceed n={n}")
    labels = np.full(n, "", dtype=object)
    chosen = rng.permutation(n)[: per_kind * len(kinds)]
    for i, kind in enumerate(kinds):
        labels[chosen[i * per_kind : (i + 1) * per_kind]] = kind
    return labels.astype(str)


def _disk_shifts(n: int, r_min: float, r_max: float, rng: np.random.Generator) -> NDArray:
    radius = np.sqrt(rng.uniform(r_min**2, r_max**2, size=n))
    phi = rng.uniform(0, 2 * np.pi, size=n)
    return np.stack([radius * np.cos(phi), radius * np.sin(phi)], axis=1)


def _clean_images(
    blobs: Blobs, kinds: NDArray, angles: NDArray, shifts: NDArray, box: int, rng
) -> NDArray[np.float64]:
    images = np.empty((len(kinds), box, box))
    for kind in np.unique(kinds):
        idx = np.flatnonzero(kinds == kind)
        if kind == "junk":  # every junk image is different debris
            for i in idx:
                variant = _variant_blobs(kind, blobs, box, rng)
                images[i] = project_blobs(variant, angles[i : i + 1], shifts[i : i + 1], box=box)[0]
        else:
            variant = _variant_blobs(kind, blobs, box, rng)
            images[idx] = project_blobs(variant, angles[idx], shifts[idx], box=box)
    return images


def _apply_ctf(images: NDArray, pixel_size_a: float, du, dv, da, **acq) -> NDArray:
    from xmipp_qc.core.ctf import apply_ctf, ctf_image

    ctf = ctf_image(images.shape[-1], pixel_size_a, du, dv, da, rfft=True, **acq)
    return apply_ctf(images, ctf)


def simulate_particles(
    blobs: Blobs,
    n: int,
    *,
    box: int,
    snr: float = 1.0,
    pixel_size_a: float = 3.0,
    max_shift_px: float = 0.0,
    ctf: bool = False,
    defocus_range_a: tuple[float, float] = (8000.0, 25000.0),
    outlier_fraction: float = 0.0,
    outlier_kinds: tuple[str, ...] = OUTLIER_KINDS,
    angle_error_deg: tuple[float, float] = (10.0, 15.0),
    dtype: type = np.float32,
    seed: SeedLike = 0,
) -> ParticleSet:
    """Simulate noisy projection images of a blob map, with planted outliers.

    Parameters
    ----------
    blobs : Blobs
        The map that good images come from (exact analytic projections).
    n : int
        Number of images.
    box : int
        Image size N in px.
    snr : float
        Variance of the noiseless (CTF-applied) good images over the whole box
        divided by the variance of the added white Gaussian noise.
    pixel_size_a : float
        Pixel size in Å (used by the CTF).
    max_shift_px : float
        Shifts are uniform in a disk of this radius (px, Xmipp convention).
    ctf : bool
        Apply a CTF (300 kV, Cs 2.7 mm, 10% amplitude contrast) with defocus
        uniform in ``defocus_range_a``, astigmatism up to 500 Å, random angle.
    defocus_range_a : tuple of float
        Range of the mean defocus in Å.
    outlier_fraction : float
        Fraction of ``n`` planted for EACH kind in ``outlier_kinds``.
    outlier_kinds : tuple of str
        Kinds among :data:`OUTLIER_KINDS`: ``wrong_conformation`` (a quarter of
        the blobs moved by ~0.12 N), ``junk`` (an unrelated blob cloud per
        image), ``misassigned_angles`` (generated ``angle_error_deg`` away from
        the reported orientation), ``mirrored_hand`` (the enantiomer),
        ``missing_domain`` (a compact ~10% of the mass removed) and
        ``large_shift`` (true shift 0.15 N to 0.2 N beyond the reported one).
    angle_error_deg : tuple of float
        Range of the angular error of ``misassigned_angles`` images, degrees.
    dtype : numpy dtype
        Dtype of the images.
    seed : int, Generator or None
        Random state.

    Returns
    -------
    ParticleSet
    """
    rng = rng_from(seed)
    kinds = _assign_kinds(n, outlier_fraction, tuple(outlier_kinds), rng)
    angles = random_angles(n, rng)
    shifts = _disk_shifts(n, 0.0, max_shift_px, rng)
    true_angles, true_shifts = angles.copy(), shifts.copy()
    mis = kinds == "misassigned_angles"
    errors = rng.uniform(*angle_error_deg, size=int(mis.sum()))
    true_angles[mis] = perturb_angles(angles[mis], errors, rng)
    far = kinds == "large_shift"
    true_shifts[far] += _disk_shifts(int(far.sum()), 0.15 * box, 0.2 * box, rng)
    clean = _clean_images(blobs, kinds, true_angles, true_shifts, box, rng)
    acq = {"voltage_kv": 300.0, "cs_mm": 2.7, "amplitude_contrast": 0.1}
    du = dv = da = None
    if ctf:
        mean_def = rng.uniform(*defocus_range_a, size=n)
        astig = rng.uniform(0.0, 500.0, size=n)
        du, dv, da = mean_def + astig, mean_def - astig, rng.uniform(0.0, 180.0, size=n)
        clean = _apply_ctf(clean, pixel_size_a, du, dv, da, **acq)
    good = kinds == ""
    signal_var = clean[good if good.any() else slice(None)].var(axis=(1, 2)).mean()
    noise = rng.normal(0.0, np.sqrt(signal_var / snr), size=clean.shape)
    images = (clean + noise).astype(dtype)
    return ParticleSet(
        images, angles, shifts, true_angles, true_shifts, kinds, du, dv, da,
        float(pixel_size_a), acq["voltage_kv"], acq["cs_mm"], acq["amplitude_contrast"],
        float(snr),
    )  # fmt: skip
