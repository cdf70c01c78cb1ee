"""The outputs of *compare reprojections*: scored image sets, the best map, plots.

:class:`CompareReprojectionsOutputs` turns the saved scores of each map into a
Scipion output set (the item attributes are set by
:func:`.compare_reprojections_results.decorateItem`), extracts the best map and/or
its particles after the ranking, and saves the PNG plots in ``extra/``.
"""

import os

import numpy as np
import pwem.objects as emobj

from xmipp_qc.convert import readImages
from xmipp_qc.core import pipeline
from xmipp_qc.core.saved_images import OUTPUT_STACKS
from xmipp_qc.protocols.compare_reprojections_results import (
    ScoreRows,
    decorateClass,
    decorateItem,
    outputName,
)

#: Values of the ``extractOption`` form param (what to extract of the best map).
EXTRACT_PARTICLES, EXTRACT_VOLUME, EXTRACT_BOTH = 0, 1, 2


class CompareReprojectionsOutputs:
    """Output building of :class:`.XmippQcProtCompareReprojections` (a mixin).

    It defines no form parameters and no steps; the host's steps call it.

    Notes
    -----
    The host protocol provides:

    ``inputSet2D``, ``inputSet3D``
        The images and the candidate maps (pointer params).
    ``chunkSize``, ``doEvaluateResiduals``, ``extractOption``
        Form params: images per saved chunk stack, whether residual stacks were
        saved, and what to extract (``EXTRACT_*``).
    ``_iterCandidates()``, ``_loadInput()``
        From :class:`.CompareReprojectionsInputs`.
    ``_volPath(volId, *names)``
        Path in the ``extra/`` folder of one map's saved files.
    ``_getExtraPath``, ``_createSetOf*``, ``_defineOutputs``, ``_defineSourceRelation``
        Scipion's protocol API.
    """

    def _createOutputSet(self, volId, scores):
        inSet = self.inputSet2D.get()
        rows = self._outputRows(volId, scores)
        withResiduals = bool(self.doEvaluateResiduals)
        if isinstance(inSet, emobj.SetOfClasses2D):
            out = self._createSetOfClasses2D(inSet.getImagesPointer(), suffix=f"_vol{volId}")
            out.appendFromClasses(inSet, updateClassCallback=lambda c: decorateClass(
                c, rows.get(c.getObjId()), withResiduals))
            return out
        suffix = f"_vol{volId}"
        out = (self._createSetOfAverages(suffix) if isinstance(inSet, emobj.SetOfAverages)
               else self._createSetOfParticles(suffix))
        out.copyInfo(inSet)
        out.setAlignmentProj()
        out.copyItems(inSet, updateItemCallback=lambda item, _: decorateItem(
            item, rows.get(item.getObjId()), withResiduals))
        return out

    def _outputRows(self, volId, scores, chunk=None):
        """Per input id: finalize values plus the locations of its saved images
        (:class:`.ScoreRows`, rows built one at a time).

        ``chunk``: all rows are the images of that chunk, in order (streaming).
        """
        _, pixel, _, workPixel = self._loadInput()["sampling"]
        shifts = pipeline.shifts_to_input(scores["shifts"], workPixel, pixel)
        size, mode = self.chunkSize.get(), self._outputStacks()
        slots = (np.load(self._volPath(volId, "saved_slots.npy"))
                 if mode == "flagged" and chunk is None else None)
        saved = self._imageStackNames()

        def location(i):
            if mode == "none":
                return None
            if slots is not None:
                return None if slots[i] < 0 else (
                    lambda name: self._volPath(volId, f"saved_{name}.mrcs")
                    if name in saved else None, int(slots[i]) + 1)
            c, index = divmod(i, size) if chunk is None else (chunk, i)
            return lambda name: self._volPath(volId, f"{name}_{c:05d}.mrcs"), index + 1

        return ScoreRows(scores, shifts, location)

    # --------------------------- saved images --------------------------------
    def _outputStacks(self):
        """``all``, ``flagged`` or ``none`` (:mod:`xmipp_qc.core.saved_images`); a
        streaming run saves all (its flags are final chunk by chunk)."""
        choice = getattr(self, "outputStacks", None)
        if choice is None or self._isStreaming():
            return "all"
        return OUTPUT_STACKS[choice.get()]

    def _imageStackNames(self):
        """The working-image stacks the items point to."""
        return ["aligned", "reprojections"] + (["residuals"] if self.doEvaluateResiduals
                                               else [])

    def _savedImages(self, volId, n):
        """:class:`xmipp_qc.saved_stacks.SavedImages` of map ``volId`` (batch chunks)."""
        from xmipp_qc.saved_stacks import SavedImages

        size = self.chunkSize.get()
        chunkRows = [np.arange(s, min(s + size, n)) for s in range(0, n, size)]
        saved = SavedImages(self._getExtraPath(), volId, chunkRows, n, self._outputStacks())
        fn = self._volPath(volId, "saved_slots.npy")
        if os.path.exists(fn):
            saved.restore(np.load(fn), {name: self._volPath(volId, f"saved_{name}.mrcs")
                                        for name in self._imageStackNames()})
        return saved

    def _saveSelectedImages(self, volId, scores):
        """Output stacks ``flagged``: recompute and save the images of the flagged and
        worst rows (``vol<id>/saved_<stack>.mrcs``, slots in ``saved_slots.npy``)."""
        from xmipp_qc.core.saved_images import rows_to_save

        _, _, workBox, workPixel = self._loadInput()["sampling"]
        saved = self._savedImages(volId, len(scores["ids"]))
        rows = rows_to_save(scores, "flagged", n_worst=self.keepWorst.get())
        saved.write(rows, {name: self._volPath(volId, f"saved_{name}.mrcs")
                           for name in self._imageStackNames()}, int(workBox), float(workPixel))
        np.save(self._volPath(volId, "saved_slots.npy"), saved.slot)

    def _extractBest(self, bestId):
        option = self.extractOption.get()
        best = dict(self._iterCandidates())[bestId]
        if option in (EXTRACT_VOLUME, EXTRACT_BOTH):
            vol = emobj.Volume(location=best.getFileName())
            vol.setSamplingRate(best.getSamplingRate())
            self._defineOutputs(bestVolume=vol)
            self._defineSourceRelation(self.inputSet3D, vol)
        if option in (EXTRACT_PARTICLES, EXTRACT_BOTH):
            parts = self._createSetOfParticles("_bestVol")
            cls = self.inputSet3D.get()[bestId]
            parts.copyInfo(cls)
            parts.copyItems(cls)
            self._defineOutputs(particles_bestVol=parts)
            self._defineSourceRelation(self.inputSet3D, parts)

    def _savePlots(self, volId, scores):
        """Outlier-score histogram (and the worst images when residuals are saved) as PNG."""
        from xmipp_qc.core.outliers import OUTLIER_THRESHOLD
        from xmipp_qc.plots import reprojections as plots

        fig = plots.plot_outlier_histogram(scores["outlierScore"], OUTLIER_THRESHOLD,
                                           is_outlier=scores["isOutlier"],
                                           title=f"outlier score of map {volId}")
        fig.savefig(self._getExtraPath(f"outliers_vol{volId}.png"), dpi=80)
        if self.doEvaluateResiduals:
            worst = plots.worst_indices(scores["outlierScore"], 5)
            stacks = [self._readSaved(volId, name, worst)
                      for name in ("aligned", "reprojections", "residuals")]
            labels = [f"id {scores['ids'][i]}: {scores['outlierScore'][i]:.1f}" for i in worst]
            fig = plots.plot_report(scores["outlierScore"], OUTLIER_THRESHOLD, *stacks,
                                    is_outlier=scores["isOutlier"], labels=labels,
                                    title=outputName(volId))
            fig.savefig(self._getExtraPath(f"report_vol{volId}.png"), dpi=80)

    def _readSaved(self, volId, name, positions):
        """Images of a saved chunk stack at set positions (0-based); recomputed when
        the run did not save them (output stacks ``flagged`` or ``none``)."""
        if self._outputStacks() != "all":
            n = len(np.load(self._volPath(volId, "scores.npz"))["ids"])
            aligned, reprojections, residuals = self._savedImages(volId, n).images(positions)
            return {"aligned": aligned, "reprojections": reprojections,
                    "residuals": residuals}[name]
        size = self.chunkSize.get()
        return readImages([(int(p) % size + 1, self._volPath(volId, f"{name}_{int(p) // size:05d}"
                                                                   ".mrcs")) for p in positions])

    def _saveRankingPlot(self, table):
        from xmipp_qc.plots import reprojections as plots

        plots.plot_ranking(table).savefig(self._getExtraPath("ranking.png"), dpi=80)
