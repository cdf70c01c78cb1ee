"""Local refinement (xmipp_qc.core.refine): known answers, bounds and the accuracy bar."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from xmipp_qc.core.ctf import ctf_image
from xmipp_qc.core.geometry import euler_to_matrix, matrix_to_euler
from xmipp_qc.core.projection import FourierProjector
from xmipp_qc.core.refine import LocalRefiner, refine_local
from xmipp_qc.core.simulate import blobs_volume, phantom_blobs, project_blobs, simulate_particles


def _perturb(angles, shifts, max_deg, max_px, seed):
    """Start values: rotations of random axis and angle <= max_deg, shifts <= max_px away."""
    rng = np.random.default_rng(seed)
    n = len(angles)
    axis = rng.normal(size=(n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    rot = Rotation.from_rotvec(axis * np.radians(rng.uniform(0, max_deg, n))[:, None])
    start = matrix_to_euler(rot.as_matrix() @ euler_to_matrix(angles))
    phi, r = rng.uniform(0, 2 * np.pi, n), rng.uniform(0, max_px, n)
    return start, shifts + np.c_[r * np.cos(phi), r * np.sin(phi)]


def _errors(angles, true_angles):
    """Geodesic error (deg) and per-axis image-frame errors (deg, (n, 3))."""
    rel = euler_to_matrix(angles) @ np.transpose(euler_to_matrix(true_angles), (0, 2, 1))
    rv = np.degrees(Rotation.from_matrix(rel).as_rotvec())
    return np.linalg.norm(rv, axis=1), rv


@pytest.mark.parametrize("box", [32, 33])
def test_noiseless_projector_images_recovered(box):
    """Exact line integrals of the phantom (not the refiner's own Fourier projector)."""
    blobs = phantom_blobs(box, seed=2)
    vol = blobs_volume(blobs, box)
    rng = np.random.default_rng(0)
    true = np.c_[rng.uniform(0, 360, 40), rng.uniform(20, 160, 40), rng.uniform(0, 360, 40)]
    true_s = rng.uniform(-1, 1, (40, 2))
    images = project_blobs(blobs, true, true_s, box=box)
    start, start_s = _perturb(true, true_s, 3.0, 2.0, seed=1)
    # cubic final reprojections: the gray and residual checks need an accurate model
    res = refine_local(vol, images, start, start_s, max_shift_px=3.0, interpolation="cubic")
    geo, _ = _errors(res.angles, true)
    assert np.median(_errors(start, true)[0]) > 1.0
    assert np.median(geo) < 0.1 and np.percentile(geo, 90) < 0.3
    assert np.median(np.hypot(*(res.shifts - true_s).T)) < 0.03
    np.testing.assert_allclose(res.gray_a, 1.0, atol=0.02)
    assert np.all(res.corr_final >= res.corr_initial) and np.median(res.corr_final) > 0.999
    assert res.projections.shape == res.residuals.shape == (40, box, box)
    assert np.abs(res.residuals).max() < 0.05 * np.abs(images).max()


def test_snr1_accuracy_bar():
    """SNR 1, box 64, start errors <= 3 deg and <= 2 px (the issue's bar).

    The Cramer-Rao bound of this phantom at SNR 1 and box 64 is about 0.65,
    0.55 and 0.45 deg per image-frame axis (a median geodesic error of ~0.85
    deg for any unbiased estimator), so the bar is met per axis; the geodesic
    median is asserted near the bound.
    """
    box, n = 64, 300
    blobs = phantom_blobs(box, seed=0)
    ps = simulate_particles(blobs, n, box=box, snr=1.0, max_shift_px=2.0, seed=1)
    start, start_s = _perturb(ps.true_angles, ps.true_shifts, 3.0, 2.0, seed=5)
    res = LocalRefiner(blobs_volume(blobs, box)).refine(ps.images, start, start_s)
    geo, per_axis = _errors(res.angles, ps.true_angles)
    shift_err = np.hypot(*(res.shifts - ps.true_shifts).T)
    print(f"\nSNR 1 box 64: median geodesic {np.median(geo):.2f} deg, per-axis median |err| "
          f"{np.median(np.abs(per_axis), axis=0).round(2)} deg, "
          f"shift {np.median(shift_err):.3f} px")
    assert np.median(np.abs(per_axis)) <= 0.5
    assert np.median(geo) <= 1.0
    assert np.median(shift_err) <= 0.3
    assert np.median(_errors(start, ps.true_angles)[0]) > 1.4  # it did improve


def test_bounds_and_shift_sign():
    box = 32
    vol = blobs_volume(phantom_blobs(box, seed=3), box)
    rng = np.random.default_rng(2)
    true = np.c_[rng.uniform(0, 360, 20), rng.uniform(30, 150, 20), rng.uniform(0, 360, 20)]
    true_s = np.tile([1.2, -0.7], (20, 1))  # I(r) = P(r + s)
    images = FourierProjector(vol).project(true, shifts=true_s)
    res = refine_local(vol, images, true, np.zeros((20, 2)), max_shift_px=2.0, max_angle_deg=0.0)
    np.testing.assert_allclose(res.shifts, true_s, atol=0.05)
    np.testing.assert_allclose(res.angle_change_deg, 0.0, atol=1e-6)
    # start 8 deg away: the move is capped at 2 deg; shifts capped at 0.5 px (the evidence
    # test off: 2 deg towards a truth 8 deg away need not improve the whitened fit)
    far = matrix_to_euler(Rotation.from_rotvec([0, 0.14, 0]).as_matrix() @ euler_to_matrix(true))
    res = refine_local(vol, images, far, np.zeros((20, 2)), max_shift_px=0.5, max_angle_deg=2.0,
                       move_alpha=1.0)
    assert res.angle_change_deg.max() <= 2.0 + 1e-6 and res.angle_change_deg.min() > 1.0
    assert res.shift_change_px.max() <= 0.5 + 1e-9
    assert np.median(res.corr_final - res.corr_initial) > 0.01


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ctf_and_gray_model(dtype):
    box = 48
    vol = blobs_volume(phantom_blobs(box, seed=4), box)
    rng = np.random.default_rng(3)
    true = np.c_[rng.uniform(0, 360, 24), rng.uniform(30, 150, 24), rng.uniform(0, 360, 24)]
    ctf = ctf_image(box, 2.0, rng.uniform(8e3, 2e4, 24), rng.uniform(8e3, 2e4, 24),
                    rng.uniform(0, 180, 24), voltage_kv=300, cs_mm=2.7, amplitude_contrast=0.1)
    # images by the accurate cubic projector; the refiner's search model is its own
    clean = FourierProjector(vol, interpolation="cubic").project(true, ctf=ctf)
    images = (3.0 * clean + 1.0).astype(dtype)
    start, _ = _perturb(true, np.zeros((24, 2)), 2.0, 0.0, seed=4)
    res = LocalRefiner(vol, interpolation="cubic").refine(images, start, ctf=ctf)
    geo, _ = _errors(res.angles, true)
    assert np.median(geo) < 0.15
    np.testing.assert_allclose(res.gray_a, 3.0, rtol=0.02)
    np.testing.assert_allclose(res.gray_b, 1.0, atol=0.05)
    assert np.abs(res.residuals).max() < 0.05 * np.abs(images - 1.0).max()
    # without the CTF the model cannot explain CTF-filtered images as well
    res_no = LocalRefiner(vol).refine(images, start)
    assert np.median(res_no.corr_final) < np.median(res.corr_final) - 0.1
    plain = LocalRefiner(vol).refine(images, start, ctf=ctf, gray=False)
    np.testing.assert_array_equal(plain.gray_a, 1.0)
    sc = res.scores()
    assert sorted(sc) == ["angleChange", "anglePinned", "angleSE", "corrFinal", "corrGain",
                          "corrInit", "grayInit", "grayInitSE", "moveKept", "shiftChange"]
    assert np.all(sc["corrGain"] >= 0) and np.median(sc["grayInit"]) > 2.5


def test_bad_input():
    vol = np.zeros((16, 16, 16), np.float32)
    vol[6:10, 6:10, 6:10] = 1
    ref = LocalRefiner(vol)
    with pytest.raises(ValueError, match="images must be"):
        ref.refine(np.zeros((2, 15, 15)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="rows"):
        ref.refine(np.zeros((2, 16, 16)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="finite"):
        ref.refine(np.full((1, 16, 16), np.nan), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="search_freq"):
        LocalRefiner(vol, search_freq=0.7)
