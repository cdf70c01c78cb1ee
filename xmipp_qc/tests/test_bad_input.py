"""The bad-input test table: every kind of bad input or fault, one row each, with its verdict.

Each row of :data:`CASES` runs ``xmipp-qc`` (in process, as ``main(argv)``) on
small synthetic data made by the package, or on the real MotionCor2 logs in
``../shared/data``, and asserts one of three verdicts:

``error``
    exit code 2, exactly one line on stderr ``xmipp-qc CMD: error: ...``
    holding the expected words (the culprit: file, row, option), no
    traceback, and ``--out`` untouched (not created, or as it was).
``flagged``
    exit code 0 and the bad item flagged with the expected reason (compare
    reprojections: the row's ``xmippQcReason``; movie consensus: the movie's
    message), every other item scored as usual; warnings on stderr.
``same``
    the output is what it must be (no stale file of another run, other
    images' scores unchanged by a bad one).

A regression shows as one red row. Output-folder runs (one run's files,
never two) and the protocols' ``_validate`` rows follow the table.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from xmipp_qc.cli import main
from xmipp_qc.core import simulate as sim
from xmipp_qc.core.reasons import REASONS
from xmipp_qc.formats.mrc import write_stack, write_volume
from xmipp_qc.formats.relion_particles import read_particles
from xmipp_qc.tests.shared_data import SHARED_DATA, missing_shared_data

BOX, N, PX = 32, 30, 6.0
LOGS = SHARED_DATA / "motioncor2-logs"
CR, MC = "compare-reprojections", "movie-consensus"


# ---------------------------------------------------------------- data, made once


def _star_text(ps, *, rows=None, stack="stack.mrcs", box=BOX, edit=None) -> str:
    """RELION 3.1 STAR of the simulated set; ``edit(i, tokens)`` may change a row."""
    head = ["data_optics", "loop_", "_rlnOpticsGroup #1", "_rlnImagePixelSize #2",
            "_rlnImageSize #3", "_rlnVoltage #4", f"1 {PX} {box} 300", "",
            "data_particles", "loop_", "_rlnImageName #1", "_rlnAngleRot #2",
            "_rlnAngleTilt #3", "_rlnAnglePsi #4", "_rlnOriginXAngst #5",
            "_rlnOriginYAngst #6", "_rlnOpticsGroup #7"]
    lines = []
    for i in range(N) if rows is None else rows:
        a, s = ps.angles[i], ps.shifts[i] * PX
        t = [f"{i + 1:06d}@{stack}", *(f"{v:.4f}" for v in (*a, *s)), "1"]
        if edit is not None:
            edit(i, t)
        lines.append(" ".join(t))
    return "\n".join(head + lines) + "\n"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    blobs = sim.phantom_blobs(BOX, seed=7)
    ps = sim.simulate_particles(blobs, N, box=BOX, snr=1.0, pixel_size_a=PX, max_shift_px=1.0,
                                seed=8)
    write_stack(str(root / "stack.mrcs"), ps.images, PX)
    write_volume(str(root / "true.mrc"), sim.blobs_volume(blobs, BOX), PX)
    write_volume(str(root / "other.mrc"), sim.blobs_volume(sim.phantom_blobs(BOX, seed=99), BOX),
                 PX)
    (root / "p.star").write_text(_star_text(ps))
    return root, ps


def _write(root: Path, name: str, text: str) -> str:
    (root / name).write_text(text)
    return str(root / name)


def _stack_variant(root: Path, ps, name: str, change) -> str:
    images = ps.images.copy()
    change(images)
    with np.errstate(over="ignore"), warnings.catch_warnings():  # header stats of 1e19
        warnings.simplefilter("ignore", RuntimeWarning)
        write_stack(str(root / name), images, PX)
    return _write(root, name.replace(".mrcs", ".star"), _star_text(ps, stack=name))


def _cr(root, star, out, *extra, vols=("true.mrc",)):
    argv = [CR, "--images", str(star), "--out", str(root / out), "--chunk-size", "16",
            "--worst", "2"]
    for v in vols:
        argv += ["--volume", str(root / v)]
    return argv + list(extra)


# ---------------------------------------------------------------- the cases


@dataclass
class Case:
    """One row of the table: how to make the input, and the verdict to assert."""

    id: str
    build: Callable  # (root, ps, tmp) -> argv
    verdict: str  # "error", "flagged" or "same"
    words: tuple = ()  # error: words of the message; flagged: words of the reason
    rows: tuple = ()  # flagged: 0-based rows (compare) or movie names (consensus)
    check: Callable | None = None  # extra assertion (out folder, stderr, ...)
    needs_shared: bool = False
    note: str = field(default="")


def _empty(root, ps, tmp):
    return _cr(root, _write(tmp, "empty.star", _star_text(ps, rows=[])), tmp / "o")


def _map_file(name, vol):
    def build(root, ps, tmp):
        with warnings.catch_warnings():  # mrcfile warns of the NaN we write on purpose
            warnings.simplefilter("ignore", RuntimeWarning)
            write_volume(str(tmp / name), vol() if callable(vol) else vol, PX)
        return _cr(tmp, root / "p.star", "o", vols=(name,))
    return build


def _nan_map():
    v = sim.blobs_volume(sim.phantom_blobs(BOX, seed=7), BOX).astype(np.float32)
    v[3, 4, 5] = np.nan
    return v


def _damaged_header(root, ps, tmp):
    raw = bytearray((root / "stack.mrcs").read_bytes())
    raw[:64] = np.random.default_rng(1).bytes(64)
    (tmp / "bad.mrcs").write_bytes(bytes(raw))
    return _cr(root, _write(tmp, "bad.star", _star_text(ps, stack="bad.mrcs")), tmp / "o")


def _box2(root, ps, tmp):
    rng = np.random.default_rng(0)
    write_stack(str(tmp / "b2.mrcs"), rng.normal(size=(N, 2, 2)).astype(np.float32), PX)
    write_volume(str(tmp / "b2.mrc"), rng.normal(size=(2, 2, 2)).astype(np.float32), PX)
    star = _write(tmp, "b2.star", _star_text(ps, stack="b2.mrcs", box=2))
    return _cr(tmp, star, "o", vols=("b2.mrc",))


def _opt(*extra):
    return lambda root, ps, tmp: _cr(root, root / "p.star", tmp / "o", *extra)


def _edit_rows(name, fn, rows=None):
    def build(root, ps, tmp):
        return _cr(root, _write(tmp, name, _star_text(ps, edit=fn, rows=rows)), tmp / "o")
    return build


def _set(i_rows, col, value):
    def edit(i, t):
        if i in i_rows:
            t[col] = value(i) if callable(value) else value
    return edit


def _cut_star(root, ps, tmp):
    text = _star_text(ps)
    return _cr(root, _write(tmp, "cut.star", text[: text.rindex("\n", 0, -1) + 30]), tmp / "o")


def _binary_star(root, ps, tmp):
    (tmp / "bin.star").write_bytes(b"data_particles\nloop_\n" + bytes(range(128, 256)))
    return _cr(root, tmp / "bin.star", tmp / "o")


def _box_star(root, ps, tmp):
    """The STAR says 40 px, the stack holds 32 px images."""
    return _cr(root, _write(tmp, "box.star", _star_text(ps, box=40)), tmp / "o")


def _out_is_file(root, ps, tmp):
    (tmp / "o").write_text("not a folder")
    return _cr(root, root / "p.star", tmp / "o")


def _out_foreign(root, ps, tmp):
    (tmp / "o").mkdir()
    (tmp / "o" / "thesis.tex").write_text("precious")
    return _cr(root, root / "p.star", tmp / "o")


def _foreign_kept(tmp, out, err):
    assert (tmp / "o" / "thesis.tex").read_text() == "precious"


def _scaled(factor, row=3):
    def build(root, ps, tmp):
        def change(images):
            images[row] *= np.float32(factor)
        star = _stack_variant(tmp, ps, f"scaled{factor:g}.mrcs", change)
        return _cr(root, star, tmp / "o")
    return build


def _pixels(row, value):
    def build(root, ps, tmp):
        def change(images):
            images[row] = value
        return _cr(root, _stack_variant(tmp, ps, "pix.mrcs", change), tmp / "o")
    return build


def _reason_value(rows, expected, tol, also=None):
    """The rows' ``xmippQcReasonValue`` is ``expected`` within ``tol``; NaN in the others."""
    def check(tmp, out, err):
        q = read_particles(str(tmp / "o" / "vol1_particles.star")).block
        value = q.numbers("xmippQcReasonValue")
        np.testing.assert_allclose(value[list(rows)], expected, atol=tol)
        reason = np.array(q.text("xmippQcReason"))
        assert np.isnan(value[reason == "none"]).all()
        if also is not None:
            also(tmp, out, err)
    return check


