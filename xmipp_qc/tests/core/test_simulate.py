"""Known-answer tests of the synthetic data generators."""

import numpy as np
import pytest

from xmipp_qc.core.geometry import euler_to_matrix
from xmipp_qc.core.simulate import (
    OUTLIER_KINDS,
    SENTINEL,
    TRAJECTORY_KINDS,
    blobs_volume,
    phantom_blobs,
    project_blobs,
    simulate_particles,
    simulate_trajectory,
    simulate_trajectory_pair,
)


def _flip(a, axis):
    """Mirror about the origin index N//2 (x -> -x), for odd and even N."""
    n = a.shape[axis]
    return np.take(a, (2 * (n // 2) - np.arange(n)) % n, axis=axis)


@pytest.mark.parametrize("box", [32, 33])
def test_projections_along_axes_equal_axis_sums(box):
    blobs = phantom_blobs(box, seed=3)
    vol = blobs_volume(blobs, box)
    # Directions z, x and y: E = I; (rot, tilt) = (0, 90): E^T r = (z, y, -x);
    # (90, 90): E^T r = (-y, z, -x).
    proj = project_blobs(blobs, np.array([[0, 0, 0], [0, 90, 0], [90, 90, 0.0]]), box=box)
    expected = [
        vol.sum(axis=0),
        _flip(vol.sum(axis=2).T, 1),
        _flip(_flip(vol.sum(axis=1).T, 0), 1),
    ]
    for p, e in zip(proj, expected):
        assert np.abs(p - e).max() < 1e-4 * p.max()


@pytest.mark.parametrize("box", [40, 41])
def test_projection_shift_convention(box):
    """I(r) = P(r + s): an integer shift s is np.roll by (-s_y, -s_x)."""
    blobs = phantom_blobs(box, seed=1)
    angles = np.array([[20.0, 50.0, 70.0]])
    plain = project_blobs(blobs, angles, box=box)[0]
    shifted = project_blobs(blobs, angles, np.array([[3.0, -2.0]]), box=box)[0]
    np.testing.assert_allclose(
        shifted, np.roll(plain, (2, -3), axis=(0, 1)), atol=1e-3 * plain.max()
    )


def test_phantom_is_chiral_and_fits_the_box():
    box = 64
    blobs = phantom_blobs(box, seed=5)
    assert np.linalg.norm(blobs.centers, axis=1).max() <= 0.3 * box + 1e-9
    vol = blobs_volume(blobs, box)
    mirror = blobs_volume(blobs.mirrored(), box)
    # No proper rotation maps a random arrangement onto its enantiomer: the
    # mirrored map differs from every axis-flip/rotation we can cheaply try.
    for k in range(4):
        rotated = np.rot90(mirror, k, axes=(1, 2))
        assert np.abs(rotated - vol).max() > 0.2 * vol.max()


def test_symmetric_phantom_is_invariant():
    from xmipp_qc.core.symmetry import symmetry_matrices

    blobs = phantom_blobs(48, seed=2, n_blobs=5, symmetry="d2")
    assert len(blobs.sigmas) == 20
    for m in symmetry_matrices("d2"):
        moved = blobs.centers @ m.T
        dist = np.linalg.norm(moved[:, None] - blobs.centers[None], axis=2)
        assert dist.min(axis=1).max() < 1e-9


@pytest.mark.parametrize("kind", TRAJECTORY_KINDS)
def test_trajectory_pair_has_the_requested_disagreement(kind):
    pair = simulate_trajectory_pair(kind, n_frames=30, drift_px=25.0, seed=7)
    ref, sec = pair.ref, pair.sec
    path = np.linalg.norm(np.diff(ref, axis=0), axis=1).sum()
    assert 24.0 < path < 26.5
    np.testing.assert_array_equal(pair.frames_ref, np.arange(1, 31))
    if kind == "missing_frames":
        np.testing.assert_array_equal(pair.frames_sec, np.arange(3, 30))
        ref = ref[2:29]
    err = sec - ref
    if kind == "agree":
        assert np.sqrt((err**2).sum(axis=1).mean()) < 0.1
    elif kind == "offset":
        np.testing.assert_allclose(err.mean(axis=0), [7.0, -4.0], atol=0.05)
        assert err.std(axis=0).max() < 0.1
    elif kind == "scaled":
        np.testing.assert_allclose(sec, 0.8 * ref, atol=0.2)
    elif kind == "mirrored":
        np.testing.assert_allclose(sec, ref * [-1, 1], atol=0.25)
    elif kind == "swapped":
        np.testing.assert_allclose(sec, ref[:, ::-1], atol=0.25)
    elif kind == "rotated":
        np.testing.assert_allclose(sec, np.stack([-ref[:, 1], ref[:, 0]], 1), atol=0.25)
    elif kind == "flat":
        assert not sec.any()
    elif kind == "sentinel":
        assert (sec == SENTINEL).all(axis=1).sum() == 10
    elif kind == "noise":
        assert np.sqrt((err**2).sum(axis=1).mean()) > 2.0


def test_trajectory_binning_and_determinism():
    a = simulate_trajectory_pair("agree", binning=2.0, seed=3)
    b = simulate_trajectory_pair("agree", seed=3)
    np.testing.assert_allclose(a.sec * 2.0, b.sec)
    np.testing.assert_array_equal(simulate_trajectory(seed=4), simulate_trajectory(seed=4))
    with pytest.raises(ValueError, match="unknown trajectory kind"):
        simulate_trajectory_pair("sideways")


def _rotation_angle(a, b):
    rel = euler_to_matrix(a) @ np.transpose(euler_to_matrix(b), (0, 2, 1))
    return np.degrees(np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1)))


def test_particles_plant_each_outlier_kind():
    box, n = 48, 300
    blobs = phantom_blobs(box, seed=0)
    ps = simulate_particles(
        blobs, n, box=box, snr=2.0, max_shift_px=4.0, outlier_fraction=0.05, seed=11
    )
    assert ps.images.shape == (n, box, box) and ps.images.dtype == np.float32
    for kind in OUTLIER_KINDS:
        assert (ps.kinds == kind).sum() == 15
    assert ps.is_outlier.sum() == 90
    good = ~ps.is_outlier
    np.testing.assert_array_equal(ps.angles[good], ps.true_angles[good])
    assert np.linalg.norm(ps.shifts, axis=1).max() <= 4.0
    mis = ps.kinds == "misassigned_angles"
    err = _rotation_angle(ps.angles[mis], ps.true_angles[mis])
    assert err.min() >= 10.0 - 1e-6 and err.max() <= 15.0 + 1e-6
    far = ps.kinds == "large_shift"
    jump = np.linalg.norm(ps.true_shifts[far] - ps.shifts[far], axis=1)
    assert jump.min() >= 0.15 * box - 1e-9 and jump.max() <= 0.2 * box + 1e-9


def test_particles_snr_and_determinism():
    box = 40
    blobs = phantom_blobs(box, seed=1)
    ps = simulate_particles(blobs, 200, box=box, snr=0.25, seed=4)
    clean = project_blobs(blobs, ps.true_angles, ps.true_shifts, box=box)
    noise = ps.images - clean
    ratio = clean.var(axis=(1, 2)).mean() / noise.var()
    assert ratio == pytest.approx(0.25, rel=0.03)
    again = simulate_particles(blobs, 200, box=box, snr=0.25, seed=4)
    np.testing.assert_array_equal(ps.images, again.images)


def test_missing_domain_removes_about_a_tenth_of_the_mass():
    from xmipp_qc.core.simulate_particles import _missing_domain

    blobs = phantom_blobs(64, seed=9)
    fractions = []
    for s in range(20):
        kept = _missing_domain(blobs, np.random.default_rng(s))
        fractions.append(1 - kept.masses.sum() / blobs.masses.sum())
    assert 0.05 < np.median(fractions) < 0.15


def test_unknown_outlier_kind_is_rejected():
    with pytest.raises(ValueError, match="unknown outlier kinds"):
        simulate_particles(phantom_blobs(32), 10, box=32, outlier_fraction=0.1,
                           outlier_kinds=("ghost",))


def test_particles_with_ctf_vanish_at_the_ctf_zeros():
    from xmipp_qc.core.ctf import ctf_image

    box = 64
    ps = simulate_particles(phantom_blobs(box, seed=2), 40, box=box, snr=1e9, ctf=True,
                            pixel_size_a=2.0, seed=8, dtype=np.float64)
    assert ps.defocus_u.shape == (40,)
    astigmatism = ps.defocus_u - ps.defocus_v
    assert astigmatism.min() >= 0 and astigmatism.max() <= 1000
    ctf = ctf_image(box, 2.0, ps.defocus_u, ps.defocus_v, ps.defocus_angle,
                    voltage_kv=300.0, cs_mm=2.7, amplitude_contrast=0.1)
    spectrum = np.abs(np.fft.rfft2(np.fft.ifftshift(ps.images, axes=(1, 2))))
    clean = project_blobs(phantom_blobs(box, seed=2), ps.true_angles, ps.true_shifts, box=box)
    plain = np.abs(np.fft.rfft2(np.fft.ifftshift(clean, axes=(1, 2))))
    # The simulated spectrum is the plain one times |CTF|, zeros included.
    np.testing.assert_allclose(spectrum, plain * np.abs(ctf), atol=5e-5 * plain.max())
    near_zero = np.abs(ctf) < 0.02
    assert near_zero.sum() > 100
    assert spectrum[near_zero].max() < 0.03 * plain.max()
