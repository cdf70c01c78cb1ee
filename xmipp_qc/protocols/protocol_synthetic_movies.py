"""Test helper: a SetOfMovies with attached MovieAlignment, from seeded simulations.

Two instances with the same ``seed`` and ``kinds`` but ``run`` = reference and
secondary give the two motion-correction runs of the same movies, built from
:func:`xmipp_qc.core.simulate.simulate_trajectory_pair` (movie ``i`` uses the
random state ``(seed, i)`` and kind ``kinds[(i - 1) % len(kinds)]``). The
movies can arrive in streaming (``interval`` > 0), movie files can be one tiny
shared stack (benchmarks), and micrographs can be produced as well, also some
batches after their movies; the run can fail after some batches and be
continued (:mod:`.synthetic_schedule`). Hidden from the GUI: it exists for
tests, benchmarks and demos.
"""

import os
import time

import numpy as np
import pwem.objects as emobj
import pyworkflow.protocol.params as params
from pwem.protocols import EMProtocol
from pyworkflow.object import Set

from xmipp_qc.convert import arraysToMovieAlignment
from xmipp_qc.core.simulate import TRAJECTORY_KINDS, simulate_trajectory_pair
from xmipp_qc.formats.mrc import write_stack
from xmipp_qc.protocols.synthetic_schedule import (
    batchPlan,
    defineScheduleParams,
    failOnceAfter,
    presentIds,
)

RUN_REFERENCE, RUN_SECONDARY = 0, 1


def _parseList(text, convert=str):
    return [convert(t.strip()) for t in (text or "").split(",") if t.strip()]