def _others_intact(tmp, out, err):
    """Every unflagged row has finite set scores (no NaN spread from the bad row)."""
    q = read_particles(str(tmp / "o" / "vol1_particles.star")).block
    reason = np.array(q.text("xmippQcReason"))
    fine = reason == "none"
    assert fine.sum() >= N - N // 2
    for col in ("xmippQcResCovDivergence", "xmippQcZScoreResCov", "xmippQcOutlierScore"):
        assert np.isfinite(q.numbers(col)[fine]).all(), col


CASES = [
    # ---- compare-reprojections: errors that name the culprit (listed in the issue)
    Case("cr-empty-star", _empty, "error", ("empty.star", "header but no rows")),
    Case("cr-map-of-zeros", _map_file("zeros.mrc", np.zeros((BOX,) * 3, np.float32)), "error",
         ("zeros.mrc", "map is constant")),
    Case("cr-map-nan-voxel", _map_file("nan.mrc", _nan_map), "error",
         ("nan.mrc", "1 non-finite voxel")),
    Case("cr-damaged-stack-header", _damaged_header, "error", ("bad.mrcs", "damaged MRC header")),
    Case("cr-box-2", _box2, "error", ("b2.mrc", "box of 2 px is too small")),
    Case("cr-chunk-size-0", _opt("--chunk-size", "0"), "error",
         ("--chunk-size must be an integer >= 1", "got 0")),
    Case("cr-threshold-nan", _opt("--threshold", "nan"), "error",
         ("--threshold must be a finite number",)),
    Case("cr-rank-score-typo", _opt("--rank-score", "cots"), "error",
         ("--rank-score 'cots' is not one of", "cost")),
    Case("cr-symmetry-q7-with-angles", _opt("--symmetry", "q7"), "error",
         ("--symmetry: unknown symmetry group 'q7'",)),
    # ---- compare-reprojections: errors, our own cases
    Case("cr-missing-stack", _edit_rows("nostack.star", _set(range(N), 0, "000001@gone.mrcs")),
         "error", ("nostack.star row 1", "gone.mrcs does not exist")),
    Case("cr-item-beyond-stack", _edit_rows("beyond.star", _set({7}, 0, "000031@stack.mrcs")),
         "error", ("beyond.star row 8", "item 31 is beyond the 30 image(s)")),
    Case("cr-non-numeric-angle", _edit_rows("word.star", _set({2}, 1, "ninety")), "error",
         ("word.star", "row 3", "rlnAngleRot is not numeric ('ninety')")),
    Case("cr-star-cut-mid-row", _cut_star, "error", ("cut.star, line", "row 30 has")),
    Case("cr-binary-star", _binary_star, "error", ("bin.star", "not a text STAR file")),
    Case("cr-out-is-a-file", _out_is_file, "error", ("--out exists and is not a folder",)),
    Case("cr-out-holds-other-files", _out_foreign, "error",
         ("not results of xmipp-qc compare-reprojections", "thesis.tex", "--overwrite"),
         check=_foreign_kept),
    Case("cr-every-origin-absurd", _edit_rows("allfar.star", _set(range(N), 4, "5000")), "error",
         ("need at least 3 valid images", "30 x 'given_shift_too_large:")),
    Case("cr-use-ctf-without-defocus", _opt("--use-ctf"), "error",
         ("p.star", "--use-ctf needs rlnDefocusU")),
    Case("cr-missing-map", lambda root, ps, tmp: _cr(root, root / "p.star", tmp / "o",
                                                     vols=("nomap.mrc",)),
         "error", ("nomap.mrc", "No such file")),
    Case("cr-angular-sampling-negative", _opt("--angular-sampling", "-5"), "error",
         ("--angular-sampling must be a finite number > 0",)),
    Case("cr-max-shift-nan", _opt("--max-shift", "nan", "--worst", "-1"), "error",
         ("--max-shift must be in [0, inf)", "--worst must be an integer >= 0")),
    Case("cr-box-differs-from-star", _box_star, "error",
         ("box.star row 1", "holds 32 x 32 px images, the STAR says 40 px")),
    # ---- compare-reprojections: items flagged with their true reason
    Case("cr-origins-beyond-box", _edit_rows("far.star", _set(set(range(0, N, 3)), 4,
                                                              lambda i: f"{(-1) ** i * 5000}")),
         "flagged", ("given_shift_too_large",), rows=tuple(range(0, N, 3)),
         check=_reason_value(tuple(range(0, N, 3)), 5000 / PX, 0.2, also=_others_intact)),
    Case("cr-one-image-x1e19", _scaled(1e19), "flagged", ("image_values_too_large",), rows=(3,),
         check=_others_intact),
    Case("cr-one-image-x1e6", _scaled(1e6), "flagged", ("extreme_image_scale",), rows=(3,),
         check=_reason_value((3,), 1e6, 0.5e6, also=_others_intact)),
    Case("cr-nan-angle", _edit_rows("nanang.star", _set({2}, 1, "nan")), "flagged",
         ("non_finite_angles",), rows=(2,), check=_others_intact),
    Case("cr-inf-origin", _edit_rows("inforig.star", _set({5}, 5, "inf")), "flagged",
         ("non_finite_shift",), rows=(5,), check=_others_intact),
    Case("cr-nan-pixels", _pixels(4, np.nan), "flagged", ("non_finite_image",),
         rows=(4,), check=_others_intact),
    Case("cr-constant-image", _pixels(6, 1.5), "flagged", ("constant_image",),
         rows=(6,), check=_others_intact),
]


