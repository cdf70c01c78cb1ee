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
    assert "12 movies: 3 accepted, 9 discarded" in capsys.readouterr().out


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


def test_star_output_readable_by_emtable(dataset):
    import emtable
    tmp_path, _ = dataset
    _, out = _run(tmp_path)
    table = emtable.Table(fileName=str(out / "consensus.star"), tableName="consensus",
                          types={"qcName": str})
    rows = {row.qcName: row for row in table}
    csv_rows = _rows(out)
    assert set(rows) == set(csv_rows)
    for name, row in rows.items():
        assert row.qcReason == csv_rows[name]["reason"]
        assert row.qcMessage == csv_rows[name]["message"]
        assert row.qcRmsePx == pytest.approx(float(csv_rows[name]["rmse_px"]), abs=1e-6)


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
    assert "no file matches" in capsys.readouterr().out


def test_bad_threshold_is_an_error(dataset, capsys):
    tmp_path, _ = dataset
    code, _ = _run(tmp_path, "--scale-tolerance", "1.5")
    assert code == 2 and "scale_tolerance" in capsys.readouterr().out


def test_duplicate_names_reported(dataset):
    tmp_path, _ = dataset
    _write_csv(tmp_path / "other" / "mic_0000.csv", *_line())  # same movie as mic_0000_shifts
    code, out = _run(tmp_path)
    summary = json.loads((out / "summary.json").read_text())
    assert code == 0
    assert [d["name"] for d in summary["duplicates"]] == ["mic_0000"]
    assert summary["duplicates"][0]["kept"].endswith("mic_0000.csv")
