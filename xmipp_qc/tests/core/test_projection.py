"""Known-answer tests of the Fourier-slice projector (core/projection.py).

References: exact analytic line integrals of Gaussian-blob phantoms
(``simulate.project_blobs``), the slow real-space projector, axis sums, and
Xmipp's own C++ Fourier projector (``xmippLib.FourierProjector``).
"""

from __future__ import annotations

import numpy as np
import pytest

from xmipp_qc.core.projection import FourierProjector, project, project_real_space
from xmipp_qc.core.simulate import blobs_volume, phantom_blobs, project_blobs, random_angles
from xmipp_qc.core.transform import low_pass
from xmipp_qc.tests.xmipp_projector import xmipp_projections


def ncc(a, b):
    a = a - a.mean()
    b = b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


@pytest.fixture(scope="module", params=[64, 65])
def phantom(request):
    box = request.param
    blobs = phantom_blobs(box, seed=3, n_blobs=10)
    return box, blobs, blobs_volume(blobs, box)


def _axis_sum(vol, axis):
    """Projection along a volume axis from index arithmetic (origin c = N//2).

    z: angles (0, 0, 0), P[y, x] = sum_Z V[Z, y, x].
    x: angles (0, 90, 0), E.T (x, y, z) = (z, y, -x): P[y, x] = sum_X V[-x, y, X].
    y: angles (90, 90, 0), E.T (x, y, z) = (-y, z, -x): P[y, x] = sum_Y V[-x, Y, -y].
    """
    n = vol.shape[0]
    c = n // 2
    i, j = np.mgrid[0:n, 0:n]
    neg_x, neg_y = (2 * c - j) % n, (2 * c - i) % n  # wrap only hits the empty edge
    if axis == "z":
        return [0.0, 0.0, 0.0], vol.sum(axis=0)
    if axis == "x":
        return [0.0, 90.0, 0.0], vol.sum(axis=2)[neg_x, i]
    return [90.0, 90.0, 0.0], vol.sum(axis=1)[neg_x, neg_y]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("interpolation", ["linear", "cubic"])
@pytest.mark.parametrize("axis", ["z", "x", "y"])
def test_axis_projections_equal_axis_sums(phantom, axis, interpolation, dtype):
    box, _, vol = phantom
    ang, ref = _axis_sum(vol, axis)
    fp = FourierProjector(vol.astype(dtype), pad=1, interpolation=interpolation, dtype=dtype)
    got = fp.project(ang)
    assert got.shape == (1, box, box) and got.dtype == dtype
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(got[0], ref, atol=tol * np.abs(ref).max())


