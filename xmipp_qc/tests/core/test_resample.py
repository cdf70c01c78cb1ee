"""Known-answer tests of core/resample.py (Fourier crop/pad, origin N//2 -> M//2)."""

from __future__ import annotations

import numpy as np
import pytest

from xmipp_qc.core.projection import project
from xmipp_qc.core.resample import fourier_resize, resize_to_pixel_size, resized_box
from xmipp_qc.core.simulate import blobs_volume, phantom_blobs, random_angles


def _grid(n, ndim, pixel):
    """Physical coordinates (Å) of the pixels of an n^ndim box, origin at n//2."""
    g = (np.arange(n) - n // 2) * pixel
    return np.meshgrid(*([g] * ndim), indexing="ij")


def _waves(coords, length):
    """A real band-limited function, periodic over the box length (Å)."""
    freqs = [(1, 0, 2), (3, -2, 1), (-4, 5, 3), (7, 1, -6)]  # cycles per box
    out = np.zeros_like(coords[0])
    for i, f in enumerate(freqs):
        phase = sum(fk * c for fk, c in zip(f, coords)) / length
        out += (1.0 + i) * np.cos(2 * np.pi * phase + 0.3 * i)
    return out


@pytest.mark.parametrize("n", [64, 65])
@pytest.mark.parametrize("m", [32, 33, 48, 96, 97])
@pytest.mark.parametrize("ndim", [2, 3])
def test_band_limited_functions_are_resampled_exactly(n, m, ndim):
    if ndim == 3 and m > 64:
        m = m - 40  # keep the 3D case small
    pixel = 1.3
    length = n * pixel
    src = _waves(_grid(n, ndim, pixel), length)
    new_pixel = pixel * n / m
    want = _waves(_grid(m, ndim, new_pixel), length)
    got = fourier_resize(src, m, ndim=ndim)
    assert got.shape == (m,) * ndim and got.dtype == np.float64
    np.testing.assert_allclose(got, want, atol=1e-9 * np.abs(want).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, m", [(64, 32), (65, 32), (64, 33), (33, 64), (32, 65)])
def test_constant_and_origin_are_preserved(n, m, dtype):
    const = np.full((n, n), 2.5, dtype=dtype)
    out = fourier_resize(const, m)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, 2.5, rtol=1e-5 if dtype == np.float32 else 1e-12)
    # a smooth blob at the origin N//2 peaks at M//2
    yy, xx = _grid(n, 2, 1.0)
    blob = np.exp(-(xx**2 + yy**2) / (2 * 4.0**2)).astype(dtype)
    out = fourier_resize(blob, m)
    assert np.unravel_index(np.argmax(out), out.shape) == (m // 2, m // 2)


def test_no_aliasing_when_cropping():
    """A wave above the new Nyquist frequency disappears instead of folding back."""
    n, m = 64, 32
    x = np.arange(n) - n // 2
    wave = np.cos(2 * np.pi * 26 / 64 * x)[None, :] * np.ones((n, 1))  # 0.41 cycles/px
    assert np.abs(fourier_resize(wave, m)).max() < 1e-12
    slow = np.cos(2 * np.pi * 0.125 * x)[None, :] * np.ones((n, 1))  # 0.25 cycles/px after
    out = fourier_resize(slow, m)
    np.testing.assert_allclose(
        out[0], np.cos(2 * np.pi * 0.25 * (np.arange(m) - m // 2)), atol=1e-12
    )


@pytest.mark.parametrize("n, m", [(64, 96), (65, 96), (64, 97), (65, 130)])
def test_pad_then_crop_is_the_identity(n, m):
    rng = np.random.default_rng(0)
    img = rng.normal(size=(n, n))
    back = fourier_resize(fourier_resize(img, m), n)
    np.testing.assert_allclose(back, img, atol=1e-10)


def test_stacks_are_resized_image_by_image():
    rng = np.random.default_rng(1)
    stack = rng.normal(size=(16, 16, 16))  # a cubic stack: ndim must be given
    out = fourier_resize(stack, 10, ndim=2)
    assert out.shape == (16, 10, 10)
    np.testing.assert_allclose(out[3], fourier_resize(stack[3], 10), atol=1e-12)
    assert fourier_resize(stack, 10).shape == (10, 10, 10)  # default: a volume
    assert fourier_resize(rng.normal(size=(5, 16, 16)), 8).shape == (5, 8, 8)


@pytest.mark.parametrize("n, m", [(64, 40), (65, 48)])
def test_projection_normalisation(n, m):
    """project(resize(V)) * N / M == resize(project(V)): values are preserved, and
    projections are line integrals in voxel units."""
    blobs = phantom_blobs(n, seed=4)
    vol = blobs_volume(blobs, n)
    angles = random_angles(3, seed=6)
    a = project(fourier_resize(vol, m), angles, interpolation="cubic") * n / m
    b = fourier_resize(project(vol, angles, interpolation="cubic"), m, ndim=2)
    np.testing.assert_allclose(a, b, atol=2e-3 * np.abs(b).max())
    # integrated mass scales with the pixel area: sum(b) = sum(P) * (M/N)^2
    p = project(vol, angles)
    np.testing.assert_allclose(b.sum((1, 2)), p.sum((1, 2)) * (m / n) ** 2, rtol=1e-6)


@pytest.mark.parametrize(
    "box, px, target, even, want",
    [
        (64, 1.5, 3.0, False, (32, 3.0)),
        (65, 1.0, 3.0, False, (22, 65 / 22)),
        (100, 1.0, 3.0, False, (33, 100 / 33)),
        (100, 1.0, 3.0, True, (34, 100 / 34)),
        (64, 3.0, 1.0, False, (192, 1.0)),
        (10, 1.0, 100.0, False, (2, 5.0)),
    ],
)
def test_resized_box_bookkeeping(box, px, target, even, want):
    m, new_px = resized_box(box, px, target, even=even)
    assert m == want[0]
    assert new_px == pytest.approx(want[1], rel=1e-12)
    assert m * new_px == pytest.approx(box * px)  # the physical box is preserved


def test_resize_to_pixel_size_returns_the_exact_pixel_size():
    img = np.zeros((65, 65), dtype=np.float32)
    out, px = resize_to_pixel_size(img, 1.0, 3.0)
    assert out.shape == (22, 22) and out.dtype == np.float32
    assert px == pytest.approx(65 / 22)


@pytest.mark.parametrize(
    "data, box, kwargs",
    [
        (np.zeros((8, 8)), 1, {}),
        (np.zeros((8, 8)), 4.5, {}),
        (np.zeros((8, 9)), 4, {}),
        (np.zeros(8), 4, {}),
        (np.zeros((8, 8)), 4, {"ndim": 3}),
        (np.full((8, 8), np.nan), 4, {}),
        (np.zeros((8, 8), complex), 4, {}),
    ],
)
def test_bad_input_raises(data, box, kwargs):
    with pytest.raises(ValueError):
        fourier_resize(data, box, **kwargs)
    with pytest.raises(ValueError):
        resized_box(64, 0.0, 1.0)
