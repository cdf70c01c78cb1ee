"""Compare reprojections on a real local Slurm (started by scripts/services/slurm.sh).

2,000 particles in chunks of 250: with the queue used per step each chunk is its
own Slurm job (its log names its SLURM_JOB_ID) and the scores equal the local
run's; the whole protocol submitted as one job gives the same scores; a chunk job
cancelled with ``scancel`` fails the run naming the chunk and its job, but only
once the other chunk job in flight has ended (nothing is submitted after), and
"continue" reruns only the chunks without a result. Queued runs return from
``launchProtocol`` at once: the tests poll the run state. Without Slurm the tests
skip (and fail under CI).
"""

import json
import os
import re
import shutil
import subprocess
import time

import numpy as np
import pytest
from pyworkflow import Config

Config.setDomain("pwem")

import pyworkflow.protocol.constants as pwcts  # noqa: E402
from pyworkflow.tests import BaseTest, setupTestProject  # noqa: E402

from xmipp_qc import compare_run  # noqa: E402
from xmipp_qc.protocols import (  # noqa: E402
    XmippQcProtCompareReprojections,
    XmippQcProtSyntheticParticles,
)
from xmipp_qc.protocols.compare_reprojections_results import readScores  # noqa: E402
from xmipp_qc.tests.run_polling import (  # noqa: E402
    refreshed,
    run_log,
    run_marker,
    run_process_alive,
)

pytestmark = pytest.mark.scipion

N, CHUNK = 2000, 250
PARTITION = os.environ.get("XMIPP_QC_SLURM_PARTITION", "")


def slurmProblem():
    """Why Slurm cannot be used here, or None."""
    if not (PARTITION and os.environ.get("SLURM_CONF")):
        return "no Slurm started (scripts/services/slurm.sh sets SLURM_CONF and " \
               "XMIPP_QC_SLURM_PARTITION; run `make test`)"
    if not shutil.which("sinfo"):
        return "Slurm client commands are not installed"
    out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    if out.returncode or not out.stdout.strip().startswith(("idle", "mix", "alloc")):
        return f"the Slurm node is not up: {out.stdout.strip()} {out.stderr.strip()}"
    hosts = os.environ.get("SCIPION_HOSTS", "")
    if not (os.path.exists(hosts) and "sbatch" in open(hosts).read()):
        return f"the tests' hosts.conf ({hosts}) has no Slurm queue"
    return None


@pytest.fixture(autouse=True, scope="module")
def needSlurm():
    problem = slurmProblem()
    if problem and os.environ.get("CI"):
        pytest.fail(f"CI needs a local Slurm: {problem}")
    if problem:
        pytest.skip(problem)


def jobcomp():
    """``{jobId: (name, state)}`` of the finished Slurm jobs (jobcomp/filetxt)."""
    fn = os.path.join(os.environ["XMIPP_QC_SLURM_DIR"], "log", "jobcomp.log")
    jobs = {}
    if os.path.exists(fn):
        for line in open(fn):
            m = re.search(r"JobId=(\d+) .*?Name=(\S+) JobState=(\S+)", line)
            if m:
                jobs[int(m.group(1))] = (m.group(2), m.group(3))
    return jobs


def chunkJobIds(prot, volId):
    """SLURM_JOB_ID of each chunk's worker, from its log in extra/ (last start wins)."""
    ids = {}
    for k in range(compare_run.chunk_count(prot._getExtraPath())):
        with open(compare_run.path(prot._getExtraPath(), "log", volId, k)) as fh:
            ids[k] = [int(j) for j in re.findall(r"SLURM_JOB_ID=(\d+)", fh.read())]
    return ids


def slurm(*args):
    subprocess.run(list(args), check=True, capture_output=True, text=True)


