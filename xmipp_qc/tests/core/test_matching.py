"""Projection matching (xmipp_qc.core.matching): known answers and accuracy bars.

Galleries are built from the exact analytic projections of blob phantoms
(``project_blobs``), so the tests do not depend on the Fourier projector's
interpolation error; one test builds a gallery from a voxel volume, and the
real-data tests match RELION projections of a ribosome map (skipped without
``../shared/data``).
"""

from __future__ import annotations

import numpy as np
import pytest

from xmipp_qc.core.geometry import direction_distance, euler_to_matrix, rotation_distance
from xmipp_qc.core.matching import Gallery, MatchResult, match_images
from xmipp_qc.core.sampling import directions_to_angles
from xmipp_qc.core.simulate import phantom_blobs, project_blobs, simulate_particles
from xmipp_qc.tests.shared_data import SHARED_DATA, missing_shared_data


class BlobProjector:
    """Exact projector of a blob phantom with the FourierProjector interface."""

    def __init__(self, blobs, box):
        self.blobs, self.box = blobs, box

    def project(self, angles):
        return project_blobs(self.blobs, np.asarray(angles, float), box=self.box)


def rotation_error(found, true, symmetry="c1"):
    """Symmetry-aware angle (deg) between found and true orientations."""
    return rotation_distance(found, true, symmetry)


@pytest.fixture(scope="module")
def c1_setup():
    blobs = phantom_blobs(64, seed=0)
    return blobs, Gallery.build(BlobProjector(blobs, 64), angular_step=5.0)


@pytest.mark.parametrize("box", [63, 64])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exact_recovery_at_gallery_orientations(box, dtype):
    """On the grid the direction polish stays put (< 0.5 deg at a 5 deg step)."""
    blobs = phantom_blobs(box, seed=2)
    gallery = Gallery.build(BlobProjector(blobs, box), angular_step=5.0)
    rng = np.random.default_rng(box)
    idx = rng.choice(len(gallery.angles), size=24, replace=False)
    angles = gallery.angles[idx].copy()
    angles[:, 2] = rng.uniform(0, 360, size=24)
    radius = np.sqrt(rng.uniform(0, 1, 24)) * 0.1 * box
    phi = rng.uniform(0, 2 * np.pi, 24)
    shifts = np.column_stack([radius * np.cos(phi), radius * np.sin(phi)])
    images = project_blobs(blobs, angles, shifts, box=box).astype(dtype)
    res = match_images(images, gallery)
    assert isinstance(res, MatchResult)
    assert res.angles.shape == (24, 3) and res.shifts.shape == (24, 2)
    np.testing.assert_array_equal(res.ref_index, idx)
    assert rotation_error(res.angles, angles).max() < 0.5
    assert np.abs(res.shifts - shifts).max() < 0.2
    assert res.corr.min() > 0.99
    assert np.all(res.margin > 0)


def _between_grid_points(gallery, n, seed):
    """Orientations halfway between neighbouring gallery directions, random psi, (n, 3)."""
    rng = np.random.default_rng(seed)
    dirs = euler_to_matrix(gallery.angles)[:, 2, :]
    i = rng.choice(len(dirs), size=n, replace=False)
    near = dirs[i] @ dirs.T
    near[np.arange(n), i] = -2.0
    mid = dirs[i] + dirs[near.argmax(axis=1)]
    angles = directions_to_angles(mid / np.linalg.norm(mid, axis=1, keepdims=True))
    angles[:, 2] = rng.uniform(0, 360, n)
    return angles


@pytest.mark.parametrize("box", [47, 48])
def test_direction_polish_leaves_the_grid(box):
    """Noiseless images halfway between gallery points (half a step from both)
    land within a fraction of a step, which no grid direction can; the polish
    moves no image more than one step from its grid direction."""
    blobs = phantom_blobs(box, seed=4)
    gallery = Gallery.build(BlobProjector(blobs, box), angular_step=5.0)
    angles = _between_grid_points(gallery, 30, seed=box)
    res = match_images(project_blobs(blobs, angles, box=box), gallery, max_shift_px=0)
    grid_err = direction_distance(gallery.angles[res.ref_index], angles)
    assert grid_err.min() > 2.3  # the grid alone is half a step off
    err = rotation_error(res.angles, angles)
    assert np.median(err) < 0.5 and err.max() < 1.25
    assert direction_distance(res.angles, gallery.angles[res.ref_index]).max() <= 5.0 + 1e-6


