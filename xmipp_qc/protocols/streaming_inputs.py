"""Inputs of a streaming run, looked for again until they close.

In a facility the whole workflow is scheduled at once: a consumer starts as
soon as its required inputs exist, while an optional input, or one derived
from a producer (the micrographs of the run that aligned the movies), may
appear minutes later. The run's copy of the project (its ``run.db``) is a
snapshot taken at launch, so an output defined afterwards is not in it:
:class:`WatchedInput` reads the producer again from the producer's own
``run.db`` until the output is there, and keeps following the producer's
state, so that the consumer

- takes the input as soon as it appears (:attr:`WatchedInput.fileName`);
- treats an input whose producer ended (failed, aborted, finished, or whose
  process is gone) as closed, even if the set was left open, and can say so
  (:meth:`WatchedInput.note`);
- knows when a derived input will never appear (the producer ended without
  it, :attr:`WatchedInput.never`), to write a clear line in its log and
  summary instead of waiting forever or staying silent.

:class:`InputNotes` keeps those lines in ``extra/streaming_inputs.json`` for
the summary. Both streaming protocols use these as collaborators.
"""

import os
import time

import psutil  # pyworkflow's own dependency
import pyworkflow.protocol.constants as pwcts
import pyworkflow.utils as pwutils
from pyworkflow.object import Set
from pyworkflow.protocol import Protocol

from xmipp_qc.formats.json_files import read_json, write_json

STATUS_SECONDS = 15.0  # longest wait between two reads of an open input's producer (0.1-0.2 s)
MISSING_SECONDS = 3.0  # longest wait between two looks for an input not made yet
GRACE_SECONDS = 10.0  # a producer that closed an input may take this long to store its end
_ENDED = (pwcts.STATUS_FINISHED, pwcts.STATUS_FAILED, pwcts.STATUS_ABORTED)
_NOTES_FILE = "streaming_inputs.json"


def producerOf(obj, mapper):
    """The protocol that made ``obj`` (a protocol, or an output set), or None."""
    if obj is None or isinstance(obj, Protocol):
        return obj
    parentId = obj.getObjParentId()
    producer = mapper.selectById(parentId) if parentId else None
    return producer if isinstance(producer, Protocol) else None