@pytest.mark.parametrize("pad", [1, 2, 3])
def test_z_projection_is_exact_for_every_pad(pad):
    rng = np.random.default_rng(0)
    vol = rng.normal(size=(17, 17, 17))  # white noise: all frequencies, odd box
    got = project(vol, [0, 0, 0], pad=pad, interpolation="cubic")[0]
    np.testing.assert_allclose(got, vol.sum(axis=0), atol=1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("interpolation", ["linear", "cubic"])
def test_random_orientations_match_analytic_projections(phantom, interpolation, dtype):
    box, blobs, vol = phantom
    angles = random_angles(8, seed=5)
    fp = FourierProjector(vol, pad=2, interpolation=interpolation, dtype=dtype)
    got = fp.project(angles)
    ref = project_blobs(blobs, angles, box=box)
    worst = min(ncc(a, b) for a, b in zip(got, ref))
    assert worst >= 0.999
    # line-integral normalisation: total mass preserved to 0.1 %
    np.testing.assert_allclose(got.sum((1, 2)), ref.sum((1, 2)), rtol=1e-3)


@pytest.fixture(scope="module")
def real_space_reference(phantom):
    box, blobs, vol = phantom
    angles = random_angles(3, seed=11)
    slow = project_real_space(vol, angles, order=3)
    # the slow reference itself is right: it matches the analytic line integrals
    assert min(map(ncc, slow, project_blobs(blobs, angles, box=box))) >= 0.9999
    return angles, slow


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("interpolation", ["linear", "cubic"])
def test_fourier_matches_real_space_projector(phantom, real_space_reference, interpolation, dtype):
    box, _, vol = phantom
    angles, slow = real_space_reference
    fast = project(vol.astype(dtype), angles, interpolation=interpolation)
    assert fast.dtype == dtype and fast.shape == (3, box, box)
    assert min(ncc(a, b) for a, b in zip(fast, slow)) >= 0.999


def test_accuracy_ordering_of_settings(phantom):
    """Cubic beats linear and pad 2 beats pad 1 (max relative error)."""
    box, blobs, vol = phantom
    angles = random_angles(6, seed=7)
    ref = project_blobs(blobs, angles, box=box)

    def err(pad, interp):
        got = project(vol, angles, pad=pad, interpolation=interp)
        return np.abs(got - ref).max() / ref.max()

    e = {(p, i): err(p, i) for p in (1, 2) for i in ("linear", "cubic")}
    assert e[(2, "cubic")] < e[(1, "cubic")] < e[(1, "linear")]
    assert e[(2, "cubic")] < e[(2, "linear")] < e[(1, "linear")]
    assert e[(2, "cubic")] < 2e-3


def test_shifts_follow_xmipp_convention(phantom):
    """I(r) = P(r + s): an image with shift s is the projection moved by -s."""
    box, blobs, vol = phantom
    angles = random_angles(4, seed=2)
    shifts = np.array([[3.0, 0.0], [0.0, -5.0], [2.5, 1.25], [-7.3, 4.6]])
    got = project(vol, angles, shifts=shifts, interpolation="cubic")
    ref = project_blobs(blobs, angles, shifts, box=box)
    assert min(ncc(a, b) for a, b in zip(got, ref)) >= 0.9999
    # integer shift: exactly a roll of the unshifted projection by -s
    p0 = project(vol, angles[:1])[0]
    p1 = project(vol, angles[:1], shifts=[[3.0, -2.0]])[0]
    np.testing.assert_allclose(p1, np.roll(p0, (2, -3), axis=(0, 1)), atol=1e-9 * np.abs(p0).max())


def test_max_freq_is_a_hard_low_pass(phantom):
    box, _, vol = phantom
    angles = random_angles(3, seed=4)
    fp = FourierProjector(vol, max_freq=0.25, dtype=np.float64)
    spec = fp.project_fourier(angles)
    assert spec.shape == (3, box, box // 2 + 1) and spec.dtype == np.complex128
    ky = np.fft.fftfreq(box)[:, None]
    kx = np.fft.rfftfreq(box)[None, :]
    outside = kx**2 + ky**2 > 0.25**2 + 1e-12
    assert np.all(spec[:, outside] == 0)
    full = FourierProjector(vol, dtype=np.float64).project_fourier(angles)
    inside = ~outside
    np.testing.assert_allclose(spec[:, inside], full[:, inside], atol=1e-9 * np.abs(full).max())


def test_project_fourier_layout_and_ctf(phantom):
    box, _, vol = phantom
    angles = random_angles(2, seed=8)
    fp = FourierProjector(vol, dtype=np.float64)
    spec = fp.project_fourier(angles)
    img = fp.project(angles)
    np.testing.assert_allclose(
        spec, np.fft.rfft2(np.fft.ifftshift(img, axes=(-2, -1))), atol=1e-8 * np.abs(spec).max()
    )
    # a CTF multiplies the spectrum; per-image CTFs broadcast per image
    ky = np.fft.fftfreq(box)[:, None]
    kx = np.fft.rfftfreq(box)[None, :]
    q = np.random.default_rng(1).uniform(100, 400, size=(2, 3, 1, 1))  # even in k, like a CTF
    ctf = np.sin(q[:, 0] * kx**2 + q[:, 1] * ky**2 + q[:, 2] * kx * ky + 0.1)
    tol = 1e-9 * np.abs(spec).max()
    np.testing.assert_allclose(fp.project_fourier(angles, ctf=ctf), spec * ctf, atol=tol)
    np.testing.assert_allclose(fp.project_fourier(angles, ctf=ctf[0]), spec * ctf[0], atol=tol)


def test_psi_is_an_in_plane_rotation(phantom):
    """P(rot, tilt, psi) = P(rot, tilt, 0) rotated: check with psi = 90 on the grid."""
    box, _, vol = phantom
    p0 = project(vol, [[20.0, 40.0, 0.0]], interpolation="cubic")[0]
    p90 = project(vol, [[20.0, 40.0, 90.0]], interpolation="cubic")[0]
    # P_psi(r) = P_0(R(psi) r), R(90) (x, y) = (-y, x)
    c = box // 2
    yy, xx = np.mgrid[0:box, 0:box] - c
    src_x, src_y = -yy + c, xx + c
    ok = (src_x >= 0) & (src_x < box) & (src_y >= 0) & (src_y < box)
    np.testing.assert_allclose(p90[ok], p0[src_y[ok], src_x[ok]], atol=1e-3 * np.abs(p0).max())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"pad": 0},
        {"pad": 1.5},
        {"interpolation": "nearest"},
        {"max_freq": 0.7},
        {"max_freq": 0.0},
        {"dtype": np.int32},
    ],
)
def test_bad_parameters_raise(kwargs):
    with pytest.raises(ValueError):
        FourierProjector(np.zeros((8, 8, 8)), **kwargs)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="cubic"):
        FourierProjector(np.zeros((8, 8, 9)))
    fp = FourierProjector(np.ones((8, 8, 8)))
    with pytest.raises(ValueError, match="angles"):
        fp.project(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="shifts"):
        fp.project(np.zeros((2, 3)), shifts=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="ctf"):
        fp.project(np.zeros((2, 3)), ctf=np.ones((8, 8)))


