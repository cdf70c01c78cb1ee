"""convert.py particle/volume/CTF parts: Scipion transforms <-> Xmipp geometry, stacks.

No project needed: sets are written to temporary sqlite files.
"""

import mrcfile
import numpy as np
import pwem.objects as emobj
import pytest
from pwem.constants import ALIGN_2D, ALIGN_PROJ
from pwem.convert.transformations import euler_matrix

from xmipp_qc.convert import (
    acquisitionToDict,
    imagesToArrays,
    readImages,
    readVolume,
    transformToXmipp,
    xmippToTransform,
)
from xmipp_qc.core.geometry import euler_to_matrix
from xmipp_qc.core.simulate import random_angles
from xmipp_qc.formats.mrc import write_stack


def _xmippRecipe(angles, shifts):
    """The matrix Xmipp's plugin writes for ALIGN_PROJ (independent construction)."""
    m = euler_matrix(*(-np.radians(angles)), axes="szyz")
    m[:3, 3] = -np.array([shifts[0], shifts[1], 0.0])
    return np.linalg.inv(m)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_proj_transform_matches_xmipp_recipe_and_round_trips(seed):
    angles = random_angles(20, seed)
    shifts = np.random.default_rng(seed).uniform(-7, 7, size=(20, 2))
    for a, s in zip(angles, shifts):
        m = xmippToTransform(a, s).getMatrix()
        np.testing.assert_allclose(m, _xmippRecipe(a, s), atol=1e-12)
        a2, s2, flip = transformToXmipp(m, ALIGN_PROJ)
        assert not flip
        np.testing.assert_allclose(euler_to_matrix(a2), euler_to_matrix(a), atol=1e-9)
        np.testing.assert_allclose(s2, s, atol=1e-12)


def test_proj_transform_rotation_block_is_xmipp_matrix_transposed():
    # Scipion's ALIGN_PROJ rotation is E.T and its translation E.T @ s
    a, s = np.array([30.0, 50.0, -70.0]), np.array([2.0, -3.0])
    m = xmippToTransform(a, s).getMatrix()
    e = euler_to_matrix(a)
    np.testing.assert_allclose(m[:3, :3], e.T, atol=1e-12)
    np.testing.assert_allclose(m[:3, 3], e.T @ np.array([2.0, -3.0, 0.0]), atol=1e-12)


def test_2d_transform_psi_shift_and_flip():
    m = xmippToTransform([0.0, 0.0, 40.0], [3.0, -1.5], ALIGN_2D).getMatrix()
    a, s, flip = transformToXmipp(m, ALIGN_2D)
    assert not flip
    np.testing.assert_allclose(a, [0.0, 0.0, 40.0], atol=1e-9)
    np.testing.assert_allclose(s, [3.0, -1.5])
    # Xmipp's plugin (rowToAlignment) mirrors a 2D transform by negating the
    # first two columns of row 0 only (x shift kept) and setting M[2, 2] = -1.
    mirrored = m.copy()
    mirrored[0, :2] *= -1
    mirrored[2, 2] = -1
    a, s, flip = transformToXmipp(mirrored, ALIGN_2D)
    assert flip
    np.testing.assert_allclose(a, [0.0, 0.0, 40.0], atol=1e-9)
    np.testing.assert_allclose(s, [3.0, -1.5])
    again = xmippToTransform([0.0, 0.0, 40.0], [3.0, -1.5], ALIGN_2D, flip=True).getMatrix()
    np.testing.assert_allclose(again, mirrored, atol=1e-12)


def test_bad_matrix_and_type_raise():
    with pytest.raises(ValueError, match="4x4"):
        transformToXmipp(np.eye(3), ALIGN_PROJ)
    with pytest.raises(ValueError, match="unsupported"):
        xmippToTransform([0, 0, 0], [0, 0], alignType="bogus")


@pytest.mark.parametrize("box", [15, 16])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_read_images_runs_and_single_files(tmp_path, box, dtype):
    stack = np.random.default_rng(0).normal(size=(5, box, box)).astype(np.float32)
    write_stack(str(tmp_path / "a.mrcs"), stack, 2.0)
    write_stack(str(tmp_path / "one.mrc"), stack[4], 2.0)
    locs = [(3, str(tmp_path / "a.mrcs")), (4, str(tmp_path / "a.mrcs")),
            (1, str(tmp_path / "a.mrcs")), (0, str(tmp_path / "one.mrc") + ":mrc")]
    out = readImages(locs, dtype=dtype)
    assert out.shape == (4, box, box) and out.dtype == dtype
    np.testing.assert_array_equal(out, stack[[2, 3, 0, 4]].astype(dtype))
    with mrcfile.open(str(tmp_path / "a.mrcs")) as mrc:
        assert float(mrc.voxel_size.x) == pytest.approx(2.0)


def test_read_volume_requires_cube(tmp_path):
    vol = np.arange(4 * 4 * 4, dtype=np.float32).reshape(4, 4, 4)
    with mrcfile.new(str(tmp_path / "v.mrc")) as mrc:
        mrc.set_data(vol)
    np.testing.assert_array_equal(readVolume(emobj.Volume(location=str(tmp_path / "v.mrc"))), vol)
    with mrcfile.new(str(tmp_path / "b.mrc")) as mrc:
        mrc.set_data(np.zeros((4, 4, 5), np.float32))
    with pytest.raises(ValueError, match="cubic"):
        readVolume(emobj.Volume(location=str(tmp_path / "b.mrc")))


def test_images_to_arrays_from_a_particle_set(tmp_path):
    parts = emobj.SetOfParticles(filename=str(tmp_path / "p.sqlite"))
    parts.setSamplingRate(2.0)
    parts.setAlignmentProj()
    acq = parts.getAcquisition()
    acq.setVoltage(200.0)
    acq.setSphericalAberration(2.0)
    acq.setAmplitudeContrast(0.07)
    angles = random_angles(4, 3)
    for i in range(4):
        p = emobj.Particle(location=(i + 1, "stack.mrcs"))
        p.setObjId(10 + i)
        p.setTransform(xmippToTransform(angles[i], [i, -i]))
        ctf = emobj.CTFModel(defocusU=10000.0 + i, defocusV=9000.0, defocusAngle=30.0)
        p.setCTF(ctf)
        parts.append(p)
    parts.write()
    d = imagesToArrays(parts, ALIGN_PROJ)
    np.testing.assert_array_equal(d["ids"], [10, 11, 12, 13])
    assert d["locations"][2] == (3, "stack.mrcs")
    np.testing.assert_allclose(d["shifts"], [[0, 0], [1, -1], [2, -2], [3, -3]], atol=1e-9)
    np.testing.assert_allclose(euler_to_matrix(d["angles"]), euler_to_matrix(angles), atol=1e-9)
    np.testing.assert_allclose(d["defocus"][:, 0], [10000, 10001, 10002, 10003])
    np.testing.assert_allclose(d["defocus"][:, 1:], [[9000, 30]] * 4)
    assert imagesToArrays(parts, ALIGN_PROJ, withCtf=False)["defocus"] is None
    assert acquisitionToDict(parts) == pytest.approx(
        {"voltage_kv": 200.0, "cs_mm": 2.0, "amplitude_contrast": 0.07})
    parts.close()
