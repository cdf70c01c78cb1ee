"""Compare reprojections: does a map explain these images, which images are the
exceptions, and which of several maps explains them best?

The steps run one after another; the step of each map runs its chunks
``numberOfThreads - 1`` at a time (default 2) and skips the chunks already saved
(continue). Steps per chunk, run by Scipion's parallel executor, left the cores
idle: it sleeps 3 s whenever no new step can start.

The numbers come from :mod:`xmipp_qc.core.pipeline` (projection matching when
there is no usable assignment, local refinement, CTF-aware reprojection,
gray-fitted residuals, set statistics, paired map ranking). This module is the
Scipion glue, with Xmipp's form, step names, output names and item attributes,
without its defects (xmipp-algorithms.md §2.6): ``resol``/``sigma`` low-pass the
comparison, the CTF is used in every path, failed images are kept and flagged,
the refined angles and shifts are written into the output items' alignment (in
the input pixel size), the ranking is always higher-is-better and downsampling
is Fourier cropping.

The files it writes in ``extra/`` (one per finished step, so that "continue"
reuses them) are listed in :mod:`.compare_reprojections_results`; the accessors of
the form's inputs are in :mod:`.compare_reprojections_inputs`, the building of the
output sets, the extraction of the best map and the plots in
:mod:`.compare_reprojections_outputs`.
"""

import math
import os
import threading

import numpy as np
import pwem.objects as emobj
import pyworkflow as pw
from pwem.constants import ALIGN_NONE, ALIGN_PROJ
from pwem.protocols import ProtAnalysis3D
from pyworkflow.object import Boolean

from xmipp_qc import compare_run
from xmipp_qc.convert import (
    acquisitionToDict,
    imagesToArrays,
    readImages,
    readVolume,
)
from xmipp_qc.core import compare_policy, pipeline
from xmipp_qc.core import option_checks as check
from xmipp_qc.core.working_grid import to_working_grid
from xmipp_qc.formats.json_files import write_json
from xmipp_qc.formats.mrc import StackWriter, write_volume
from xmipp_qc.native_memory import release_memory
from xmipp_qc.native_threads import blas_threads, limit_blas_threads
from xmipp_qc.protocols.compare_reprojections_ctf import (
    CTF_MICS,
    CtfCheckMonitor,
    ctfLines,
    readMicrographTable,
)
from xmipp_qc.protocols.compare_reprojections_emission import (
    CompareReprojectionsEmission,
    readReference,
)
from xmipp_qc.protocols.compare_reprojections_form import defineCompareParams
from xmipp_qc.protocols.compare_reprojections_inputs import CompareReprojectionsInputs
from xmipp_qc.protocols.compare_reprojections_notes import RunNotes
from xmipp_qc.protocols.compare_reprojections_outputs import (
    EXTRACT_BOTH,
    EXTRACT_PARTICLES,
    EXTRACT_VOLUME,
    CompareReprojectionsOutputs,
)
from xmipp_qc.protocols.compare_reprojections_queue import (
    ChunkJobGate,
    CompareReprojectionsQueue,
)
from xmipp_qc.protocols.compare_reprojections_results import (
    outputName,
    rankingLines,
    readOutputsJson,
    readRanking,
    readScores,
)
from xmipp_qc.protocols.compare_reprojections_session import (
    BAD_MICS,
    CompareReprojectionsSession,
    readSession,
    tapMicIds,
)
from xmipp_qc.protocols.compare_reprojections_streaming import CompareReprojectionsStreaming
from xmipp_qc.protocols.streaming_inputs import readInputNotes

__all__ = ["EXTRACT_BOTH", "EXTRACT_PARTICLES", "EXTRACT_VOLUME", "NEW_SAMPLING_RATE",
           "XmippQcProtCompareReprojections"]

NEW_SAMPLING_RATE = compare_policy.NEW_SAMPLING_RATE  # Å/px, Xmipp's downsampling target


