"""``xmipp-qc movie-consensus`` end to end on written RELION/CSV files and real MotionCor2 logs."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from xmipp_qc.cli import build_parser, main
from xmipp_qc.core.simulate import TRAJECTORY_KINDS, simulate_trajectory_pair
from xmipp_qc.core.trajectories import REASONS, compare_trajectories
from xmipp_qc.tests.shared_data import SHARED_DATA, missing_shared_data

LOGS = SHARED_DATA / "motioncor2-logs"
ACCEPTED = {"agree", "offset", "missing_frames"}


def _write_star(path: Path, frames, shifts, pixel_size=0.885, dose=1.0) -> None:
    rows = "\n".join(f"{f:6d} {x:12.6f} {y:12.6f}" for f, (x, y) in zip(frames, shifts))
    path.write_text(
        "\ndata_general\n\n"
        f"_rlnMicrographOriginalPixelSize {pixel_size}\n_rlnMicrographDoseRate {dose}\n"
        "_rlnMicrographPreExposure 0\n_rlnMicrographBinning 1\n\n"
        "data_global_shift\n\nloop_\n_rlnMicrographFrameNumber #1\n"
        f"_rlnMicrographShiftX #2\n_rlnMicrographShiftY #3\n{rows}\n")


def _write_csv(path: Path, frames, shifts) -> None:
    lines = ["frame,x,y"] + [f"{f},{x:.6f},{y:.6f}" for f, (x, y) in zip(frames, shifts)]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture()
def dataset(tmp_path):
    """One movie per simulated kind (RELION STAR vs CSV), plus a missing and a broken movie."""
    ref_dir, sec_dir = tmp_path / "relion", tmp_path / "other"
    ref_dir.mkdir()
    sec_dir.mkdir()
    pairs = {}
    for k, kind in enumerate(TRAJECTORY_KINDS):
        pair = simulate_trajectory_pair(kind, seed=k)
        name = f"mic_{k:04d}"
        pairs[name] = (kind, pair)
        _write_star(ref_dir / f"{name}.star", pair.frames_ref, pair.ref)
        _write_csv(sec_dir / f"{name}_shifts.csv", pair.frames_sec, pair.sec)
    _write_star(ref_dir / "mic_only_ref.star", *_line())
    (ref_dir / "mic_broken.star").write_text("data_general\n_rlnMicrographBinning 1\n")
    _write_csv(sec_dir / "mic_broken_shifts.csv", *_line())
    return tmp_path, pairs


def _line():
    frames = np.arange(1, 11)
    return frames, np.outer(np.arange(10.0), [1.0, 0.5])


def _run(tmp_path, *extra, ref="relion/*.star", sec="other/*.csv"):
    out = tmp_path / "out"
    code = main(["movie-consensus", "--reference", str(tmp_path / ref),
                 "--secondary", str(tmp_path / sec), "--out", str(out), *extra])
    return code, out


def _rows(out: Path) -> dict:
    with open(out / "consensus.csv", newline="") as fh:
        return {row["name"]: row for row in csv.DictReader(fh)}


def test_registered_in_cli():
    args = build_parser().parse_args(["movie-consensus", "--reference", "a", "--secondary",
                                      "b", "--out", "c"])
    assert (args.min_corr, args.min_range, args.max_rmse, args.scale_tolerance) == \
        (0.75, 3.0, 1.0, 0.1)
    assert args.allow_rotation is False and args.plots is False


def test_every_kind_decided_and_reported(dataset, capsys):
    tmp_path, pairs = dataset
    code, out = _run(tmp_path)
    assert code == 0
    rows = _rows(out)
    assert len(rows) == len(TRAJECTORY_KINDS) + 2
    for name, (kind, pair) in pairs.items():
        row = rows[name]
        expected = compare_trajectories(pair.frames_ref, pair.ref, pair.frames_sec, pair.sec,
                                        pixel_size_a=0.885, dose_per_frame=1.0)
        assert row["reason"] == expected.reason, (kind, row["message"])
        assert row["decision"] == ("accepted" if kind in ACCEPTED else "discarded")
        assert float(row["rmse_px"]) == pytest.approx(expected.rmse_px, abs=1e-5)
        assert float(row["rmse_a"]) == pytest.approx(0.885 * expected.rmse_px, abs=1e-5)
        assert float(row["early_ref_px"]) == pytest.approx(expected.early_ref_px, abs=1e-5)
    assert rows["mic_only_ref"]["reason"] == "missing"
    assert rows["mic_only_ref"]["message"] == "movie missing from the secondary run"
    assert rows["mic_broken"]["reason"] == "invalid"
    assert "no data_global_shift" in rows["mic_broken"]["message"]
    assert "12 movies: 3 accepted, 9 discarded" in capsys.readouterr().err


def test_summary_json(dataset):
    tmp_path, _ = dataset
    code, out = _run(tmp_path, "--max-rmse", "0", "--scale-tolerance", "0.2")
    summary = json.loads((out / "summary.json").read_text())
    assert code == 0
    assert summary["n_movies"] == 12 and summary["n_accepted"] + summary["n_discarded"] == 12
    assert set(summary["counts"]) == set(REASONS)
    assert sum(summary["counts"].values()) == 12
    assert summary["counts"]["missing"] == 1 and summary["counts"]["invalid"] == 2
    assert summary["thresholds"]["max_rmse_px"] is None
    assert summary["thresholds"]["scale_tolerance"] == 0.2
    assert [u["file"].endswith("mic_broken.star") for u in summary["unreadable"]] == [True]
    assert summary["unreadable"][0]["run"] == "reference"


def test_relion_micrograph_stars(dataset):
    """Accepted and discarded reference micrographs, as RELION's corrected_micrographs.star."""
    import emtable

    from xmipp_qc.formats.star import read_star

    tmp_path, pairs = dataset
    code, out = _run(tmp_path, "--cs", "2.0")
    csv_rows = _rows(out)
    assert code == 0
    seen = []
    for decision in ("accepted", "discarded"):
        path = str(out / f"micrographs_{decision}.star")
        want = sorted(n for n, r in csv_rows.items()
                      if r["decision"] == decision and r["reference_file"])
        mics = emtable.Table(fileName=path, tableName="micrographs")
        names = [row.rlnMicrographName for row in mics]
        assert names == [str(tmp_path / "relion" / f"{n}.mrc") for n in want]
        assert [row.rlnMicrographMetadata for row in mics] == \
            [str(tmp_path / "relion" / f"{n}.star") for n in want]
        for n, row in zip(want, mics):
            assert row.rlnOpticsGroup == 1
            assert row.rlnAccumMotionTotal == pytest.approx(
                0.885 * float(csv_rows[n]["total_ref_px"]), abs=1e-5)
            assert row.rlnAccumMotionEarly == pytest.approx(
                0.885 * float(csv_rows[n]["early_ref_px"]), abs=1e-5)
            assert row.xmippQcReason == csv_rows[n]["reason"]
            assert row.xmippQcRmsePx == pytest.approx(float(csv_rows[n]["rmse_px"]), abs=1e-6)
        optics = emtable.Table(fileName=path, tableName="optics")
        assert [(o.rlnOpticsGroup, o.rlnMicrographOriginalPixelSize, o.rlnVoltage,
                 o.rlnSphericalAberration, o.rlnAmplitudeContrast, o.rlnMicrographPixelSize)
                for o in optics] == [(1, 0.885, 300.0, 2.0, 0.1, 0.885)]
        assert read_star(path)["micrographs"].text("rlnMicrographName") == names
        seen += want
    assert sorted(seen) == sorted(n for n, r in csv_rows.items() if r["reference_file"])
    assert "mic_only_ref" in seen and len(seen) == 12  # every reference movie, once
    assert len(want) == 9 and "mic_broken" in want  # unreadable: discarded, optics kept


