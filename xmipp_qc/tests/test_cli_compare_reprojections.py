"""``xmipp-qc compare-reprojections`` end to end on synthetic STAR + MRC files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xmipp_qc.cli import main
from xmipp_qc.core import simulate as sim
from xmipp_qc.core.geometry import euler_to_matrix
from xmipp_qc.core.pipeline import CompareOptions, MapModel, finalize, process_chunk
from xmipp_qc.formats.mrc import read_images, stack_shape, write_stack, write_volume
from xmipp_qc.formats.relion_particles import read_particles
from xmipp_qc.tests.shared_data import SHARED_DATA, missing_shared_data

BOX, N, PX = 40, 200, 3.0
KINDS = ("junk", "mirrored_hand", "wrong_conformation")


def _write_star(path, ps, *, ctf: bool, origins_angst: bool = True, box: int = BOX):
    cols = ["rlnImageName", "rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi",
            "rlnOriginXAngst" if origins_angst else "rlnOriginX",
            "rlnOriginYAngst" if origins_angst else "rlnOriginY", "rlnOpticsGroup"]
    cols += ["rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle"] if ctf else []
    scale = PX if origins_angst else 1.0
    lines = ["data_optics", "loop_", "_rlnOpticsGroup #1", "_rlnVoltage #2",
             "_rlnSphericalAberration #3", "_rlnAmplitudeContrast #4", "_rlnImagePixelSize #5",
             "_rlnImageSize #6", f"1 300 2.7 0.1 {PX} {box}", "", "data_particles", "loop_"]
    lines += [f"_{c} #{i + 1}" for i, c in enumerate(cols)]
    for i in range(len(ps.images)):
        a, s = ps.angles[i], ps.shifts[i] * scale  # Xmipp shift = +rlnOrigin
        row = f"{i + 1:06d}@stack.mrcs {a[0]:.6f} {a[1]:.6f} {a[2]:.6f} {s[0]:.6f} {s[1]:.6f} 1"
        if ctf:
            row += f" {ps.defocus_u[i]:.3f} {ps.defocus_v[i]:.3f} {ps.defocus_angle[i]:.4f}"
        lines.append(row)
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp")
    blobs = sim.phantom_blobs(BOX, seed=7)
    ps = sim.simulate_particles(blobs, N, box=BOX, snr=0.5, pixel_size_a=PX, max_shift_px=2.0,
                                outlier_fraction=0.02, outlier_kinds=KINDS, seed=8)
    write_stack(str(root / "stack.mrcs"), ps.images, PX)
    maps = {"mirror": blobs.mirrored(), "true": blobs, "other": sim.phantom_blobs(BOX, seed=99)}
    for name, b in maps.items():
        write_volume(str(root / f"{name}.mrc"), sim.blobs_volume(b, BOX), PX)
    _write_star(root / "particles.star", ps, ctf=False)
    out = root / "out"
    code = main(["compare-reprojections", "--images", str(root / "particles.star"),
                 "--volume", str(root / "mirror.mrc"), "--volume", str(root / "true.mrc"),
                 "--volume", str(root / "other.mrc"), "--out", str(out), "--chunk-size", "64",
                 "--worst", "4"])
    assert code == 0
    return root, out, ps


def test_true_map_ranks_first(dataset):
    _, out, _ = dataset
    report = json.loads((out / "ranking.json").read_text())
    table = report["ranking"]
    assert table["best"] == "vol2" and table["significant"]  # true.mrc, given second
    assert [m["map"] for m in table["maps"]][0] == "vol2"
    assert table["score"] == "cost" and table["higher_is_better"]
    assert table["n_images"] == N
    assert report["working_box"] == BOX and report["working_pixel_a"] == PX
    assert [m["path"].endswith(f"{k}.mrc") for m, k in
            zip(report["maps"], ("mirror", "true", "other"))] == [True] * 3
    assert (out / "ranking.png").stat().st_size > 1000


def test_planted_outliers_are_top_scored(dataset):
    _, out, ps = dataset
    q = read_particles(str(out / "vol2_particles.star"))
    score = q.block.numbers("xmippQcOutlierScore")
    top = np.argsort(-score)[: N // 10]
    planted = np.flatnonzero(ps.is_outlier)
    assert len(planted) == 12
    assert np.isin(planted, top).mean() >= 0.8
    flagged = q.block.numbers("xmippQcIsOutlier").astype(bool)
    assert flagged[planted].mean() >= 0.5 and flagged[~ps.is_outlier].mean() <= 0.05


def test_every_row_kept_and_alignment_columns_are_the_refined_ones(dataset):
    root, out, ps = dataset
    src = read_particles(str(root / "particles.star"))
    q = read_particles(str(out / "vol2_particles.star"))
    assert q.n == N and q.block.text("rlnImageName") == src.block.text("rlnImageName")
    assert list(q.blocks) == ["optics", "particles"]
    # the same pipeline run directly, in the same chunks
    model = MapModel(sim.blobs_volume(sim.phantom_blobs(BOX, seed=7), BOX), CompareOptions(PX))
    results = [process_chunk(model, ps.images[a:a + 64], ids=np.arange(a, min(N, a + 64)),
                             angles=src.angles[a:a + 64], shifts=src.shifts[a:a + 64],
                             keep_images=False) for a in range(0, N, 64)]
    final = finalize(results)
    np.testing.assert_allclose(q.angles, final["angles"], atol=2e-6)
    np.testing.assert_allclose(q.shifts, final["shifts"], atol=2e-6)  # Å / 3 Å/px
    np.testing.assert_allclose(q.block.numbers("xmippQcCost"), final["cost"], atol=2e-6)
    moved = np.degrees(np.arccos(np.clip(
        (np.einsum("nij,nij->n", euler_to_matrix(q.angles), euler_to_matrix(src.angles)) - 1) / 2,
        -1, 1)))
    # angleChange is the best fit's move; it is applied only where the gain beats the noise
    kept = q.block.numbers("xmippQcMoveKept") == 1
    np.testing.assert_allclose(moved[kept], q.block.numbers("xmippQcAngleChange")[kept],
                               atol=1e-3)
    np.testing.assert_allclose(moved[~kept], 0.0, atol=1e-3)
    # the given angles are exact but for the misassigned outliers: few moves are kept
    assert 0 < kept.sum() <= 0.15 * N, kept.sum()
    np.testing.assert_allclose(np.hypot(*(q.shifts - src.shifts).T),
                               q.block.numbers("xmippQcShiftChange"), atol=1e-5)


def test_kept_and_flagged_selection_stars(dataset):
    """The input STAR restricted to the rows each map explains / flags, values as read."""
    import emtable

    from xmipp_qc.formats.star import read_star

    root, out, _ = dataset
    src = read_star(str(root / "particles.star"))
    for k in (1, 2, 3):
        flagged = read_particles(str(out / f"vol{k}_particles.star")).block.numbers(
            "xmippQcIsOutlier").astype(bool)
        assert 0 < flagged.sum() < N or k != 2  # the mirror map explains no image well
        for what, rows in (("kept", np.flatnonzero(~flagged)),
                           ("flagged", np.flatnonzero(flagged))):
            path = str(out / f"vol{k}_{what}.star")
            sel = read_star(path)
            assert list(sel) == ["optics", "particles"]
            assert sel["optics"].rows == src["optics"].rows
            assert sel["particles"].columns == src["particles"].columns
            assert sel["particles"].rows == [src["particles"].rows[i] for i in rows]
            table = emtable.Table(fileName=path, tableName="particles")
            assert [r.rlnImageName for r in table] == [f"{i + 1:06d}@stack.mrcs" for i in rows]
            assert [r.rlnAngleRot for r in table] == pytest.approx(
                [float(src["particles"].rows[i][1]) for i in rows], abs=1e-6)


def test_stacks_reports_and_image_slots(dataset):
    _, out, _ = dataset
    q = read_particles(str(out / "vol2_particles.star"))
    for stack in ("reprojections", "residuals", "aligned"):
        assert stack_shape(str(out / f"vol2_{stack}.mrcs")) == (N, BOX, BOX)
    assert q.block.text("xmippQcImageResidual")[4] == "000005@vol2_residuals.mrcs"
    res = read_images(str(out / "vol2_residuals.mrcs"), [4])[0]
    ali = read_images(str(out / "vol2_aligned.mrcs"), [4])[0]
    ref = read_images(str(out / "vol2_reprojections.mrcs"), [4])[0]
    a, b = q.block.numbers("xmippQcGrayA")[4], q.block.numbers("xmippQcGrayB")[4]
    inside = np.hypot(*np.meshgrid(np.arange(BOX) - BOX // 2, np.arange(BOX) - BOX // 2)) < 15
    np.testing.assert_allclose(res[inside], (ali - a * ref - b)[inside], atol=1e-4)
    for k in (1, 2, 3):
        assert (out / f"vol{k}_report.png").stat().st_size > 5000


def test_ctf_path_and_matching_options(tmp_path):
    blobs = sim.phantom_blobs(32, seed=3)
    ps = sim.simulate_particles(blobs, 40, box=32, snr=2.0, pixel_size_a=PX, ctf=True, seed=4)
    write_stack(str(tmp_path / "stack.mrcs"), ps.images, PX)
    write_volume(str(tmp_path / "map.mrc"), sim.blobs_volume(blobs, 32), PX)
    _write_star(tmp_path / "p.star", ps, ctf=True, origins_angst=False, box=32)
    costs = {}
    for name, extra in (("plain", ["--no-ctf"]), ("default", []), ("ctf", ["--use-ctf"])):
        out = tmp_path / name
        assert main(["compare-reprojections", "--images", str(tmp_path / "p.star"), "--volume",
                     str(tmp_path / "map.mrc"), "--out", str(out), "--no-refine"] + extra) == 0
        q = read_particles(str(out / "vol1_particles.star"))
        np.testing.assert_allclose(q.shifts, ps.shifts, atol=2e-6)  # px origins kept in px
        assert not q.block.has("rlnOriginXAngst")
        costs[name] = np.median(q.block.numbers("xmippQcCost"))
        assert json.loads((out / "ranking.json").read_text())["options"]["use_ctf"] == (
            name != "plain")
    assert costs["default"] > costs["plain"] + 0.15  # the CTF is applied by default
    assert costs["ctf"] == costs["default"]  # --use-ctf: now the default, still accepted


def test_bad_input_is_reported(tmp_path, dataset, capsys):
    root, _, _ = dataset
    code = main(["compare-reprojections", "--images", str(root / "particles.star"), "--volume",
                 str(root / "true.mrc"), "--out", str(tmp_path / "o"), "--use-ctf"])
    assert code == 2
    assert "--use-ctf needs rlnDefocusU" in capsys.readouterr().err
    assert not list((tmp_path / "o").glob("*.mrcs*"))  # no half-written stacks left
    code = main(["compare-reprojections", "--images", str(root / "missing.star"), "--volume",
                 str(root / "true.mrc"), "--out", str(tmp_path / "o")])
    assert code == 2 and "missing.star" in capsys.readouterr().err


def test_relion_projections_end_to_end(tmp_path):
    """RELION's own projections (70S, box 65, 5 Å/px): the command keeps their alignment."""

    ribo = SHARED_DATA / "relion-projections-70S"
    star = ribo / "rln_proj_65_shifted.star"
    if not star.exists():
        missing_shared_data(ribo)
    out = tmp_path / "ribo"
    assert main(["compare-reprojections", "--images", str(star), "--volume",
                 str(ribo / "clean70SRibosome_vol_65p.mrc"), "--out", str(out),
                 "--pixel-size", "5", "--volume-pixel-size", "5", "--relion-project"]) == 0
    src, q = read_particles(str(star), pixel_size_a=5.0), read_particles(
        str(out / "vol1_particles.star"), pixel_size_a=5.0)
    assert q.block.numbers("xmippQcCost").min() >= 0.999
    np.testing.assert_allclose(q.block.numbers("rlnOriginX"), src.block.numbers("rlnOriginX"),
                               atol=0.05)  # written back with RELION's sign and odd-box rule
    cos = (np.einsum("nij,nij->n", euler_to_matrix(q.angles), euler_to_matrix(src.angles)) - 1) / 2
    assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 0.2


