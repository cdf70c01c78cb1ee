"""Following a protocol run launched with ``wait=False`` in a test project.

pyworkflow's ``Project._updateProtocol`` loads a run from its ``run.db`` and only
then takes the file's time stamp. When the run writes its end between the two,
the poll keeps the stale "running" state as up to date, finds the process gone
and marks the run failed for good ("Process N not found running on the
machine"), although its run.db says finished. A loaded machine widens that
window; :func:`refreshed` undoes it by reloading such a run once more.
"""

import os
import re
import time

import psutil  # pyworkflow's own dependency

NOT_FOUND = "not found running on the machine"


def refreshed(project, prot):
    """``prot`` updated in place from its run.db; returns ``prot``.

    If the poll declared the process lost, the run is read again from its run.db
    regardless of time stamps: a run that ended normally then shows its real end;
    one whose process really died still says "running" and is failed again.
    """
    project._updateProtocol(prot)
    if prot.isFailed() and NOT_FOUND in (prot.getErrorMessage() or ""):
        prot.lastUpdateTimeStamp.set(None)  # "out of date": reload from the run.db
        project._updateProtocol(prot)
    return prot


def wait_until_ended(project, prot, timeout, pump=None, period=0.5):
    """Poll ``prot`` until it is no longer active and its process has exited.

    ``pump(seconds)`` replaces ``time.sleep`` (e.g. to keep a Tk window alive).
    Returns ``prot``; raises ``AssertionError`` naming the run on timeout.
    """
    deadline = time.time() + timeout
    while time.time() < deadline:
        refreshed(project, prot)
        if not prot.isActive() and not run_process_alive(prot):
            return prot
        (pump or time.sleep)(period)
    raise AssertionError(f"{prot.getRunName()} still {prot.getStatus()} after {timeout} s")


def run_log(prot):
    """Text of the run's stdout log ("" before it exists)."""
    fn = prot.getStdoutLog()
    if not os.path.exists(fn):
        return ""
    with open(fn, errors="replace") as fh:
        return fh.read()


def _starts(text):
    """End offsets of the "RUNNING/RESUMING PROTOCOL" line of each process start."""
    return [m.end() for m in re.finditer(r"(RUNNING|RESUMING) PROTOCOL -", text)]


def run_marker(prot):
    """(processes started, whether the last one has logged its end): each protocol
    process, also inside a queue job, logs "RUNNING/RESUMING PROTOCOL" when it
    starts and "PROTOCOL FINISHED/FAILED/ABORTED" when it ends."""
    text = run_log(prot)
    starts = _starts(text)
    ends = [m.end() for m in re.finditer(r"PROTOCOL (FINISHED|FAILED|ABORTED)", text)]
    return len(starts), bool(starts and ends and ends[-1] > starts[-1])


def run_pid(prot):
    """PID of the process of the run's last start, or None if not logged yet.

    It is the "PID: N" line after the last "RUNNING/RESUMING PROTOCOL" line of
    the run's stdout log (also for a run inside a queue job).
    """
    text = run_log(prot)
    starts = _starts(text)
    m = re.search(r"^PID: (\d+)$", text[starts[-1]:], re.M) if starts else None
    return int(m.group(1)) if m else None


def run_process_alive(prot):
    """Whether the process of the run's last start (:func:`run_pid`) is alive.

    A zombie counts as gone. pyworkflow reports a parallel run as failed at its
    first failed step while that process still waits for its other step threads.
    """
    pid = run_pid(prot)
    if pid is None:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
