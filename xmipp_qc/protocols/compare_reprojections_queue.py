"""Queue-per-step route of :class:`.XmippQcProtCompareReprojections` (a mixin).

With Scipion's queue used per step (``QUEUE_FOR_JOBS = "Y"``), each chunk of
images against one map is its own step running the chunk worker
(``python -m xmipp_qc.compare_run``) through ``runJob``, so each chunk becomes
one queue (e.g. Slurm) job, ``numberOfThreads - 1`` in flight. Locally, or with
the whole protocol submitted as one job, the steps stay serial (no executor
sleeps) and the chunks run in-process (``produceResiduals``).
"""

import json
import os
import sys
import time

import numpy as np
import pyworkflow.protocol.constants as pwcts
from pyworkflow.constants import QUEUE_FOR_JOBS

from xmipp_qc import compare_run


class CompareReprojectionsQueue:
    """Chunk steps as queue jobs; the host provides ``runJob``, ``_getExtraPath`` and
    ``_submitted`` (a ``threading.local``: the last queue job id of each step thread)."""

    @property
    def stepsExecutionMode(self):
        """Parallel steps only with the queue per step (one queue job per chunk step).

        pyworkflow reads this attribute of the instance when it chooses the
        executor; locally the serial executor avoids the parallel one's sleeps.
        """
        return pwcts.STEPS_PARALLEL if self._queuePerStep() else pwcts.STEPS_SERIAL

    def _queuePerStep(self):
        """``useQueueForSteps()`` read from the run's own fields (no host config)."""
        useQueue = getattr(self, "_useQueue", None)
        queueParams = getattr(self, "_queueParams", None)
        if useQueue is None or not useQueue.get() or not queueParams.hasValue():
            return False
        try:
            return json.loads(queueParams.get())[1].get(QUEUE_FOR_JOBS) == "Y"
        except (ValueError, IndexError, AttributeError):
            return False

    def chunkJobStep(self, volId, chunk):
        """One chunk of one map as a queue job running the chunk worker (compare_run)."""
        extra = os.path.abspath(self._getExtraPath())
        if chunk >= compare_run.chunk_count(extra):
            return  # fewer enabled images than planned
        if not compare_run.missing_chunks(extra, volId, [chunk]):
            self.info(f"chunk {chunk} of map {volId}: already saved")
            return
        self._submitted.jobId = None
        self.runJob(sys.executable, f"-m xmipp_qc.compare_run --folder {extra} "
                                    f"--map {volId} --chunk {chunk}", numberOfThreads=1)
        if compare_run.missing_chunks(extra, volId, [chunk]) and not self._jobSettled(
                self._submitted.jobId, lambda: not compare_run.missing_chunks(
                    extra, volId, [chunk])):
            raise compare_run.ChunkError(self._chunkFailure(extra, volId, chunk))

    def appendJobId(self, jobId):
        """Also remember the job of this step thread (see :meth:`_jobSettled`)."""
        super().appendJobId(jobId)
        self._submitted.jobId = jobId

    def _jobSettled(self, jobId, done, checks=6, pause=5.0):
        """Whether ``done()`` after all: the queue's check command can answer empty
        for a live job (a busy controller: squeue times out and prints nothing); it
        must say "gone" ``checks`` times in a row, ``pause`` s apart (30 s), before a
        missing result counts as a failed job. 3 checks 2 s apart were not enough on
        a loaded 2-core CI machine: a resubmitted chunk was called failed while its
        job was still to start."""
        from pyworkflow.protocol.launch import _checkJobStatus

        gone = 0
        while jobId is not None and gone < checks and not done():
            time.sleep(pause)
            running = _checkJobStatus(self.getHostConfig(), jobId) == pwcts.STATUS_RUNNING
            gone = 0 if running else gone + 1
        return done()

    def _chunkFailure(self, extra, volId, chunk):
        with np.load(compare_run.path(extra, "input", chunk=chunk)) as z:
            first, last = int(z["positions"][0]) + 1, int(z["positions"][-1]) + 1
        log = compare_run.path(extra, "log", volId, chunk)
        tail = ""
        if os.path.exists(log):
            with open(log) as fh:
                tail = f" Its last log line: {fh.read().strip().splitlines()[-1]}"
        return (f"Chunk {chunk} of map {volId} (images {first}-{last}) has no result: its "
                f"queue job ended without saving it (cancelled, out of time or failed). "
                f"Worker log: {log}; the job's own output is in logs/.{tail} "
                f"'Continue' reruns only the missing chunks.")