def test_no_assignment_matches_angles(tmp_path):
    blobs = sim.phantom_blobs(32, seed=5)
    ps = sim.simulate_particles(blobs, 30, box=32, snr=5.0, pixel_size_a=PX, max_shift_px=1.0,
                                seed=6)
    write_stack(str(tmp_path / "stack.mrcs"), ps.images, PX)
    write_volume(str(tmp_path / "map.mrc"), sim.blobs_volume(blobs, 32), PX)
    _write_star(tmp_path / "p.star", ps, ctf=False, box=32)
    out = tmp_path / "m"
    assert main(["compare-reprojections", "--images", str(tmp_path / "p.star"), "--volume",
                 str(tmp_path / "map.mrc"), "--out", str(out), "--no-assignment",
                 "--angular-sampling", "10"]) == 0
    q = read_particles(str(out / "vol1_particles.star"))
    assert q.block.text("xmippQcMatched") == ["1"] * 30
    cos = (np.einsum("nij,nij->n", euler_to_matrix(q.angles), euler_to_matrix(ps.true_angles))
           - 1) / 2
    assert np.median(np.degrees(np.arccos(np.clip(cos, -1, 1)))) < 3.0
    assert np.median(np.hypot(*(q.shifts - ps.true_shifts).T)) < 0.5


