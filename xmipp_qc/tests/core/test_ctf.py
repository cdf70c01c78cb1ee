"""Known-answer tests of core/ctf.py (sign and astigmatism are pinned on RELION
data in test_relion_conventions.py)."""

from __future__ import annotations

import numpy as np
import pytest

from xmipp_qc.core.ctf import ctf_image, electron_wavelength_a


@pytest.mark.parametrize("kv, lam", [(300.0, 0.019687), (200.0, 0.025079), (100.0, 0.037014)])
def test_wavelength(kv, lam):
    assert electron_wavelength_a(kv) == pytest.approx(lam, abs=2e-6)


@pytest.mark.parametrize("box", [64, 65])
def test_layouts_and_shapes(box):
    full = ctf_image(box, 1.5, 15000.0, 14000.0, 30.0, rfft=False)
    half = ctf_image(box, 1.5, 15000.0, 14000.0, 30.0)
    assert full.shape == (box, box) and half.shape == (box, box // 2 + 1)
    # even N: the Nyquist column is kx = +1/2 in rfft layout but -1/2 in fft layout
    m = box // 2 if box % 2 == 0 else box // 2 + 1
    np.testing.assert_allclose(half[:, :m], full[:, :m], atol=0)
    neg = (-np.arange(box)) % box
    sym = full[np.ix_(neg, neg)]
    keep = np.arange(box) != box // 2 if box % 2 == 0 else np.ones(box, bool)  # not Nyquist
    np.testing.assert_allclose(full[np.ix_(keep, keep)], sym[np.ix_(keep, keep)], atol=1e-12)
    batch = ctf_image(box, 1.5, [15000.0, 20000.0, 9000.0], 14000.0, [30.0, 0.0, 10.0])
    assert batch.shape == (3, box, box // 2 + 1)
    np.testing.assert_allclose(batch[0], half, atol=0)


def test_dc_is_amplitude_contrast_and_phase_plate():
    assert ctf_image(32, 1.0, 1e4, 1e4, 0.0, amplitude_contrast=0.07)[0, 0] == pytest.approx(0.07)
    plate = ctf_image(32, 1.0, 0.0, 0.0, 0.0, amplitude_contrast=0.0, phase_shift_deg=90.0)
    assert plate[0, 0] == pytest.approx(1.0)
    assert ctf_image(32, 1.0, 0.0, 0.0, 0.0, amplitude_contrast=0.0, cs_mm=0.0)[5, 7] == 0.0


def test_first_zero_of_an_aberration_free_ctf():
    """Cs = 0, Q0 = 0: CTF = sin(pi lam df k^2); first zero at k = 1/sqrt(lam df)."""
    box, apix, df = 512, 1.0, 20000.0
    c = ctf_image(box, apix, df, df, 0.0, cs_mm=0.0, amplitude_contrast=0.0)
    k = np.fft.rfftfreq(box) / apix
    row = c[0]
    assert np.all(row[1:5] > 0)  # underfocus: positive at low frequency (RELION sign)
    first = np.flatnonzero(np.diff(np.sign(row[1:])) != 0)[0] + 1
    k0 = 1 / np.sqrt(electron_wavelength_a(300.0) * df)
    assert k[first] <= k0 <= k[first + 1]


def test_spherical_aberration_term():
    """Cs only (df = 0, Q0 = 0): CTF = -sin(pi/2 Cs lam^3 k^4)."""
    box, apix = 128, 0.8
    c = ctf_image(box, apix, 0.0, 0.0, 0.0, cs_mm=2.7, amplitude_contrast=0.0)
    k = np.fft.rfftfreq(box)[-1] / apix
    lam = electron_wavelength_a(300.0)
    assert c[0, -1] == pytest.approx(-np.sin(0.5 * np.pi * 2.7e7 * lam**3 * k**4), abs=1e-12)


@pytest.mark.parametrize("angle", [0.0, 45.0, 90.0, 135.0, -45.0])
def test_astigmatism_axis_follows_the_defocus_angle(angle):
    """Along theta = angle the CTF is the isotropic CTF of defocus U, along
    angle + 90 that of V (theta from +x towards +y of a [y, x] image; grid lines
    at multiples of 45 degrees hold exact samples)."""
    box, apix, du, dv = 256, 1.0, 22000.0, 16000.0
    c = ctf_image(box, apix, du, dv, angle, rfft=False)
    cu = ctf_image(box, apix, du, du, 0.0, rfft=False)
    cv = ctf_image(box, apix, dv, dv, 0.0, rfft=False)
    r = np.arange(1, 60)
    for theta, iso in ((angle, cu), (angle + 90.0, cv)):
        t = np.radians(theta)
        ix = np.rint(r * np.cos(t)).astype(int) % box
        iy = np.rint(r * np.sin(t)).astype(int) % box
        np.testing.assert_allclose(c[iy, ix], iso[iy, ix], atol=1e-12)
        assert np.abs(c[iy, ix] - cv[iy, ix] if iso is cu else c[iy, ix] - cu[iy, ix]).max() > 0.5
    # the angle is an axis: +180 degrees is the same CTF
    np.testing.assert_allclose(
        ctf_image(box, apix, du, dv, angle + 180.0, rfft=False), c, atol=1e-9
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"box": 1},
        {"pixel_size_a": 0.0},
        {"amplitude_contrast": 1.0},
        {"cs_mm": -1.0},
        {"voltage_kv": 0.0},
        {"defocus_u_a": np.ones((2, 2))},
        {"defocus_u_a": np.nan},
    ],
)
def test_bad_input_raises(kwargs):
    args = {"box": 32, "pixel_size_a": 1.0, "defocus_u_a": 1e4, "defocus_v_a": 1e4}
    args["defocus_angle_deg"] = 0.0
    args.update(kwargs)
    with pytest.raises(ValueError):
        ctf_image(**args)
