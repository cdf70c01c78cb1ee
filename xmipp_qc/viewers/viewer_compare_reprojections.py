"""Viewer of XmippQcProtCompareReprojections.

Computes nothing: the image table is the protocol's output set (image pointer
and score columns), the figures are drawn by the pure functions of
:mod:`xmipp_qc.plots.reprojections` from the saved ``extra/`` files,
and subsets go through pwem's :class:`~pwem.protocols.ProtUserSubSet` with a
selection file of item ids (the metadata-viewer path of that protocol).
"""

import os

import pyworkflow.protocol.params as params
from pwem.protocols import ProtUserSubSet
from pwem.viewers import ObjectView
from pwem.viewers.showj import MODE, MODE_MD, ORDER, RENDER, SORT_BY, VISIBLE, ZOOM
from pyworkflow.gui.plotter import Plotter
from pyworkflow.viewer import DESKTOP_TKINTER, ProtocolViewer

from xmipp_qc.core.outliers import OUTLIER_THRESHOLD
from xmipp_qc.plots import reprojections as plots
from xmipp_qc.protocols.compare_reprojections_results import (
    readOutputsJson,
    readRanking,
    readScores,
)
from xmipp_qc.protocols.protocol_compare_reprojections import XmippQcProtCompareReprojections

IMAGE_COLUMNS = ("_xmipp_image._filename _xmipp_imageRef._filename "
                 "_xmipp_imageResidual._filename _xmipp_imageCovariance._filename")
SCORE_COLUMNS = ("_qc_isOutlier _qc_outlierScore _qc_failureReason _xmipp_cost "
                 "_xmipp_zScoreResCov _xmipp_zScoreResMean _xmipp_zScoreResVar _qc_zScoreGray "
                 "_qc_zResMean _qc_zResStd _xmipp_corrIdx _xmipp_corrMask _xmipp_corrWeight "
                 "_xmipp_imedValue _xmipp_continuousA _xmipp_continuousB _xmipp_continuousX "
                 "_xmipp_continuousY _qc_matchCorr _qc_angleChange _qc_shiftChange")
#: Sort choices of the table: (label, column, worst-first direction).
SORTS = (("outlier score", "_qc_outlierScore", "desc"), ("cost", "_xmipp_cost", "asc"),
         ("covariance z-score", "_xmipp_zScoreResCov", "desc"),
         ("gray z-score", "_qc_zScoreGray", "asc"), ("IMED", "_xmipp_imedValue", "desc"))
#: Scores drawn as histograms.
HISTOGRAM_SCORES = ("outlierScore", "zScoreResCov", "zScoreGray", "zResMean", "zResStd",
                    "cost")
KEEP_INLIERS, KEEP_OUTLIERS = 0, 1


class XmippQcCompareReprojectionsViewer(ProtocolViewer):
    """Images with reprojections and residuals sorted by score, histograms, ranking, subsets."""

    _label = "viewer compare reprojections"
    _targets = [XmippQcProtCompareReprojections]
    _environments = [DESKTOP_TKINTER]

    def _defineParams(self, form):
        form.addSection(label="Visualization")
        form.addParam("volumeIndex", params.EnumParam, default=0, choices=self._outputNames()
                      or ["(none yet)"], label="Map")
        form.addParam("sortBy", params.EnumParam, default=0, choices=[s[0] for s in SORTS],
                      label="Sort by (worst first)")
        form.addParam("displayTable", params.LabelParam,
                      label="Images, reprojections and residuals")
        form.addParam("displayHistograms", params.LabelParam,
                      label="Score histograms with the outlier threshold")
        form.addParam("displayRanking", params.LabelParam, label="Ranking of the maps")
        form.addParam("keep", params.EnumParam, default=KEEP_INLIERS,
                      choices=["images not flagged", "flagged images"], label="Subset keeps")
        form.addParam("createSubset", params.LabelParam, label="Create the subset")

    def _getVisualizeDict(self):
        return {"displayTable": self._showTable, "displayHistograms": self._showHistograms,
                "displayRanking": self._showRanking,
                "createSubset": self._createSubset}

    # --------------------------- handlers ------------------------------------
    def _outputNames(self):
        return list(readOutputsJson(self.protocol._getExtraPath()).values())

    def _selected(self):
        """``(volumeId, outputName)`` chosen in the form, or None."""
        items = list(readOutputsJson(self.protocol._getExtraPath()).items())
        index = self.volumeIndex.get() or 0
        return items[index] if index < len(items) else None

    def _showTable(self, _=None):
        sel = self._selected()
        outSet = getattr(self.protocol, sel[1], None) if sel else None
        if outSet is None:
            return [self.infoMessage("No output yet.", title="Compare reprojections")]
        _, column, direction = SORTS[self.sortBy.get() or 0]
        columns = f"id enabled _index _filename {IMAGE_COLUMNS} {SCORE_COLUMNS}"
        viewParams = {MODE: MODE_MD, ORDER: columns, VISIBLE: columns, RENDER: IMAGE_COLUMNS,
                      SORT_BY: f"{column} {direction}", ZOOM: 100}
        return [ObjectView(self._project, outSet.strId(), outSet.getFileName(),
                           viewParams=viewParams)]

    def _showHistograms(self, _=None):
        sel = self._selected()
        if sel is None:
            return [self.infoMessage("No scores yet.", title="Compare reprojections")]
        scores = readScores(self.protocol._getExtraPath(), sel[0])
        fig = plots.plot_score_histograms(scores, OUTLIER_THRESHOLD,
                                          is_outlier=scores["isOutlier"],
                                          names=HISTOGRAM_SCORES)
        return [Plotter(figure=fig)]

    def _showRanking(self, _=None):
        table = readRanking(self.protocol._getExtraPath())
        if table is None:
            return [self.infoMessage("No ranking (a single map, or ranking off).",
                                     title="Compare reprojections")]
        return [Plotter(figure=plots.plot_ranking(table))]

    # --------------------------- subsets -------------------------------------
    def _createSubset(self, _=None):
        if self._selected() is None:
            return [self.infoMessage("No output yet.", title="Compare reprojections")]
        subset = self.launchSubset(self.keep.get())
        return [self.infoMessage(f"Launched '{subset.getObjLabel()}' (ProtUserSubSet); its "
                                 "output appears in the project.", title="Create subset")]

    def launchSubset(self, keep=KEEP_INLIERS, wait=False):
        """Launch a ProtUserSubSet keeping the images (not) flagged in the selected output.

        The selection (item ids) is written to ``extra/subsets/`` of the
        protocol; returns the new subset protocol.
        """
        volId, name = self._selected()
        outSet = getattr(self.protocol, name)
        wanted = keep == KEEP_OUTLIERS
        ids = [str(item.getObjId()) for item in outSet.iterItems()
               if bool(item._qc_isOutlier.get()) == wanted]
        folder = self.protocol._getExtraPath("subsets")
        os.makedirs(folder, exist_ok=True)
        fn = os.path.abspath(os.path.join(folder, f"{name}_{'flagged' if wanted else 'kept'}"
                                                  ".txt"))
        with open(fn, "w") as fh:
            fh.write(" ".join(ids))
        project = self.getProject()
        subset = project.newProtocol(ProtUserSubSet, outputClassName=outSet.getClassName(),
                                     sqliteFile=fn + ",")
        subset.inputObject.set(self.protocol)
        subset.inputObject.setExtended(name)
        subset.setObjLabel(f"{'flagged' if wanted else 'kept'} images of map {volId}")
        project.launchProtocol(subset, wait=wait)
        return subset
