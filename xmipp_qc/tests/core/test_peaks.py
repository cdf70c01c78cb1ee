"""Known answers of the sub-sample peak helpers (core/peaks.py)."""

import numpy as np
import pytest

from xmipp_qc.core.peaks import GRID_3X3, parabolic_peak, quadratic_peak_3x3, two_psi_peaks


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_parabola_vertex_of_exact_samples(dtype):
    x0 = np.array([-0.4, -0.1, 0.0, 0.23, 0.5])
    f = lambda x: (2.0 - 3.0 * (x - x0) ** 2).astype(dtype)  # noqa: E731
    offset, value = parabolic_peak(f(-1.0), f(0.0), f(1.0))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(offset, x0, atol=tol)
    np.testing.assert_allclose(value, 2.0, atol=tol)


def test_parabola_clips_and_refuses_non_concave_samples():
    offset, value = parabolic_peak(np.array([0.0, 1.0]), np.array([1.0, 1.0]),
                                   np.array([5.0, 1.0]))  # rising; flat
    np.testing.assert_array_equal(offset, [0.0, 0.0])
    np.testing.assert_array_equal(value, [1.0, 1.0])
    offset, _ = parabolic_peak(np.array([0.0]), np.array([1.0]), np.array([1.5]))
    assert offset[0] == 0.5  # vertex beyond half a sample: clipped


def test_quadratic_3x3_vertex_clip_and_fallback():
    u0 = np.array([[0.3, -0.6], [0.0, 0.0], [2.5, 0.1]])
    vals = np.stack([5 - (GRID_3X3[:, 0] - a) ** 2 - 2 * (GRID_3X3[:, 1] - b) ** 2
                     - 0.5 * (GRID_3X3[:, 0] - a) * (GRID_3X3[:, 1] - b) for a, b in u0])
    got = quadratic_peak_3x3(vals)
    np.testing.assert_allclose(got[:2], u0[:2], atol=1e-12)
    np.testing.assert_allclose(got[2], [1.0, 0.1], atol=1e-12)  # u clipped to 1
    saddle = GRID_3X3[:, 0] ** 2 - GRID_3X3[:, 1] ** 2
    np.testing.assert_array_equal(quadratic_peak_3x3(saddle[None]), GRID_3X3[[saddle.argmax()]])


def test_two_psi_peaks_best_and_distinct_second():
    n_psi = 36  # 10 deg samples
    c = np.zeros((1, 1, n_psi, 2, 1))
    c[0, 0, 5, 1, 0] = 1.0  # best: psi index 5, offset 1
    c[0, 0, 6, 0, 0] = 0.9  # 10 deg away: too close for a 15 deg separation
    c[0, 0, 20, 0, 0] = 0.5  # 150 deg away
    out = two_psi_peaks(c, 15.0)[:, 0, 0, 0]
    np.testing.assert_array_equal(out, [1.0, 5, 1, 0.5, 20])
    none = two_psi_peaks(c, 180.0)[:, 0, 0, 0]
    assert none[3] == -np.inf
