"""Sphere sampling: Xmipp's point counts, spacing, asymmetric units and coverage."""

import numpy as np
import pytest

from xmipp_qc.core.geometry import euler_to_matrix
from xmipp_qc.core.sampling import (
    directions_to_angles,
    in_asymmetric_unit,
    n_directions,
    sample_directions,
    sphere_directions,
)
from xmipp_qc.core.symmetry import symmetry_matrices


@pytest.mark.parametrize("step, count", [(3, 4412), (5, 1692), (10, 362), (15, 162), (63.4, 12)])
def test_full_sphere_counts_are_xmipps(step, count):
    pts = sphere_directions(step)
    assert pts.shape == (count, 3)
    np.testing.assert_allclose(np.linalg.norm(pts, axis=1), 1.0, atol=1e-12)
    assert n_directions(step, "c1") == count


@pytest.mark.parametrize("step", [5.0, 10.0])
def test_neighbour_spacing_is_about_the_step(step):
    pts = sphere_directions(step)
    cos = pts @ pts.T
    np.fill_diagonal(cos, -1)
    nearest = np.degrees(np.arccos(np.clip(cos.max(axis=1), -1, 1)))
    assert 0.75 * step < nearest.min() and nearest.max() < 1.25 * step


def test_icosahedron_vertices_are_sampled_like_xmipp():
    angles = sample_directions(5.0)
    ring = np.degrees(np.arccos(1 / np.sqrt(5)))  # 63.4349
    for rot, tilt in [(0.0, 0.0), (0.0, 180.0), (36.0, ring), (-36.0, ring), (72.0, 180 - ring)]:
        d = np.hypot(angles[:, 0] - rot, angles[:, 1] - tilt)
        if tilt in (0.0, 180.0):
            d = np.abs(angles[:, 1] - tilt)
        assert d.min() < 1e-6
    np.testing.assert_array_equal(angles[:, 2], 0.0)
    assert np.all(np.diff(angles[:, 1]) >= -1e-9)  # sorted by tilt


def test_angles_give_the_sampled_direction_as_third_row():
    pts = sphere_directions(10.0)
    ang = directions_to_angles(pts)
    np.testing.assert_allclose(euler_to_matrix(ang)[:, 2, :], pts, atol=1e-12)
    assert ang[:, 0].min() > -180 - 1e-9 and ang[:, 0].max() <= 180


@pytest.mark.parametrize(
    "symmetry, n_xmipp",
    [("c1", 1692), ("d6", 141), ("c4", 423), ("d2", 423), ("t", 141), ("o", 70.5), ("i", 28.2)],
)
def test_counts_within_ten_percent_of_xmipp_at_5_degrees(symmetry, n_xmipp):
    n = n_directions(5.0, symmetry)
    assert abs(n - n_xmipp) <= 0.1 * n_xmipp


def test_xmipp_units_for_cyclic_and_dihedral():
    c3 = sample_directions(5.0, "c3")
    assert np.abs(c3[:, 0]).max() <= 60 + 1e-6 and c3[:, 1].max() == pytest.approx(180)
    d6 = sample_directions(5.0, "d6")
    off_pole = d6[:, 1] > 1e-6
    assert np.abs(d6[off_pole, 0] - 90).max() <= 30 + 1e-6 and d6[:, 1].max() <= 90 + 1e-6
    assert np.abs(d6[off_pole, 0] - 90).max() > 28  # the whole wedge is used
    c4v = sample_directions(5.0, "c4v")
    assert c4v[c4v[:, 1] > 1e-6, 0].min() >= -1e-6 and c4v[:, 0].max() <= 45 + 1e-6
    ci = sample_directions(5.0, "ci")
    assert ci[:, 1].max() <= 90 + 1e-6 and len(ci) == 846


def coverage(step, symmetry, n=2000, seed=0):
    d = euler_to_matrix(sample_directions(step, symmetry))[:, 2, :]
    copies = np.einsum("kij,nj->kni", symmetry_matrices(symmetry), d).reshape(-1, 3)
    u = np.random.default_rng(seed).normal(size=(n, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    return np.degrees(np.arccos(np.clip((u @ copies.T).max(axis=1), -1, 1))).max()


@pytest.mark.parametrize("symmetry", ["c1", "d2", "d6", "c4", "t", "o", "i"])
@pytest.mark.parametrize("step", [5.0, 7.5, 10.0])
def test_every_direction_has_a_sampled_copy_within_the_step(symmetry, step):
    worst = coverage(step, symmetry)
    assert worst <= step
    assert worst > 0.4 * step  # sanity: the unit is not oversampled


@pytest.mark.parametrize("symmetry", ["d6", "i", "c3v", "oh"])
def test_unit_holds_one_copy_of_almost_every_direction(symmetry):
    u = np.random.default_rng(1).normal(size=(3000, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    mats = symmetry_matrices(symmetry)
    inside = np.stack([in_asymmetric_unit(u @ m.T, symmetry) for m in mats])  # (k, n)
    np.testing.assert_array_equal(inside.sum(axis=0), 1)


@pytest.mark.parametrize("bad", [0.0, -5.0, 0.1, 200.0])
def test_bad_step_raises(bad):
    with pytest.raises(ValueError, match="step_deg"):
        sample_directions(bad)


def test_bad_symmetry_raises():
    with pytest.raises(ValueError, match="valid forms"):
        sample_directions(5.0, "q7")