def test_many_orientations_are_chunked_consistently():
    blobs = phantom_blobs(32, seed=1)
    vol = blobs_volume(blobs, 32)
    angles = random_angles(300, seed=9)
    fp = FourierProjector(vol, interpolation="cubic", dtype=np.float64)
    all_at_once = fp.project(angles)
    one_by_one = np.stack([fp.project(a)[0] for a in angles[::37]])
    np.testing.assert_allclose(all_at_once[::37], one_by_one, atol=1e-12)


@pytest.mark.parametrize("interpolation", ["linear", "cubic"])
def test_packed_tables_of_any_size_give_the_same_projections(monkeypatch, interpolation):
    """Every packing level of the interpolation table (memory budget) agrees."""
    import xmipp_qc.core.projection as projection

    vol = blobs_volume(phantom_blobs(24, seed=2), 24)
    angles = random_angles(5, seed=3)
    ref = FourierProjector(vol, interpolation=interpolation, dtype=np.float64)
    want = ref.project(angles)
    nbytes = ref._table.shape[0] * 16  # complex128 block
    taps = 2 if interpolation == "linear" else 4
    widths = set()
    for budget in (0, nbytes * taps, nbytes * taps**2, nbytes * taps**3):
        monkeypatch.setattr(projection, "_TABLE_BYTES", budget)
        fp = FourierProjector(vol, interpolation=interpolation, dtype=np.float64)
        widths.add(fp._table.shape[1])
        np.testing.assert_allclose(fp.project(angles), want, atol=1e-12 * np.abs(want).max())
    assert widths == ({1, 2, 4, 8} if taps == 2 else {1, 4})