# ---------------------------------------------------------------- movie consensus cases


def _mc(tmp, ref, sec, *extra, out="o"):
    return [MC, "--reference", str(tmp / ref), "--secondary", str(tmp / sec),
            "--out", str(tmp / out), *extra]


def _star_motion(path: Path, frames, shifts, size_z=None) -> None:
    rows = "\n".join(f"{f} {x:.4f} {y:.4f}" for f, (x, y) in zip(frames, shifts))
    z = f"_rlnImageSizeZ {size_z}\n" if size_z else ""
    path.write_text(f"data_general\n_rlnMicrographOriginalPixelSize 1.0\n{z}\n"
                    "data_global_shift\nloop_\n_rlnMicrographFrameNumber #1\n"
                    f"_rlnMicrographShiftX #2\n_rlnMicrographShiftY #3\n{rows}\n")


def _pair_dirs(tmp, n=3, ref_names="mic_{}", sec_names="mic_{}", n_ref=24, n_sec=24):
    (tmp / "a").mkdir()
    (tmp / "b").mkdir()
    for i in range(n):
        p = sim.simulate_trajectory_pair("agree", seed=i, n_frames=max(n_ref, n_sec))
        _star_motion(tmp / "a" / f"{ref_names.format(i)}.star", p.frames_ref[:n_ref],
                     p.ref[:n_ref])
        lines = ["frame,x,y"] + [f"{f},{x:.4f},{y:.4f}" for f, (x, y) in
                                 zip(p.frames_sec[:n_sec], p.sec[:n_sec])]
        (tmp / "b" / f"{sec_names.format(i)}.csv").write_text("\n".join(lines) + "\n")


