"""Consensus of two movie alignments: accept or discard each movie, in streaming.

The per-movie comparison is :func:`xmipp_qc.core.trajectories.compare_trajectories`
(frames matched by number, secondary shifts brought to reference px with the
ratio of the two sets' pixel sizes, offsets removed, per-axis correlation gating,
Euclidean RMSE / max error, scale, optional proper rotation). This module is the
Scipion glue: form, streaming checks and decisions; the saved decisions and the
bookkeeping are in :mod:`~xmipp_qc.protocols.movie_consensus_records`, the
growing output sets in :mod:`~xmipp_qc.protocols.streaming_outputs`.

Streaming design
    All the work happens in ``_stepsCheck``, which pyworkflow's executor calls
    periodically (every ``SCIPION_STEPS_CHECK_SEC``, in practice every ~3 s
    because the executor sleeps 3 s when no step is runnable). Each call reads
    only the items that are new since the previous call (per input, a set of
    seen ids: one ``getUniqueValues('id')`` query of integers, then one query
    that loads just the new items; nothing is reloaded or cloned twice),
    compares every movie whose two alignments are now present, and saves and
    outputs them in chunks of at most 250 movies, so the outputs also grow
    while a large backlog is processed. There is no step per movie: a Scipion
    step costs seconds with the parallel executor while a comparison costs
    about a millisecond, so a batch is "everything that arrived since the last
    check". The only step is ``createOutputStep`` (``wait=True``), released when
    both inputs are closed and every reference movie is decided. The executor
    is serial (no threads parameter): deciding and outputting never race.
    Bookkeeping is O(1) per movie (dicts and sets keyed by id; a movie becomes
    "ready" when its second alignment arrives, no scans of pending lists).
Restart ("continue") design
    Each batch of decisions is saved BEFORE any output is touched; on continue
    the state is rebuilt from the saved decisions and the ids already in the
    outputs (``ConsensusBook.restore``): no duplicates and no losses.
Matching
    Movies of the two inputs are paired by id (both motion-correction runs copy
    the ids of the imported movies). Micrographs come from the optional
    ``inputMicrographs`` or else from the reference protocol's
    ``outputMicrographs`` (``outputMicrographsDoseWeighted``), matched to movies by
    micName (ProtAlignMovies copies it), or by id when names are absent; they
    keep their own pixel size (binned micrographs stay binned).
Inputs that appear late or end badly
    Every input is followed until it closes by
    :class:`~xmipp_qc.protocols.streaming_inputs.StreamingInputs`: the
    micrographs (of the form or of the reference run) are looked for again at
    every check until they appear, so micrographs written after their movies
    still reach the outputs; the micrograph outputs close only when the
    micrographs have closed too. An input whose producer failed or was stopped
    counts as closed (the consensus finishes with what arrived); that, and
    micrographs that never appeared, are said in the log and the summary.
"""

import json
import os
import sqlite3
import time
from collections import Counter
from datetime import datetime

import pwem.objects as emobj
import pyworkflow as pw
import pyworkflow.protocol.constants as pwcts
import pyworkflow.protocol.params as params
from pwem.protocols import ProtAlignMovies
from pyworkflow.object import String

from xmipp_qc.convert import (
    movieAlignmentToArrays,
    movieDoseInfo,
    relativeBinning,
    setAlignmentAttributes,
    shiftPixelSize,
)
from xmipp_qc.core import option_checks as check
from xmipp_qc.core.trajectories import (
    REASONS,
    ConsensusParams,
    compare_trajectories,
    missing_comparison,
)
from xmipp_qc.native_threads import blas_threads, limit_blas_threads
from xmipp_qc.protocols.movie_consensus_records import (
    ConsensusBook,
    decisionBatchFiles,
    micKey,
    readDecisionRecords,
    trajectoryFigure,
    writeDecisionBatch,
)
from xmipp_qc.protocols.streaming_inputs import StreamingInputs, readInputNotes
from xmipp_qc.protocols.streaming_outputs import StreamingOutputsMixin

