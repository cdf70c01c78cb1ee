"""RELION STAR and MRC readers/writers (xmipp_qc.formats.star, .relion_particles, .mrc)."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pytest

from xmipp_qc.core.pipeline import CompareOptions, MapModel, process_chunk
from xmipp_qc.formats.mrc import (
    pixel_size,
    read_images,
    read_volume,
    stack_shape,
    write_stack,
    write_volume,
)
from xmipp_qc.formats.relion_particles import (
    origins_to_shifts,
    read_particles,
    shifts_to_origins,
    write_particles,
)
from xmipp_qc.formats.star import read_star
from xmipp_qc.tests.shared_data import SHARED_DATA, missing_shared_data

DATA = SHARED_DATA
RIBO = DATA / "relion-projections-70S"
POINT = DATA / "relion-ctf-pointmass"


def _need(path: Path) -> Path:
    if not path.exists():
        missing_shared_data(path)
    return path


def ncc(a, b):
    a = a - a.mean()
    b = b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


@pytest.fixture(scope="module")
def ribosome_model():
    vol, px = read_volume(str(_need(RIBO / "clean70SRibosome_vol_65p.mrc")))
    assert vol.shape == (65, 65, 65) and vol.dtype == np.float32 and px is None  # header unset
    return MapModel(vol, CompareOptions(5.0, refine=False))


@pytest.mark.parametrize("name", ["rln_proj_65", "rln_proj_65_centered", "rln_proj_65_shifted"])
def test_relion_angles_and_origins_reproduce_relion_images(ribosome_model, name):
    """The STAR's own angles and origins, read by our reader: NCC >= 0.999 with RELION's images."""
    p = read_particles(str(_need(RIBO / f"{name}.star")), pixel_size_a=5.0, relion_project=True)
    assert p.n in (4, 5) and (p.box == 65).all()
    images = read_images(p.stacks[0], p.items)
    ours = ribosome_model.projector.project(p.angles, shifts=p.shifts)
    assert min(ncc(a, b) for a, b in zip(ours, images)) >= 0.999
    # the same through the pipeline: the masked correlation of each image
    r = process_chunk(ribosome_model, images, ids=np.arange(p.n), angles=p.angles,
                      shifts=p.shifts, keep_images=False)
    assert r.summary.scores["cost"].min() >= 0.999
    # without the relion_project odd-box rule the match is clearly worse
    plain = read_particles(str(RIBO / f"{name}.star"), pixel_size_a=5.0)
    np.testing.assert_allclose(plain.shifts - p.shifts, 1.0)
    worse = ribosome_model.projector.project(plain.angles, shifts=plain.shifts)
    assert max(ncc(a, b) for a, b in zip(worse, images)) < 0.95


def test_relion_origin_sign_on_shifted_images(ribosome_model):
    p = read_particles(str(_need(RIBO / "rln_proj_65_shifted.star")), pixel_size_a=5.0,
                       relion_project=True)
    np.testing.assert_allclose(p.shifts, [[5, 9], [9, -6], [-9, 10], [-14, -4]])  # origin - 1
    images = read_images(p.stacks[0], p.items)
    wrong = ribosome_model.projector.project(p.angles, shifts=-p.shifts - 2.0)
    assert max(ncc(a, b) for a, b in zip(wrong, images)) < 0.5
    np.testing.assert_allclose(shifts_to_origins(p.shifts, p.box, True),
                               [[6, 10], [10, -5], [-8, 11], [-13, -3]])


def test_ctf_and_pixel_size_from_optics_and_rows():
    p = read_particles(str(_need(POINT / "relion_proj_batch.star")))
    assert p.n == 24 and (p.box == 64).all() and p.table == "particles"
    np.testing.assert_allclose(p.pixel_size_a, 3.54)
    assert p.acquisition["voltage_kv"][0] == 200.0 and p.acquisition["cs_mm"][0] == 1.4
    assert p.acquisition["amplitude_contrast"][0] == 0.1
    np.testing.assert_allclose(p.defocus[0], [10863.991211, 10575.543945, 78.297462])
    # rlnOriginXAngst wins over rlnOriginX (they agree here): -11.69620 Å / 3.54
    np.testing.assert_allclose(p.shifts[0], [-11.69620 / 3.54, -4.61620 / 3.54])
    np.testing.assert_allclose(p.shifts[0], [-3.30401, -1.30401], atol=1e-5)
    assert read_images(p.stacks[0], p.items[:3]).shape == (3, 64, 64)


STAR30 = """
data_
loop_
_rlnImageName #1
_rlnAngleRot #2
_rlnAngleTilt #3
_rlnAnglePsi #4
_rlnOriginX #5
_rlnOriginY #6
_rlnDetectorPixelSize #7
_rlnMagnification #8
_rlnDefocusU #9
_rlnDefocusV #10
_rlnDefocusAngle #11
_rlnVoltage #12
_rlnSphericalAberration #13
_rlnAmplitudeContrast #14
_rlnMicrographName #15
2@stack.mrcs 10.0 20.0 30.0 1.5 -2.25 5.0 20000 15000 14000 45.0 300 2.7 0.07 mics/a.mrc
1@stack.mrcs 11.0 21.0 31.0 0.0 0.125 5.0 20000 16000 15500 10.0 300 2.7 0.07 mics/b.mrc
"""


@pytest.fixture
def star30(tmp_path):
    stack = np.arange(2 * 9 * 9, dtype=np.float32).reshape(2, 9, 9)
    write_stack(str(tmp_path / "stack.mrcs"), stack)
    path = tmp_path / "old.star"
    path.write_text(STAR30)
    return path


def test_relion30_star_detector_pixel_size_and_px_origins(star30):
    p = read_particles(str(star30))
    assert p.table == "" and p.n == 2
    np.testing.assert_allclose(p.pixel_size_a, 2.5)  # 5 um * 1e4 / 20000
    np.testing.assert_allclose(p.shifts, [[1.5, -2.25], [0.0, 0.125]])
    np.testing.assert_allclose(p.angles, [[10, 20, 30], [11, 21, 31]])
    np.testing.assert_array_equal(p.items, [1, 0])
    assert (p.box == 9).all()  # from the stack header
    np.testing.assert_allclose(p.acquisition["amplitude_contrast"], 0.07)
    imgs = read_images(p.stacks[0], p.items)
    assert imgs[0, 0, 0] == 81.0 and imgs[1, 0, 0] == 0.0
    assert read_particles(str(star30), pixel_size_a=1.25).pixel_size_a[0] == 1.25


def test_write_back_keeps_every_row_and_column(star30, tmp_path):
    p = read_particles(str(star30))
    new_angles = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    new_shifts = np.array([[0.5, -0.25], [2.0, 1.0]])
    out = tmp_path / "out.star"
    write_particles(str(out), p, {"xmippQcCost": np.array([0.5, np.nan]),
                                  "xmippQcIsOutlier": np.array([True, False]),
                                  "xmippQcReason": np.array(["", "outlier score above"])},
                    angles=new_angles, shifts=new_shifts)
    q = read_particles(str(out))
    blk, old = q.block, p.block
    assert len(blk.rows) == 2 and blk.columns[: len(old.columns)] == old.columns
    for label in ("rlnImageName", "rlnMicrographName", "rlnDefocusU", "rlnMagnification"):
        assert blk.text(label) == old.text(label)
    np.testing.assert_allclose(q.angles, new_angles)
    np.testing.assert_allclose(q.shifts, new_shifts)  # 3.0 file: rlnOriginX/Y in px
    assert not blk.has("rlnOriginXAngst")
    np.testing.assert_allclose(blk.numbers("xmippQcCost")[:1], 0.5)
    assert np.isnan(blk.numbers("xmippQcCost")[1])
    assert blk.text("xmippQcIsOutlier") == ["1", "0"]
    assert blk.text("xmippQcReason") == ["none", "outlier_score_above"]
    assert p.block.text("rlnAngleRot") == ["10.0", "11.0"]  # input untouched


def test_write_back_relion31_angstrom_origins(tmp_path):
    src = _need(POINT / "relion_proj_batch.star")
    p = read_particles(str(src))
    shifts = np.linspace(-2, 2, 48).reshape(24, 2)
    out = tmp_path / "out.star"
    write_particles(str(out), p, {"xmippQcCost": np.arange(24.0)}, shifts=shifts)
    blocks = read_star(str(out))
    assert list(blocks) == list(read_star(str(src)))  # optics block kept, in order
    q = read_particles(str(out))
    np.testing.assert_allclose(q.shifts, shifts, atol=1e-6)
    np.testing.assert_allclose(q.block.numbers("rlnOriginXAngst"), shifts[:, 0] * 3.54, atol=1e-5)
    np.testing.assert_allclose(q.block.numbers("rlnOriginX"), shifts[:, 0], atol=1e-5)
    np.testing.assert_allclose(q.defocus, p.defocus)
    assert q.block.text("rlnImageOriginalName") == p.block.text("rlnImageOriginalName")


def test_key_value_blocks_and_quotes_round_trip(tmp_path):
    from xmipp_qc.formats.star import write_star

    text = ("# version 30001\n\ndata_general\n\n_rlnCurrentIteration 25\n"
            "_rlnComment 'two words'\n\ndata_optics\nloop_\n_rlnOpticsGroup #1\n"
            "_rlnOpticsGroupName #2\n1 \"group one\"\n")
    (tmp_path / "a.star").write_text(text)
    blocks = read_star(str(tmp_path / "a.star"))
    assert not blocks["general"].is_loop
    assert blocks["general"].text("rlnCurrentIteration") == ["25"]
    assert blocks["general"].text("rlnComment") == ["two words"]
    assert blocks["optics"].text("rlnOpticsGroupName") == ["group one"]
    write_star(str(tmp_path / "b.star"), blocks)
    again = read_star(str(tmp_path / "b.star"))
    assert {k: (b.columns, b.rows, b.is_loop) for k, b in again.items()} == \
        {k: (b.columns, b.rows, b.is_loop) for k, b in blocks.items()}
    assert (tmp_path / "b.star").read_text().count("# version 30001") == 2


def test_relion30_file_stays_30(star30, tmp_path):
    p = read_particles(str(star30))
    write_particles(str(tmp_path / "o.star"), p, {"xmippQcCost": np.zeros(2)})
    assert "version 30001" not in (tmp_path / "o.star").read_text()


def test_origin_conversion_odd_even():
    o = np.array([[3.0, -2.0], [3.0, -2.0]])
    np.testing.assert_allclose(origins_to_shifts(o, np.array([65, 64]), True), [[2, -3], [3, -2]])
    np.testing.assert_allclose(origins_to_shifts(o, 65), o)
    np.testing.assert_allclose(shifts_to_origins(origins_to_shifts(o, 65, True), 65, True), o)


def test_star_errors(tmp_path):
    bad = tmp_path / "bad.star"
    bad.write_text("data_particles\nloop_\n_rlnImageName #1\n_rlnAngleRot #2\n1@a.mrcs\n")
    with pytest.raises(ValueError, match="1 values for 2 columns"):
        read_star(str(bad))
    nopx = tmp_path / "nopx.star"
    nopx.write_text("data_particles\nloop_\n_rlnImageName #1\n_rlnAngleRot #2\n"
                    "_rlnAngleTilt #3\n_rlnAnglePsi #4\n1@a.mrcs x 1 2\n")
    with pytest.raises(ValueError, match="pixel size"):
        read_particles(str(nopx))
    with pytest.raises(ValueError, match="rlnAngleRot is not numeric"):
        read_particles(str(nopx), pixel_size_a=1.0)
    none = tmp_path / "none.star"
    none.write_text("data_optics\nloop_\n_rlnOpticsGroup #1\n1\n")
    with pytest.raises(ValueError, match="no particle table"):
        read_particles(str(none))


@pytest.mark.parametrize("first", ["star", "relion_particles"])
def test_particle_names_still_import_from_star(first):
    """The particle table moved to formats.relion_particles; formats.star re-exports it,
    whichever of the two modules a fresh process imports first."""
    import subprocess
    import sys

    probe = (f"import xmipp_qc.formats.{first}\n"
             "from xmipp_qc.formats import relion_particles as rp, star\n"
             "from xmipp_qc.formats.star import *  # noqa: F403\n"
             "names = ['RELION_PROJECT_ODD_OFFSET', 'Particles', 'origins_to_shifts',\n"
             "         'read_particles', 'shifts_to_origins', 'write_particles']\n"
             "assert set(names) <= set(star.__all__)\n"
             "assert all(getattr(star, k) is getattr(rp, k) for k in names)\n"
             "assert read_particles is rp.read_particles and read_star is star.read_star\n"
             "print('ok')\n")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=False)
    assert run.stdout.strip() == "ok", run.stderr
    with pytest.raises(AttributeError, match="no attribute 'read_particle'"):
        import xmipp_qc.formats.star as star

        star.read_particle  # noqa: B018


@pytest.mark.parametrize("mode, dtype", [(0, np.int8), (1, np.int16), (2, np.float32),
                                         (6, np.uint16), (12, np.float16)])
@pytest.mark.parametrize("box", [8, 9])
def test_mrc_modes_read_as_float32(tmp_path, mode, dtype, box):
    rng = np.random.default_rng(mode)
    data = rng.integers(0, 100, size=(3, box, box)).astype(dtype)
    path = str(tmp_path / f"m{mode}.mrcs")
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(data)
        m.set_image_stack()
        m.voxel_size = 1.75
    with mrcfile.open(path, header_only=True) as m:
        assert int(m.header.mode) == mode
    imgs = read_images(path)
    assert imgs.dtype == np.float32 and imgs.shape == (3, box, box)
    np.testing.assert_array_equal(imgs, data.astype(np.float32))
    np.testing.assert_array_equal(read_images(path, [2, 0]), data[[2, 0]].astype(np.float32))
    assert pixel_size(path) == pytest.approx(1.75)
    vol_path = str(tmp_path / f"v{mode}.mrc")
    with mrcfile.new(vol_path, overwrite=True) as m:
        m.set_data(rng.integers(0, 100, size=(box,) * 3).astype(dtype))
    vol, px = read_volume(vol_path)
    assert vol.dtype == np.float32 and vol.shape == (box,) * 3 and px is None


def test_mrc_write_read_round_trip_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    stack = rng.standard_normal((4, 11, 11)).astype(np.float64)
    write_stack(str(tmp_path / "s.mrcs"), stack, pixel_size_a=3.5)
    assert stack_shape(str(tmp_path / "s.mrcs")) == (4, 11, 11)
    with mrcfile.open(str(tmp_path / "s.mrcs")) as m:
        assert m.is_image_stack()
    np.testing.assert_allclose(read_images(str(tmp_path / "s.mrcs")), stack, rtol=1e-6)
    assert pixel_size(str(tmp_path / "s.mrcs")) == pytest.approx(3.5)
    write_stack(str(tmp_path / "h.mrcs"), stack, dtype=np.float16)
    np.testing.assert_allclose(read_images(str(tmp_path / "h.mrcs")), stack, atol=5e-3)
    vol = rng.standard_normal((10, 10, 10)).astype(np.float32)
    write_volume(str(tmp_path / "v.mrc"), vol, pixel_size_a=2.0)
    back, px = read_volume(str(tmp_path / "v.mrc"))
    np.testing.assert_array_equal(back, vol)
    assert px == pytest.approx(2.0)
    with pytest.raises(ValueError, match="out of range"):
        read_images(str(tmp_path / "s.mrcs"), [4])
    with pytest.raises(ValueError, match="cubic"):
        read_volume(str(tmp_path / "s.mrcs"))
    with pytest.raises(ValueError, match="no supported MRC mode"):
        write_stack(str(tmp_path / "c.mrcs"), stack, dtype=np.complex64)
    with mrcfile.new(str(tmp_path / "c.mrc"), overwrite=True) as m:
        m.set_data(np.zeros((4, 4, 4), dtype=np.complex64))
    with pytest.raises(ValueError, match="mode 4"):
        read_volume(str(tmp_path / "c.mrc"))


def test_stack_writer_fills_slots_and_cleans_up_on_error(tmp_path):
    from xmipp_qc.formats.mrc import StackWriter

    rng = np.random.default_rng(1)
    data = rng.standard_normal((5, 7, 7)).astype(np.float32)
    with StackWriter(str(tmp_path / "w.mrcs"), 5, 7, pixel_size_a=2.5) as w:
        w.write([4, 0], data[[4, 0]])
        w.write([1, 2, 3], data[1:4])
        assert not (tmp_path / "w.mrcs").exists()  # only under its name once complete
    np.testing.assert_array_equal(read_images(str(tmp_path / "w.mrcs")), data)
    assert pixel_size(str(tmp_path / "w.mrcs")) == pytest.approx(2.5)
    with pytest.raises(RuntimeError), StackWriter(str(tmp_path / "x.mrcs"), 2, 7) as w:
        w.write([0], data[:1])
        raise RuntimeError("interrupted")
    assert not list(tmp_path.glob("x.mrcs*"))