def _logs(cut):
    """The real 1.5.0 log as reference; the 1.6.4 log of the same movie cut by ``cut``."""
    def build(root, ps, tmp):
        (tmp / "r").mkdir()
        (tmp / "s").mkdir()
        shutil.copy(LOGS / "motioncor2_1.5.0_log.txt", tmp / "r" / "eer.log")
        text = (LOGS / "motioncor2_1.6.4_log.txt").read_text()
        (tmp / "s" / "eer.log").write_text(cut(text))
        return _mc(tmp, "r/*.log", "s/*.log")
    return build


def _after_frame(text, frame, tail=""):
    lines = text.splitlines(keepends=True)
    k = next(i for i, ln in enumerate(lines) if ln.strip() == "Full-frame alignment")
    return "".join(lines[:k + 2 + frame]) + tail


def _drop_15_rows(root, ps, tmp):
    """A 28-frame MotionCor2 1.5 log whose table lost frames 21-28 (header says 28)."""
    (tmp / "r").mkdir()
    (tmp / "s").mkdir()
    text = (LOGS / "29123499.motioncor2.log").read_text().splitlines(keepends=True)
    shutil.copy(LOGS / "29123499.motioncor2.log", tmp / "r" / "m.log")
    kept = [ln for ln in text if not any(f"Frame ( {f})" in ln for f in range(21, 29))]
    (tmp / "s" / "m.log").write_text("".join(kept))
    return _mc(tmp, "r/*.log", "s/*.log")


