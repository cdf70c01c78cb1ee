"""One chunk worker for every path of compare reprojections.

* The protocol and ``xmipp-qc compare-reprojections`` give identical numbers on
  the same images (the protocol's particles written to a STAR file);
* the command line with ``--threads 2`` equals ``--threads 1`` and reports its
  progress on stderr (none with ``--quiet``);
* the worker program (``python -m xmipp_qc.compare_run``, what a queue job runs)
  equals the in-process pool, logs its chunk, and a failed chunk is named.
"""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from pyworkflow import Config
from threadpoolctl import threadpool_limits

Config.setDomain("pwem")

from pwem.constants import ALIGN_PROJ  # noqa: E402
from pyworkflow.tests import BaseTest, setupTestProject  # noqa: E402

from xmipp_qc import compare_run  # noqa: E402
from xmipp_qc.cli import main  # noqa: E402
from xmipp_qc.convert import imagesToArrays  # noqa: E402
from xmipp_qc.core import simulate as sim  # noqa: E402
from xmipp_qc.core.chunk_result import ChunkResult  # noqa: E402
from xmipp_qc.core.compare_policy import compare_options  # noqa: E402
from xmipp_qc.formats.mrc import write_stack, write_volume  # noqa: E402
from xmipp_qc.protocols import (  # noqa: E402
    XmippQcProtCompareReprojections,
    XmippQcProtSyntheticParticles,
)
from xmipp_qc.protocols.compare_reprojections_results import readScores  # noqa: E402

N, BOX, PX, CHUNK = 240, 48, 2.0, 100  # 2 Å/px -> 3 Å/px, box 32: the grid is decided


def writeStar(path, images, pixel, box):
    """A RELION 3.1 STAR of a Scipion particle set (angles, origins in px, exact floats)."""
    d = imagesToArrays(images, ALIGN_PROJ, withCtf=False)
    lines = ["data_optics", "loop_", "_rlnOpticsGroup #1", "_rlnVoltage #2",
             "_rlnSphericalAberration #3", "_rlnAmplitudeContrast #4", "_rlnImagePixelSize #5",
             "_rlnImageSize #6", f"1 300 2.7 0.1 {pixel!r} {box}", "", "data_particles", "loop_",
             "_rlnImageName #1", "_rlnAngleRot #2", "_rlnAngleTilt #3", "_rlnAnglePsi #4",
             "_rlnOriginX #5", "_rlnOriginY #6", "_rlnOpticsGroup #7"]
    for (index, fn), a, s in zip(d["locations"], d["angles"], d["shifts"]):
        values = " ".join(repr(float(v)) for v in (*a, *s))
        lines.append(f"{index:06d}@{os.path.abspath(fn)} {values} 1")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return d["ids"]


@pytest.mark.scipion
class TestProtocolAndCommandLine(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)

    def test_same_input_same_numbers(self):
        syn = self.newProtocol(XmippQcProtSyntheticParticles, nImages=N, boxSize=BOX,
                               samplingRate=PX, snr=1.0, maxShift=2.0, outlierFraction=0.05,
                               outlierKinds="junk,wrong_conformation", seed=5)
        self.launchProtocol(syn)
        prot = self.newProtocol(XmippQcProtCompareReprojections,
                                inputSet2D=syn.outputParticles, inputSet3D=syn.outputVolume,
                                doRanking=False, chunkSize=CHUNK, resol=12.0,
                                numberOfThreads=3)
        self.launchProtocol(prot)
        ref = readScores(prot._getExtraPath(), syn.outputVolume.getObjId())

        root = self.proj.getTmpPath()
        star = os.path.join(root, "particles.star")
        ids = writeStar(star, syn.outputParticles, PX, BOX)
        out = os.path.join(root, "cli")
        code = main(["compare-reprojections", "--images", star, "--volume",
                     os.path.abspath(syn.outputVolume.getFileName()), "--volume-pixel-size",
                     str(PX), "--out", out, "--chunk-size", str(CHUNK), "--resol", "12",
                     "-j", "2", "--quiet"])
        self.assertEqual(code, 0)
        with np.load(os.path.join(out, "run", "vol1", "scores.npz")) as z:
            cli = {k: z[k] for k in z.files}
        self.assertEqual(sorted(cli), sorted(ref))
        np.testing.assert_array_equal(ids[cli["ids"]], ref["ids"])  # rows vs item ids
        for key in ref:
            if key != "ids":
                np.testing.assert_array_equal(cli[key], ref[key], err_msg=key)
        self.assertGreaterEqual(int(ref["isOutlier"].sum()), 8)
        run = compare_run.read_run(os.path.join(out, "run"))
        self.assertEqual(run["options"], compare_run.read_run(prot._getExtraPath())["options"])
        self.assertEqual(run["options"].pixel_size_a, 3.0)
        self.assertEqual(run["options"].resolution_a, 12.0)
        self.assertEqual(run["options"].sigma, 3.0)


