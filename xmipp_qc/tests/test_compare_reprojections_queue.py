"""The queue-per-step route's parts without a queue.

ChunkJobGate: a failed chunk step waits for the chunk jobs still in flight.
Real threads stand in for pyworkflow's step threads; each test records when
each thread raised or returned, and asserts the order of events. queueAnswer:
the queue's own words in a refused submission.
"""

import threading
import time

import pytest

from xmipp_qc.compare_run import ChunkError
from xmipp_qc.protocols.compare_reprojections_queue import ChunkJobGate, queueAnswer


class Step(threading.Thread):
    """A chunk step that has entered the gate; ``finish(failure)`` ends its job."""

    def __init__(self, gate):
        super().__init__(daemon=True)
        self.gate, self.failure, self.error, self.left = gate, None, None, None
        self.go = threading.Event()
        gate.enter("a chunk")

    def finish(self, failure=None):
        self.failure = failure
        self.go.set()

    def run(self):
        self.go.wait(10)
        try:
            self.gate.leave(self.failure)
        except ChunkError as exc:
            self.error = str(exc)
        self.left = time.monotonic()


def started(gate, n):
    steps = [Step(gate) for _ in range(n)]
    for s in steps:
        s.start()
    return steps


def waitLogged(logged, n, timeout=5.0):
    """Wait until ``n`` messages were logged (a failed step has reached the gate)."""
    deadline = time.monotonic() + timeout
    while len(logged) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(logged) == n, logged


def test_success_never_waits_nor_raises():
    gate = ChunkJobGate(log=lambda m: None, poll=0.01)
    a, b = started(gate, 2)
    a.finish()
    a.join(1)
    assert not a.is_alive() and a.error is None
    b.finish()
    b.join(1)
    assert b.error is None
    gate.enter("chunk 3 of map 1")  # no failure: later chunks are submitted


def heldFailure(message):
    """Two chunk steps in flight, the first failed with ``message`` and held:
    ``(gate, logged, a, b)``."""
    logged = []
    gate = ChunkJobGate(log=logged.append, poll=0.01)
    a, b = started(gate, 2)
    a.finish(message)
    waitLogged(logged, 1)
    return gate, logged, a, b


def test_failure_waits_for_the_other_job_then_raises_its_message():
    gate, logged, a, b = heldFailure("Chunk 0 of map 7 (images 1-250) has no result.")
    time.sleep(0.2)
    assert a.is_alive(), "the failed step must wait while chunk 1's job is in flight"
    assert logged == ["Chunk 0 of map 7 (images 1-250) has no result. The run fails once "
                      "the 1 other chunk job(s) in flight have ended; no further chunk is "
                      "submitted."]
    t_b = time.monotonic()
    b.finish()
    a.join(2)
    b.join(2)
    assert not a.is_alive()
    assert a.error == "Chunk 0 of map 7 (images 1-250) has no result."
    assert b.error is None
    assert a.left >= t_b


def test_no_job_is_submitted_after_a_failure():
    gate, _, a, b = heldFailure("Chunk 0 of map 7 has no result.")
    with pytest.raises(ChunkError) as exc:
        gate.enter("chunk 2 of map 7")
    assert str(exc.value) == ("Chunk 2 of map 7 was not submitted after an earlier chunk "
                              "failed ('Continue' submits it). Chunk 0 of map 7 has no result.")
    assert a.is_alive()  # a refused step is not in flight: chunk 1 is still awaited
    b.finish()
    a.join(2)
    assert a.error == "Chunk 0 of map 7 has no result."


def test_two_failures_both_raise_once_nothing_is_in_flight():
    logged = []
    gate = ChunkJobGate(log=logged.append, poll=0.01)
    a, b, c = started(gate, 3)
    a.finish("first")
    waitLogged(logged, 1)  # a is held: its failure is the first
    b.finish("second")
    waitLogged(logged, 2)
    time.sleep(0.3)
    assert a.is_alive() and b.is_alive()  # chunk c still runs
    c.finish()
    for s in (a, b, c):
        s.join(2)
        assert not s.is_alive()
    assert (a.error, b.error, c.error) == ("first", "second", None)
    with pytest.raises(ChunkError, match=r"\. first$"):  # the first failure is named
        gate.enter("chunk 9 of map 7")


def test_a_lone_failure_raises_at_once():
    logged = []
    gate = ChunkJobGate(log=logged.append, poll=5.0)
    a, = started(gate, 1)
    t0 = time.monotonic()
    a.finish("alone")
    a.join(2)
    assert a.error == "alone" and a.left - t0 < 3.0  # not after a 5 s poll
    assert logged == []  # nothing to wait for, nothing to say


def test_queue_answer_quotes_the_submit_command():
    refused = Exception(
        "Failed to submit to queue. JOBID is not valid. There's probably an error "
        "interacting with the queue. Submit error: ['', 'sbatch: error: Batch job "
        "submission failed: Required partition not available (inactive or drain)\\n']")
    assert queueAnswer(refused) == (
        "the queue refused the job (sbatch: error: Batch job submission failed: Required "
        "partition not available (inactive or drain)).")
    assert queueAnswer(Exception("Submit error: ['', '']")) == "Submit error: ['', '']"
    assert queueAnswer(Exception("Submit error: [unparsable")) == "Submit error: [unparsable"
    assert queueAnswer(OSError("squeue: not found")) == "squeue: not found"