def _mc_pairs(**kw):
    def build(root, ps, tmp):
        _pair_dirs(tmp, **kw)
        return _mc(tmp, "a/*.star", "b/*.csv")
    return build


def _mc_opt(*extra):
    def build(root, ps, tmp):
        _pair_dirs(tmp)
        return _mc(tmp, "a/*.star", "b/*.csv", *extra)
    return build


def _mc_dups(root, ps, tmp):
    _pair_dirs(tmp)
    shutil.copy(tmp / "b" / "mic_0.csv", tmp / "b" / "mic_0_shifts.csv")
    return _mc(tmp, "a/*.star", "b/*.csv")


def _mc_cut_star(root, ps, tmp):
    _pair_dirs(tmp, n=1)
    f = tmp / "a" / "mic_0.star"
    text = f.read_text()
    k = text.index("\n6 ") + 1
    f.write_text(text[:k] + " ".join(text[k:].split()[:2]))  # the file ends in frame 6's x
    return _mc(tmp, "a/*.star", "b/*.csv")


def _mc_short_star(root, ps, tmp):
    _pair_dirs(tmp, n=1)
    p = sim.simulate_trajectory_pair("agree", seed=0, n_frames=24)
    _star_motion(tmp / "a" / "mic_0.star", p.frames_ref[:20], p.ref[:20], size_z=24)
    return _mc(tmp, "a/*.star", "b/*.csv")


def _mc_nan_csv(root, ps, tmp):
    _pair_dirs(tmp, n=1)
    f = tmp / "b" / "mic_0.csv"
    lines = f.read_text().splitlines()
    lines[5] = "5,nan,1.0"
    f.write_text("\n".join(lines) + "\n")
    return _mc(tmp, "a/*.star", "b/*.csv")


def _mc_foreign(root, ps, tmp):
    _pair_dirs(tmp, n=1)
    (tmp / "o").mkdir()
    (tmp / "o" / "notes.txt").write_text("mine")
    return _mc(tmp, "a/*.star", "b/*.csv")


def _warned(*words):
    def check(tmp, out, err):
        summary = json.loads((tmp / "o" / "summary.json").read_text())
        for w in words:
            assert w in err, (w, err)
            assert any(w in s for s in summary["warnings"]), (w, summary["warnings"])
    return check


def _no_pairs_check(tmp, out, err):
    _warned("no movie name is in both runs")(tmp, out, err)
    summary = json.loads((tmp / "o" / "summary.json").read_text())
    assert summary["counts"]["missing"] == 6 and summary["n_accepted"] == 0