def test_linear_pad4_band_limited_is_as_accurate_as_cubic_pad1(phantom):
    """The documented fast gallery setting matches Xmipp's (cubic, pad 1, 0.25)."""
    box, blobs, vol = phantom
    angles = random_angles(12, seed=13)
    ref = low_pass(project_blobs(blobs, angles, box=box), 4.0, 1.0, edge_width=0.0)  # 0.25 cyc/px

    def err(**kwargs):
        got = FourierProjector(vol, max_freq=0.25, dtype=np.float64, **kwargs).project(angles)
        return np.abs(got - ref).max() / np.abs(ref).max(), min(map(ncc, got, ref))

    e_fast, c_fast = err(interpolation="linear", pad=4)
    e_cubic, c_cubic = err(interpolation="cubic", pad=1)
    e_lin2, _ = err(interpolation="linear", pad=2)
    assert c_fast >= 0.9999 and c_fast >= c_cubic - 1e-5
    assert e_fast <= 1.25 * e_cubic < e_lin2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("n", "r", "cols"), [(16, 4, 5), (15, 4, 5), (16, 8, 9), (15, 7, 8)])
def test_band_irfft2_equals_centred_irfft2(n, r, cols, dtype):
    """Matrix synthesis of a band = fftshift(irfft2) of the zero-filled rfft2 layout."""
    from xmipp_qc.core.band_dft import band_irfft2, synthesis_matrices

    rng = np.random.default_rng(n + r)
    cdtype = np.complex64 if dtype == np.float32 else np.complex128
    shape = (3, 2 * r + 1, cols)
    band = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    if 2 * r == n:  # ky = -n/2 and +n/2 are one rfft2 row: keep +n/2 only
        band[:, 0] = 0.0
    spec = np.zeros((3, n, n // 2 + 1), complex)
    spec[:, np.arange(-r, r + 1) % n, :cols] = band  # duplicate row: the last (+n/2) wins
    want = np.fft.fftshift(np.fft.irfft2(spec, s=(n, n)), axes=(-2, -1))
    out = np.empty((3, n, n), dtype)
    band_irfft2(band.astype(cdtype), *synthesis_matrices(n, r, cols, dtype), out)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, want, atol=tol * np.abs(want).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("interpolation", ["linear", "cubic"])
def test_band_limited_images_match_their_spectra(phantom, interpolation, dtype):
    """Narrow band (matrix synthesis): project = centred irfft2 of project_fourier, with filters."""
    box, _, vol = phantom
    angles = random_angles(5, seed=11)
    fp = FourierProjector(vol, interpolation=interpolation, max_freq=0.2, pad=1, dtype=dtype)
    ky = np.fft.fftfreq(box)[:, None]
    kx = np.fft.rfftfreq(box)[None, :]
    ctf = np.cos(300 * (kx**2 + ky**2))  # even in k, like a CTF
    shifts = np.array([[1.5, -2.25]])
    img = fp.project(angles, shifts=shifts, ctf=ctf)
    spec = fp.project_fourier(angles, shifts=shifts, ctf=ctf)
    want = np.fft.fftshift(np.fft.irfft2(spec, s=(box, box)), axes=(-2, -1))
    assert img.shape == (5, box, box) and img.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(img, want, atol=tol * np.abs(want).max())
    assert np.abs(want).max() > 0.1 * np.abs(fp.project(angles)).max()  # not a trivial zero


@pytest.mark.parametrize("box", [32, 33])
@pytest.mark.parametrize(
    ("pad", "max_freq", "interpolation", "degree"),
    [(1, 0.25, "cubic", 3), (2, 0.5, "linear", 1), (2, 0.5, "cubic", 3)],
)
def test_equals_xmipps_fourier_projector(box, pad, max_freq, interpolation, degree):
    """Same images as Xmipp's C++ projector (its gallery setting first), odd and even box.

    Measured: 1e-11 at Xmipp's gallery setting; ~1e-6 for the full disc, where
    Xmipp's B-spline prefilter mirrors a cropped spectrum and ours is exact.
    """
    vol = blobs_volume(phantom_blobs(box, seed=5, n_blobs=8), box)
    angles = random_angles(6, seed=box)
    want, _ = xmipp_projections(vol, angles, pad=pad, max_freq=max_freq, degree=degree)
    got = FourierProjector(vol, pad=pad, interpolation=interpolation, max_freq=max_freq,
                           dtype=np.float64).project(angles)
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
