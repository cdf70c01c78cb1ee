"""Queue-per-step route of :class:`.XmippQcProtCompareReprojections` (a mixin).

With Scipion's queue used per step (``QUEUE_FOR_JOBS = "Y"``), each chunk of
images against one map is its own step running the chunk worker
(``python -m xmipp_qc.compare_run``) through ``runJob``, so each chunk becomes
one queue (e.g. Slurm) job, ``numberOfThreads - 1`` in flight. Locally, or with
the whole protocol submitted as one job, the steps stay serial (no executor
sleeps) and the chunks run in-process (``produceResiduals``). A chunk whose job fails
fails the run only once no other chunk job is in flight (:class:`ChunkJobGate`).
"""

import ast
import json
import os
import sys
import threading
import time

import numpy as np
import pyworkflow.protocol.constants as pwcts
from pyworkflow.constants import QUEUE_FOR_JOBS

from xmipp_qc import compare_run


class CompareReprojectionsQueue:
    """Chunk steps as queue jobs; the host provides ``runJob``, ``_getExtraPath`` and
    ``_submitted`` (a ``threading.local``: the last queue job id of each step thread)."""

    # The protocol can run its steps in parallel; modeSerial() decides per run.
    stepsExecutionMode = pwcts.STEPS_PARALLEL

    def modeSerial(self):
        """Serial steps unless the queue is used per step (one queue job per chunk
        step, ``numberOfThreads - 1`` in flight).

        pyworkflow asks this when it chooses the executor. Locally, or with the
        whole protocol as one queue job, the chunks run in-process in threads of
        one step, and the serial executor avoids the parallel one's 3 s sleeps
        between steps.
        """
        return not self._queuePerStep()

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
        self._chunkGate.enter(f"chunk {chunk} of map {volId}")
        failure = None
        try:
            self._submitChunk(extra, volId, chunk)
            if compare_run.missing_chunks(extra, volId, [chunk]):
                failure = self._chunkFailure(extra, volId, chunk)
        except Exception as exc:  # not submitted (the queue refused it), or the wait broke
            failure = (f"Chunk {chunk} of map {volId} ({self._chunkImages(extra, chunk)}) "
                       f"could not be run on the queue: {queueAnswer(exc)} 'Continue' "
                       f"retries it.")
        except BaseException:  # the process is being stopped: release the others
            self._chunkGate.leave()
            raise
        self._chunkGate.leave(failure)

    def _submitChunk(self, extra, volId, chunk):
        """Run the worker of one chunk as a queue job; return when it has ended
        (or the queue has said "gone" long enough, see :meth:`_jobSettled`)."""
        self._submitted.jobId = None
        self.runJob(sys.executable, f"-m xmipp_qc.compare_run --folder {extra} "
                                    f"--map {volId} --chunk {chunk}", numberOfThreads=1)
        self._jobSettled(self._submitted.jobId,
                         lambda: not compare_run.missing_chunks(extra, volId, [chunk]))

    def appendJobId(self, jobId):
        """Also remember the job of this step thread (see :meth:`_jobSettled`)."""
        super().appendJobId(jobId)
        self._submitted.jobId = jobId

    def _jobSettled(self, jobId, done, checks=6, pause=5.0):
        """Whether ``done()`` after all. pyworkflow takes an empty answer of the
        queue's check command as "job ended", but a busy controller can time out
        and print nothing for a live job: it must say "gone" ``checks`` times in a
        row, ``pause`` s apart, before a missing result counts as a failed job."""
        from pyworkflow.protocol.launch import _checkJobStatus

        gone = 0
        while jobId is not None and gone < checks and not done():
            time.sleep(pause)
            running = _checkJobStatus(self.getHostConfig(), jobId) == pwcts.STATUS_RUNNING
            gone = 0 if running else gone + 1
        return done()

    @staticmethod
    def _chunkImages(extra, chunk):
        """"images a-b": the 1-based positions in the input set of a chunk's images."""
        with np.load(compare_run.path(extra, "input", chunk=chunk)) as z:
            return f"images {int(z['positions'][0]) + 1}-{int(z['positions'][-1]) + 1}"

    def _chunkFailure(self, extra, volId, chunk):
        log = compare_run.path(extra, "log", volId, chunk)
        job = getattr(self._submitted, "jobId", None)
        job = f" {job}" if job else ""
        tail = ""
        if os.path.exists(log):
            with open(log) as fh:
                tail = f" Its last log line: {fh.read().strip().splitlines()[-1]}"
        return (f"Chunk {chunk} of map {volId} ({self._chunkImages(extra, chunk)}) has no "
                f"result: its queue job{job} ended without saving it (cancelled, out of time "
                f"or failed). Worker log: {log}; the job's own output is in logs/.{tail} "
                f"'Continue' reruns only the missing chunks.")


def queueAnswer(exc):
    """The queue's own words in pyworkflow's "Failed to submit" error, else its text.

    pyworkflow ends that message with ``Submit error: [stdout, stderr]``, a
    Python list of the submit command's output.
    """
    text = str(exc)
    head, sep, said = text.partition("Submit error:")
    try:
        lines = ast.literal_eval(said.strip()) if sep else []
        answer = " ".join(str(line).strip() for line in lines if str(line).strip())
    except (ValueError, SyntaxError):
        answer = ""
    return f"the queue refused the job ({answer})." if answer else text


class ChunkJobGate:
    """Holds a failed chunk step back until no other chunk job is in flight.

    pyworkflow ends a parallel run at its first failed step: it records the run
    as failed at once, then waits in the same process for the other step threads,
    here queue jobs that can run for hours. Meanwhile the run shows "failed" while
    its process lives, and a "Continue" starts a second process beside the first,
    whose last write ("failed") then overwrites the new run's state. So a failed
    chunk step waits until the chunk jobs already submitted have ended, and no
    chunk job is submitted after a failure: a step reaching :meth:`enter` then
    fails at once, naming the first failure ("Continue" reruns it). The run
    therefore fails only when none of its jobs is left, and its process ends.
    """

    def __init__(self, log=print, poll=5.0):
        self._log = log
        self._cond = threading.Condition()
        self._inFlight = 0
        self._failure = None
        self._poll = poll

    def enter(self, what):
        """Count a job about to be submitted for ``what``; after a failure, raise
        :class:`~xmipp_qc.compare_run.ChunkError` instead."""
        with self._cond:
            if self._failure is not None:
                raise compare_run.ChunkError(
                    f"{what.capitalize()} was not submitted after an earlier chunk "
                    f"failed ('Continue' submits it). {self._failure}")
            self._inFlight += 1

    def leave(self, failure=None):
        """The job counted by :meth:`enter` has ended. With ``failure`` (a message),
        wait until no other counted job is in flight, then raise it as a
        :class:`~xmipp_qc.compare_run.ChunkError`."""
        with self._cond:
            self._inFlight -= 1
            self._cond.notify_all()
            if failure is None:
                return
            if self._failure is None:
                self._failure = failure
            if self._inFlight:
                self._log(f"{failure} The run fails once the {self._inFlight} other chunk "
                          f"job(s) in flight have ended; no further chunk is submitted.")
            while self._inFlight > 0:
                self._cond.wait(self._poll)
        raise compare_run.ChunkError(failure)