def test_direction_polish_with_symmetry():
    """d7: stencils reach across the asymmetric unit's edges (equivalent orientations)."""
    blobs = phantom_blobs(48, seed=6, n_blobs=4, symmetry="d7")
    gallery = Gallery.build(BlobProjector(blobs, 48), angular_step=5.0, symmetry="d7")
    rng = np.random.default_rng(5)
    tilt = np.degrees(np.arccos(rng.uniform(-1, 1, 40)))
    angles = np.column_stack([rng.uniform(-180, 180, 40), tilt, rng.uniform(0, 360, 40)])
    res = match_images(project_blobs(blobs, angles, box=48), gallery, max_shift_px=0)
    err = rotation_error(res.angles, angles, "d7")
    grid = np.column_stack([gallery.angles[res.ref_index, :2], res.angles[:, 2]])
    grid_err = direction_distance(grid, angles, "d7")
    assert np.median(err) < 0.4 * np.median(grid_err)
    assert np.mean(err < 1.25) >= 0.85
    assert np.all(err < grid_err + 0.5)  # near a 2-fold axis (tilt 89 deg) it may not gain


@pytest.mark.parametrize("symmetry", ["c1", "d7", "ci"])
def test_stencil_points_are_equivalent_gallery_orientations(symmetry):
    """Rz(h) G(u, v) E_i is an orientation equivalent to gallery direction j at psi 0."""
    from xmipp_qc.core.direction_polish import _geodesic, build_stencil
    from xmipp_qc.core.gallery import _directions
    from xmipp_qc.core.geometry import equivalent_orientations

    angles = _directions(10.0, symmetry)
    st = build_stencil(angles, symmetry, 10.0)
    assert np.all(st.index[:, 0] == np.arange(len(angles))) and np.all(st.uv[:, 0] == 0)
    assert st.valid.sum(axis=1).min() >= 10  # enough points for the cubic everywhere
    theta = np.degrees(np.hypot(st.uv[..., 0], st.uv[..., 1]))
    assert theta[st.valid].max() <= 2.05 * 10.0 + 1e-6
    for i in np.random.default_rng(0).choice(len(angles), 25, replace=False):
        for k in np.flatnonzero(st.valid[i]):
            rz = euler_to_matrix([0.0, 0.0, st.twist[i, k]])
            m = rz @ _geodesic(st.uv[i, k]) @ st.frames[i]
            copies = equivalent_orientations(angles[st.index[i, k]], symmetry)
            assert np.abs(copies - m).max(axis=(1, 2)).min() < 1e-9


def test_polish_falls_back_to_the_grid_without_a_maximum():
    from xmipp_qc.core.direction_polish import build_stencil, polish_orientations
    from xmipp_qc.core.gallery import _directions

    angles = _directions(10.0, "c1")
    st = build_stencil(angles, "c1", 10.0)
    ref = np.array([3, 50, 100])
    w = st.uv[ref] / st.step
    bowl = np.where(st.valid[ref], (w**2).sum(axis=-1), 0.0)  # a minimum, no maximum
    psi0 = np.array([10.0, 200.0, 350.0])
    out, moved = polish_orientations(st, ref, psi0, bowl, psi0[:, None] - st.twist[ref])
    np.testing.assert_allclose(moved, 0.0)
    assert rotation_error(out, np.column_stack([angles[ref, :2], psi0])).max() < 1e-9


def _accuracy(blobs, gallery, symmetry, n=200, seed=7, **kw):
    ps = simulate_particles(blobs, n, box=64, snr=1.0, max_shift_px=6.4, seed=seed, **kw)
    ctf = None
    if kw.get("ctf"):
        from xmipp_qc.core.ctf import ctf_image

        ctf = ctf_image(64, ps.pixel_size_a, ps.defocus_u, ps.defocus_v, ps.defocus_angle,
                        voltage_kv=ps.voltage_kv, cs_mm=ps.cs_mm,
                        amplitude_contrast=ps.amplitude_contrast)  # fmt: skip
    res = match_images(ps.images, gallery, ctf=ctf)
    err = rotation_error(res.angles, ps.true_angles, symmetry)
    shift_err = np.hypot(*(res.shifts - ps.true_shifts).T)
    return ps, res, err, shift_err, ctf