# --------------------------------------------------------------------------
# Command line and worker on files (no Scipion project)
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def star_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("paths")
    blobs = sim.phantom_blobs(32, seed=3)
    ps = sim.simulate_particles(blobs, 150, box=32, snr=1.0, pixel_size_a=3.0,
                                max_shift_px=1.5, outlier_fraction=0.04,
                                outlier_kinds=("junk",), seed=4)
    write_stack(str(root / "stack.mrcs"), ps.images, 3.0)
    write_volume(str(root / "map.mrc"), sim.blobs_volume(blobs, 32), 3.0)
    lines = ["data_particles", "loop_", "_rlnImageName #1", "_rlnAngleRot #2",
             "_rlnAngleTilt #3", "_rlnAnglePsi #4", "_rlnOriginX #5", "_rlnOriginY #6",
             "_rlnDetectorPixelSize #7", "_rlnMagnification #8"]
    for i, (a, s) in enumerate(zip(ps.angles, ps.shifts)):
        lines.append(f"{i + 1:06d}@stack.mrcs {a[0]!r} {a[1]!r} {a[2]!r} {s[0]!r} {s[1]!r} "
                     "3.0 10000")
    (root / "particles.star").write_text("\n".join(lines) + "\n")
    return root


def _cli(root, out, *extra):
    return main(["compare-reprojections", "--images", str(root / "particles.star"),
                 "--volume", str(root / "map.mrc"), "--out", str(out), "--chunk-size", "40",
                 *extra])


def _scores(out):
    with np.load(out / "run" / "vol1" / "scores.npz") as z:
        return {k: z[k] for k in z.files}


def test_cli_threads_give_the_same_numbers_and_report_progress(star_dataset, capsys):
    assert _cli(star_dataset, star_dataset / "j1", "--threads", "1") == 0
    err1 = capsys.readouterr().err
    assert _cli(star_dataset, star_dataset / "j2", "-j", "2") == 0
    err2 = capsys.readouterr().err
    one, two = _scores(star_dataset / "j1"), _scores(star_dataset / "j2")
    for key in one:
        np.testing.assert_array_equal(one[key], two[key], err_msg=key)
    for err in (err1, err2):
        done = re.findall(r"chunks (\d+)/4 done, (\d+)/150 images, ([\d.]+) images/s, "
                          r"(.+) left", err)
        assert [int(d[0]) for d in done] == [1, 2, 3, 4], err
        assert int(done[-1][1]) == 150 and done[-1][3] == "0 s"
        assert all(float(d[2]) > 0 for d in done)
    assert "4 chunks of up to 40 images, 2 at a time" in err2
    assert _cli(star_dataset, star_dataset / "quiet", "--quiet") == 0
    assert capsys.readouterr().err == ""
    # only the small files of the run folder stay
    left = sorted(os.listdir(star_dataset / "j2" / "run" / "vol1"))
    assert left == [f"chunk_{c:05d}.npz" for c in range(4)] + ["scores.npz"]