class WatchedInput:
    """One input set of a streaming run: found late if need be, followed to its end.

    Parameters
    ----------
    label : str
        What the input is, for messages ("reference micrographs").
    projectPath : str
        Absolute path of the project (the producers' run.db are relative to it).
    producer : pyworkflow.protocol.Protocol or None
        The producing run as the consumer's snapshot has it (its id and run.db
        path are used; its state is read fresh).
    outputNames : sequence of str
        Output attributes of the producer the set may appear under, in order of
        preference; unused once ``fileName`` is known.
    fileName : str, optional
        The set's sqlite file when the set already exists.
    """

    def __init__(self, label, projectPath, producer, outputNames=(), fileName=None):
        self.label, self.fileName, self.outputNames = label, fileName, tuple(outputNames)
        self.outputName = None
        self._project = projectPath
        self.producerId = producer.getObjId() if producer is not None else None
        self.producerName = producer.getRunName() if producer is not None else None
        self._dbPath = producer.getDbPath() if producer is not None else None
        if fileName is None and producer is not None:
            self._find(producer)  # already in the launch snapshot
        self.declaredEmpty = False  # the producer's record: closed without items
        self.status = None  # the producer's last known status
        self.lost = False  # its process disappeared while its run.db said running
        self._lastRead, self._closedAt = 0.0, None

    @classmethod
    def fromPointer(cls, label, pointer, projectPath, mapper):
        """Watch the set a form pointer names (it may not exist yet)."""
        obj, ext = pointer.getObjValue(), pointer.getExtended()
        target = pointer.get()
        fileName = target.getFileName() if isinstance(target, Set) else None
        return cls(label, projectPath, producerOf(obj, mapper),
                   [ext] if ext else [], fileName=fileName)

    # --------------------------- state ---------------------------------------
    @property
    def expected(self):
        """Whether there is anything to wait for (a set, or a producer that may make it)."""
        return self.fileName is not None or (self.producerId is not None
                                             and bool(self.outputNames))

    @property
    def ended(self):
        """Whether the producer will add nothing more (ended, or its process is gone)."""
        return self.status in _ENDED or self.lost

    @property
    def stoppedEarly(self):
        """Whether the producer ended abnormally (failed, stopped, or its process is gone):
        a *Continue* of it may still add items."""
        return self.lost or self.status in (pwcts.STATUS_FAILED, pwcts.STATUS_ABORTED)

    @property
    def never(self):
        """Whether the set will never appear: the producer ended without it."""
        return self.fileName is None and (self.ended or not self.expected)

    def refresh(self, period=None):
        """Look for the set if not found yet and read the producer's state.

        The producer is read at most every ``period`` seconds (default:
        ``MISSING_SECONDS`` while the set is not found, ``STATUS_SECONDS``
        after). Returns whether the set was found by this call.
        """
        if self.producerId is None or (self.ended and self.fileName is not None):
            return False
        now = time.time()
        if period is None:
            period = STATUS_SECONDS if self.fileName is not None else MISSING_SECONDS
        if now - self._lastRead < period:
            return False
        self._lastRead = now
        producer = self._readProducer()
        if producer is None:
            return False
        self.status = producer.getStatus()
        found = self.fileName is None and self._find(producer)
        record = self._record(producer)
        self.declaredEmpty = (record is not None and record.isStreamClosed()
                              and not record.getSize())
        if producer.isActive() and not self._alive(producer):
            again = self._readProducer()  # it may have ended normally meanwhile
            self.status = again.getStatus() if again is not None else self.status
            self.lost = again is None or again.isActive()
        return found

    def unreadableIsEmpty(self):
        """Whether a set file without tables (pyworkflow writes none for a set closed
        without items) is this input closed empty, as its producer's record says."""
        self.refresh(period=MISSING_SECONDS)
        if self.declaredEmpty and self._closedAt is None:
            self._closedAt = time.time()
        return self.declaredEmpty

    def isClosed(self, inSet):
        """Whether ``inSet`` (this input, just read) will get no more items: closed,
        or open but left so by a producer that ended."""
        closed = inSet.isStreamClosed() or self.ended
        if closed and self._closedAt is None:
            self._closedAt = time.time()
        return closed

    def settled(self):
        """Whether the input's end is final and explained: it will never appear, or it
        closed and its producer's state says why (ended, or still running
        ``GRACE_SECONDS`` after the input closed: a producer that closes an output
        because it fails stores its failure just after)."""
        if self.producerId is None:
            return True
        grace = self._closedAt is not None and time.time() - self._closedAt <= GRACE_SECONDS
        self.refresh(period=1.0 if grace else None)
        if self.never:
            return True
        if self._closedAt is None:
            return False
        return self.ended or not grace

    def note(self, nItems):
        """A line for the log and summary when the input did not end normally, else None."""
        who = f"run '{self.producerName}'" if self.producerName else "its producer"
        if self.never:
            how = self._how() or "is not running any more"
            return (f"The {self.label} never appeared: {who} {how} without producing "
                    f"{' or '.join(self.outputNames) or 'it'}.")
        how = self._how() if self.status != pwcts.STATUS_FINISHED else None
        if how:
            return (f"The {self.label} stopped early: {who} {how}; finished with the "
                    f"{nItems} items that arrived.")
        return None

    # --------------------------- helpers -------------------------------------
    def _how(self):
        if self.lost:
            return "stopped (its process is gone)"
        return {pwcts.STATUS_FAILED: "failed", pwcts.STATUS_ABORTED: "was stopped",
                pwcts.STATUS_FINISHED: "finished"}.get(self.status)

    def _find(self, producer):
        """Take the first of ``outputNames`` that ``producer`` has; whether one was found."""
        for name in self.outputNames:
            outSet = getattr(producer, name, None)
            if isinstance(outSet, Set):
                self.fileName, self.outputName = outSet.getFileName(), name
                return True
        return False

    def _record(self, producer):
        """The producer's own record of the set (its stream state and size), or None."""
        for _, attr in producer.iterOutputAttributes():
            if isinstance(attr, Set) and attr.getFileName() == self.fileName:
                return attr
        return None

    def _readProducer(self):
        """The producer as its own run.db has it now, or None (not started yet)."""
        from pyworkflow.protocol import getProtocolFromDb

        if not os.path.exists(os.path.join(self._project, self._dbPath)):
            return None
        try:
            producer = getProtocolFromDb(self._project, self._dbPath, self.producerId)
        except Exception:  # being written by the producer: next time
            return None
        producer.getProject().closeMapper()
        producer.closeMappers()
        return producer

    @staticmethod
    def _alive(producer):
        """False only when the producer's process is known to be gone from this host."""
        pid = producer.getPid()
        if (not pid or producer.getStatus() != pwcts.STATUS_RUNNING or producer.useQueue()
                or producer.getHostFullName() != pwutils.getHostFullName()):
            return True
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False