def test_accuracy_c1_snr1(c1_setup):
    blobs, gallery = c1_setup
    _, res, err, shift_err, _ = _accuracy(blobs, gallery, "c1")
    assert np.mean(err <= 7.5) >= 0.95
    assert np.median(err) < 4.0
    assert np.median(shift_err) < 1.0
    assert np.all(np.hypot(*res.shifts.T) <= 6.4 + 1e-9)
    assert np.nanmedian(res.margin) > 0


def test_odd_integer_shifts(c1_setup):
    """Xmipp's 2 px shift grid misses odd shifts; the hexagonal grid + refinement does not."""
    blobs, gallery = c1_setup
    rng = np.random.default_rng(11)
    n = 40
    tilt = np.degrees(np.arccos(rng.uniform(-1, 1, n)))
    angles = np.column_stack([rng.uniform(-180, 180, n), tilt, rng.uniform(0, 360, n)])
    shifts = rng.choice([-5.0, -3.0, -1.0, 1.0, 3.0], size=(n, 2))
    shifts *= np.minimum(1.0, 6.0 / np.hypot(*shifts.T))[:, None]
    clean = project_blobs(blobs, angles, shifts, box=64)
    images = clean + rng.normal(size=clean.shape) * clean.std()  # SNR 1
    res = match_images(images, gallery)
    assert np.mean(rotation_error(res.angles, angles) <= 7.5) >= 0.95
    assert np.median(np.hypot(*(res.shifts - shifts).T)) < 0.5


def test_accuracy_d2_snr1():
    blobs = phantom_blobs(64, seed=0, symmetry="d2")
    gallery = Gallery.build(BlobProjector(blobs, 64), angular_step=5.0, symmetry="d2")
    # the d2 gallery covers a quarter of the sphere
    assert len(gallery.angles) < 0.3 * 4 * np.pi / np.radians(5.0) ** 2
    _, _, err, shift_err, _ = _accuracy(blobs, gallery, "d2", seed=8)
    assert np.mean(err <= 7.5) >= 0.95
    assert np.median(shift_err) < 1.0
    # the symmetry matters: without it many assignments look wrong
    naive = _accuracy(blobs, gallery, "c1", n=40, seed=8)[2]
    assert np.mean(naive <= 7.5) < 0.6


@pytest.mark.parametrize("symmetry", ["cs", "ci"])
def test_improper_groups_cover_both_hands_of_the_unit(symmetry):
    """Xmipp's units of ci/cs are half spheres that assume a mirror search."""
    blobs = phantom_blobs(64, seed=1, n_blobs=8, symmetry=symmetry)
    gallery = Gallery.build(BlobProjector(blobs, 64), angular_step=5.0, symmetry=symmetry)
    ps = simulate_particles(blobs, 40, box=64, snr=1.0, max_shift_px=6.4, seed=12)
    res = match_images(ps.images, gallery)
    err = rotation_error(res.angles, ps.true_angles, symmetry)
    assert np.mean(err <= 7.5) >= 0.95
    assert np.mean(gallery.angles[:, 1] > 90) > 0.3  # the antipodal half is in the gallery


def test_ctf_is_honoured(c1_setup):
    blobs, gallery = c1_setup
    ps, res, err, _, ctf = _accuracy(blobs, gallery, "c1", n=100, seed=9, ctf=True)
    assert np.mean(err <= 7.5) >= 0.95
    blind = match_images(ps.images, gallery)
    blind_err = rotation_error(blind.angles, ps.true_angles)
    # the CTF-aware scores are higher and the assignments at least as good
    assert np.median(res.corr) > np.median(blind.corr) + 0.05
    assert np.mean(err <= 7.5) >= np.mean(blind_err <= 7.5)