CASES += [
    # ---- movie-consensus (listed in the issue)
    Case("mc-log-cut-in-a-row", _logs(lambda t: _after_frame(t, 5, "    6     -1.9")),
         "flagged", ("secondary file unreadable", "incomplete frame row '6     -1.9'",
                     "truncated file?"), rows=("eer",), needs_shared=True,
         check=_warned("could not be used")),
    Case("mc-names-never-pair", _mc_pairs(sec_names="movie{}"), "same",
         check=_no_pairs_check),
    Case("mc-duplicate-names", _mc_dups, "same",
         check=_warned("1 file(s) give a movie name already taken")),
    Case("mc-errors-on-stderr", _mc_opt("--binning", "0"), "error",
         ("--binning must be a finite number > 0",)),
    Case("mc-24-vs-20-frames", _mc_pairs(n=1, n_sec=20), "flagged",
         ("RMSE 0.0",
          "compared on the 20 common frames (reference 24, secondary 20)"),
         rows=("mic_0",)),
    # ---- movie-consensus, our own cases
    Case("mc-log-ends-in-table", _logs(lambda t: _after_frame(t, 5)), "flagged",
         ("ends inside the frame-shift table, after frame 5",), rows=("eer",),
         needs_shared=True),
    Case("mc-log-fewer-than-rendered", _drop_15_rows, "flagged",
         ("20 frame shifts for the 28 frames the log announces",), rows=("m",),
         needs_shared=True),
    Case("mc-star-cut-mid-row", _mc_cut_star, "flagged",
         ("reference file unreadable", "global_shift row 6 has 2 values for 3 columns"),
         rows=("mic_0",)),
    Case("mc-star-fewer-than-size-z", _mc_short_star, "flagged",
         ("20 global shifts for the 24 frames of the movie",), rows=("mic_0",)),
    Case("mc-nan-shift", _mc_nan_csv, "flagged", ("secondary: non-finite shifts",),
         rows=("mic_0",)),
    Case("mc-max-rmse-nan", _mc_opt("--max-rmse", "nan"), "error",
         ("--max-rmse must be in [0, inf)",)),
    Case("mc-min-corr-nan", _mc_opt("--min-corr", "nan", "--dose-per-frame", "-1"), "error",
         ("--min-corr must be in [-1, 1]", "--dose-per-frame must be in [0, inf)")),
    Case("mc-out-holds-other-files", _mc_foreign, "error",
         ("not results of xmipp-qc movie-consensus", "notes.txt")),
    Case("mc-no-file-matches", lambda root, ps, tmp: _mc(tmp, "x/*.star", "y/*.csv"), "error",
         ("no file matches",)),
]


# ---------------------------------------------------------------- verdicts


def _assert_error(case, command, code, out, err):
    # progress lines (chunks done, images/s) may come first; the error is one line, last
    lines = [ln for ln in err.splitlines() if ln.strip() and "error" in ln]
    assert code == 2, (code, err)
    assert len(lines) == 1 and lines[0].startswith(f"xmipp-qc {command}: error: "), err
    assert err.rstrip().endswith(lines[0]), err
    assert "Traceback" not in err
    for w in case.words:
        assert w in lines[0], (w, lines[0])
    assert out == "", out


def _assert_flagged_cr(case, tmp):
    q = read_particles(str(tmp / "o" / "vol1_particles.star")).block
    reason = np.array(q.text("xmippQcReason"))
    flagged = q.numbers("xmippQcIsOutlier").astype(bool)
    (category,) = case.words  # the whole reason is the category (core.reasons.REASONS)
    assert category in REASONS
    for r in case.rows:
        assert reason[r] == category, (r, reason[r])
        assert flagged[r]
    others = np.setdiff1d(np.arange(N), case.rows)
    assert not any(reason[i] == category for i in others)


def _assert_flagged_mc(case, tmp):
    with open(tmp / "o" / "consensus.csv", newline="") as fh:
        rows = {row["name"]: row for row in csv.DictReader(fh)}
    for name in case.rows:
        for w in case.words:
            assert w in rows[name]["message"], (w, rows[name]["message"])


def _tree(folder: Path) -> dict:
    if not folder.is_dir():
        return {"exists": folder.exists()}
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, data, tmp_path, capsys):
    if case.needs_shared and not LOGS.is_dir():
        missing_shared_data(LOGS)
    root, ps = data
    (tmp_path / "stack.mrcs").symlink_to(root / "stack.mrcs")  # for the STARs made in tmp_path
    argv = case.build(root, ps, tmp_path)
    before = _tree(tmp_path / "o")
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    if case.verdict == "error":
        _assert_error(case, argv[0], code, out, err)
        assert _tree(tmp_path / "o") == before  # nothing written, nothing removed
    else:
        assert code == 0, err
        assert "Traceback" not in err and ": error:" not in err
        if case.verdict == "flagged":
            (_assert_flagged_cr if argv[0] == CR else _assert_flagged_mc)(case, tmp_path)
    if case.check is not None:
        case.check(tmp_path, out, err)
    leftovers = [p.name for p in tmp_path.iterdir() if "xmipp-qc-tmp" in p.name
                 or "xmipp-qc-old" in p.name]
    assert leftovers == []  # no staging folder, no set-aside results


