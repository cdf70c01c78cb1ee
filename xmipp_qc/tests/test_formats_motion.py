"""Trajectory readers (xmipp_qc.formats.motion) on real MotionCor2 logs and written files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from xmipp_qc.core.trajectories import compare_trajectories
from xmipp_qc.formats.motion import (
    TrajectoryFormatError,
    movie_name,
    read_motioncor2_log,
    read_relion_motion_star,
    read_trajectory,
    read_trajectory_csv,
)
from xmipp_qc.tests.shared_data import SHARED_DATA, missing_shared_data

LOGS = SHARED_DATA / "motioncor2-logs"


def _log(name: str) -> Path:
    path = LOGS / name
    if not path.exists():
        missing_shared_data(LOGS)
    return path


RELION_STAR = """
# version 30001

data_general

_rlnImageSizeX                                     3710
_rlnImageSizeY                                     3838
_rlnImageSizeZ                                        5
_rlnMicrographMovieName                    Movies/mic_0001.tiff
_rlnMicrographBinning                                 2.000000
_rlnMicrographOriginalPixelSize                       0.885000
_rlnMicrographDoseRate                                1.277000
_rlnMicrographPreExposure                             0.500000
_rlnVoltage                                         200.000000
_rlnMicrographStartFrame                                 1
_rlnMotionModelVersion                                   1


# version 30001

data_global_shift

loop_
_rlnMicrographFrameNumber #1
_rlnMicrographShiftX #2
_rlnMicrographShiftY #3
           1     0.000000     0.000000
           2    -0.627449     0.657470
           3    -1.166340     1.137030
           4    -1.529210     1.627950
           5 -9999.000000 -9999.000000


# version 30001

data_local_motion_model

loop_
_rlnMotionModelCoeffsIdx #1
_rlnMotionModelCoeff #2
           0     0.143530