def test_margin_separates_particles_from_noise(c1_setup):
    blobs, gallery = c1_setup
    rng = np.random.default_rng(3)
    angles = np.column_stack([rng.uniform(-180, 180, 20), rng.uniform(0, 180, 20),
                              rng.uniform(0, 360, 20)])  # fmt: skip
    clean = project_blobs(blobs, angles, box=64)
    noise = rng.normal(size=(20, 64, 64)) * clean.std()
    res = match_images(np.concatenate([clean, noise]), gallery)
    assert np.median(res.margin[:20]) > 3 * np.median(res.margin[20:])
    assert res.corr[:20].min() > 0.95 > 0.3 > res.corr[20:].max()


def test_chunking_and_no_shift_search(c1_setup):
    blobs, gallery = c1_setup
    angles = np.array([[10.0, 40.0, 100.0], [-120.0, 150.0, 20.0], [60.0, 95.0, 250.0]])
    images = project_blobs(blobs, angles, box=64)
    full = match_images(images, gallery, max_shift_px=0)
    split = match_images(images, gallery, max_shift_px=0, chunk_size=1)
    np.testing.assert_array_equal(full.ref_index, split.ref_index)
    np.testing.assert_allclose(full.angles, split.angles, atol=1e-3)  # float32 sums
    np.testing.assert_allclose(full.corr, split.corr, rtol=1e-5)
    np.testing.assert_array_equal(full.shifts, 0.0)
    assert rotation_error(full.angles, angles).max() < 5.0


def test_gallery_from_volume_matches():
    from xmipp_qc.core.simulate import phantom_volume

    blobs = phantom_blobs(48, seed=5)
    gallery = Gallery.build(phantom_volume(48, seed=5), angular_step=10.0)
    angles = np.array([[30.0, 60.0, 45.0], [170.0, 120.0, 300.0]])
    images = project_blobs(blobs, angles, np.array([[1.5, -2.0], [0.0, 3.0]]), box=48)
    res = match_images(images, gallery)
    assert rotation_error(res.angles, angles).max() < 10.0
    assert np.abs(res.shifts - [[1.5, -2.0], [0.0, 3.0]]).max() < 0.5


def test_bad_input_raises(c1_setup):
    _, gallery = c1_setup
    with pytest.raises(ValueError, match="shape"):
        match_images(np.zeros((2, 32, 32)), gallery)
    with pytest.raises(ValueError, match="max_shift_px"):
        match_images(np.zeros((1, 64, 64)), gallery, max_shift_px=40)
    with pytest.raises(ValueError, match="finite"):
        match_images(np.full((1, 64, 64), np.nan), gallery)
    with pytest.raises(ValueError, match="ctf"):
        match_images(np.zeros((2, 64, 64)), gallery, ctf=np.ones((3, 64, 33)))
    with pytest.raises(ValueError, match="angular_step"):
        Gallery.build(BlobProjector(phantom_blobs(32), 32), angular_step=0)


DATA = SHARED_DATA / "relion-projections-70S"


@pytest.fixture(scope="module")
def ribosome_gallery():
    if not (DATA / "clean70SRibosome_vol_65p.mrc").exists():
        missing_shared_data(DATA)
    from xmipp_qc.formats.mrc import read_volume

    volume, _ = read_volume(str(DATA / "clean70SRibosome_vol_65p.mrc"))
    return Gallery.build(volume, angular_step=5.0)


@pytest.mark.parametrize("name", ["rln_proj_65", "rln_proj_65_shifted"])
def test_real_relion_projections_of_70s_ribosome(name, ribosome_gallery):
    """RELION projections of a real map (odd box 65): angles and shifts from the STAR file.

    RELION's odd-box output sits +1 px off an origin-at-N//2 projector, so the
    Xmipp shift is ``rlnOrigin - 1`` px (pixel size 1 A in these files).
    """
    from xmipp_qc.formats.mrc import read_images

    rows = [line.split()[:5] for line in (DATA / f"{name}.star").read_text().splitlines()
            if ".mrcs" in line]  # fmt: skip
    table = np.array(rows, dtype=float)
    res = match_images(read_images(str(DATA / f"{name}.mrcs")), ribosome_gallery, max_shift_px=16)
    assert rotation_error(res.angles, table[:, :3]).max() < 4.0  # 5 degree gallery
    np.testing.assert_allclose(res.shifts, table[:, 3:5] - 1.0, atol=0.15)
    assert res.corr.min() > 0.97
    assert np.all(res.margin > 0.02)