# ---------------------------------------------------------------- output folders: one run each


def _listing(folder: Path) -> list:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def test_failed_rerun_leaves_the_earlier_results_whole(data, tmp_path, capsys):
    """Issue case 1: a failed rerun into the same folder changes nothing."""
    root, ps = data
    assert main(_cr(root, root / "p.star", tmp_path / "o", vols=("true.mrc", "other.mrc"))) == 0
    first = _tree(tmp_path / "o")
    two = _write(tmp_path, "two.star", _star_text(ps, rows=[0, 1],
                                                  stack=str(root / "stack.mrcs")))
    capsys.readouterr()
    assert main(_cr(root, two, tmp_path / "o")) == 2
    err = capsys.readouterr().err
    assert "two.star against" in err and "got 2 of 2" in err
    assert _tree(tmp_path / "o") == first
    assert not [p for p in tmp_path.rglob("*") if p.suffix == ".part" or "xmipp-qc-tmp" in p.name
                or "xmipp-qc-old" in p.name]


def test_successful_rerun_replaces_every_file(data, tmp_path):
    root, _ = data
    assert main(_cr(root, root / "p.star", tmp_path / "o", vols=("true.mrc", "other.mrc"))) == 0
    assert "vol2_particles.star" in _listing(tmp_path / "o")
    assert main(_cr(root, root / "p.star", tmp_path / "o")) == 0
    listing = _listing(tmp_path / "o")
    assert [p for p in listing if not p.startswith("run")] == [
        ".xmipp-qc-run.json", "ranking.json", "vol1_aligned.mrcs", "vol1_flagged.star",
        "vol1_kept.star", "vol1_particles.star", "vol1_report.png", "vol1_reprojections.mrcs",
        "vol1_residuals.mrcs"]
    assert not [p for p in listing if p.startswith("run/vol2")], "the first run's map 2"


def test_killed_run_staging_is_removed_by_the_next_run(data, tmp_path):
    root, _ = data
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".o.xmipp-qc-tmp-{dead.pid}-abcd"
    stale.mkdir()
    (stale / "vol1_aligned.mrcs.part").write_bytes(b"partial")
    assert main(_cr(root, root / "p.star", tmp_path / "o")) == 0
    assert not stale.exists()


def test_movie_rerun_drops_stale_plots(tmp_path):
    _pair_dirs(tmp_path, n=2)
    assert main(_mc(tmp_path, "a/*.star", "b/*.csv", "--plots")) == 0
    assert (tmp_path / "o" / "plots" / "mic_0.png").exists()
    shutil.rmtree(tmp_path / "b")
    (tmp_path / "b").mkdir()
    p = sim.simulate_trajectory_pair("agree", seed=0, n_frames=24)
    lines = ["frame,x,y"] + [f"{f},{x:.4f},{y:.4f}" for f, (x, y) in zip(p.frames_sec, p.sec)]
    (tmp_path / "b" / "mic_0.csv").write_text("\n".join(lines) + "\n")
    assert main(_mc(tmp_path, "a/*.star", "b/*.csv")) == 0
    assert _listing(tmp_path / "o") == [".xmipp-qc-run.json", "consensus.csv",
                                        "micrographs_accepted.star",
                                        "micrographs_discarded.star", "summary.json"]


def test_overwrite_replaces_a_foreign_folder(data, tmp_path):
    root, _ = data
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "old.txt").write_text("x")
    assert main(_cr(root, root / "p.star", tmp_path / "o", "--overwrite")) == 0
    assert not (tmp_path / "o" / "old.txt").exists()