def _corrected_micrographs(path: Path, names) -> list:
    """A RELION 3.1 corrected_micrographs.star of movies ``names``; returns its rows' text."""
    rows = [f"Movies/{n}_PS.mrc Movies/{n}.mrc Movies/{n}.star 1 {k * 1.5:.6f} 0.5 1.0"
            for k, n in enumerate(names)]
    path.write_text(
        "\n# version 30001\n\ndata_optics\n\nloop_\n_rlnOpticsGroupName #1\n"
        "_rlnOpticsGroup #2\n_rlnMtfFileName #3\n_rlnMicrographOriginalPixelSize #4\n"
        "_rlnVoltage #5\n_rlnSphericalAberration #6\n_rlnAmplitudeContrast #7\n"
        "_rlnMicrographPixelSize #8\nopticsGroup1 1 mtf_k3.star 0.885 300 2.7 0.1 1.77\n"
        "\n# version 30001\n\ndata_micrographs\n\nloop_\n_rlnCtfPowerSpectrum #1\n"
        "_rlnMicrographName #2\n_rlnMicrographMetadata #3\n_rlnOpticsGroup #4\n"
        "_rlnAccumMotionTotal #5\n_rlnAccumMotionEarly #6\n_rlnAccumMotionLate #7\n"
        + "\n".join(rows) + "\n")
    return [r.split() for r in rows]


