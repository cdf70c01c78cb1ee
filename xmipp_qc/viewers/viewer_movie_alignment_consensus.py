"""Viewer of XmippQcProtConsensusMovieAlignment.

Every view opens in a Scipion (Tk) window with only this plugin installed:
the accepted and discarded tables (:class:`~xmipp_qc.viewers.table_window.TableWindow`,
one row per movie with its decision, reason, metrics and a thumbnail of both
trajectories; double-click a row for its trajectory plot) and the figures of
:mod:`xmipp_qc.plots.trajectories` drawn from the saved per-batch decision
files (:class:`~xmipp_qc.viewers.figure_window.FigureView`). To add a plot: one
form parameter and one entry of ``_getVisualizeDict`` returning
``self._figure(fig, title)``.
"""

import pyworkflow.protocol.params as params
from pyworkflow.viewer import DESKTOP_TKINTER, ProtocolViewer

from xmipp_qc.core.trajectories import superpose
from xmipp_qc.plots import trajectories as plots
from xmipp_qc.plots.trajectories import NOT_COMPARED
from xmipp_qc.protocols.movie_consensus_records import commonTrajectories
from xmipp_qc.protocols.protocol_movie_alignment_consensus import (
    OUT_MICS,
    OUT_MICS_DISC,
    OUT_MOVIES,
    OUT_MOVIES_DISC,
    XmippQcProtConsensusMovieAlignment,
    readDecisionRecords,
    trajectoryFigure,
)
from xmipp_qc.viewers import thumbnails
from xmipp_qc.viewers.figure_window import FigureView
from xmipp_qc.viewers.table_window import Column, TableWindow

#: Table columns: (key, item attribute without the _alignment_ prefix, heading, format).
COLUMNS = (("micName", None, "micrograph", "{}"), ("reason", "reason", "decision", "{}"),
           ("message", "message", "why", "{}"),
           ("corr", "corr", "corr.", "{:.3f}"), ("corr_x", "corr_x", "corr. x", "{:.3f}"),
           ("corr_y", "corr_y", "corr. y", "{:.3f}"),
           ("rmse", "rmse_error", "RMSE (px)", "{:.2f}"),
           ("maxError", "max_error", "max error (px)", "{:.2f}"),
           ("rmseA", "rmse_error_A", "RMSE (Å)", "{:.2f}"),
           ("scale", "scale", "scale", "{:.3f}"), ("rotation", "rotation", "rotation (°)",
                                                   "{:.2f}"),
           ("total", "accum_total", "total motion (px)", "{:.1f}"),
           ("early", "accum_early", "early (px)", "{:.1f}"),
           ("late", "accum_late", "late (px)", "{:.1f}"),
           ("frames", "n_frames", "frames", "{:d}"))
TITLE = "Movie alignment consensus"


