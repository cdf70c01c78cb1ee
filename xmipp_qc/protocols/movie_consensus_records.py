"""What *movie alignment consensus* decides per movie: on disk and in memory.

A decision record is one dict per movie: ``TrajectoryComparison.as_dict()``
plus the protocol's bookkeeping (``id``, ``micKey``, ``accepted``,
``binning``, both trajectories ``ref_frames``/``ref_shifts``/``sec_frames``/
``sec_shifts`` and, optionally, ``plot``). The protocol writes them in its
``extra/`` folder, BEFORE any output is touched, so that "continue" rebuilds
its state from them; its viewer and the tests read them back, so the file
layout lives here, in one place:

``decisions/batch_NNNNNN.json``  one JSON list of records per batch, written
                                 atomically (temporary file + ``os.replace``).

:class:`ConsensusBook` is the in-memory state of one run. On continue it is
rebuilt from those files and from the ids already present in the output sqlite
files: decided movies missing from an output are appended from their saved
record, undecided ones are compared again. A kill at any point thus gives no
duplicates and no losses.
"""

import glob
import json
import os
from collections import Counter

import numpy as np

DECISIONS_DIR = "decisions"


def decisionBatchFiles(extraPath):
    """Sorted paths of the decision batches saved in ``extraPath``."""
    return sorted(glob.glob(os.path.join(extraPath, DECISIONS_DIR, "batch_*.json")))


def writeDecisionBatch(extraPath, index, records):
    """Write batch number ``index`` of decision records atomically; return its path."""
    fn = os.path.join(extraPath, DECISIONS_DIR, f"batch_{index:06d}.json")
    os.makedirs(os.path.dirname(fn), exist_ok=True)
    with open(fn + ".tmp", "w") as fh:
        json.dump(records, fh)
    os.replace(fn + ".tmp", fn)
    return fn


def readDecisionRecords(extraPath):
    """All saved decisions of a run (one dict per movie), sorted by movie id."""
    records = {}
    for fn in decisionBatchFiles(extraPath):
        with open(fn) as fh:
            for record in json.load(fh):
                records[record["id"]] = record
    return [records[k] for k in sorted(records)]


def trajectoryFigure(record, pixelSize=None, allowRotation=False):
    """Figure of both trajectories of one saved decision (common frames, reference px).

    Returns None when fewer than 2 frames are common (e.g. reason "missing").
    """
    from xmipp_qc.plots.trajectories import plot_trajectory_pair

    common = commonTrajectories(record)
    if common is None:
        return None
    return plot_trajectory_pair(*common, metrics=record, pixel_size_a=pixelSize,
                                allow_rotation=allowRotation, name=f"movie {record['id']}")


def commonTrajectories(record):
    """``(frames (F,), ref (F, 2), sec (F, 2))`` of the common frames of a saved decision,
    both in reference px; None when fewer than 2 frames are common."""
    from xmipp_qc.core.trajectories import match_frames

    framesRef, framesSec = np.asarray(record["ref_frames"]), np.asarray(record["sec_frames"])
    iRef, iSec = match_frames(framesRef, framesSec)
    if iRef.size < 2:
        return None
    ref = np.asarray(record["ref_shifts"], dtype=float)[iRef]
    sec = np.asarray(record["sec_shifts"], dtype=float)[iSec] * record.get("binning", 1.0)
    return framesRef[iRef], ref, sec


def micKey(item):
    """Key pairing a movie with its micrograph: the micName, or the id when it has none."""
    return item.getMicName() or f"id:{item.getObjId()}"


class ConsensusBook:
    """In-memory state of one run, rebuilt from disk on continue.

    Every lookup is by id or micrograph key (dicts and sets), so the cost per
    movie stays O(1) however long the stream.
    """

    def __init__(self):
        self.seen = {"ref": set(), "sec": set(), "mic": set()}
        self.closed = {"ref": False, "sec": False, "mic": True}
        self.refPending = {}  # id -> reference Movie, not decided yet
        self.ready = set()  # ids in refPending whose secondary is known (or missing for good)
        self.secShifts = {}  # id -> (frames, shifts) of the secondary, not decided yet
        self.decided = set()
        self.parked = set()  # ids in refPending left undecided: the secondary stopped early
        self.inMovieOutput = set()
        self.records = {}  # id -> record, decided and still waiting for its micrograph
        self.toOutput = []  # (movie, record) restored from disk, missing from the outputs
        self.micWanted = {}  # mic key -> movie id
        self.micWaiting = {}  # mic key -> Micrograph that arrived before its movie's decision
        self.micReady = []  # (Micrograph, record) to append to the outputs
        self.micDone = set()  # movie ids whose micrograph is output or in micReady
        self.counts = Counter()
        self.nBatches = 0
        self.finished = False

    def restore(self, records, inMovieOutput, inMicOutput, withMics):
        """Rebuild the state of a continued run from its saved decisions.

        ``inMovieOutput`` and ``inMicOutput`` are the ids already in the movie
        and micrograph outputs; a decided movie missing from them is output
        again from its record (the micrograph once it arrives, if
        ``withMics``; without it the micrograph input counts as closed),
        undecided ones are compared again.
        """
        for record in records:
            self.decided.add(record["id"])
            self.records[record["id"]] = record
            self.counts[record["reason"]] += 1
        self.inMovieOutput, self.micDone = inMovieOutput, inMicOutput
        for movieId, record in list(self.records.items()):
            if withMics and movieId not in inMicOutput:
                self.micWanted[record["micKey"]] = movieId
            elif movieId in inMovieOutput:
                del self.records[movieId]
        self.closed["mic"] = not withMics

    def addReference(self, movie):
        """Take a new reference movie: pending, or to output again if decided before."""
        movieId = movie.getObjId()
        if movieId not in self.decided:
            self.refPending[movieId] = movie
            if movieId in self.secShifts:
                self.ready.add(movieId)
        elif movieId not in self.inMovieOutput:
            self.toOutput.append((movie, self.records[movieId]))

    def addSecondary(self, movieId, alignment):
        """Take the (frames, shifts) of an undecided movie's secondary alignment."""
        self.secShifts[movieId] = alignment
        if movieId in self.refPending:
            self.ready.add(movieId)

    def isComplete(self):
        """Whether both inputs are closed, every movie decided (or parked until the
        secondary run is continued) and no micrograph can come."""
        if not (self.closed["ref"] and self.closed["sec"]) or (
                len(self.refPending) > len(self.parked)):
            return False
        return not (self.micWanted and not self.closed["mic"])

    def matchMic(self, key, movieId=None, mic=None):
        """Pair a decided movie with its micrograph, whichever arrives second.

        Call it with ``movieId`` when a movie is decided and with ``mic`` when
        a micrograph arrives; once both are known the micrograph gets the
        movie's id and goes to ``micReady`` with the movie's record.
        """
        if movieId in self.micDone:
            return
        if movieId is not None:
            mic = self.micWaiting.pop(key, None)
            if mic is None:
                self.micWanted[key] = movieId
                return
        else:
            movieId = self.micWanted.pop(key, None)
            if movieId is None:
                self.micWaiting[key] = mic
                return
        mic.setObjId(movieId)
        self.micDone.add(movieId)
        self.micReady.append((mic, self.records.pop(movieId)))
