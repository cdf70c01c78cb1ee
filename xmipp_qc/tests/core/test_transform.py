"""Image operations: known answers for shift, rotation, mirror, masks, normalisation, filter."""

import numpy as np
import pytest
from scipy import ndimage

from xmipp_qc.core.geometry import euler_to_matrix
from xmipp_qc.core.transform import (
    circular_mask,
    low_pass,
    mirror_x,
    normalize,
    normalize_background,
    rotate_images,
    shift_images,
)

BOXES = [31, 32]
DTYPES = [np.float32, np.float64]


def gaussian_image(box, centre=(0.0, 0.0), sigma=2.0):
    c = np.arange(box) - box // 2
    x, y = c[None, :], c[:, None]
    return np.exp(-((x - centre[0]) ** 2 + (y - centre[1]) ** 2) / (2 * sigma**2))


def correlation_shift(moved, ref):
    """(x, y) translation of ``moved`` relative to ``ref`` by FFT cross-correlation.

    Sub-pixel peak by a 3-point Gaussian (log-parabola) fit, exact for Gaussian blobs.
    """
    box = ref.shape[-1]
    corr = np.fft.fftshift(np.real(np.fft.ifft2(np.fft.fft2(moved) * np.conj(np.fft.fft2(ref)))))
    iy, ix = np.unravel_index(np.argmax(corr), corr.shape)

    def vertex(m, c, p):
        m, c, p = np.log(m), np.log(c), np.log(p)
        return 0.5 * (m - p) / (m - 2 * c + p)

    dy = vertex(corr[iy - 1, ix], corr[iy, ix], corr[iy + 1, ix])
    dx = vertex(corr[iy, ix - 1], corr[iy, ix], corr[iy, ix + 1])
    return np.array([ix + dx - box // 2, iy + dy - box // 2])


# -------------------------------------------------------------------- shift
@pytest.mark.parametrize("box", BOXES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_integer_shift_is_roll_and_sign(box, dtype):
    img = np.random.default_rng(0).normal(size=(box, box)).astype(dtype)
    out = shift_images(img, [3, -2])
    assert out.dtype == dtype and out.shape == img.shape
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, np.roll(img, (-2, 3), axis=(0, 1)), atol=tol)
    delta = np.zeros((box, box), dtype)
    delta[box // 2, box // 2] = 1
    moved = shift_images(delta, [2.0, 0.0])  # content moves to +x: I_out(r) = I(r - s)
    assert np.unravel_index(np.argmax(moved), moved.shape) == (box // 2, box // 2 + 2)


@pytest.mark.parametrize("box", BOXES)
@pytest.mark.parametrize("shift", [(1.3, -0.7), (-2.25, 0.4)])
def test_subpixel_shift_moves_a_gaussian_and_is_recovered(box, shift):
    img = gaussian_image(box)
    moved = shift_images(img, shift)
    np.testing.assert_allclose(moved, gaussian_image(box, shift), atol=1e-6)
    np.testing.assert_allclose(correlation_shift(moved, img), shift, atol=1e-3)
    np.testing.assert_allclose(shift_images(moved, -np.asarray(shift)), img, atol=1e-9)


def test_shift_stack_per_image_and_errors():
    stack = np.stack([gaussian_image(24), gaussian_image(24)]).astype(np.float32)
    out = shift_images(stack, [[1.5, 0.0], [0.0, -1.5]])
    assert out.shape == (2, 24, 24) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], gaussian_image(24, (1.5, 0)), atol=1e-5)
    np.testing.assert_allclose(out[1], gaussian_image(24, (0, -1.5)), atol=1e-5)
    with pytest.raises(ValueError, match="shifts"):
        shift_images(stack, [[1, 2, 3]])
    with pytest.raises(ValueError, match="shape"):
        shift_images(np.zeros((4, 5)), [0, 0])


# ------------------------------------------------------------------ rotation
@pytest.mark.parametrize("box", BOXES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_rotate_90_is_rot90_about_n_half(box, dtype):
    img = np.random.default_rng(1).normal(size=(box, box)).astype(dtype)
    out = rotate_images(img, 90.0)
    assert out.dtype == dtype
    ref = np.rot90(img)  # rotates about (N-1)/2; about N//2 it is one row lower for even N
    rows = slice(None)
    if box % 2 == 0:
        ref, rows = np.roll(ref, 1, axis=0), slice(1, None)  # row 0 comes from outside
        np.testing.assert_allclose(out[0], 0, atol=1e-6)
    np.testing.assert_allclose(out[rows], ref[rows], atol=1e-5 if dtype == np.float32 else 1e-10)
    # out(x, y) = I(R r): at 90 degrees the pixel at x = +3 (y = 0) comes from y = +3
    h = box // 2
    assert out[h, h + 3] == pytest.approx(img[h + 3, h], abs=1e-5)


@pytest.mark.parametrize("box", BOXES)
def test_rotate_small_gaussian_moves_its_centre(box):
    img = gaussian_image(box, (5.0, 0.0), sigma=2.0)
    out = rotate_images(np.stack([img, img]), [30.0, -30.0])
    # I(R r) puts the content at R^-1 c: (5 cos 30, -5 sin 30) for +30 degrees
    a = np.radians(30)
    np.testing.assert_allclose(out[0], gaussian_image(box, (5 * np.cos(a), -5 * np.sin(a)), 2.0),
                               atol=2e-3)  # fmt: skip
    np.testing.assert_allclose(out[1], gaussian_image(box, (5 * np.cos(a), 5 * np.sin(a)), 2.0),
                               atol=2e-3)  # fmt: skip


def blob_volume(box):
    """Asymmetric map of three isotropic Gaussian blobs, [z, y, x], origin N//2."""
    c = np.arange(box) - box // 2
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    vol = np.zeros((box,) * 3)
    for (bx, by, bz), s, amp in [((6, 0, 2), 2.0, 1.0), ((-3, 5, -4), 2.5, 0.7),
                                 ((0, -7, 3), 1.8, 1.3)]:  # fmt: skip
        vol += amp * np.exp(-((x - bx) ** 2 + (y - by) ** 2 + (z - bz) ** 2) / (2 * s**2))
    return vol


def project(vol, angles):
    """P(x, y) = sum_z V(E.T [x, y, z]) by trilinear sampling (Xmipp's definition)."""
    box = vol.shape[0]
    c = np.arange(box) - box // 2
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    r = np.stack([x, y, z], axis=-1) @ euler_to_matrix(angles)  # rows: E.T @ [x, y, z]
    coords = np.stack([r[..., 2], r[..., 1], r[..., 0]]) + box // 2
    return ndimage.map_coordinates(vol, coords.reshape(3, -1), order=1).reshape(z.shape).sum(0)


@pytest.mark.parametrize("box", [40, 41])
def test_rotation_sense_matches_psi(box):
    vol = blob_volume(box)
    rot, tilt, psi = 25.0, 60.0, 40.0
    p0 = project(vol, [rot, tilt, 0.0])
    p_psi = project(vol, [rot, tilt, psi])
    rotated = rotate_images(p0, psi)
    wrong = rotate_images(p0, -psi)
    scale = p_psi.max()
    assert np.abs(rotated - p_psi).max() < 0.01 * scale
    assert np.abs(wrong - p_psi).max() > 0.3 * scale


# -------------------------------------------------------------------- mirror
@pytest.mark.parametrize("box", BOXES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_mirror_x_about_n_half(box, dtype):
    img = np.random.default_rng(2).normal(size=(3, box, box)).astype(dtype)
    out = mirror_x(img)
    assert out.dtype == dtype and out.shape == img.shape
    h = box // 2
    np.testing.assert_array_equal(out[..., h], img[..., h])
    for dx in (1, 5, h - 1):
        np.testing.assert_array_equal(out[..., h + dx], img[..., h - dx])
    np.testing.assert_array_equal(out[..., (2 * h - np.arange(box)) % box], img)
    np.testing.assert_array_equal(mirror_x(out), img)
    if box % 2:
        np.testing.assert_array_equal(out, img[..., ::-1])


# --------------------------------------------------------------------- masks
@pytest.mark.parametrize("box", BOXES)
@pytest.mark.parametrize("radius, count", [(0, 1), (1, 5), (np.sqrt(2), 9), (2, 13), (3, 29),
                                           (5, 81), (10, 317)])  # fmt: skip
def test_hard_mask_counts_gauss_circle(box, radius, count):
    m = circular_mask(box, radius, dtype=bool)
    assert m.dtype == bool and m.sum() == count and m[box // 2, box // 2]
    assert m[box // 2, box // 2 + int(radius)]  # inclusive radius


def test_soft_mask_raised_cosine_values():
    m = circular_mask(64, 10.0, soft_edge=4.0)
    h = 32
    assert m[h, h + 10] == 1.0 and m[h, h + 12] == pytest.approx(0.5) and m[h, h + 14] == 0
    assert m[h, h + 11] == pytest.approx(0.5 * (1 + np.cos(np.pi / 4)))
    assert circular_mask(64, 10.0, soft_edge=4.0, dtype=np.float32).dtype == np.float32
    with pytest.raises(ValueError):
        circular_mask(64, -1.0)


# ------------------------------------------------------------- normalisation
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("where", ["inside", "outside"])
def test_normalize_region(dtype, where):
    rng = np.random.default_rng(3)
    img = (5 + 3 * rng.normal(size=(2, 32, 32))).astype(dtype)
    mask = circular_mask(32, 10, dtype=bool)
    out = normalize(img, mask, where=where)
    region = mask if where == "inside" else ~mask
    assert out.dtype == dtype
    np.testing.assert_allclose(out[:, region].mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(out[:, region].std(axis=1), 1, atol=1e-5)


def test_normalize_background_is_xmipp_new_xmipp():
    rng = np.random.default_rng(4)
    img = rng.normal(2.0, 0.5, size=(48, 48)) + 10 * gaussian_image(48, sigma=5)
    out = normalize_background(img, radius=20)
    bg = ~circular_mask(48, 20, dtype=bool)
    assert out[bg].mean() == pytest.approx(0, abs=1e-12)
    assert out[bg].std() == pytest.approx(1, abs=1e-12)
    assert out[24, 24] == pytest.approx((img[24, 24] - img[bg].mean()) / img[bg].std())
    flat = normalize(np.full((8, 8), 3.0))
    np.testing.assert_array_equal(flat, 0.0)
    with pytest.raises(ValueError, match="no pixels"):
        normalize(img, np.ones((48, 48), bool), where="outside")


# ------------------------------------------------------------------- low-pass
@pytest.mark.parametrize("dtype", DTYPES)
def test_low_pass_gain_at_known_frequencies(dtype):
    box = 40
    x = np.arange(box)[None, :].repeat(box, axis=0)

    def wave(k):
        return np.cos(2 * np.pi * k * x / box).astype(dtype)

    # 2 A/px and 8 A: cut-off 0.25 cycles/px = 10/40; edge 0.1 wide -> 0.2 .. 0.3
    tol = 1e-5 if dtype == np.float32 else 1e-12
    out = low_pass(np.stack([wave(4), wave(10), wave(14), wave(9)]), 8.0, 2.0, edge_width=0.1)
    assert out.dtype == dtype
    np.testing.assert_allclose(out[0], wave(4), atol=tol)  # 0.1 passes
    np.testing.assert_allclose(out[1], 0.5 * wave(10), atol=tol)  # 0.25: half
    np.testing.assert_allclose(out[2], 0, atol=tol)  # 0.35 stopped
    gain9 = 0.5 * (1 + np.cos(np.pi * (0.225 - 0.2) / 0.1))
    np.testing.assert_allclose(out[3], gain9 * wave(9), atol=tol)
    with pytest.raises(ValueError, match="Nyquist"):
        low_pass(wave(4), 3.0, 2.0)