class XmippQcProtCompareReprojections(CompareReprojectionsQueue, CompareReprojectionsEmission,
                                      CompareReprojectionsStreaming,
                                      CompareReprojectionsSession,
                                      CompareReprojectionsInputs,
                                      CompareReprojectionsOutputs, ProtAnalysis3D):
    """Does a 3D map explain these 2D images, which images does it not explain, and
    which of several maps explains them best?

    Each image (particle, average or 2D class) is aligned to each map, with its own
    3D assignment or by projection matching when it has none, refined locally and
    compared with the map's reprojection (its CTF applied unless "Ignore CTF") after
    fitting gray levels (a*P+b). One output set per map, the input items with:

    - cost (_xmipp_cost): correlation of the image with its gray-fitted
      reprojection inside a disc; higher is better.
    - zScoreGray (_qc_zScoreGray): how clearly the reprojection is present in the
      image, in noise units (σ); low (negative) is bad.
    - zScoreResCov (_xmipp_zScoreResCov): how unusual the spatial structure of the
      residual (image minus fitted reprojection) is in this set, robust z; high is bad.
    - zResMean, zResStd (_qc_): residual mean and spread against the set, robust z.
    - angleChange (°), shiftChange (px) (_qc_): how far local refinement's best fit
      is from the input angles, and how far it moved the shift. The angles are
      changed only when that better fit beats what noise alone would give
      (moveKept, _qc_moveKept: 1 = moved, 0 = the input angles were kept).
    - resLowPower (_qc_): the share of the residual's power at scales of a quarter
      of the box and larger: ice, carbon edges, aggregates and neighbours that the
      map does not explain; high is bad.
    - offCentre (px, _qc_): how far from the box centre the particle was found.
    - outlierScore (_qc_outlierScore): how much worse than the typical particle of
      this set the map explains the image, combining the scores that separate junk:
      with angles found by projection matching, cost, zScoreGray, resLowPower and
      offCentre (on real particles it finds RELION's junk better than any of them
      alone); with given angles, zScoreGray at the given and the refined angles and
      how far refinement had to move them. It is measured from the typical
      particle in units of the particles' own spread, so junk is found even when
      it is half of the set. Above 3.5 the image is flagged (_qc_isOutlier); the
      _qc_outlierPart... attributes say how much each score contributed, so you
      see why. Images that cannot be scored (e.g. blank) stay in the set,
      flagged; the reason of every flag is a category in _qc_reason (e.g.
      constant_image, listed in the README), the number behind it in
      _qc_reasonValue.

    With several maps they are ranked by their mean cost over the same images,
    with a bootstrap interval of the lead of the best map. "Analyze results"
    shows the images with reprojections and residuals worst first, the score
    histograms and the ranking, and makes subsets.

    An open input (streaming) is scored as it arrives: score statistics are
    fixed on the first "Burn-in" images so that a flag never changes once its
    item is in the output; outlier rates per micrograph and over the session
    show where the map stops explaining the particles.

    With the CTF applied, each micrograph's CTF is checked: at each particle's
    final alignment the reprojection is also filtered with the defocus scaled
    (x0.2 to x5), the astigmatism turned by 90°, the phase flipped and no CTF; a
    micrograph whose given CTF explains its particles clearly worse than the best
    of these is suspect (summary, "Analyze results" > CTF check, and the output
    ctfSuspectMicrographs when "Micrographs" are given). In streaming a
    micrograph's verdict is made once it has 20 particles and never changes.

    Differences from Xmipp's "compare reprojections": no Xmipp binaries; the CTF
    is used in every path; "Comparison resolution" and "Low-pass edge" really
    low-pass the comparison; failed images are kept and flagged, not dropped; the
    refined angles and shifts are written into the output alignment; the outlier
    score and its threshold are new; the ranking always reads higher-is-better
    and comes with a confidence interval; downsampling is Fourier cropping.

    The work is split into chunks of images, each processed against one map by
    the chunk worker of :mod:`xmipp_qc.compare_run` (the same as the command
    line's). Locally (or with the whole protocol submitted as one queue job)
    the steps run one after another and the step of each map runs its chunks
    in-process, ``numberOfThreads - 1`` at a time. With the queue used per
    step, each chunk is its own step running the worker as a queue job
    (``runJob``), ``numberOfThreads - 1`` jobs in flight. Either way, chunks
    already saved are skipped (continue).
    """

    _label = "compare reprojections"
    _devStatus = pw.BETA
    _possibleOutputs = {"bestVolume": emobj.Volume, "particles_bestVol": emobj.SetOfParticles,
                        BAD_MICS: emobj.SetOfMicrographs, CTF_MICS: emobj.SetOfMicrographs}

    def __init__(self, **kwargs):
        ProtAnalysis3D.__init__(self, **kwargs)
        self._models = {}  # {volId: MapModel} of the map whose chunks run (streaming: all)
        self._modelLock = threading.Lock()
        self.streamingRun = Boolean()  # set at the first launch: the input was open
        self._submitted = threading.local()  # last queue job id of each step thread
        self._chunkGate = ChunkJobGate(log=self.info)  # a failed chunk waits for the jobs in flight
        self._runNotes = RunNotes(self)  # CTF applied or not, pixel sizes: the first lines
        self._ctfMonitor = CtfCheckMonitor(self)  # per-micrograph CTF check (collaborator)

    # --------------------------- DEFINE param functions ----------------------
    def _defineParams(self, form):
        defineCompareParams(form)
        self._defineBurnInParams(form)
        self._defineSessionParams(form)
        form.addParallelSection(threads=3, mpi=0)

    # --------------------------- INSERT steps functions ----------------------
    def _insertAllSteps(self):
        limit_blas_threads()  # the chunk pool is the parallelism (see native_threads)
        self.info(f"BLAS threads per chunk thread: {blas_threads()}")
        volIds = [vid for vid, _ in self._iterCandidates()]
        if self._decideStreaming():
            self._insertStreamingSteps(volIds)
            return
        nChunks = max(1, math.ceil(self._input2DSize() / self.chunkSize.get()))
        convert = self._insertFunctionStep(self.convertStep, needsGPU=False)
        down = self._insertFunctionStep(self.downSampleStep, prerequisites=[convert],
                                        needsGPU=False)
        evaluations, previous = [], down
        for vid in volIds:
            if self._queuePerStep():  # one queue job per chunk, all maps at once
                done = [self._insertFunctionStep(self.chunkJobStep, vid, k,
                                                 prerequisites=[down], needsGPU=False)
                        for k in range(nChunks)]
            else:  # one map after another, each with all the chunk threads
                previous = self._insertFunctionStep(self.produceResiduals, vid, nChunks,
                                                    prerequisites=[previous], needsGPU=False)
                done = [previous]
            evaluations.append(self._insertFunctionStep(self.evaluateResiduals, vid,
                                                        prerequisites=done, needsGPU=False))
        out = self._insertFunctionStep(self.createOutputStep, prerequisites=evaluations,
                                       needsGPU=False)
        if self.doRanking and len(volIds) > 1:
            self._insertFunctionStep(self.computeRankingVolumes, prerequisites=[out],
                                     needsGPU=False)

    # --------------------------- STEPS functions -----------------------------
    def convertStep(self):
        micIds = []  # filled as the images are read (session monitoring)
        meta = imagesToArrays(tapMicIds(self._iterInputImages(), micIds), ALIGN_PROJ
                              if self._usesAssignment() else ALIGN_NONE,
                              withCtf=True)  # read even if ignored: the run log says so
        box, pixel = self._input2DDims()
        workBox, workPixel = compare_policy.working_grid(
            [(box, pixel)], [v.getSamplingRate() for _, v in self._iterCandidates()],
            downsample=self.doDownSample.get())
        self._runNotes.decide(meta["defocus"] is not None, workPixel)
        arrays = {k: meta[k] for k in ("angles", "shifts", "defocus") if meta[k] is not None}
        np.savez(self._getExtraPath("input.npz"), ids=meta["ids"], **arrays,
                 micIds=np.asarray(micIds, np.int64),
                 sampling=np.array([box, pixel, workBox, workPixel]))
        acquisition = acquisitionToDict(self._imageSet())
        self._writeJson("locations.json", {"locations": meta["locations"],
                                           "acquisition": acquisition})
        self._writeJson("outputs.json", {vid: outputName(vid)
                                         for vid, _ in self._iterCandidates()})
        self._writeRunFolder(meta, pixel, workPixel, acquisition)
        del meta
        release_memory()  # the chunk threads start from what the whole-set steps leave

    def _writeRunFolder(self, meta, pixel, workPixel, acquisition):
        """run.json and one input file per chunk for the chunk worker (compare_run)."""
        size = self.chunkSize.get()
        for k, start in enumerate(range(0, len(meta["ids"]), size)):
            sl = slice(start, start + size)
            arrays = {key: meta[key][sl] for key in ("ids", "angles", "shifts", "defocus")
                      if meta[key] is not None}
            self._writeChunkInput(k, np.arange(len(meta["ids"]))[sl], arrays, pixel,
                                  workPixel, acquisition)
        self._writeRunJson(workPixel)

    def _writeRunJson(self, workPixel):
        """run.json of the chunk worker: the options decided by core.compare_policy."""
        options = compare_policy.compare_options(
            workPixel, resolution_a=self.resol.get(), sigma=self.sigma.get(),
            angular_step=self.angularSampling.get(), symmetry=self.symmetryGroup.get().lower(),
            use_ctf=self._runNotes.ctfApplied(), optimize_gray=self.optimizeGray.get())
        stacks = ["aligned", "reprojections"]
        if self.doEvaluateResiduals:
            stacks += ["residuals", "covariances"]
        if self._outputStacks() != "all":  # recomputed for the few saved (outputs mixin)
            stacks = []
        compare_run.write_run(self._getExtraPath(), options, stacks=stacks,
                              maps=[vid for vid, _ in self._iterCandidates()],
                              matching=self._needsMatching())

    def _writeChunkInput(self, chunk, positions, arrays, pixel, workPixel, acquisition,
                         stack=None):
        """The chunk worker's input of one chunk; ``arrays``: ``ids`` and optionally
        ``angles``, ``shifts`` (input px), ``defocus`` of its images."""
        given = "angles" in arrays and not self._needsMatching()
        compare_run.write_chunk_input(
            self._getExtraPath(), chunk, positions=positions, ids=arrays["ids"],
            angles=arrays["angles"] if given else None,
            shifts=pipeline.shifts_to_work(arrays["shifts"], workPixel, pixel)
            if given else None,
            defocus=arrays.get("defocus"), stack=stack,
            acquisition=acquisition if self._runNotes.ctfApplied() else None)

    def downSampleStep(self):
        _, pixel, workBox, workPixel = self._loadInput()["sampling"]
        locations, size = self._loadLocations()["locations"], self.chunkSize.get()
        with StackWriter(self._getExtraPath("images_work.mrcs"), max(len(locations), 1),
                         int(workBox), float(workPixel)) as out:
            for start in range(0, len(locations), size):
                block = readImages(locations[start:start + size])
                out.write(np.arange(start, start + len(block)), to_working_grid(
                    block, pixel, int(workBox), workPixel, ndim=2)[0])
        self._downSampleVolumes(workBox, workPixel)
        del locations
        release_memory()

    def _downSampleVolumes(self, workBox, workPixel):
        for vid, vol in self._iterCandidates():
            data, _ = to_working_grid(readVolume(vol), vol.getSamplingRate(), int(workBox),
                                      workPixel, ndim=3)
            write_volume(compare_run.path(self._getExtraPath(), "volume", vid), data, workPixel)

    def produceResiduals(self, volId, nChunks):
        """All chunks of one map in-process, ``numberOfThreads - 1`` at a time; saved
        chunks are kept (``nChunks`` is the planned count; the run folder has the real one).
        """
        extra = self._getExtraPath()
        todo = compare_run.missing_chunks(extra, volId, range(compare_run.chunk_count(extra)))
        compare_run.run_local(extra, [(volId, k) for k in todo],
                              threads=max(1, self.numberOfThreads.get() - 1))

    def evaluateResiduals(self, volId):
        extra = self._getExtraPath()
        results = compare_run.load_results(extra, volId, range(compare_run.chunk_count(extra)))
        scores = compare_policy.finalize_map(results,
                                             matching=compare_run.read_run(extra)["matching"])
        np.savez(self._volPath(volId, "scores.npz"), **scores)
        if self._outputStacks() == "flagged":
            self._saveSelectedImages(volId, scores)
        self._savePlots(volId, scores)
        del results, scores
        release_memory()

    def createOutputStep(self):
        for vid, _ in self._iterCandidates():
            scores = readScores(self._getExtraPath(), vid)
            output = self._createOutputSet(vid, scores)
            self._defineOutputs(**{outputName(vid): output})
            self._defineSourceRelation(self.inputSet2D, output)
            self._defineSourceRelation(self.inputSet3D, output)
        self._closedSession([vid for vid, _ in self._iterCandidates()])
        self._ctfMonitor.closedRun([vid for vid, _ in self._iterCandidates()])
        self._streamingInputs().writeNotes({"images": self._input2DSize()})

    def computeRankingVolumes(self, stamp=None):
        extra = self._getExtraPath()
        if not all(os.path.exists(self._volPath(vid, "scores.npz"))
                   for vid, _ in self._iterCandidates()):  # a stream closed without images
            self.info("No scores to rank the maps on.")
            return
        table = pipeline.rank({vid: readScores(extra, vid) for vid, _ in self._iterCandidates()})
        self._writeJson("ranking.json", table)
        self._saveRankingPlot(table)
        if self.doExtraction:
            self._extractBest(int(table["best"]))

    # --------------------------- step helpers --------------------------------
    def _getModel(self, volId):
        """MapModel of a map from the run folder, built once (shared by the chunk threads
        of a streaming run; all maps are kept there, they are used together)."""
        with self._modelLock:
            model = self._models.get(volId)
            if model is None:
                model = compare_run.load_model(self._getExtraPath(), volId)
                self._models[volId] = model
            if self._needsMatching():
                model.gallery  # noqa: B018  (built under the lock, once)
            if model.options.refine:
                model.refiner  # noqa: B018
            return model

    def _chunkPath(self, volId, chunk):
        """The saved result of a chunk (its presence marks a finished chunk)."""
        return compare_run.path(self._getExtraPath(), "result", volId, chunk)

    # --------------------------- extra/ files --------------------------------
    def _volPath(self, volId, *names):
        return self._getExtraPath(f"vol{volId}", *names)

    def _writeJson(self, name, data):
        """Write ``extra/name`` atomically: a viewer or summary reading it while a
        streaming run rewrites it sees the old or the new file, never a partial one."""
        write_json(self._getExtraPath(name), data)

    # --------------------------- INFO functions ------------------------------
    def _validate(self):
        errors = []
        inp2D, inp3D = self.inputSet2D.get(), self.inputSet3D.get()
        if inp2D is not None and inp2D.isStreamClosed() and not inp2D.getSize():
            errors.append(f"The images ({inp2D.getFileName()}) are an empty, closed set: "
                          "nothing to compare.")
        single = isinstance(inp3D, emobj.Volume) or (inp3D is not None and inp3D.getSize() < 2)
        if self.doRanking and single:
            errors.append("Ranking and extraction need several maps (a set of volumes or "
                          "3D classes): switch 'Rank the maps' off.")
        if (self.doRanking and self.doExtraction and isinstance(inp3D, emobj.SetOfVolumes)
                and self.extractOption.get() != EXTRACT_VOLUME):
            errors.append("Particles can only be extracted from 3D classes: choose "
                          "'Volume' as what to extract.")
        errors += (check.symmetry("Symmetry group", self.symmetryGroup.get())
                   + check.in_range("Comparison resolution (A)", self.resol.get(), 0, math.inf,
                                    optional=True)
                   + check.in_range("Low-pass edge", self.sigma.get(), 0, math.inf,
                                    optional=True))
        if self.inputSet2D.get() is not None and inp3D is not None:
            errors += self._validateShapes() or self._validateMaps()
        return errors

    def _warnings(self):
        if self.useAssignment and self.inputSet2D.get() is not None \
                and not self._hasAssignment():
            return ["The images have no usable 3D assignment (or are 2D classes): their "
                    "angles will be found by projection matching."]
        return self._streamingWarnings()

    def _summary(self):
        lines = self._runNotes.lines()  # CTF applied or not and why; pixel sizes that differ
        if self.useAssignment and self.inputSet2D.get() is not None \
                and not self._hasAssignment():
            lines.append("No usable 3D assignment: angles found by projection matching.")
        for vid in readOutputsJson(self._getExtraPath()):
            fn = self._volPath(vid, "scores.npz")
            ref = readReference(self._volPath(vid))
            if ref is not None and self._isStreaming():
                lines += self._streamingLines(vid, ref, readSession(self._getExtraPath(), vid))
            if os.path.exists(fn):
                s = readScores(self._getExtraPath(), vid)
                lines.append(f"Map {vid}: {int(s['isOutlier'].sum())} of {len(s['ids'])} "
                             f"images flagged; median cost {np.nanmedian(s['cost']):.3f}")
            lines += ctfLines(readMicrographTable(self._getExtraPath(), vid), vid)
        table = readRanking(self._getExtraPath())
        if table:
            lines += (["Running ranking, on the first "
                       f"{table['n_output']} images output (streaming):"]
                      if table.get("running") else []) + rankingLines(table)
        lines += readInputNotes(self._getExtraPath())
        return lines or ["Not finished yet."]

    def _methods(self):
        if not readOutputsJson(self._getExtraPath()):
            return []
        return ["Images were compared with reprojections of each map after projection "
                "matching or with their given assignment, local continuous refinement "
                "[Sorzano2004] and, where requested, the CTF; residuals were scored with "
                "Xmipp's measures (among them the image Euclidean distance [Wang2005]) and a "
                "residual-covariance divergence [Cherian2013], "
                "combined into a robust outlier score. Implemented in numpy after Xmipp "
                "[delaRosaTrevin2013]." + (" Particles were scored as they arrived, against "
                                           "score statistics fixed on the first "
                                           f"{self.burnIn.get()} images." if
                                           self._isStreaming() else "")
                + (" Each micrograph's CTF was checked by correlating its particles with "
                   "reprojections under alternative CTFs (defocus scaled x0.2 to x5, "
                   "astigmatism turned by 90 degrees, phase flipped, no CTF)." if
                   not self.ignoreCTF.get() else "")]

    def _citations(self):
        return ["Cherian2013", "Sorzano2004", "delaRosaTrevin2013", "Wang2005"]
