"""Known answers of the Xmipp similarity measures (xmipp_qc.core.similarity)."""

from __future__ import annotations

import numpy as np
import pytest

from xmipp_qc.core.similarity import (
    correlation_index,
    correlation_masked,
    correlation_weighted,
    fit_gray,
    imed_distance,
    masked_correlation,
    similarity_scores,
)
from xmipp_qc.core.transform import circular_mask


def _stack(box: int, n: int = 4, seed: int = 0, dtype=np.float64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = np.arange(box) - box // 2
    out = []
    for _ in range(n):
        x0, y0 = rng.uniform(-box / 6, box / 6, 2)
        out.append(np.exp(-((c[None] - x0) ** 2 + (c[:, None] - y0) ** 2) / (2 * (box / 8) ** 2)))
    return np.asarray(out, dtype=dtype)


@pytest.mark.parametrize("box", [31, 32])
def test_default_mask_radius_and_centre(box):
    m = circular_mask(box, dtype=bool)
    assert m[box // 2, box // 2] and m[box // 2, 0] and m[0, box // 2]
    assert not m[0, 0]
    assert m.sum() == pytest.approx(np.pi * (box // 2) ** 2, rel=0.05)
    assert circular_mask(box, 3, dtype=bool).sum() == 29  # lattice points with x^2 + y^2 <= 9


@pytest.mark.parametrize("box", [31, 32])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_correlations_affine_invariant(box, dtype):
    p = _stack(box, dtype=dtype)
    for f in (masked_correlation, correlation_index, correlation_masked):
        np.testing.assert_allclose(f(2.5 * p + 3.0, p), 1.0, atol=1e-6)
        np.testing.assert_allclose(f(-p, p), -1.0, atol=1e-6)
    assert correlation_index(p, p).dtype == np.float64


def test_correlation_index_is_numpy_corrcoef():
    rng = np.random.default_rng(1)
    p = _stack(24, 3)
    x = p + 0.3 * rng.standard_normal(p.shape)
    want = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(x, p)]
    np.testing.assert_allclose(correlation_index(x, p), want, rtol=1e-12)


def test_masked_correlation_ignores_outside_mask():
    p = _stack(32, 2)
    x = p.copy()
    x[:, 0, 0] = 1e6  # corner is outside the disc
    np.testing.assert_allclose(masked_correlation(x, p), 1.0, atol=1e-12)
    assert correlation_index(x, p).max() < 0.1


def test_correlation_masked_matches_definition():
    rng = np.random.default_rng(2)
    p = _stack(20, 3)
    x = p + 0.2 * rng.standard_normal(p.shape)
    got = correlation_masked(x, p)
    for k in range(3):
        th = p[k].std()
        ge, gt = p[k] >= th, p[k] > th
        mp, mx = p[k][ge].mean(), x[k][ge].mean()
        a, b = p[k][gt] - mp, x[k][gt] - mx
        assert got[k] == pytest.approx((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def test_correlation_weighted_definition_and_empty_set():
    rng = np.random.default_rng(3)
    p = _stack(20, 2)
    x = p + 0.2 * rng.standard_normal(p.shape)
    got = correlation_weighted(x, p)
    for k in range(2):
        d = p[k] - x[k]
        w = np.abs(d) > d.std()
        wt = np.abs(d)[w]
        a, b = p[k][w] - p[k][w].mean(), x[k][w] - x[k][w].mean()
        want = (wt * a * b).sum() / np.sqrt((wt * a * a).sum() * (wt * b * b).sum())
        assert got[k] == pytest.approx(want)
    np.testing.assert_array_equal(correlation_weighted(p, p), -1.0)  # D = 0: W empty


@pytest.mark.parametrize("box", [31, 32])
def test_imed_known_answers(box):
    p = _stack(box, 2)
    np.testing.assert_allclose(imed_distance(p, p), 0.0, atol=1e-12)
    x = p.copy()
    x[:, box // 2, box // 2] -= 2.0  # d = +2 at one pixel: IMED = 2 g(0)^(1/2)
    np.testing.assert_allclose(imed_distance(x, p), 2.0 * (2 * np.pi) ** -0.25, rtol=1e-12)
    # two neighbouring unit differences: 2 g(0) + 2 g(1)
    x = p.copy()
    x[:, box // 2, box // 2] -= 1.0
    x[:, box // 2, box // 2 + 1] -= 1.0
    want = np.sqrt((2 + 2 * np.exp(-0.5)) / np.sqrt(2 * np.pi))
    np.testing.assert_allclose(imed_distance(x, p), want, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fit_gray_recovers_scale_offset(dtype):
    p = _stack(33, 3, dtype=dtype)
    a, b, se = fit_gray(2.5 * p - 1.0, p)
    np.testing.assert_allclose(a, 2.5, rtol=1e-5)
    np.testing.assert_allclose(b, -1.0, atol=1e-5)
    np.testing.assert_allclose(se, 0.0, atol=1e-5)
    rng = np.random.default_rng(0)
    noisy = 2.5 * p + rng.standard_normal(p.shape)
    a, _, se = fit_gray(noisy, p)
    assert np.all(np.abs(a - 2.5) < 5 * se) and np.all(se > 0.05)


def test_similarity_scores_names_and_bad_shapes():
    p = _stack(16, 2)
    sc = similarity_scores(p, p)
    assert sorted(sc) == ["corrIdx", "corrMask", "corrWeight", "cost", "imedValue"]
    assert all(v.shape == (2,) for v in sc.values())
    with pytest.raises(ValueError, match="differs"):
        masked_correlation(p, p[:1])
    with pytest.raises(ValueError, match="must be"):
        correlation_index(np.zeros((2, 3, 4)), np.zeros((2, 3, 4)))
