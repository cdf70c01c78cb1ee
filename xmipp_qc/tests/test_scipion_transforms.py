"""Our Scipion 4x4 conversions agree with pwem and with the Xmipp plugin's formulas.

The Xmipp plugin (``xmipp3/convert/convert.py``) builds its matrices with pwem's
``euler_matrix(-rot, -tilt, -psi, 'szyz')``; the reference functions below restate
those formulas with pwem so that ours are checked against pwem's own numerics.
"""

import warnings

import numpy as np
import pytest
from pwem.convert.transformations import euler_from_matrix, euler_matrix  # noqa: E402
from pwem.objects import Transform  # noqa: E402

from xmipp_qc.core.geometry import (  # noqa: E402
    alignment_2d_to_transform,
    angles_shifts_to_transform,
    euler_to_matrix,
    transform_to_alignment_2d,
    transform_to_angles_shifts,
)


def plugin_matrix(angles, shifts, inverse):
    """Restatement of matrixFromGeometry with pwem's euler_matrix."""
    m = euler_matrix(*(-np.radians(angles)), axes="szyz")
    s = np.array([shifts[0], shifts[1], 0.0])
    m[:3, 3] = -s if inverse else s
    return np.linalg.inv(m) if inverse else m


def plugin_geometry(matrix, inverse):
    """Restatement of geometryFromMatrix: (shifts (3,), angles (3,) degrees)."""
    m = np.linalg.inv(matrix) if inverse else matrix
    shifts = -m[:3, 3] if inverse else m[:3, 3]
    return shifts, -np.degrees(euler_from_matrix(m, axes="szyz"))


def angles_set(seed=0, n=40):
    rng = np.random.default_rng(seed)
    a = rng.uniform([-180, 0, -180], [180, 180, 180], size=(n, 3))
    return np.concatenate([a, [[30, 0, 40], [-120, 180, 15], [0, 0, 0]]])


def test_xmipp_euler_matrix_is_pwem_szyz_of_negated_angles():
    for a in angles_set(1):
        m = euler_matrix(*(-np.radians(a)), axes="szyz")
        np.testing.assert_allclose(euler_to_matrix(a), m[:3, :3], atol=1e-12)


@pytest.mark.parametrize("inverse", [True, False])
def test_angles_shifts_to_transform_equals_plugin(inverse):
    shifts = np.random.default_rng(2).uniform(-15, 15, (43, 2))
    ours = angles_shifts_to_transform(angles_set(2), shifts, inverse=inverse)
    for m, a, s in zip(ours, angles_set(2), shifts):
        np.testing.assert_allclose(m, plugin_matrix(a, s, inverse), atol=1e-12)


@pytest.mark.parametrize("inverse", [True, False])
def test_transform_to_angles_shifts_equals_plugin(inverse):
    shifts = np.random.default_rng(3).uniform(-15, 15, (43, 2))
    mats = [plugin_matrix(a, s, inverse) for a, s in zip(angles_set(3), shifts)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ang, sh = transform_to_angles_shifts(np.array(mats), inverse=inverse)
    for m, a, s in zip(mats, ang, sh):
        ref_s, ref_a = plugin_geometry(m, inverse)
        np.testing.assert_allclose(s, ref_s[:2], atol=1e-9)
        np.testing.assert_allclose(euler_to_matrix(a), euler_to_matrix(ref_a), atol=1e-9)


def test_pwem_transform_object_round_trip_and_shifts():
    m = angles_shifts_to_transform([10.0, 70.0, -30.0], [2.5, -1.5])
    t = Transform(matrix=m)
    np.testing.assert_allclose(t.getMatrix(), m, atol=1e-12)
    a, s = transform_to_angles_shifts(t.getMatrix())
    np.testing.assert_allclose(s, [2.5, -1.5], atol=1e-12)
    np.testing.assert_allclose(a, [10.0, 70.0, -30.0], atol=1e-9)
    t.invert()  # ALIGN_PROJ stores the inverse: inverting gives [[E, -s], [0, 1]]
    np.testing.assert_allclose(t.getShifts(), [-2.5, 1.5, 0.0], atol=1e-12)
    np.testing.assert_allclose(t.getRotationMatrix()[:3, :3], euler_to_matrix(a), atol=1e-12)


@pytest.mark.parametrize("flip", [False, True])
def test_align_2d_equals_plugin_reading_and_writing(flip):
    psi_in, shifts = 37.0, np.array([4.0, -2.0])
    ours = alignment_2d_to_transform(psi_in, shifts, flip)
    ref = plugin_matrix([psi_in, 0.0, 0.0], shifts, inverse=False)  # rowToAlignment: rot = psi
    if flip:
        ref[0, :2] *= -1.0
        ref[2, 2] = -1.0
    np.testing.assert_allclose(ours, ref, atol=1e-12)
    # alignmentToRow: un-mirror row 0, then psi = angles[0] + angles[2]
    back = ref.copy()
    if np.linalg.det(back[:2, :2]) < 0:
        back[0, :2] *= -1.0
        back[2, 2] = 1.0
    ref_shifts, ref_angles = plugin_geometry(back, inverse=False)
    psi, s, f = transform_to_alignment_2d(Transform(matrix=ours).getMatrix())
    assert f is flip
    np.testing.assert_allclose(s, ref_shifts[:2], atol=1e-12)
    assert (psi - (ref_angles[0] + ref_angles[2]) + 180) % 360 - 180 == pytest.approx(0, abs=1e-9)
    assert psi == pytest.approx(psi_in)
