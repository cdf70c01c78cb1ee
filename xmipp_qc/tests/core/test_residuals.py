"""Pass 1 of the residual analysis (xmipp_qc.core.residuals): known answers."""

from __future__ import annotations

import numpy as np
import pytest

from xmipp_qc.core.residuals import (
    ChunkSummary,
    gray_residuals,
    residual_covariances,
    summarize_chunk,
)
from xmipp_qc.core.transform import low_pass


def _blobs(box: int, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = np.arange(box) - box // 2
    out = np.zeros((n, box, box))
    for k in range(n):
        for _ in range(3):
            x0, y0 = rng.uniform(-box / 5, box / 5, 2)
            r2 = (c[None] - x0) ** 2 + (c[:, None] - y0) ** 2
            out[k] += np.exp(-r2 / (2 * (box / 10) ** 2))
    return out


@pytest.mark.parametrize("box", [31, 32])
def test_lowpass_keeps_low_and_removes_high_frequency(box):
    y, x = np.mgrid[:box, :box]
    low = np.cos(2 * np.pi * 2 * x / box)  # 2/box cycles/px
    high = np.cos(2 * np.pi * 12 * y / box)  # ~0.38 cycles/px
    # Xmipp's raised cosine: full pass up to 0.2 cycles/px, zero from 0.22 on.
    out = low_pass(low + high, 10.0, 2.0, edge="above")
    np.testing.assert_allclose(out, low, atol=1e-10)
    # A cut-off beyond Nyquist (Xmipp's default 3 A at 3 A/px) changes nothing.
    np.testing.assert_allclose(low_pass(low + high, 3.0, 3.0, edge="above"), low + high,
                               atol=1e-10)
    with pytest.raises(ValueError):
        low_pass(low, resolution_a=0.0, pixel_size_a=1.0, edge="above")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_residual_independent_of_map_scale(dtype):
    rng = np.random.default_rng(0)
    p = _blobs(32, 3).astype(dtype)
    img = 0.7 * p + 0.2 + 0.1 * rng.standard_normal(p.shape)
    r1, a1, b1, _ = gray_residuals(img, p)
    r2, a2, b2, _ = gray_residuals(img, 40.0 * p - 5.0)
    np.testing.assert_allclose(r1, r2, atol=1e-5)
    np.testing.assert_allclose(a1, 40.0 * a2, rtol=1e-5)
    r0, a0, b0, _ = gray_residuals(0.7 * p + 0.2, p)
    np.testing.assert_allclose(r0, 0.0, atol=1e-5)
    np.testing.assert_allclose([a0, b0], [[0.7] * 3, [0.2] * 3], atol=1e-5)


@pytest.mark.parametrize("box", [31, 32])
def test_covariance_white_vs_correlated_noise(box):
    rng = np.random.default_rng(1)
    white = rng.standard_normal((4, box, box))
    cw = residual_covariances(white)
    d = cw.shape[-1]
    assert cw.shape == (4, 9, 9) and cw.dtype == np.float32
    np.testing.assert_allclose(np.diagonal(cw, axis1=1, axis2=2).mean(axis=1), 1.0, rtol=1e-5)
    off = cw - np.eye(d) * np.diagonal(cw, axis1=1, axis2=2)[:, None, :]
    assert np.abs(off).max() < 0.12
    smooth = low_pass(white, 8.0, 1.0, edge="above")
    cs = residual_covariances(smooth)
    assert cs[:, 4, 5].min() > 0.5  # neighbours strongly correlated
    assert np.linalg.eigvalsh(cs.astype(np.float64)).min() >= 0.02 - 1e-6  # shrinkage floor
    assert np.isnan(residual_covariances(np.zeros((1, box, box)))).all()
    with pytest.raises(ValueError, match="odd"):
        residual_covariances(white, patch=2)


def test_summary_flags_bad_images_without_poisoning_others():
    rng = np.random.default_rng(2)
    p = _blobs(24, 6)
    img = p + 0.05 * rng.standard_normal(p.shape)
    img[1] = np.nan
    img[2] = 0.0
    img[3] = 5.0
    p[4] = 1.0
    s = summarize_chunk(img, p)
    assert list(s.reasons) == ["", "non_finite_image", "constant_image", "constant_image",
                               "constant_reprojection", ""]
    np.testing.assert_array_equal(s.valid, [True, False, False, False, False, True])
    for v in s.scores.values():
        assert np.isnan(v[1:5]).all() and np.isfinite(v[[0, 5]]).all()
    good = summarize_chunk(img[[0, 5]], p[[0, 5]])
    for k, v in good.scores.items():
        np.testing.assert_allclose(s.scores[k][[0, 5]], v, rtol=1e-9, atol=1e-12, err_msg=k)
    assert s.scores["cost"][0] > 0.95


def test_summary_concatenate_extra_and_resolution():
    rng = np.random.default_rng(3)
    p = _blobs(32, 8)
    img = p + 0.5 * rng.standard_normal(p.shape)
    whole = summarize_chunk(img, p, extra={"moved": np.arange(8.0)})
    parts = ChunkSummary.concatenate([
        summarize_chunk(img[:3], p[:3], extra={"moved": np.arange(3.0)}),
        summarize_chunk(img[3:], p[3:], extra={"moved": np.arange(3.0, 8.0)}),
    ])
    assert parts.n == 8
    for k in whole.scores:
        np.testing.assert_allclose(parts.scores[k], whole.scores[k], rtol=1e-6, atol=1e-12,
                                   err_msg=k)
    np.testing.assert_array_equal(parts.scores["moved"], np.arange(8.0))
    np.testing.assert_allclose(parts.covariances, whole.covariances, rtol=1e-5)
    # the low-pass comparison removes most of the white noise: correlation rises
    lp = summarize_chunk(img, p, pixel_size_a=1.0, resolution_a=6.0)
    assert np.all(lp.scores["cost"] > whole.scores["cost"] + 0.1)
    assert np.all(lp.scores["resStd"] < 0.5 * whole.scores["resStd"])
    with pytest.raises(ValueError, match="extra"):
        summarize_chunk(img, p, extra={"bad": np.zeros(3)})
    with pytest.raises(ValueError, match="different score names"):
        ChunkSummary.concatenate([whole, summarize_chunk(img, p)])


@pytest.mark.parametrize("box", [32, 33])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_low_band_share_known_answers(box, dtype):
    from xmipp_qc.core.residuals import LOW_BAND_CYCLES, low_band_share

    y, x = np.mgrid[:box, :box]
    low = np.cos(2 * np.pi * 3 * x / box) + np.sin(2 * np.pi * 2 * y / box)  # 3 and 2 cycles
    high = np.cos(2 * np.pi * 9 * x / box)  # 9 cycles per box
    stack = np.stack([low, high, 2.0 * low + 0.0 * high, np.zeros((box, box)),
                      low + high]).astype(dtype)
    share = low_band_share(stack)
    assert share.dtype == np.float64 and share.shape == (5,)
    np.testing.assert_allclose(share[:4], [1.0, 0.0, 1.0, 0.0], atol=1e-9)
    # equal power at 3 and 2 cycles (low) and 9 cycles (high): two thirds low
    np.testing.assert_allclose(share[4], 2 / 3, atol=1e-9)
    # white noise: the share of the Fourier samples in the band
    rng = np.random.default_rng(box)
    noise = rng.standard_normal((400, box, box)).astype(dtype)
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(box) * box, np.fft.fftfreq(box) * box))
    expected = ((k > 0) & (k <= LOW_BAND_CYCLES + 0.5)).sum() / (k > 0).sum()
    assert low_band_share(noise).mean() == pytest.approx(expected, rel=0.05)


def test_summary_has_the_low_band_share():
    from xmipp_qc.core.residuals import summarize_chunk

    rng = np.random.default_rng(5)
    box = 32
    y, x = np.mgrid[:box, :box] - box // 2
    proj = np.exp(-(x**2 + y**2) / 30.0)[None].repeat(4, axis=0)
    images = 3.0 * proj + 0.3 * rng.standard_normal(proj.shape)
    images[1] += 2.0 * np.cos(2 * np.pi * x / box)  # a large-scale gradient the map lacks
    s = summarize_chunk(images, proj).scores["resLowPower"]
    assert s[1] > 0.8 and s[[0, 2, 3]].max() < 0.2