OUT_MOVIES, OUT_MICS = "outputMovies", "outputMicrographs"
OUT_MOVIES_DISC, OUT_MICS_DISC = "outputMoviesDiscarded", "outputMicrographsDiscarded"
SQLITE = {OUT_MOVIES: "movies.sqlite", OUT_MICS: "micrographs.sqlite",
          OUT_MOVIES_DISC: "moviesDiscarded.sqlite", OUT_MICS_DISC: "micrographsDiscarded.sqlite"}
MIC_OUTPUTS = (OUT_MICS, "outputMicrographsDoseWeighted")  # of the reference run
MISSING_DISCARD, MISSING_ACCEPT = 0, 1
_ID_CHUNK = 500
_BATCH_MAX = 250  # movies per decision file and output update


class XmippQcProtConsensusMovieAlignment(StreamingOutputsMixin, ProtAlignMovies):
    """Do two motion-correction runs agree on each movie? Movies where they agree are
    accepted; the others are discarded, each with its reason.

    The reference run is the one you keep (its movies, alignment and micrographs
    go to the outputs); the secondary run is a second, independent alignment of
    the same movies, only used for the comparison. Per movie, on the frames both
    runs aligned, the secondary shifts are brought to reference pixels, both
    trajectories are centred and compared (attributes _alignment_*):

    - corr: the lowest of the x and y shift correlations (1 = same shape); axes
      that move less than the minimum shift range in both runs are left out.
      Below the minimum correlation: discarded as low_correlation.
    - rmse_error, max_error (px; _A in Å): Euclidean distance between the
      superposed trajectories, RMS and worst frame. Above the maximum RMSE:
      high_rmse.
    - scale: ratio of the path lengths (secondary / reference); outside the
      tolerance: scale. rotation (°): best rotation between them; with "Allow
      rotation" it is applied first and limited by the maximum rotation.
    - missing: the movie is missing from the secondary run (decided by "Movies
      without secondary"); invalid: fewer than 2 common frames.
    - accum_total, accum_early, accum_late (px): accumulated motion of the
      reference (RELION's definition, early/late split at the early dose).

    "Analyze results" shows the accepted and discarded tables with a trajectory
    thumbnail per movie, correlation vs RMSE, metric histograms, accumulated
    motion and the trajectories of any movie.

    Differences from Xmipp's "movie alignment consensus": a mirrored or rotated
    trajectory is never accepted as a match (Xmipp's superposition could reflect
    and allowed any rotation); the RMSE and max error are Euclidean distances in
    reference px (Xmipp: per coordinate, signed max, mixed units at different
    binning); flat axes are left out per axis instead of accepting the movie
    unchecked; runs with different frame ranges are compared on common frames;
    movies missing from the secondary run are decided instead of stalling the
    stream; every decision has a reason. No Xmipp binaries.
    """

    _label = "movie alignment consensus"
    _devStatus = pw.BETA
    _possibleOutputs = {OUT_MOVIES: emobj.SetOfMovies, OUT_MICS: emobj.SetOfMicrographs,
                        OUT_MOVIES_DISC: emobj.SetOfMovies,
                        OUT_MICS_DISC: emobj.SetOfMicrographs}
    _outputFiles = SQLITE

    def __init__(self, **kwargs):
        ProtAlignMovies.__init__(self, **kwargs)
        self.decisionCounts = String()

    # --------------------------- DEFINE param functions ----------------------
    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputMovies1", params.PointerParam, pointerClass="SetOfMovies",
                      important=True, label="Reference aligned movies",
                      help="The alignment you keep: the accepted and discarded outputs are "
                           "these movies, with this alignment and its micrographs.")
        form.addParam("inputMovies2", params.PointerParam, pointerClass="SetOfMovies",
                      important=True, label="Secondary aligned movies",
                      help="A second, independent alignment of the same movies (same "
                           "ids), e.g. another program or other parameters; only used "
                           "for the comparison, never in the outputs.")
        form.addParam("inputMicrographs", params.PointerParam, allowsNull=True,
                      pointerClass="SetOfMicrographs", expertLevel=pwcts.LEVEL_ADVANCED,
                      label="Reference micrographs",
                      help="Default: the micrographs of the reference protocol.")
        form.addSection(label="Consensus")
        form.addParam("minConsCorrelation", params.FloatParam, default=0.75,
                      label="Minimum correlation",
                      help="Minimum of the X and Y shift correlations; -1 = never "
                           "discard on correlation.")
        form.addParam("minRangeShift", params.FloatParam, default=3.0,
                      label="Minimum shift range (px)",
                      help="An axis enters the correlation only if its shift range "
                           "exceeds this in both runs.")
        form.addParam("maxRmse", params.FloatParam,
                      default=ConsensusParams().max_rmse_px or 0.0, label="Maximum RMSE (px)",
                      help="Euclidean RMS distance after superposition, reference px; "
                           "0 = off.")
        form.addParam("scaleTolerance", params.FloatParam, default=0.1,
                      label="Scale tolerance",
                      help="Discard when the path-length ratio leaves [1-t, 1/(1-t)]; "
                           "0 = off.")
        form.addParam("allowRotation", params.BooleanParam, default=False,
                      label="Allow rotation",
                      help="Fit a proper rotation (never a reflection) before comparing.")
        form.addParam("maxRotation", params.FloatParam, default=5.0,
                      condition="allowRotation", label="Maximum rotation (°)")
        form.addParam("missingPolicy", params.EnumParam, default=MISSING_DISCARD,
                      choices=["discard", "accept"], label="Movies without secondary",
                      help="What to do with a reference movie that the secondary run "
                           "never aligned (decided when the secondary closes).")
        form.addParam("earlyDose", params.FloatParam, default=4.0,
                      expertLevel=pwcts.LEVEL_ADVANCED, label="Early motion dose (e/Å²)",
                      help="Accumulated motion is split into early and late here (RELION).")
        form.addParam("trajectoryPlot", params.BooleanParam, default=False,
                      label="Trajectory plot per movie",
                      help="PNG of both trajectories per movie (costs ~0.1 s per movie).")

    # --------------------------- INSERT steps functions ----------------------
    def _insertAllSteps(self):
        limit_blas_threads()  # small products; spinning pools would steal the cores
        self.info(f"BLAS threads: {blas_threads()}")
        # time-stamped, so that "continue" of a finished run looks at its inputs again
        # (a producer continued after failing adds to them)
        self._insertFunctionStep(self.createOutputStep, str(datetime.now()), prerequisites=[],
                                 wait=True, needsGPU=False)

    # --------------------------- STEPS functions -----------------------------
    def _stepsCheck(self):
        book = getattr(self, "_book", None) or self._restoreBook()
        if book.finished:
            return
        start = time.perf_counter()
        if self._readNewInputs(book):
            self.info(f"Consensus check: new inputs read in {time.perf_counter() - start:.3f} s")
        while True:  # chunks, so that outputs grow during a large backlog too
            start = time.perf_counter()
            batch = self._decideBatch(book)
            if batch:
                self._saveBatch(book, [record for _, record in batch])
            self._appendOutputs(book, book.toOutput + batch)
            book.toOutput = []
            if batch:
                self.info(f"Consensus check: {len(batch)} movies decided in "
                          f"{time.perf_counter() - start:.3f} s ({len(book.decided)} in total)")
            if len(batch) < _BATCH_MAX:
                break
        if book.isComplete() and self._inputs.settled():
            self._closeOutputs(book)

    def createOutputStep(self, stamp=None):
        counts = Counter(json.loads(self.decisionCounts.get() or "{}"))
        self.info(f"Decisions: {dict(counts)}")

    # --------------------------- bookkeeping ---------------------------------
    def _restoreBook(self):
        book = self._book = ConsensusBook()
        self._makeConsensusContext()
        book.restore(readDecisionRecords(self._getExtraPath()),
                     self._outputIds(OUT_MOVIES) | self._outputIds(OUT_MOVIES_DISC),
                     self._outputIds(OUT_MICS) | self._outputIds(OUT_MICS_DISC),
                     withMics=self._wantsMics())
        book.nBatches = len(decisionBatchFiles(self._getExtraPath()))
        return book

    def _makeConsensusContext(self):
        ref, sec = self.inputMovies1.get(), self.inputMovies2.get()
        dose, preExposure = movieDoseInfo(ref)
        self._compareKwargs = {
            "binning": relativeBinning(ref, sec), "pixel_size_a": shiftPixelSize(ref) or None,
            "dose_per_frame": dose, "pre_exposure": preExposure,
            "early_dose": self.earlyDose.get(), "params": self._consensusParams()}
        self._inputs, self._micSource = self._watchInputs(), None

    def _watchInputs(self):
        """The inputs, looked for and followed until they close (the micrographs may
        appear long after the movies: a motion-correction run writes them later)."""
        inputs = StreamingInputs(self)
        inputs.watchPointer("ref", "reference movies", self.inputMovies1)
        inputs.watchPointer("sec", "secondary movies", self.inputMovies2)
        if self.inputMicrographs.hasValue():  # maybe an output that is not made yet
            inputs.watchPointer("mic", "reference micrographs", self.inputMicrographs)
        else:
            inputs.watchDerived("mic", "micrographs of the reference run",
                                self.inputMovies1.getObjValue(), MIC_OUTPUTS)
        return inputs

    def _wantsMics(self):
        """Whether micrograph outputs are made: their input exists or may still appear."""
        return not self._inputs["mic"].never

    def _consensusParams(self):
        return ConsensusParams(
            min_corr=self.minConsCorrelation.get(), min_range_px=self.minRangeShift.get(),
            max_rmse_px=self.maxRmse.get() if self.maxRmse.get() > 0 else None,
            scale_tolerance=self.scaleTolerance.get() if self.scaleTolerance.get() > 0 else None,
            allow_rotation=self.allowRotation.get(), max_rotation_deg=self.maxRotation.get())

    def _fetchNew(self, book, which, setClass):
        """New items of one input since the last call, and whether it is closed."""
        items, watch = [], self._inputs[which]
        try:
            inSet = setClass(filename=watch.fileName)
            inSet.loadAllProperties()
            closed = watch.isClosed(inSet)  # before the ids: a closed set has them all
            newIds = sorted(set(inSet.getUniqueValues("id")) - book.seen[which])
            for i in range(0, len(newIds), _ID_CHUNK):
                where = f"id IN ({','.join(map(str, newIds[i:i + _ID_CHUNK]))})"
                items.extend(item.clone() for item in inSet.iterItems(where=where))
            inSet.close()
        except sqlite3.OperationalError as exc:  # the producer is writing; next check
            if watch.unreadableIsEmpty():  # no tables: the producer closed it empty
                return [], True
            self.info(f"Input {which} busy ({exc}); will retry.")
            return [], False
        book.seen[which].update(item.getObjId() for item in items)
        return items, closed

    def _readNewInputs(self, book):
        self._inputs.refresh()
        refItems, book.closed["ref"] = self._fetchNew(book, "ref", emobj.SetOfMovies)
        for movie in refItems:
            book.addReference(movie)
        secItems, book.closed["sec"] = self._fetchNew(book, "sec", emobj.SetOfMovies)
        for movie in secItems:
            if movie.getObjId() not in book.decided:
                book.addSecondary(movie.getObjId(), movieAlignmentToArrays(movie))
        if self._inputs["mic"].fileName:
            mics, book.closed["mic"] = self._fetchNew(book, "mic", emobj.SetOfMicrographs)
            for mic in mics:
                book.matchMic(micKey(mic), mic=mic)
        elif not self._wantsMics():
            book.closed["mic"] = True  # will never appear: said when the outputs close
        return len(refItems) + len(secItems)

    def _decideBatch(self, book):
        """Compare every movie with both alignments; "missing" ones once the secondary
        run has ended normally. After it stopped early (failed, stopped, process
        gone) they stay undecided, parked until that run and this one are continued."""
        sec = self._inputs["sec"]
        # settled: a failing run closes its outputs before it stores that it failed
        if book.closed["sec"] and len(book.ready) < len(book.refPending) and sec.settled():
            if sec.stoppedEarly:
                book.parked = set(book.refPending) - book.ready
            else:
                book.ready.update(book.refPending)  # the rest will never get a secondary
        batch = []
        for movieId in sorted(book.ready)[:_BATCH_MAX]:
            book.ready.discard(movieId)
            movie = book.refPending.pop(movieId)
            record = self._decide(movie, book.secShifts.pop(movieId, None))
            batch.append((movie, record))
            book.decided.add(movieId)
            book.counts[record["reason"]] += 1
        return batch

    def _decide(self, movie, secAlignment):
        framesRef, shiftsRef = movieAlignmentToArrays(movie)
        if secAlignment is None:
            result = missing_comparison("secondary")
            accepted = self.missingPolicy.get() == MISSING_ACCEPT
            framesSec, shiftsSec = framesRef[:0], shiftsRef[:0]
        else:
            framesSec, shiftsSec = secAlignment
            result = compare_trajectories(framesRef, shiftsRef, framesSec, shiftsSec,
                                          **self._compareKwargs)
            accepted = result.accepted
        record = result.as_dict()
        record.update(id=movie.getObjId(), micKey=micKey(movie), accepted=bool(accepted),
                      binning=self._compareKwargs["binning"],
                      ref_frames=framesRef.tolist(), ref_shifts=shiftsRef.tolist(),
                      sec_frames=framesSec.tolist(), sec_shifts=shiftsSec.tolist())
        if self.trajectoryPlot:
            record["plot"] = self._savePlot(record)
        return record

    def _savePlot(self, record):
        """PNG of the trajectories in extra/plots; "" when there is nothing to plot."""
        fig = trajectoryFigure(record, self._compareKwargs["pixel_size_a"],
                               self.allowRotation.get())
        if fig is None:
            return ""
        fn = self._getExtraPath("plots", f"trajectory_{record['id']:06d}.png")
        os.makedirs(os.path.dirname(fn), exist_ok=True)
        fig.savefig(fn, dpi=80)
        return fn

    def _saveBatch(self, book, records):
        """Write the decisions atomically before any output is updated."""
        book.nBatches += 1
        writeDecisionBatch(self._getExtraPath(), book.nBatches, records)

    # --------------------------- outputs -------------------------------------
    def _appendOutputs(self, book, pairs):
        """Movies of ``pairs`` and every micrograph whose movie and file are both known."""
        self._appendDecided(OUT_MOVIES, OUT_MOVIES_DISC, pairs)
        for movie, record in pairs:
            book.inMovieOutput.add(movie.getObjId())
            if self._wantsMics():
                book.records[movie.getObjId()] = record
                book.matchMic(record["micKey"], movieId=movie.getObjId())
        ready, book.micReady = book.micReady, []
        self._appendDecided(OUT_MICS, OUT_MICS_DISC, ready)
        if pairs:
            self.decisionCounts.set(json.dumps(dict(book.counts)))
            self._store(self.decisionCounts)

    def _appendDecided(self, outAccepted, outDiscarded, pairs):
        """Items of ``pairs`` (item, record) with their metrics, to the output of their fate."""
        for item, record in pairs:
            setAlignmentAttributes(item, record)
        self._appendToOutput(outAccepted, [item for item, r in pairs if r["accepted"]])
        self._appendToOutput(outDiscarded, [item for item, r in pairs if not r["accepted"]])

    def _outputSource(self, outName):
        isMovies = outName in (OUT_MOVIES, OUT_MOVIES_DISC)
        if isMovies:
            return self.inputMovies1.get()
        if self._micSource is None:  # the properties of the input, read once
            self._micSource = emobj.SetOfMicrographs(filename=self._inputs["mic"].fileName)
            self._micSource.loadAllProperties()
            self._micSource.close()
        return self._micSource

    def _outputParent(self):
        return self.inputMovies1

    def _closeOutputs(self, book):
        self._inputs.writeNotes({key: len(ids) for key, ids in book.seen.items()})
        mics = self._inputs["mic"]
        self._inputs.notes.add("unmatched", f"{len(book.micWanted)} decided movies have no "
                               f"micrograph in the {mics.label}." if book.micWanted
                               and mics.fileName else None)
        self._inputs.notes.add("parked", f"{len(book.parked)} reference movies are not "
                               "decided: the secondary run stopped early, before their "
                               "alignment. Continue that run, then this one, to decide "
                               "them." if book.parked else None)
        names = [OUT_MOVIES, OUT_MOVIES_DISC]
        names += [OUT_MICS, OUT_MICS_DISC] if mics.fileName else []
        book.finished = True
        self._closeStreamingOutputs(names)

    # --------------------------- UTILS functions -----------------------------
    # --------------------------- INFO functions ------------------------------
    def _validate(self):
        errors = []
        ref, sec = self.inputMovies1.get(), self.inputMovies2.get()
        if ref is not None and sec is not None and ref.getFileName() == sec.getFileName():
            errors.append("The reference and secondary movies are the same set.")
        inf = float("inf")
        errors += (check.in_range("Minimum correlation", self.minConsCorrelation.get(), -1, 1)
                   + check.in_range("Minimum shift range (px)", self.minRangeShift.get(), 0, inf)
                   + check.in_range("Maximum RMSE (px)", self.maxRmse.get(), 0, inf)
                   + check.in_range("Scale tolerance", self.scaleTolerance.get(), 0, 1,
                                    high_open=True)
                   + check.in_range("Maximum rotation (deg)", self.maxRotation.get(), 0, 180)
                   + check.in_range("Early motion dose (e/A^2)", self.earlyDose.get(), 0, inf))
        return errors

    def _summary(self):
        counts = json.loads(self.decisionCounts.get() or "{}")
        if not counts:
            return ["No movie decided yet."] + readInputNotes(self._getExtraPath())
        lines = [f"{sum(counts.values())} movies decided: " + ", ".join(
            f"{reason} {counts[reason]}" for reason in REASONS if reason in counts)]
        lines.append(f"Thresholds: correlation >= {self.minConsCorrelation.get():g}, "
                     f"shift range > {self.minRangeShift.get():g} px, RMSE <= "
                     f"{self.maxRmse.get() or 'off'} px, scale tolerance "
                     f"{self.scaleTolerance.get() or 'off'}.")
        lines.append(self._inputsLine())
        return lines + readInputNotes(self._getExtraPath())

    def _inputsLine(self):
        """Which run is the reference and which the secondary (by their run names)."""
        names = []
        for ptr in (self.inputMovies1, self.inputMovies2):
            obj = ptr.getObjValue()  # the producing protocol, or the set itself
            if obj is not None and not hasattr(obj, "getRunName"):
                project, parent = self.getProject(), obj.getObjParentId()
                obj = project.getProtocol(parent) if project and parent else None
            names.append(obj.getRunName() if obj is not None else "(unknown)")
        return f"Reference run: {names[0]}; secondary run: {names[1]}."

    def _methods(self):
        return [f"The global alignments of {self.getObjectTag('inputMovies1')} and "
                f"{self.getObjectTag('inputMovies2')} were compared per movie on common "
                "frames after removing the offset (xmipp_qc movie alignment consensus); "
                f"movies with shift correlation below {self.minConsCorrelation.get():g}"
                + (f", RMSE above {self.maxRmse.get():g} px" if self.maxRmse.get() > 0 else "")
                + " or a path-length ratio outside the scale tolerance were discarded"
                + (" (trajectories superposed with the best rotation [Kabsch1976])"
                   if self.allowRotation.get() else "") + " [delaRosaTrevin2013]."]

    def _citations(self):
        return ["delaRosaTrevin2013", "Kabsch1976"]