def _run_folder(tmp_path, n=30, box=24):
    """A run folder made with the compare_run API: 2 chunks, given angles."""
    blobs = sim.phantom_blobs(box, seed=8)
    ps = sim.simulate_particles(blobs, n, box=box, snr=2.0, pixel_size_a=3.0, seed=9)
    folder = str(tmp_path / "run")
    os.makedirs(folder)
    compare_run.write_run(folder, compare_options(3.0), maps=[7], matching=False)
    write_volume(compare_run.path(folder, "volume", 7), sim.blobs_volume(blobs, box), 3.0)
    write_stack(compare_run.path(folder, "images"), ps.images[:20], 3.0)
    rows = np.arange(20)
    compare_run.write_chunk_input(folder, 0, positions=rows, ids=rows + 100,
                                  angles=ps.angles[rows], shifts=ps.shifts[rows])
    rows = np.arange(20, n)  # chunk 1 in a stack of its own (as a streaming step would)
    write_stack(os.path.join(folder, "more.mrcs"), ps.images[rows], 3.0)
    compare_run.write_chunk_input(folder, 1, positions=rows - 20, ids=rows + 100,
                                  angles=ps.angles[rows], shifts=ps.shifts[rows],
                                  stack="more.mrcs")
    return folder


def test_worker_program_equals_the_in_process_pool(tmp_path):
    folder = _run_folder(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "xmipp_qc.compare_run", "--folder", folder,
                           "--map", "7", "--chunk", "1", "--chunk", "0"],
                          capture_output=True, text=True,
                          env={**os.environ, "SLURM_JOB_ID": "4242"})
    assert proc.returncode == 0, proc.stderr
    worker = [ChunkResult.load(compare_run.path(folder, "result", 7, c)) for c in (0, 1)]
    with open(compare_run.path(folder, "log", 7, 1)) as fh:
        log = fh.read()
    assert "chunk 1 of map 7: started on" in log and "SLURM_JOB_ID=4242" in log
    assert re.search(r"chunk 1 of map 7: 10 images in [\d.]+ s", log)
    assert compare_run.missing_chunks(folder, 7, [0, 1]) == []
    for c in (0, 1):
        os.remove(compare_run.path(folder, "result", 7, c))
    with threadpool_limits(1, user_api="blas"):  # as the worker, the protocol and the CLI
        compare_run.run_local(folder, [(7, 0), (7, 1)], threads=2)
    for c, w in enumerate(worker):
        local = ChunkResult.load(compare_run.path(folder, "result", 7, c))
        np.testing.assert_array_equal(local.ids, w.ids)
        np.testing.assert_array_equal(local.angles, w.angles)
        for key, v in w.summary.scores.items():
            np.testing.assert_array_equal(local.summary.scores[key], v, err_msg=key)
    assert list(worker[1].ids) == list(range(120, 130))


def test_failed_chunk_is_named_and_saved_chunks_stay(tmp_path):
    folder = _run_folder(tmp_path)
    compare_run.write_chunk_input(folder, 1, positions=np.arange(10), ids=np.arange(10),
                                  angles=np.zeros((10, 3)), shifts=np.zeros((10, 3)),
                                  stack="more.mrcs")
    with pytest.raises(compare_run.ChunkError, match=r"chunk 1 of map 7 failed: shifts"):
        compare_run.run_local(folder, [(7, 0), (7, 1)], threads=1)
    assert compare_run.missing_chunks(folder, 7, [0, 1]) == [1]
    proc = subprocess.run([sys.executable, "-m", "xmipp_qc.compare_run", "--folder", folder,
                           "--map", "7", "--chunk", "1"], capture_output=True, text=True)
    assert proc.returncode == 1
    with open(compare_run.path(folder, "log", 7, 1)) as fh:
        assert "chunk 1 of map 7: FAILED: ValueError: shifts must be (10, 2)" in fh.read()
