"""Viewer of XmippQcProtConsensusMovieAlignment.

Computes nothing: tables come from the output sets (their ``_alignment_*``
attributes) and figures from the saved per-batch decision files, drawn by the
pure functions of :mod:`xmipp_qc.plots.trajectories`.
"""

import pyworkflow.protocol.params as params
from pwem.viewers import ObjectView
from pwem.viewers.showj import MODE, MODE_MD, ORDER, RENDER, VISIBLE, ZOOM
from pyworkflow.gui.plotter import Plotter
from pyworkflow.viewer import DESKTOP_TKINTER, ProtocolViewer

from xmipp_qc.plots import trajectories as plots
from xmipp_qc.protocols.protocol_movie_alignment_consensus import (
    OUT_MICS,
    OUT_MICS_DISC,
    OUT_MOVIES,
    OUT_MOVIES_DISC,
    XmippQcProtConsensusMovieAlignment,
    readDecisionRecords,
    trajectoryFigure,
)

#: Columns of the accepted/discarded tables (Xmipp's plus the new metrics).
TABLE_COLUMNS = ("id _filename _micName plotCart._filename _alignment_reason "
                 "_alignment_corr _alignment_corr_x _alignment_corr_y _alignment_rmse_error "
                 "_alignment_max_error _alignment_rmse_error_A _alignment_scale "
                 "_alignment_rotation _alignment_accum_total _alignment_accum_early "
                 "_alignment_accum_late _alignment_n_frames _alignment_message")


class XmippQcConsensusMovieAlignmentViewer(ProtocolViewer):
    """Accepted and discarded movies with their metrics, and dataset plots."""

    _label = "viewer movie alignment consensus"
    _targets = [XmippQcProtConsensusMovieAlignment]
    _environments = [DESKTOP_TKINTER]

    def _defineParams(self, form):
        form.addSection(label="Visualization")
        form.addParam("displayAccepted", params.LabelParam,
                      label="Accepted micrographs (movies without micrographs)")
        form.addParam("displayDiscarded", params.LabelParam,
                      label="Discarded micrographs (movies without micrographs)")
        form.addParam("displayScatter", params.LabelParam,
                      label="Correlation vs RMSE (px), with thresholds")
        form.addParam("displayHistograms", params.LabelParam, label="Metric histograms")
        form.addParam("displayMotion", params.LabelParam,
                      label="Accumulated motion (px) over acquisition order")
        form.addParam("movieId", params.IntParam, default=1, label="Movie id")
        form.addParam("displayTrajectory", params.LabelParam,
                      label="Trajectories of that movie")

    def _getVisualizeDict(self):
        return {"displayAccepted": lambda _: self._table(OUT_MICS, OUT_MOVIES),
                "displayDiscarded": lambda _: self._table(OUT_MICS_DISC, OUT_MOVIES_DISC),
                "displayScatter": self._showScatter,
                "displayHistograms": self._showHistograms,
                "displayMotion": self._showMotion,
                "displayTrajectory": self._showTrajectory}

    # --------------------------- handlers ------------------------------------
    def _table(self, micName, movieName):
        outSet = getattr(self.protocol, micName, None) or getattr(self.protocol, movieName, None)
        if outSet is None:
            return [self.infoMessage("No such output yet.", title="Movie consensus")]
        viewParams = {MODE: MODE_MD, ORDER: TABLE_COLUMNS, VISIBLE: TABLE_COLUMNS,
                      RENDER: "plotCart._filename", ZOOM: 50}
        return [ObjectView(self._project, outSet.strId(), outSet.getFileName(),
                           viewParams=viewParams)]

    def _records(self):
        return readDecisionRecords(self.protocol._getExtraPath())

    def _showScatter(self, _=None):
        prot = self.protocol
        fig = plots.plot_corr_vs_rmse(self._records(),
                                      min_corr=prot.minConsCorrelation.get(),
                                      max_rmse_px=prot.maxRmse.get())
        return [Plotter(figure=fig)]

    def _showHistograms(self, _=None):
        return [Plotter(figure=plots.plot_metric_histograms(self._records()))]

    def _showMotion(self, _=None):
        return [Plotter(figure=plots.plot_accumulated_motion(self._records()))]

    def _showTrajectory(self, _=None):
        wanted = self.movieId.get()
        record = next((r for r in self._records() if r["id"] == wanted), None)
        fig = None if record is None else trajectoryFigure(
            record, self.protocol.inputMovies1.get().getSamplingRate(),
            self.protocol.allowRotation.get())
        if fig is None:
            return [self.errorMessage(f"No trajectories to plot for movie {wanted}.",
                                      title="Movie consensus")]
        return [Plotter(figure=fig)]