class XmippQcConsensusMovieAlignmentViewer(ProtocolViewer):
    """Accepted and discarded movies with their metrics, and dataset plots."""

    _label = "viewer movie alignment consensus"
    _targets = [XmippQcProtConsensusMovieAlignment]
    _environments = [DESKTOP_TKINTER]

    def _defineParams(self, form):
        form.addSection(label="Visualization")
        form.addParam("displayAccepted", params.LabelParam,
                      label="Accepted micrographs (movies when there are none)",
                      help="One row per accepted movie: decision, metrics and both "
                           "trajectories (blue reference, orange secondary, superposed). "
                           "Double-click a row for its trajectory plot.")
        form.addParam("displayDiscarded", params.LabelParam,
                      label="Discarded micrographs (movies when there are none)",
                      help="As the accepted table, with the reason of each discard.")
        form.addParam("displayScatter", params.LabelParam,
                      label="Correlation vs RMSE (px), with thresholds")
        form.addParam("displayHistograms", params.LabelParam, label="Metric histograms")
        form.addParam("displayMotion", params.LabelParam,
                      label="Accumulated motion (px) by movie id")
        form.addParam("movieId", params.IntParam, default=1, label="Movie id",
                      help="The movie whose trajectories are plotted below.")
        form.addParam("displayTrajectory", params.LabelParam,
                      label="Trajectories of that movie (reference and secondary)")

    def _getVisualizeDict(self):
        return {"displayAccepted": lambda _: self._table(OUT_MICS, OUT_MOVIES, "accepted"),
                "displayDiscarded": lambda _: self._table(OUT_MICS_DISC, OUT_MOVIES_DISC,
                                                          "discarded"),
                "displayScatter": self._showScatter,
                "displayHistograms": self._showHistograms,
                "displayMotion": self._showMotion,
                "displayTrajectory": lambda _: self.trajectoryViews(self.movieId.get())}

    def _figure(self, fig, title):
        return FigureView(fig, title=f"{TITLE}: {title}", masterWindow=self.getWindow())

    def _records(self):
        return readDecisionRecords(self.protocol._getExtraPath())

    # --------------------------- tables --------------------------------------
    def tableRows(self, outSet):
        """One dict per output item: id, micrograph name and the _alignment_ attributes."""
        rows = []
        for item in outSet.iterItems():
            row = {"id": item.getObjId(), "micName": item.getMicName()}
            for key, attr, _, _ in COLUMNS[1:]:
                obj = getattr(item, f"_alignment_{attr}", None)
                row[key] = None if obj is None else obj.get()
            if row["reason"] in NOT_COMPARED:  # no metrics: shown as "-", not as 0
                row.update({key: None for key, *_ in COLUMNS[3:]})
            rows.append(row)
        return rows

    def _table(self, micName, movieName, what):
        outSet = getattr(self.protocol, micName, None) or getattr(self.protocol, movieName, None)
        if outSet is None:
            return [self.infoMessage(f"No {what} movies (yet).", title=TITLE)]
        kind = "micrographs" if getattr(self.protocol, micName, None) else "movies"
        rows = self.tableRows(outSet)
        records = {r["id"]: r for r in self._records()}
        header = (f"{len(rows)} {what} {kind} of {len(records)} movies decided, by movie id. "
                  "Picture: both trajectories superposed (blue reference, orange "
                  "secondary, dot = first frame).\nDouble-click a row, or select it and "
                  "press 'Trajectories', for the trajectory plot.")
        return [MovieTableView(self, f"{what} {kind}", rows, records, header)]

    def _rowPicture(self, record):
        common = None if record is None else commonTrajectories(record)
        if common is None:
            return None
        _, ref, sec = common
        refC, secFit, _ = superpose(ref, sec, allow_rotation=self.protocol.allowRotation.get())
        return thumbnails.trajectoryThumb(refC, secFit, size=64)

    # --------------------------- figures -------------------------------------
    def _showScatter(self, _=None):
        prot = self.protocol
        fig = plots.plot_corr_vs_rmse(self._records(),
                                      min_corr=prot.minConsCorrelation.get(),
                                      max_rmse_px=prot.maxRmse.get())
        return [self._figure(fig, "correlation vs RMSE")]

    def _showHistograms(self, _=None):
        return [self._figure(plots.plot_metric_histograms(self._records()),
                             "metric histograms")]

    def _showMotion(self, _=None):
        return [self._figure(plots.plot_accumulated_motion(self._records()),
                             "accumulated motion")]

    def trajectoryText(self, movieId):
        """Why movie ``movieId`` has no trajectory plot, or None when it has one."""
        record = next((r for r in self._records() if r["id"] == movieId), None)
        if record is None:
            return f"Movie {movieId} has not been decided (no such id, or not yet)."
        if record["reason"] == "missing":
            return (f"Movie {movieId} is {record.get('message') or 'missing'}: there are no "
                    "two trajectories to compare.").replace("movie missing", "missing")
        if commonTrajectories(record) is None:
            return f"Movie {movieId}: fewer than 2 common frames ({record.get('message')})."
        return None

    def trajectoryViews(self, movieId):
        """Views of the trajectory plot of one movie (a message when it has none)."""
        why = self.trajectoryText(movieId)
        if why is not None:
            return [self.infoMessage(why, title=TITLE)]
        record = next(r for r in self._records() if r["id"] == movieId)
        fig = trajectoryFigure(record, self.protocol.inputMovies1.get().getSamplingRate(),
                               self.protocol.allowRotation.get())
        return [self._figure(fig, f"trajectories of movie {movieId}")]

    def showTrajectoryOfRows(self, rows):
        """Table action: open the trajectory plot of the first row; text for the status."""
        if not rows:
            return "Select a row first."
        why = self.trajectoryText(rows[0]["id"])
        if why is not None:
            return why
        for view in self.trajectoryViews(rows[0]["id"]):
            view.show()
        return f"Opened the trajectories of movie {rows[0]['id']}."


class MovieTableView:
    """View opening a table of decided movies (a pyworkflow View: ``show()``)."""

    def __init__(self, viewer, what, rows, records, header):
        self.viewer, self.what, self.rows = viewer, what, rows
        self.records, self.header = records, header
        self.window = None

    def show(self):
        viewer = self.viewer
        wide = {"micName": 150, "reason": 130, "message": 280}
        columns = [Column(key, label, fmt, width=wide.get(key, 85),
                          anchor="w" if key in wide else "e")
                   for key, _, label, fmt in COLUMNS]
        self.window = TableWindow(
            f"{TITLE}: {self.what}", self.rows, columns,
            picture=lambda row: viewer._rowPicture(self.records.get(row["id"])),
            pictureLabel="trajectories", pictureWidth=90, sortBy=None,
            header=self.header, actions=[("Trajectories", viewer.showTrajectoryOfRows)],
            onDoubleClick=lambda row: viewer.showTrajectoryOfRows([row]),
            masterWindow=viewer.getWindow())
        self.window.show()
        return self.window