def test_micrograph_stars_from_relions_own_table(dataset, capsys):
    """--micrographs: RELION's corrected_micrographs.star restricted to each decision."""
    import emtable

    from xmipp_qc.formats.star import read_star

    tmp_path, pairs = dataset
    names = sorted(pairs) + ["mic_broken", "mic_not_compared"]  # mic_only_ref has no row
    src_rows = _corrected_micrographs(tmp_path / "corrected_micrographs.star", names)
    code, out = _run(tmp_path, "--micrographs", str(tmp_path / "corrected_micrographs.star"))
    assert code == 0
    src = read_star(str(tmp_path / "corrected_micrographs.star"))
    csv_rows = _rows(out)
    for decision in ("accepted", "discarded"):
        path = str(out / f"micrographs_{decision}.star")
        sel = read_star(path)
        want = [i for i, n in enumerate(names) if n in csv_rows
                and csv_rows[n]["decision"] == decision]
        assert sel["optics"].rows == src["optics"].rows
        assert sel["micrographs"].columns[:7] == src["micrographs"].columns
        assert [r[:7] for r in sel["micrographs"].rows] == [src_rows[i] for i in want]
        table = emtable.Table(fileName=path, tableName="micrographs")
        assert [r.xmippQcReason for r in table] == [csv_rows[names[i]]["reason"] for i in want]
    assert len(read_star(str(out / "micrographs_accepted.star"))["micrographs"].rows) == 3
    err = capsys.readouterr().err
    assert "warning: 1 reference movie(s) have no row" in err  # mic_only_ref
    assert "11 of the 12 micrographs" in err  # mic_not_compared has no trajectory
    bad = tmp_path / "bad.star"
    bad.write_text("data_particles\nloop_\n_rlnImageName #1\n1@a.mrcs\n")
    code, _ = _run(tmp_path, "--micrographs", str(bad))
    assert code == 2 and "no micrograph table" in capsys.readouterr().err