@pytest.mark.parametrize("downsample, coarse_map, work_box, work_px",
                         [(True, False, 32, 3.0), (False, True, 32, 3.0), (False, False, 64, 1.5)])
def test_images_are_brought_to_the_working_sampling(tmp_path, downsample, coarse_map, work_box,
                                                    work_px):
    box, px = 64, 1.5
    blobs = sim.phantom_blobs(box, seed=21)
    ps = sim.simulate_particles(blobs, 60, box=box, snr=1.0, pixel_size_a=px, max_shift_px=3.0,
                                seed=22)
    write_stack(str(tmp_path / "stack.mrcs"), ps.images, px)
    write_volume(str(tmp_path / "true.mrc"), sim.blobs_volume(blobs, box), px)
    if coarse_map:  # the same (mirrored) map sampled at 3 Å/px
        half = sim.Blobs(blobs.centers / 2, blobs.sigmas / 2, blobs.amplitudes)
        write_volume(str(tmp_path / "mirror.mrc"), sim.blobs_volume(half.mirrored(), 32), 3.0)
    else:
        write_volume(str(tmp_path / "mirror.mrc"), sim.blobs_volume(blobs.mirrored(), box), px)
    lines = ["data_particles", "loop_", "_rlnImageName #1", "_rlnAngleRot #2",
             "_rlnAngleTilt #3", "_rlnAnglePsi #4", "_rlnOriginX #5", "_rlnOriginY #6",
             "_rlnImagePixelSize #7"]
    for i, (a, s) in enumerate(zip(ps.angles, ps.shifts)):
        lines.append(f"{i + 1}@stack.mrcs {a[0]} {a[1]} {a[2]} {s[0]} {s[1]} {px}")
    (tmp_path / "p.star").write_text("\n".join(lines) + "\n")
    out = tmp_path / "o"
    extra = [] if downsample else ["--no-downsample"]
    assert main(["compare-reprojections", "--images", str(tmp_path / "p.star"), "--volume",
                 str(tmp_path / "mirror.mrc"), "--volume", str(tmp_path / "true.mrc"), "--out",
                 str(out)] + extra) == 0
    report = json.loads((out / "ranking.json").read_text())
    # at least 3 Å/px with downsampling, else the coarser input
    assert report["working_box"] == work_box and report["working_pixel_a"] == pytest.approx(work_px)
    assert report["ranking"]["best"] == "vol2"
    q = read_particles(str(out / "vol2_particles.star"))
    assert np.median(np.hypot(*(q.shifts - ps.true_shifts).T)) < 0.5  # input px
    assert np.median(q.block.numbers("xmippQcCost")) > 0.5
