"""``--output-stacks all|flagged|none``: which images are saved, and that they are the same.

Also the pieces that keep a run's memory flat: the rows to save
(:func:`xmipp_qc.core.saved_images.rows_to_save`) and the stack writer, whose
memory must not grow with the stack it writes.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from xmipp_qc.cli import main
from xmipp_qc.core import simulate as sim
from xmipp_qc.core.saved_images import rows_to_save, stack_bytes
from xmipp_qc.formats.mrc import read_images, stack_shape, write_stack, write_volume
from xmipp_qc.formats.relion_particles import read_particles
from xmipp_qc.tests.test_cli_compare_reprojections import _write_star

BOX, N, PX = 33, 150, 3.0
STACKS = ("reprojections", "residuals", "aligned")
IMAGE_COLUMNS = {"reprojections": "xmippQcImageRef", "residuals": "xmippQcImageResidual",
                 "aligned": "xmippQcImageAligned"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One data set (odd box, CTF, chunks of 40) run with each output-stack choice."""
    root = tmp_path_factory.mktemp("stacks")
    blobs = sim.phantom_blobs(BOX, seed=11)
    ps = sim.simulate_particles(blobs, N, box=BOX, snr=0.7, pixel_size_a=PX, max_shift_px=2.0,
                                ctf=True, outlier_fraction=0.03, outlier_kinds=("junk",),
                                seed=12)
    write_stack(str(root / "stack.mrcs"), ps.images, PX)
    write_volume(str(root / "map.mrc"), sim.blobs_volume(blobs, BOX), PX)
    _write_star(root / "particles.star", ps, ctf=True, box=BOX)
    outs = {}
    for mode in ("all", "flagged", "none"):
        outs[mode] = root / mode
        assert main(["compare-reprojections", "--images", str(root / "particles.star"),
                     "--volume", str(root / "map.mrc"), "--out", str(outs[mode]),
                     "--use-ctf", "--chunk-size", "40", "--threads", "2", "--worst", "3",
                     "--output-stacks", mode, "--keep-worst", "8", "--quiet"]) == 0
    return outs


def _scores(star):
    q = read_particles(str(star))
    return q, {k: q.block.numbers(f"xmippQc{k[0].upper()}{k[1:]}")
               for k in ("outlierScore", "cost", "zScoreResCov", "zScoreGray", "imedValue")}


def test_scores_do_not_depend_on_the_choice(runs):
    base = read_particles(str(runs["all"] / "vol1_particles.star")).block
    for mode in ("flagged", "none"):
        other = read_particles(str(runs[mode] / "vol1_particles.star")).block
        for label in ("xmippQcCost", "xmippQcOutlierScore", "rlnAngleRot", "rlnOriginXAngst"):
            np.testing.assert_array_equal(other.numbers(label), base.numbers(label))
        np.testing.assert_array_equal(other.numbers("xmippQcIsOutlier"),
                                      base.numbers("xmippQcIsOutlier"))


def test_flagged_saves_flagged_and_worst_rows_with_the_images_of_all(runs):
    q, scores = _scores(runs["flagged"] / "vol1_particles.star")
    flagged = q.block.numbers("xmippQcIsOutlier").astype(bool)
    assert 3 <= flagged.sum() < N // 4
    expected = rows_to_save({**scores, "isOutlier": flagged}, "flagged", n_worst=8)
    assert flagged[expected].sum() == flagged.sum()  # every flagged row is saved
    assert flagged.sum() + 8 <= len(expected) <= flagged.sum() + 5 * 8
    names = np.asarray(q.block.text(IMAGE_COLUMNS["aligned"]))
    saved = np.flatnonzero(names != "none")
    np.testing.assert_array_equal(saved, expected)
    np.testing.assert_array_equal([int(s.split("@")[0]) for s in names[saved]],
                                  np.arange(1, len(saved) + 1))  # row order, slots from 1
    for stack in STACKS:
        path = runs["flagged"] / f"vol1_{stack}.mrcs"
        assert stack_shape(str(path)) == (len(saved), BOX, BOX)
        assert os.path.getsize(path) == stack_bytes(len(saved), BOX, 1)
        recomputed = read_images(str(path))
        full = read_images(str(runs["all"] / f"vol1_{stack}.mrcs"), saved)
        np.testing.assert_allclose(recomputed, full, atol=1e-5 * np.abs(full).max())


def test_none_writes_no_stack_and_the_report_still_shows_the_worst(runs):
    out = runs["none"]
    assert not list(out.glob("*.mrcs")) and not list((out / "run").rglob("*.mrcs"))
    q = read_particles(str(out / "vol1_particles.star"))
    assert not q.block.has(IMAGE_COLUMNS["aligned"])
    assert (out / "vol1_report.png").stat().st_size > 5000
    a = read_particles(str(runs["all"] / "vol1_particles.star"))
    assert a.block.text(IMAGE_COLUMNS["residuals"])[6] == "000007@vol1_residuals.mrcs"
    assert not list((runs["all"] / "run").rglob("*.mrcs"))  # chunk stacks removed


def test_rows_to_save_known_answer():
    s = {"isOutlier": np.array([0, 0, 1, 0, 0, 0, 0, 0], bool),
         "outlierScore": np.array([0.1, 5.0, np.nan, 0.2, 0.3, 4.0, 0.0, 0.5]),
         "cost": np.array([0.9, 0.8, np.nan, 0.1, 0.95, 0.7, 0.85, 0.99])}
    np.testing.assert_array_equal(rows_to_save(s, "all"), np.arange(8))
    assert rows_to_save(s, "none").size == 0
    np.testing.assert_array_equal(rows_to_save(s, "flagged", n_worst=0), [2])
    np.testing.assert_array_equal(rows_to_save(s, "flagged", n_worst=2), [1, 2, 3, 5])
    np.testing.assert_array_equal(
        rows_to_save(s, "flagged", n_worst=1, worst_first={"cost": True}), [2, 7])
    with pytest.raises(ValueError, match="all, flagged, none"):
        rows_to_save(s, "some")
    assert stack_bytes(100, 96) == 3 * (1024 + 100 * 96 * 96 * 4)


_WRITER = """
import resource, sys
import numpy as np
from xmipp_qc.formats.mrc import StackWriter
n, box = 2000, 200  # 320 MB of float32
block = np.ones((100, box, box), np.float32)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with StackWriter(sys.argv[1], n, box, 1.0) as w:
    for start in range(0, n, 100):
        w.write(np.arange(start, start + 100)[::-1] if start else np.arange(100), block * start)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)
"""


def test_stack_writer_memory_does_not_grow_with_the_stack(tmp_path):
    path = tmp_path / "big.mrcs"
    grown = float(subprocess.run([sys.executable, "-c", _WRITER, str(path)], check=True,
                                 capture_output=True, text=True).stdout)
    assert grown < 64, f"writing a 320 MB stack grew the writer's peak memory by {grown} MB"
    assert stack_shape(str(path)) == (2000, 200, 200)
    got = read_images(str(path), [0, 99, 100, 199, 1999])[:, 0, 0]
    np.testing.assert_array_equal(got, [0, 0, 100, 100, 1900])
