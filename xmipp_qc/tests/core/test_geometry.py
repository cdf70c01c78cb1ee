"""Euler matrices, symmetry-aware distances and Scipion 4x4 conversions (numpy only)."""

import warnings

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from xmipp_qc.core.geometry import (
    alignment_2d_to_transform,
    angles_shifts_to_transform,
    direction_distance,
    equivalent_orientations,
    euler_to_matrix,
    matrix_to_euler,
    rotation_distance,
    transform_to_alignment_2d,
    transform_to_angles_shifts,
    unflip_projection_alignment,
)
from xmipp_qc.core.symmetry import symmetry_matrices

GIMBAL = np.array([[30.0, 0.0, 40.0], [-120.0, 180.0, 15.0], [0.0, 0.0, 0.0], [90, 180, -90]])


def random_angles(n, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.uniform([-180, 0, -180], [180, 180, 180], size=(n, 3))
    return np.concatenate([a, GIMBAL])


def test_euler_matrix_hand_worked():
    # Xmipp: E = Rz(psi) Ry(tilt) Rz(rot), Rz(a) = [[c, s, 0], [-s, c, 0], [0, 0, 1]]
    np.testing.assert_allclose(euler_to_matrix([90, 0, 0]), [[0, 1, 0], [-1, 0, 0], [0, 0, 1]],
                               atol=1e-15)  # fmt: skip
    np.testing.assert_allclose(euler_to_matrix([0, 90, 0]), [[0, 0, -1], [0, 1, 0], [1, 0, 0]],
                               atol=1e-15)  # fmt: skip
    # projection direction (third row) = (sin t cos r, sin t sin r, cos t)
    st, ct = np.sin(np.pi / 3), 0.5
    expected = [st * np.cos(np.pi / 6), st * np.sin(np.pi / 6), ct]
    np.testing.assert_allclose(euler_to_matrix([30, 60, 77])[2], expected, atol=1e-15)


def test_euler_matrix_equals_xmipplib():
    import xmippLib as xmipplib
    for a in random_angles(50):
        ref = np.array(xmipplib.Euler_angles2matrix(*a))
        np.testing.assert_allclose(euler_to_matrix(a), ref, atol=1e-12)


def test_matrix_angles_matrix_round_trip_including_gimbal_lock():
    a = random_angles(200, seed=1)
    e = euler_to_matrix(a)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on gimbal lock, the matrix is still exact
        back = matrix_to_euler(e)
    np.testing.assert_allclose(euler_to_matrix(back), e, atol=1e-9)
    assert back[:, 1].min() >= 0 and back[:, 1].max() <= 180


# ---------------------------------------------------------------- distances
def test_rotation_distance_known_answers():
    assert rotation_distance([10, 20, 30], [10, 20, 30]) == pytest.approx(0, abs=1e-12)
    assert rotation_distance([10, 20, 30], [10, 20, 75]) == pytest.approx(45, abs=1e-9)
    assert rotation_distance([0, 0, 0], [0, 180, 0]) == pytest.approx(180, abs=1e-9)
    assert rotation_distance([0, 0, 0], [0, 1e-9, 0]) == pytest.approx(1e-9, rel=1e-3)
    # d6: rot + 60 (6-fold about z) and (rot + 180, 180 - tilt, psi + 180)... both 0
    assert rotation_distance([10, 20, 30], [70, 20, 30], "d6") == pytest.approx(0, abs=1e-9)
    assert rotation_distance([10, 20, 30], [70, 20, 30], "c1") == pytest.approx(60, abs=1e-9)
    assert rotation_distance([10, 20, 30], [-10, 160, 210], "d2") == pytest.approx(0, abs=1e-9)


def test_rotation_distance_c1_equals_scipy_magnitude():
    a, b = random_angles(100, 2), random_angles(100, 3)
    rel = Rotation.from_matrix(np.einsum("nji,njk->nik", euler_to_matrix(a), euler_to_matrix(b)))
    np.testing.assert_allclose(rotation_distance(a, b), np.degrees(rel.magnitude()), atol=1e-9)


@pytest.mark.parametrize("symmetry", ["c4", "d3", "t", "i1", "cs", "d2h"])
def test_rotation_distance_is_brute_force_minimum(symmetry):
    a, b = random_angles(40, 4), random_angles(40, 5)
    dist = rotation_distance(a, b, symmetry)
    for i in range(len(a)):
        e1 = euler_to_matrix(a[i])
        tr = np.einsum("ij,kij->k", e1, equivalent_orientations(b[i], symmetry))
        ref = np.degrees(np.arccos(np.clip((tr.max() - 1) / 2, -1, 1)))
        assert dist[i] == pytest.approx(ref, abs=1e-5)  # arccos is coarse near 0
    assert np.all(dist <= rotation_distance(a, b, "c1") + 1e-9)


@pytest.mark.parametrize("symmetry", ["d2", "cs", "c3v", "ci", "d2h"])
def test_equivalent_orientations_give_identical_projections(symmetry):
    # A map made of points closed under the group projects each point r to (E r)[:2].
    seed = np.random.default_rng(6).normal(size=(5, 3))
    pts = np.concatenate([seed @ s.T for s in symmetry_matrices(symmetry)])
    ref = (pts @ euler_to_matrix([20, 50, 70]).T)[:, :2]
    for e in equivalent_orientations([20, 50, 70], symmetry):
        assert np.linalg.det(e) == pytest.approx(1)
        img = (pts @ e.T)[:, :2]
        gap = np.linalg.norm(img[:, None] - ref[None], axis=2).min(axis=1)
        assert gap.max() < 1e-9


def test_direction_distance_known_answers_and_mirror():
    assert direction_distance([0, 0, 0], [0, 30, 99]) == pytest.approx(30, abs=1e-9)
    assert direction_distance([0, 0, 0], [0, 180, 0]) == pytest.approx(180, abs=1e-9)
    assert direction_distance([0, 0, 0], [0, 180, 0], mirror=True) == pytest.approx(0, abs=1e-9)
    assert direction_distance([0, 10, 0], [0, 170, 0], "d2") == pytest.approx(0, abs=1e-9)
    d = direction_distance([[0, 0, 0]], np.array([[0, 30, 0], [40, 60, 0]]))  # broadcast
    np.testing.assert_allclose(d, [30, 60], atol=1e-9)


@pytest.mark.parametrize("symmetry", ["c1", "c4", "d6", "i3", "o"])
def test_direction_distance_equals_xmipplib_projdir_mode(symmetry):
    import xmippLib as xmipplib
    sym = xmipplib.SymList()
    sym.readSymmetryFile(symmetry)
    a = random_angles(60, 7)
    b = a + np.random.default_rng(8).normal(0, 40, a.shape)
    ref = [sym.computeDistanceAngles(*p, *q, True, False, False) for p, q in zip(a, b)]
    np.testing.assert_allclose(direction_distance(a, b, symmetry), ref, atol=1e-4)


def test_distance_bad_input_raises():
    with pytest.raises(ValueError, match="shape"):
        rotation_distance([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="valid forms"):
        direction_distance([1, 2, 3], [1, 2, 3], "x9")


# ---------------------------------------------------------- Scipion 4x4 transforms
def test_align_proj_hand_worked_matrices():
    # psi = 90: E = [[0, 1, 0], [-1, 0, 0], [0, 0, 1]]; M = [[E.T, E.T s], [0, 1]]
    m = angles_shifts_to_transform([0, 0, 90], [3, 4])
    np.testing.assert_allclose(m, [[0, -1, 0, -4], [1, 0, 0, 3], [0, 0, 1, 0], [0, 0, 0, 1]],
                               atol=1e-15)  # fmt: skip
    # tilt = 90: E = [[0, 0, -1], [0, 1, 0], [1, 0, 0]]; E.T (1, 2, 0) = (0, 2, -1)
    m = angles_shifts_to_transform([0, 90, 0], [1, 2])
    np.testing.assert_allclose(m, [[0, 0, 1, 0], [0, 1, 0, 2], [-1, 0, 0, -1], [0, 0, 0, 1]],
                               atol=1e-15)  # fmt: skip
    a, s = transform_to_angles_shifts(m)
    np.testing.assert_allclose(s, [1, 2], atol=1e-12)
    np.testing.assert_allclose(euler_to_matrix(a), euler_to_matrix([0, 90, 0]), atol=1e-12)
    # ALIGN_3D stores the direct matrix
    np.testing.assert_allclose(angles_shifts_to_transform([0, 90, 0], [1, 2, 5], inverse=False),
                               [[0, 0, -1, 1], [0, 1, 0, 2], [1, 0, 0, 5], [0, 0, 0, 1]],
                               atol=1e-15)  # fmt: skip


def test_align_2d_hand_worked_matrices():
    m = alignment_2d_to_transform(90.0, [3.0, 4.0])
    np.testing.assert_allclose(m, [[0, 1, 0, 3], [-1, 0, 0, 4], [0, 0, 1, 0], [0, 0, 0, 1]],
                               atol=1e-15)  # fmt: skip
    mf = alignment_2d_to_transform(90.0, [3.0, 4.0], flip=True)
    np.testing.assert_allclose(mf, [[0, -1, 0, 3], [-1, 0, 0, 4], [0, 0, -1, 0], [0, 0, 0, 1]],
                               atol=1e-15)  # fmt: skip
    psi, s, flip = transform_to_alignment_2d(mf)
    assert psi == pytest.approx(90) and flip is True
    np.testing.assert_allclose(s, [3, 4])


@pytest.mark.parametrize("inverse", [True, False])
def test_transform_round_trips(inverse):
    a = random_angles(100, 9)
    s = np.random.default_rng(10).uniform(-20, 20, (len(a), 2))
    m = angles_shifts_to_transform(a, s, inverse=inverse)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a2, s2 = transform_to_angles_shifts(m, inverse=inverse)
    np.testing.assert_allclose(angles_shifts_to_transform(a2, s2, inverse=inverse), m, atol=1e-9)
    np.testing.assert_allclose(s2, s, atol=1e-9)
    np.testing.assert_allclose(euler_to_matrix(a2), euler_to_matrix(a), atol=1e-9)


def test_2d_round_trip_vectorised():
    rng = np.random.default_rng(11)
    psi = np.concatenate([rng.uniform(-180, 180, 50), [0.0, 180.0, -90.0]])
    s = rng.uniform(-9, 9, (len(psi), 2))
    flip = rng.random(len(psi)) < 0.5
    m = alignment_2d_to_transform(psi, s, flip)
    assert m.shape == (len(psi), 4, 4)
    np.testing.assert_allclose(np.linalg.det(m[:, :3, :3]), 1.0, atol=1e-12)
    p2, s2, f2 = transform_to_alignment_2d(m)
    np.testing.assert_array_equal(f2, flip)
    np.testing.assert_allclose(s2, s, atol=1e-12)
    np.testing.assert_allclose(alignment_2d_to_transform(p2, s2, f2), m, atol=1e-9)


def test_unflip_is_scipions_mirror_equivalence():
    a, s = unflip_projection_alignment([[10, 20, 30], [1, 2, 3]], [[1, 2], [3, 4]], [True, False])
    np.testing.assert_allclose(a, [[10, 200, -30], [1, 2, 3]])
    np.testing.assert_allclose(s, [[-1, 2], [3, 4]])


def test_transform_bad_input_raises():
    with pytest.raises(ValueError, match="4, 4"):
        transform_to_angles_shifts(np.eye(3))
    with pytest.raises(ValueError, match="det < 0"):
        transform_to_angles_shifts(np.diag([-1.0, 1, 1, 1]))
    with pytest.raises(ValueError, match="orthonormal"):
        transform_to_angles_shifts(np.diag([2.0, 2, 2, 1]))
    with pytest.raises(ValueError, match="last row"):
        transform_to_alignment_2d(np.ones((4, 4)))