class StreamingInputs:
    """The watched inputs of one run (by key) and the notes about them.

    Parameters
    ----------
    protocol : pyworkflow.protocol.Protocol
        The consumer run (its project, mapper, extra folder and log are used).
    """

    def __init__(self, protocol):
        project = protocol.getProject()
        self._path = getattr(project, "path", None) or os.getcwd()
        self._mapper = protocol.getMapper()
        self.watches = {}
        self._log = protocol.info
        self.notes = InputNotes(protocol._getExtraPath(), protocol.info)

    def watchPointer(self, key, label, pointer):
        """Watch the set of a form pointer (which may name an output not made yet)."""
        self.watches[key] = WatchedInput.fromPointer(label, pointer, self._path, self._mapper)
        return self.watches[key]

    def watchDerived(self, key, label, source, outputNames):
        """Watch an output of the run that made ``source`` (a protocol or a set)."""
        self.watches[key] = WatchedInput(label, self._path, producerOf(source, self._mapper),
                                         outputNames)
        return self.watches[key]

    def refresh(self, key=None):
        """Refresh the watch ``key`` (default: all); log each input found late."""
        for watch in [self.watches[key]] if key else list(self.watches.values()):
            if watch.refresh():
                self._log(f"Input found: the {watch.label} ({watch.outputName} of run "
                          f"'{watch.producerName}').")

    def __getitem__(self, key):
        return self.watches[key]

    def settled(self):
        """Whether every watched input has a final, explained end."""
        return all(w.settled() for w in self.watches.values())

    def writeNotes(self, counts):
        """Log and save the note of each input (``counts``: items read, by key)."""
        for key, watch in self.watches.items():
            self.notes.add(watch.label, watch.note(counts.get(key, 0)))


class InputNotes:
    """Lines about inputs that did not end normally, kept for the summary.

    Saved in ``extra/streaming_inputs.json`` as ``{label: line}``; a line is
    logged once, when first added.
    """

    def __init__(self, extraPath, log):
        self._fn = os.path.join(extraPath, _NOTES_FILE)
        self._log = log
        self.lines = read_json(self._fn) or {}

    def add(self, label, line):
        """Record (and log) ``line`` for input ``label``; None clears it."""
        if line is None:
            if self.lines.pop(label, None) is not None:
                write_json(self._fn, self.lines)
            return
        if self.lines.get(label) != line:
            self._log(line)
            self.lines[label] = line
            write_json(self._fn, self.lines)


def readInputNotes(extraPath):
    """The saved lines of :class:`InputNotes` (list, possibly empty)."""
    return list((read_json(os.path.join(extraPath, _NOTES_FILE)) or {}).values())