class XmippQcProtSyntheticMovies(EMProtocol):
    """Writes synthetic movies aligned by a simulated motion-correction run."""

    _label = "synthetic aligned movies (test helper)"
    _possibleOutputs = {"outputMovies": emobj.SetOfMovies,
                        "outputMicrographs": emobj.SetOfMicrographs}

    @classmethod
    def isDisabled(cls):
        return True

    # --------------------------- DEFINE param functions ----------------------
    def _defineParams(self, form):
        form.addSection(label="Simulation")
        form.addParam("nMovies", params.IntParam, default=4, validators=[params.Positive],
                      label="Number of movies")
        form.addParam("kinds", params.StringParam, default="agree",
                      label="Trajectory kinds",
                      help="Comma-separated kinds of simulate_trajectory_pair, cycled "
                           f"over the movies: {', '.join(TRAJECTORY_KINDS)}.")
        form.addParam("alignmentRun", params.EnumParam, choices=["reference", "secondary"],
                      default=RUN_REFERENCE, label="Which run",
                      help="Reference: the simulated reference shifts; secondary: the "
                           "disagreeing copy (same seed = same movies).")
        form.addParam("seed", params.IntParam, default=0, label="Random seed")
        form.addParam("nFrames", params.IntParam, default=10, label="Frames per movie")
        form.addParam("drift", params.FloatParam, default=20.0, label="Drift (px)",
                      help="Path length of the reference trajectory in px.")
        form.addParam("samplingRate", params.FloatParam, default=1.0,
                      label="Pixel size (Å/px)", help="Of the unbinned movies.")
        form.addParam("dosePerFrame", params.FloatParam, default=1.0,
                      label="Dose per frame (e/Å²)")
        form.addParam("binning", params.FloatParam, default=1.0, label="Secondary binning",
                      help="The secondary run reports shifts in px of movies binned by "
                           "this factor (its set's pixel size is multiplied by it).")
        line = form.addLine("Aligned frames", help="Frame range this run aligned "
                                                  "(0 as last = all).")
        line.addParam("alignFrame0", params.IntParam, default=1, label="from")
        line.addParam("alignFrameN", params.IntParam, default=0, label="to")
        form.addParam("dropMovies", params.StringParam, default="",
                      label="Movies absent from this run", help="Comma-separated ids.")
        form.addParam("boxSize", params.IntParam, default=16, label="Frame size (px)")
        form.addParam("sharedStack", params.BooleanParam, default=False,
                      label="One shared movie file",
                      help="All movies point to one tiny stack (benchmarks).")
        form.addParam("withMicrographs", params.BooleanParam, default=False,
                      label="Output micrographs")
        form.addParam("micBinning", params.FloatParam, default=1.0,
                      condition="withMicrographs", label="Micrograph binning",
                      help="Micrograph pixel size = movie pixel size x this.")
        form.addSection(label="Streaming")
        form.addParam("interval", params.FloatParam, default=0.0,
                      label="Interval (s)", help="Seconds between batches; 0 = static.")
        form.addParam("moviesPerInterval", params.IntParam, default=1,
                      label="Movies per batch")
        defineScheduleParams(form)

    # --------------------------- INSERT steps functions ----------------------
    def _insertAllSteps(self):
        self._insertFunctionStep(self.createOutputStep, needsGPU=False)

    # --------------------------- STEPS functions -----------------------------
    def createOutputStep(self):
        """Batches of movies (and micrographs, ``micDelay`` batches later) every
        ``interval`` seconds; on continue the items already output are skipped."""
        dropped = set(_parseList(self.dropMovies.get(), int))
        ids = [i for i in range(1, self.nMovies.get() + 1) if i not in dropped]
        per = max(1, self.moviesPerInterval.get()) if self.interval.get() > 0 else len(ids)
        batches = [ids[start:start + per] for start in range(0, len(ids), per)]
        if not batches:  # open and empty for one interval (if streaming), then closed
            batches = [[], []] if self.interval.get() > 0 else [[]]
        delay = self.micDelay.get() if self.withMicrographs else 0
        added = 0
        for step, (b, m) in enumerate(batchPlan(len(batches), delay)):
            if step and (added or not ids):
                time.sleep(self.interval.get())
            added = 0
            if b is not None:
                added += self._append(emobj.SetOfMovies, "outputMovies", batches[b],
                                      b == len(batches) - 1)
            if m is not None and self.withMicrographs:
                added += self._append(emobj.SetOfMicrographs, "outputMicrographs",
                                      batches[m], m == len(batches) - 1)
            failOnceAfter(self, step)

    def _append(self, setClass, outName, ids, last):
        """Append the items ``ids`` not output yet; returns how many were added."""
        isMovies = setClass is emobj.SetOfMovies
        outSet = self._openSet(setClass, "movies.sqlite" if isMovies else "micrographs.sqlite")
        present = presentIds(outSet)
        new = [i for i in ids if i not in present]
        for i in new:
            outSet.append(self._makeMovie(i) if isMovies else self._makeMicrograph(i))
        self._updateOutputSet(outName, outSet, Set.STREAM_CLOSED if last else Set.STREAM_OPEN)
        return len(new)

    # --------------------------- UTILS functions -----------------------------
    def _movieSamplingRate(self):
        binning = self.binning.get() if self.alignmentRun.get() == RUN_SECONDARY else 1.0
        return self.samplingRate.get() * binning

    def _openSet(self, setClass, baseName):
        fn = self._getPath(baseName)
        outSet = setClass(filename=fn)
        if os.path.exists(fn) and os.path.getsize(fn) > 0:
            outSet.loadAllProperties()
            outSet.enableAppend()
            return outSet
        if setClass is emobj.SetOfMovies:
            outSet.setSamplingRate(self._movieSamplingRate())
            outSet.setFramesRange([1, self.nFrames.get(), 1])
        else:
            outSet.setSamplingRate(self._movieSamplingRate() * self.micBinning.get())
        acq = outSet.getAcquisition()
        acq.setVoltage(300.0)
        acq.setSphericalAberration(2.7)
        acq.setAmplitudeContrast(0.1)
        acq.setMagnification(50000)
        acq.setDosePerFrame(self.dosePerFrame.get())
        acq.setDoseInitial(0.0)
        return outSet

    def _trajectory(self, i):
        kinds = _parseList(self.kinds.get()) or ["agree"]
        pair = simulate_trajectory_pair(
            kinds[(i - 1) % len(kinds)], n_frames=self.nFrames.get(),
            drift_px=self.drift.get(), binning=self.binning.get(),
            seed=np.random.default_rng([self.seed.get(), i]))
        if self.alignmentRun.get() == RUN_REFERENCE:
            frames, shifts = pair.frames_ref, pair.ref
        else:
            frames, shifts = pair.frames_sec, pair.sec
        first = max(1, self.alignFrame0.get())
        last = self.alignFrameN.get() or self.nFrames.get()
        keep = (frames >= first) & (frames <= last)
        return frames[keep], shifts[keep]

    def _stackFile(self, name, nImages):
        fn = self._getExtraPath(name)
        if not os.path.exists(fn):
            box = self.boxSize.get()
            rng = np.random.default_rng(0)
            data = rng.normal(size=(nImages, box, box)).astype(np.float32)
            write_stack(fn, data, self.samplingRate.get())  # frames, or one micrograph
        return fn

    def _makeMovie(self, i):
        n = self.nFrames.get()
        name = "shared_movie.mrcs" if self.sharedStack else f"movie_{i:05d}.mrcs"
        movie = emobj.Movie(location=self._stackFile(name, n))
        movie.setObjId(i)
        movie.setMicName(f"movie_{i:05d}.mrc")
        movie.setFramesRange([1, n, 1])
        frames, shifts = self._trajectory(i)
        movie.setAlignment(arraysToMovieAlignment(frames, shifts))
        return movie

    def _makeMicrograph(self, i):
        name = "shared_mic.mrc" if self.sharedStack else f"mic_{i:05d}.mrc"
        mic = emobj.Micrograph(location=self._stackFile(name, 1))
        mic.setObjId(i)
        mic.setMicName(f"movie_{i:05d}.mrc")
        return mic

    # --------------------------- INFO functions ------------------------------
    def _validate(self):
        kinds = _parseList(self.kinds.get())
        bad = [k for k in kinds if k not in TRAJECTORY_KINDS]
        errors = [f"Unknown trajectory kinds: {', '.join(bad)}"] if bad else []
        if self.nFrames.get() < 2:
            errors.append("At least 2 frames per movie.")
        return errors

    def _summary(self):
        run = "reference" if self.alignmentRun.get() == RUN_REFERENCE else "secondary"
        return [f"{self.nMovies.get()} synthetic movies ({run} run, kinds "
                f"{self.kinds.get()}, seed {self.seed.get()})"]