def test_micrograph_stars_without_pixel_size_have_no_optics(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    pair = simulate_trajectory_pair("agree", seed=1)
    _write_csv(tmp_path / "a" / "m1.csv", pair.frames_ref, pair.ref)
    _write_csv(tmp_path / "b" / "m1.csv", pair.frames_sec, pair.sec)
    code, out = _run(tmp_path, "--micrograph-name", "Mics/{name}_DW.mrc", ref="a/*.csv",
                     sec="b/*.csv")
    from xmipp_qc.formats.star import read_star

    blocks = read_star(str(out / "micrographs_accepted.star"))
    assert code == 0 and list(blocks) == ["micrographs"]
    assert blocks["micrographs"].text("rlnMicrographName") == ["Mics/m1_DW.mrc"]
    assert not blocks["micrographs"].has("rlnAccumMotionTotal")
    assert read_star(str(out / "micrographs_discarded.star"))["micrographs"].rows == []
    code, out = _run(tmp_path, "--pixel-size", "1.5", ref="a/*.csv", sec="b/*.csv")
    optics = read_star(str(out / "micrographs_accepted.star"))["optics"]
    assert optics.text("rlnMicrographPixelSize") == ["1.500000"]


def test_plots_written_for_compared_movies(dataset):
    tmp_path, pairs = dataset
    code, out = _run(tmp_path, "--plots")
    assert code == 0
    pngs = sorted(p.stem for p in (out / "plots").glob("*.png"))
    compared = sorted(n for n, (kind, _) in pairs.items() if kind != "sentinel")
    assert pngs == compared  # none for invalid (sentinel, broken) or missing movies
    for name in ("consensus_corr_rmse", "consensus_histograms", "consensus_accumulated_motion"):
        assert (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_binning_gives_same_metrics(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    pair = simulate_trajectory_pair("noise", seed=3, binning=2.0)
    _write_csv(tmp_path / "a" / "m1.csv", pair.frames_ref, pair.ref)
    _write_csv(tmp_path / "b" / "m1.csv", pair.frames_sec, pair.sec)
    code, out = _run(tmp_path, "--binning", "2", ref="a/*.csv", sec="b/*.csv")
    row = _rows(out)["m1"]
    unbinned = simulate_trajectory_pair("noise", seed=3)
    expected = compare_trajectories(unbinned.frames_ref, unbinned.ref, unbinned.frames_sec,
                                    unbinned.sec)
    assert code == 0
    assert float(row["rmse_px"]) == pytest.approx(expected.rmse_px, rel=1e-5)
    assert float(row["scale"]) == pytest.approx(expected.scale, rel=1e-5)
    assert float(row["rmse_a"]) == -1.0  # CSV carries no pixel size


def test_real_motioncor2_versions(tmp_path):
    for version, run in (("1.5.0", "a"), ("1.6.4", "b")):
        src = LOGS / f"motioncor2_{version}_log.txt"
        if not src.exists():
            missing_shared_data(LOGS)
        (tmp_path / run).mkdir()
        shutil.copy(src, tmp_path / run / "eer_movie.log")
    code, out = _run(tmp_path, "--plots", ref="a/*.log", sec="b/*.log")
    row = _rows(out)["eer_movie"]
    assert code == 0 and row["decision"] == "accepted"
    assert float(row["rmse_px"]) == pytest.approx(0.19, abs=0.005)
    assert float(row["rmse_a"]) == pytest.approx(0.73 * 0.19, abs=0.005)  # -PixSize 0.73
    assert (out / "plots" / "eer_movie.png").exists()


def test_no_matching_files_is_an_error(tmp_path, capsys):
    code, out = _run(tmp_path, ref="nothing/*.star", sec="nothing/*.csv")
    assert code == 2 and not out.exists()
    assert "no file matches" in capsys.readouterr().err


def test_bad_threshold_is_an_error(dataset, capsys):
    tmp_path, _ = dataset
    code, _ = _run(tmp_path, "--scale-tolerance", "1.5")
    assert code == 2 and "--scale-tolerance must be in [0, 1)" in capsys.readouterr().err


def test_duplicate_names_reported(dataset):
    tmp_path, _ = dataset
    _write_csv(tmp_path / "other" / "mic_0000.csv", *_line())  # same movie as mic_0000_shifts
    code, out = _run(tmp_path)
    summary = json.loads((out / "summary.json").read_text())
    assert code == 0
    assert [d["name"] for d in summary["duplicates"]] == ["mic_0000"]
    assert summary["duplicates"][0]["kept"].endswith("mic_0000.csv")