def test_one_bad_image_leaves_the_others_scores_unchanged(data, tmp_path):
    """A x1e19 image changes no other image's per-image score; set scores stay finite."""
    root, ps = data
    assert main(_cr(root, root / "p.star", tmp_path / "clean")) == 0
    assert main(_scaled(1e19)(root, ps, tmp_path)) == 0
    clean = read_particles(str(tmp_path / "clean" / "vol1_particles.star")).block
    bad = read_particles(str(tmp_path / "o" / "vol1_particles.star")).block
    others = np.setdiff1d(np.arange(N), [3])
    for col in ("xmippQcCost", "xmippQcCorrMask", "xmippQcResStd", "xmippQcAngleChange"):
        np.testing.assert_allclose(bad.numbers(col)[others], clean.numbers(col)[others],
                                   atol=2e-6, err_msg=col)
    div = bad.numbers("xmippQcResCovDivergence")
    assert np.isfinite(div[others]).all() and np.isnan(div[3])
    np.testing.assert_allclose(div[others], clean.numbers("xmippQcResCovDivergence")[others],
                               rtol=0.05, atol=1e-4)


def test_console_run_prints_one_line_and_no_traceback(data, tmp_path):
    """The installed entry point, as a user runs it: stderr, exit 2, no traceback."""
    root, ps = data
    argv = _empty(root, ps, tmp_path)
    p = subprocess.run([sys.executable, "-m", "xmipp_qc.cli", *argv], capture_output=True,
                       text=True, env={**os.environ, "XMIPP_QC_TRACEBACK": ""})
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.strip().splitlines() == [
        f"xmipp-qc {CR}: error: {tmp_path / 'empty.star'}: data_particles has a header but no "
        "rows (no particles)"]


# ---------------------------------------------------------------- protocols: the same questions


@pytest.mark.scipion
class TestProtocolValidation:
    """``_validate`` asks the command's questions (core/option_checks, core/input_checks)."""

    @pytest.fixture(scope="class")
    def project(self):
        from pyworkflow import Config

        Config.setDomain("pwem")
        from pyworkflow.tests import BaseTest, setupTestProject

        class _Host(BaseTest):
            pass

        setupTestProject(_Host)
        return _Host

    def _compare(self, host, volumeData=None, **kw):
        from xmipp_qc.protocols import (
            XmippQcProtCompareReprojections,
            XmippQcProtSyntheticParticles,
        )

        syn = host.newProtocol(XmippQcProtSyntheticParticles, nImages=10, boxSize=16)
        host.launchProtocol(syn)
        if volumeData is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                write_volume(syn.outputVolume.getFileName(), volumeData, 4.0)
        return host.newProtocol(XmippQcProtCompareReprojections, doRanking=False,
                                inputSet2D=syn.outputParticles, inputSet3D=syn.outputVolume,
                                **kw)

    @pytest.mark.parametrize("data, words", [
        (np.zeros((16,) * 3, np.float32), "map is constant (every voxel 0)"),
        (np.full((16,) * 3, np.nan, np.float32), "map has 4096 non-finite voxels"),
    ], ids=["constant-map", "nan-map"])
    def test_compare_map_named(self, project, data, words):
        errors = self._compare(project, data)._validate()
        assert len(errors) == 1 and errors[0].startswith("Map "), errors
        assert "map_01.mrc): " in errors[0] and words in errors[0], errors

    def test_compare_thresholds(self, project):
        prot = self._compare(project, resol=float("nan"), symmetryGroup="q7")
        errors = prot._validate()
        assert any("Comparison resolution (A) must be in [0, inf), got nan" in e
                   for e in errors), errors
        assert any("Symmetry group: unknown symmetry group 'q7'" in e for e in errors), errors

    def test_movie_consensus_thresholds(self, project):
        from xmipp_qc.protocols import XmippQcProtConsensusMovieAlignment

        prot = project.newProtocol(XmippQcProtConsensusMovieAlignment, maxRmse=float("nan"),
                                   earlyDose=-1.0, minConsCorrelation=0.5)
        errors = prot._validate()
        assert "Maximum RMSE (px) must be in [0, inf), got nan" in errors, errors
        assert "Early motion dose (e/A^2) must be in [0, inf), got -1.0" in errors, errors
        assert not any("correlation" in e for e in errors), errors