class TestCompareReprojectionsSlurm(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        syn = cls.newProtocol(XmippQcProtSyntheticParticles, nImages=N, boxSize=32,
                              samplingRate=3.0, snr=1.0, outlierFraction=0.02,
                              outlierKinds="junk", seed=11)
        cls.launchProtocol(syn)
        cls.images, cls.volume = syn.outputParticles, syn.outputVolume
        cls.volId = syn.outputVolume.getObjId()
        local = cls.newCompare("local")
        cls.launchProtocol(local)
        cls.localScores = readScores(local._getExtraPath(), cls.volId)

    @classmethod
    def newCompare(cls, label, queueForJobs=None, cpus="1"):
        prot = cls.newProtocol(XmippQcProtCompareReprojections, inputSet2D=cls.images,
                               inputSet3D=cls.volume, doRanking=False, chunkSize=CHUNK,
                               numberOfThreads=3, objLabel=label)
        if queueForJobs is not None:
            prot._useQueue.set(True)
            prot._queueParams.set(json.dumps([PARTITION, {"JOB_CPUS": cpus,
                                                          "QUEUE_FOR_JOBS": queueForJobs}]))
        return prot

    def launchAndWait(self, prot, timeout=180, resume=False):
        """Launch (a queued run returns at once) and poll until the run ends."""
        if resume:
            prot.runMode.set(pwcts.MODE_RESUME)
        before = run_marker(prot)
        self.proj.launchProtocol(prot, wait=False)
        return self.waitFor(prot, timeout, before)

    def waitFor(self, prot, timeout=180, before=(0, False)):
        """Poll until a protocol process started after ``before`` (run_marker) has
        logged its end and exited, the run is no longer active and none of its Slurm
        jobs is left (a continued run's database says "failed" until its new process
        writes); return the seconds waited."""
        t0 = time.time()
        while time.time() - t0 < timeout:
            refreshed(self.proj, prot)
            started, ended = run_marker(prot)
            if (started > before[0] and ended and not prot.isActive()
                    and not run_process_alive(prot) and not self.queuedJobs(prot)):
                return time.time() - t0
            time.sleep(0.5)
        self.fail(f"{prot.getRunName()} still {prot.getStatus()} after {timeout} s")

    def assertSameScores(self, prot):
        scores = readScores(prot._getExtraPath(), self.volId)
        self.assertEqual(sorted(scores), sorted(self.localScores))
        for key, ref in self.localScores.items():
            np.testing.assert_array_equal(scores[key], ref, err_msg=key)
        self.assertGreater(int(scores["isOutlier"].sum()), 0)

    def test_queue_per_step_one_slurm_job_per_chunk(self):
        prot = self.newCompare("queue per step", queueForJobs="Y")
        self.assertTrue(prot.modeParallel())
        self.launchAndWait(prot)
        self.assertTrue(prot.isFinished(), prot.getErrorMessage())
        ids = chunkJobIds(prot, self.volId)
        self.assertEqual(len(ids), N // CHUNK)
        jobs = jobcomp()
        chunkJobs = [j for js in ids.values() for j in js]
        self.assertEqual([len(js) for js in ids.values()], [1] * (N // CHUNK), ids)
        self.assertEqual(len(set(chunkJobs)), N // CHUNK)  # one Slurm job per chunk
        for j in chunkJobs:
            name, state = jobs[j]
            self.assertEqual(state, "COMPLETED")
            self.assertTrue(name.startswith(f"{prot.getObjId()}-"), name)
        self.assertSameScores(prot)
        out = getattr(prot, f"reprojections_vol{self.volId}")
        self.assertEqual(out.getSize(), N)

    def test_whole_protocol_as_one_slurm_job(self):
        prot = self.newCompare("whole protocol on the queue", queueForJobs="N", cpus="2")
        self.assertTrue(prot.modeSerial())
        self.launchAndWait(prot)
        self.assertTrue(prot.isFinished(), prot.getErrorMessage())
        jobId = int(prot.getJobIds()[0])
        self.assertEqual(jobcomp()[jobId][1], "COMPLETED")
        self.assertSameScores(prot)

    def test_cancelled_chunk_fails_once_no_job_is_in_flight_and_continue_completes(self):
        prot = self.newCompare("queue per step, one job cancelled", queueForJobs="Y")
        slurm("scontrol", "update", f"PartitionName={PARTITION}", "State=DOWN")
        try:  # jobs queue but do not start: the first one is cancelled while pending
            self.proj.launchProtocol(prot, wait=False)
            jobId = self.firstJob(prot)
            slurm("scancel", str(jobId))
            # the cancelled chunk gives up while the other chunk's job is still pending:
            # the run must go on (no "failed" while a job of it is alive) and submit nothing
            self.waitForLog(prot, "other chunk job(s) in flight have ended", timeout=120)
            time.sleep(2)
            self.assertTrue(refreshed(self.proj, prot).isActive(), prot.getErrorMessage())
            self.assertEqual(len(self.queuedJobs(prot)), 1)
        finally:
            slurm("scontrol", "update", f"PartitionName={PARTITION}", "State=UP")
        self.waitFor(prot)
        self.assertTrue(prot.isFailed(), prot.getStatus())
        error = prot.getErrorMessage()
        m = re.search(r"Chunk (\d+) of map (\d+) \(images (\d+)-(\d+)\) has no result: "
                      rf"its queue job {jobId} ended", error)
        self.assertIsNotNone(m, error)
        chunk = int(m.group(1))
        self.assertEqual(int(m.group(2)), self.volId)
        self.assertEqual((int(m.group(3)), int(m.group(4))),
                         (chunk * CHUNK + 1, (chunk + 1) * CHUNK))
        self.assertEqual(jobcomp()[jobId][1], "CANCELLED")
        log = run_log(prot)
        self.assertEqual(log.count("Launched job with id"), 2)  # none after the failure
        extra = prot._getExtraPath()
        saved = [k for k in range(N // CHUNK)
                 if not compare_run.missing_chunks(extra, self.volId, [k])]
        self.assertEqual(len(saved), 1)  # the other chunk in flight
        self.assertNotIn(chunk, saved)
        # the failed step ended only after the other chunk's job had saved its result
        failed = re.search(r"FAILED\x1b\[0m: chunkJobStep, step \d+, time (\S+ \S+)", log)
        with open(compare_run.path(extra, "log", self.volId, saved[0])) as fh:
            savedAt = re.search(r"^(\S+ \S+) .*, saved$", fh.read(), re.M).group(1)
        self.assertGreaterEqual(failed.group(1)[:19], savedAt)
        before = {k: os.path.getmtime(compare_run.path(extra, "result", self.volId, k))
                  for k in saved}
        self.launchAndWait(prot, resume=True)
        self.assertTrue(prot.isFinished(), prot.getErrorMessage())
        for k, t in before.items():  # saved chunks were not rerun
            self.assertEqual(os.path.getmtime(compare_run.path(extra, "result", self.volId, k)), t)
        ids = chunkJobIds(prot, self.volId)
        self.assertTrue(all(len(js) == 1 for js in ids.values()), ids)
        self.assertSameScores(prot)

    def test_refused_submission_fails_naming_the_chunk_and_the_queue_answer(self):
        # a drained partition: sbatch refuses every chunk job
        prot = self.newCompare("queue per step, partition drained", queueForJobs="Y")
        slurm("scontrol", "update", f"PartitionName={PARTITION}", "State=DRAIN")
        try:
            self.launchAndWait(prot, timeout=120)
        finally:
            slurm("scontrol", "update", f"PartitionName={PARTITION}", "State=UP")
        self.assertTrue(prot.isFailed(), prot.getStatus())
        error = prot.getErrorMessage()
        m = re.search(r"Chunk (\d+) of map (\d+) \(images (\d+)-(\d+)\) could not be run "
                      r"on the queue: the queue refused the job \(sbatch: error: Batch "
                      r"job submission failed: Required partition not available", error)
        self.assertIsNotNone(m, error)
        chunk = int(m.group(1))
        self.assertEqual((int(m.group(2)), int(m.group(3)), int(m.group(4))),
                         (self.volId, chunk * CHUNK + 1, (chunk + 1) * CHUNK))
        log = run_log(prot)
        self.assertNotIn("Launched job with id", log)
        # the first two chunk steps start together; none is submitted after a refusal
        self.assertIn(log.count("** Submitting to queue"), (1, 2))

    def waitForLog(self, prot, text, timeout):
        """Wait until the run's stdout log contains ``text``."""
        t0 = time.time()
        while time.time() - t0 < timeout:
            if text in run_log(prot):
                return
            time.sleep(0.5)
        self.fail(f"{prot.getRunName()} did not log {text!r} within {timeout} s")

    @staticmethod
    def queuedJobs(prot):
        """Ids of the Slurm jobs of ``prot`` still pending or running (ascending): those
        whose job script is in its logs/ folder (job names repeat across projects)."""
        logs = os.path.abspath(prot._getLogsPath()) + os.sep
        out = subprocess.run(["squeue", "-h", "-o", "%i %o"], capture_output=True,
                             text=True, check=True).stdout.split()
        return sorted(int(j) for j, script in zip(out[::2], out[1::2])
                      if script.startswith(logs))

    def firstJob(self, prot, timeout=60):
        """Id of the first Slurm job of ``prot`` seen in the queue."""
        t0 = time.time()
        while time.time() - t0 < timeout:
            jobs = self.queuedJobs(prot)
            if jobs:
                return jobs[0]
            time.sleep(0.2)
        self.fail("no Slurm job of the run appeared")
