"""Known-answer tests of the polar Fourier representation (xmipp_qc.core.polar)."""

from __future__ import annotations

import numpy as np
import pytest

from xmipp_qc.core.polar import PolarGrid, rotational_correlation, soft_disk
from xmipp_qc.core.simulate import phantom_blobs, project_blobs


def _blob_images(box, angles, shifts=None):
    blobs = phantom_blobs(box, seed=4)
    return project_blobs(blobs, np.asarray(angles, float), shifts, box=box)


@pytest.mark.parametrize("box", [47, 48])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_samples_equal_dft_at_grid_frequencies(box, dtype):
    img = _blob_images(box, [[10, 70, 20]]).astype(dtype)
    grid = PolarGrid.create(box, 0.25, box / 2)
    half = grid.sample(img)[0]
    # theta = 0 samples kx = j / N, ky = 0: the DFT of ifftshift(img) at column j
    dft = np.fft.fft2(np.fft.ifftshift(img[0].astype(np.float64)))
    expected = dft[0, 1 : grid.n_rings + 1]
    np.testing.assert_allclose(half[:, 0], expected, rtol=2e-4, atol=2e-4 * np.abs(dft).max())
    # theta = pi/2 (n_theta divisible by 4) samples ky = j / N: the DFT at row j
    if grid.n_theta % 4 == 0:
        q = grid.n_theta // 4
        np.testing.assert_allclose(half[:, q], dft[1 : grid.n_rings + 1, 0], rtol=2e-4,
                                   atol=2e-4 * np.abs(dft).max())  # fmt: skip


def test_separable_and_matrix_transforms_agree():
    img = _blob_images(40, [[10, 70, 20], [50, 20, 80]])
    fast = PolarGrid.create(40, 0.3, 20.0)
    slow = PolarGrid.create(40, 0.3, 20.0)
    slow._cache["full"] = None  # force the separable path used for large boxes
    a, b = fast.sample(img), slow.sample(img)
    assert np.abs(a - b).max() < 1e-4 * np.abs(a).max()


def test_grid_sizes_and_band_limit():
    grid = PolarGrid.create(64, 0.25, 32.0)
    assert grid.n_rings == 16
    assert grid.radii[-1] == pytest.approx(0.25)
    assert grid.n_m >= 2 * np.pi * 0.25 * 32  # angular band of a 32 px support
    assert grid.n_theta == 2 * grid.n_m
    wide = PolarGrid.create(64, 0.25, 32.0, image_radius_px=45.0)
    assert wide.n_m == grid.n_m and wide.n_theta >= grid.n_m + 2 * np.pi * 0.25 * 45
    assert grid.kx.shape == (16, grid.n_theta // 2)
    assert np.all(grid.ky >= -1e-12)
    with pytest.raises(ValueError, match="max_freq"):
        PolarGrid.create(64, 0.6, 32.0)
    with pytest.raises(ValueError, match="box"):
        PolarGrid.create(4, 0.25, 2.0)


@pytest.mark.parametrize("box", [63, 64])
@pytest.mark.parametrize("psi", [0.0, 37.0, 181.5, 300.25])
def test_rotational_correlation_peaks_at_psi(box, psi):
    """An image at (rot, tilt, psi) is the psi=0 projection turned by psi: peak at psi."""
    shift = np.array([[1.7, -2.2]])
    ref = _blob_images(box, [[30, 50, 0]])
    img = _blob_images(box, [[30, 50, psi]], shift)
    grid = PolarGrid.create(box, 0.25, box / 2)
    s_ref, s_img = grid.sample(ref), grid.sample(img) * grid.shift_phases(shift)
    w = grid.weights[:, None]
    x = (w * grid.ring_coefficients(s_img)[0] * np.conj(grid.ring_coefficients(s_ref)[0])).sum(0)
    c = rotational_correlation(x, 1440, grid.n_theta)
    peak = np.argmax(c) * 360 / 1440
    assert abs((peak - psi + 180) % 360 - 180) <= 0.25
    # normalised by the two norms the peak is the correlation of equal images: ~1
    norm = [2 * (w * np.abs(s) ** 2).sum() for s in (s_ref, s_img)]
    assert c.max() / np.sqrt(norm[0] * norm[1]) == pytest.approx(1.0, abs=2e-3)


def test_shift_phases_undo_a_shift():
    box, shift = 64, np.array([[3.3, -1.4]])
    grid = PolarGrid.create(box, 0.25, box / 2)
    centred = grid.sample(_blob_images(box, [[5, 80, 10]]))
    moved = grid.sample(_blob_images(box, [[5, 80, 10]], shift))
    back = moved * grid.shift_phases(shift)
    assert np.abs(back - centred).max() < 1e-3 * np.abs(centred).max()
    assert np.abs(moved - centred).max() > 0.3 * np.abs(centred).max()  # the shift mattered


def test_sample_filter_matches_analytic_even_filter():
    box = 64
    f = np.fft.fftfreq(box)
    ky, kx = f[:, None], np.fft.rfftfreq(box)[None, :]

    def h(kx, ky):
        return np.cos(40 * (kx**2 + 0.5 * ky**2)) + 0.3 * kx * ky

    grid = PolarGrid.create(box, 0.25, box / 2)
    sampled = grid.sample_filter(h(kx, ky))[0]
    exact = h(grid.kx, grid.ky)
    assert np.abs(sampled - exact).max() < 0.02
    with pytest.raises(ValueError, match="filters"):
        grid.sample_filter(np.ones((box, box)))


@pytest.mark.parametrize("box", [31, 32])
def test_soft_disk(box):
    m = soft_disk(box, 10.0, 3.0)
    c = box // 2
    assert m[c, c] == 1.0 and m[c, c + 7] == 1.0
    assert m[c, c + 10] == 0.0 and m[0, 0] == 0.0
    assert 0 < m[c, c + 9] < m[c, c + 8] < 1
    np.testing.assert_array_equal(m, m.T)
