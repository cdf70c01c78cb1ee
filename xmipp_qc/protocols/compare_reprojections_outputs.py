"""The outputs of *compare reprojections*: scored image sets, the best map, plots.

:class:`CompareReprojectionsOutputs` turns the saved scores of each map into a
Scipion output set (the item attributes are set by
:func:`.compare_reprojections_results.decorateItem`), extracts the best map and/or
its particles after the ranking, and saves the PNG plots in ``extra/``.
"""

import pwem.objects as emobj

from xmipp_qc.convert import readImages
from xmipp_qc.core import pipeline
from xmipp_qc.protocols.compare_reprojections_results import (
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
        """Per input id: finalize values plus the image locations of the chunk stacks.

        ``chunk``: all rows are the images of that chunk, in order (streaming).
        """
        _, pixel, _, workPixel = self._loadInput()["sampling"]
        shifts = pipeline.shifts_to_input(scores["shifts"], workPixel, pixel)
        size = self.chunkSize.get()
        rows = {}
        for i, itemId in enumerate(scores["ids"]):
            c, index = divmod(i, size) if chunk is None else (chunk, i)
            row = {k: scores[k][i] for k in scores if scores[k].ndim == 1}
            row.update(angles=scores["angles"][i], shifts=shifts[i],
                       stack=lambda name, c=c: self._volPath(volId, f"{name}_{c:05d}.mrcs"),
                       index=index + 1)
            rows[int(itemId)] = row
        return rows

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
        """Images of a saved chunk stack at set positions (0-based)."""
        size = self.chunkSize.get()
        return readImages([(int(p) % size + 1, self._volPath(volId, f"{name}_{int(p) // size:05d}"
                                                                   ".mrcs")) for p in positions])

    def _saveRankingPlot(self, table):
        from xmipp_qc.plots import reprojections as plots

        plots.plot_ranking(table).savefig(self._getExtraPath("ranking.png"), dpi=80)