"""


# --- real MotionCor2 logs -------------------------------------------------------------------


def test_motioncor2_15_log_relative_to_middle_frame():
    t = read_motioncor2_log(_log("motioncor2_1.5.0_log.txt"))
    assert t.source == "motioncor2-1.5"
    np.testing.assert_array_equal(t.frames, np.arange(1, 17))
    np.testing.assert_allclose(t.shifts[0], [2.46, 8.51])
    np.testing.assert_allclose(t.shifts[8], [0.0, 0.0])  # frame 9 of 16 is the zero
    np.testing.assert_allclose(t.shifts[-1], [-1.32, -4.60])
    assert (t.pixel_size_a, t.dose_per_frame, t.pre_exposure) == (0.73, 3.23, 0.0)
    assert t.extra == {"ft_bin": 1.0}
    assert t.movie.endswith("00005eer.frames.eer")


def test_motioncor2_16_log_table_relative_to_frame_one():
    t = read_motioncor2_log(_log("motioncor2_1.6.4_log.txt"))
    assert t.source == "motioncor2-1.6"
    assert t.frames.tolist() == list(range(1, 17))
    np.testing.assert_allclose(t.shifts[0], [0.0, 0.0])
    np.testing.assert_allclose(t.shifts[1], [-0.61, -2.32])
    np.testing.assert_allclose(t.shifts[-1], [-3.79, -13.12])
    assert t.pixel_size_a == 0.73


@pytest.mark.parametrize("name, n_frames", [("29123499.motioncor2.log", 28),
                                             ("30117940.motioncor2.log", 40),
                                             ("30157838.motioncor2.log", 40)])
def test_other_motioncor2_logs_frame_counts(name, n_frames):
    t = read_trajectory(_log(name))
    assert t.frames.tolist() == list(range(1, n_frames + 1))
    assert t.shifts.shape == (n_frames, 2)
    assert t.source == "motioncor2-1.5"


def test_real_versions_agree_after_offset_removal():
    a = read_motioncor2_log(_log("motioncor2_1.5.0_log.txt"))
    b = read_motioncor2_log(_log("motioncor2_1.6.4_log.txt"))
    res = compare_trajectories(a.frames, a.shifts, b.frames, b.shifts,
                               pixel_size_a=a.pixel_size_a, dose_per_frame=a.dose_per_frame)
    assert res.accepted
    # Euclidean RMSE 0.19 px = 0.134 px per coordinate (the "0.13 px" of the reference study)
    assert res.rmse_px == pytest.approx(0.190, abs=0.005)
    assert res.rmse_px / math.sqrt(2) == pytest.approx(0.13, abs=0.01)
    assert res.rmse_a == pytest.approx(0.73 * res.rmse_px)
    assert res.corr == pytest.approx(0.995, abs=0.002)
    assert abs(res.rotation_deg) < 0.5
    # without centring the different zero frames (middle vs first) dominate: ~6 px per coord
    raw = np.sqrt(np.mean(np.sum((a.shifts - b.shifts) ** 2, axis=1)))
    assert raw / math.sqrt(2) == pytest.approx(6.2, abs=0.1)
    assert raw > 40 * res.rmse_px
    # RELION accumulated motion: 3.23 e/A^2 per frame, cutoff 4 -> no early step
    assert res.total_ref_px == pytest.approx(14.10, abs=0.01)
    assert res.early_ref_px == 0.0 and res.late_ref_px == res.total_ref_px


# --- RELION STAR ----------------------------------------------------------------------------


def test_relion_star(tmp_path):
    path = tmp_path / "mic_0001.star"
    path.write_text(RELION_STAR)
    t = read_relion_motion_star(path)
    assert t.source == "relion-star"
    assert t.frames.tolist() == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(t.shifts[1], [-0.627449, 0.657470])
    np.testing.assert_allclose(t.shifts[4], [-9999.0, -9999.0])  # sentinel kept for the core
    assert (t.pixel_size_a, t.dose_per_frame, t.pre_exposure) == (0.885, 1.277, 0.5)
    assert t.extra == {"binning": 2.0, "voltage_kv": 200.0} and t.movie == "Movies/mic_0001.tiff"
    assert read_trajectory(path).shifts.shape == (5, 2)


def test_relion_star_errors(tmp_path):
    no_block = tmp_path / "a.star"
    no_block.write_text(RELION_STAR.split("data_global_shift")[0])
    with pytest.raises(TrajectoryFormatError, match="no data_global_shift"):
        read_relion_motion_star(no_block)
    no_col = tmp_path / "b.star"
    no_col.write_text(RELION_STAR.replace("_rlnMicrographShiftY #3", "_rlnOther #3"))
    with pytest.raises(TrajectoryFormatError, match="lacks _rlnMicrographShiftY"):
        read_relion_motion_star(no_col)
    short = tmp_path / "c.star"
    short.write_text(RELION_STAR.replace("3    -1.166340     1.137030", "3    -1.166340"))
    with pytest.raises(TrajectoryFormatError, match="row 3 has 2 values"):
        read_relion_motion_star(short)
    text = tmp_path / "d.star"
    text.write_text(RELION_STAR.replace("-1.529210", "abc"))
    with pytest.raises(TrajectoryFormatError, match="expected numbers"):
        read_relion_motion_star(text)


# --- MotionCor2 -Full.log and CSV -------------------------------------------------------------


def test_motioncor2_full_log(tmp_path):
    path = tmp_path / "mic_0001-Patch-Full.log"
    path.write_text("# full frame alignment\n   1      0.00      0.00\n   2     -0.45"
                    "      0.11\n   3     -0.80      0.31\n")
    t = read_trajectory(path)
    assert t.source == "motioncor2-full-log" and t.pixel_size_a is None
    np.testing.assert_allclose(t.shifts, [[0, 0], [-0.45, 0.11], [-0.8, 0.31]])


@pytest.mark.parametrize("text", [
    "frame,x,y\n1,0,0\n2,1.5,-2\n3,3,-4.25\n",
    "1,0,0\n2,1.5,-2\n3,3,-4.25\n",
    "# my run\nframe x y\n1 0 0\n2 1.5 -2   # jump\n\n3 3 -4.25\n",
])
def test_csv_variants(tmp_path, text):
    path = tmp_path / "mic.csv"
    path.write_text(text)
    t = read_trajectory_csv(path)
    assert t.frames.tolist() == [1, 2, 3] and t.frames.dtype == np.int64
    np.testing.assert_allclose(t.shifts, [[0, 0], [1.5, -2], [3, -4.25]])


@pytest.mark.parametrize("text, match", [
    ("frame,x,y\n1,0\n", "expected 3 columns"),
    ("1,0,0\n2,a,1\n", "expected numbers"),
    ("1.5,0,0\n2,1,1\n", "integers"),
    ("frame,x,y\n", "no frame,x,y rows"),
    ("0,0,0\n1,1,1\n2,2,2\n", "1-based, found 0"),
])
def test_csv_errors(tmp_path, text, match):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(TrajectoryFormatError, match=match) as info:
        read_trajectory(path)
    assert str(path) in str(info.value)


def test_unreadable_and_unknown_files(tmp_path):
    with pytest.raises(TrajectoryFormatError, match="cannot read"):
        read_trajectory(tmp_path / "absent.log")
    log = tmp_path / "x.log"
    log.write_text("MotionCor2 crashed\nCUDA error\n")
    with pytest.raises(TrajectoryFormatError):
        read_trajectory(log)
    with pytest.raises(TrajectoryFormatError, match="no MotionCor2"):
        read_motioncor2_log(log)
    txt = tmp_path / "x.txt"
    txt.write_text("hello world\n")
    with pytest.raises(TrajectoryFormatError, match="not a RELION STAR, MotionCor2 log"):
        read_trajectory(txt)
    txt.write_text("1 0 0\n2 1 1\n3 2 2\n")  # a .txt table is read as CSV
    assert read_trajectory(txt).frames.tolist() == [1, 2, 3]
    assert issubclass(TrajectoryFormatError, ValueError)


@pytest.mark.parametrize("path, name", [
    ("run1/mic_0001_shifts.star", "mic_0001"),
    ("mic_0001.star", "mic_0001"),
    ("/a/b/mic_0001-Patch-Full.log", "mic_0001"),
    ("mic_0001.log", "mic_0001"),
    ("mic_0001.csv", "mic_0001"),
    ("MIC_0001_SHIFTS.CSV", "MIC_0001"),
    ("29123499.motioncor2.log", "29123499"),
    ("movie.frames_log.txt", "movie.frames"),
    (".star", ".star"),
])
def test_movie_name_rule(path, name):
    assert movie_name(path) == name
