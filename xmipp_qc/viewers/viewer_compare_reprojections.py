"""Viewer of XmippQcProtCompareReprojections.

Every view opens in a Scipion (Tk) window with only this plugin installed:
the per-image table (:class:`~xmipp_qc.viewers.table_window.TableWindow`: the
aligned image, its reprojection and its residual side by side, the scores,
sorted worst first, rows selectable for a subset) and the figures of
:mod:`xmipp_qc.plots.reprojections` drawn from the saved ``extra/`` files
(:class:`~xmipp_qc.viewers.figure_window.FigureView`). Subsets go through pwem's
:class:`~pwem.protocols.ProtUserSubSet` with a selection file of item ids.
The CTF check per micrograph (a micrograph table and the correlation against
defocus scale) is in :mod:`xmipp_qc.viewers.ctf_check_view`.
To add a plot: one form parameter and one entry of ``_getVisualizeDict``
returning ``self._figure(fig, title)``.
"""

import os

import numpy as np
import pyworkflow.protocol.params as params
from pwem.protocols import ProtUserSubSet
from pyworkflow.viewer import DESKTOP_TKINTER, ProtocolViewer

from xmipp_qc.convert import readImages
from xmipp_qc.core.outliers import OUTLIER_THRESHOLD
from xmipp_qc.core.reasons import reason_lines
from xmipp_qc.core.residuals import gray_residuals
from xmipp_qc.plots import reprojections as plots
from xmipp_qc.protocols.compare_reprojections_results import (
    PART_PREFIX,
    imageLocation,
    readOutputsJson,
    readRanking,
    readScores,
)
from xmipp_qc.protocols.compare_reprojections_session import readSession, sessionFigure
from xmipp_qc.protocols.protocol_compare_reprojections import XmippQcProtCompareReprojections
from xmipp_qc.viewers import thumbnails
from xmipp_qc.viewers.figure_window import FigureView
from xmipp_qc.viewers.table_window import Column, TableWindow

#: Sort choices of the table: (label, row key, worst first = descending).
SORTS = (("outlier score", "outlierScore", True), ("cost", "cost", False),
         ("covariance z-score", "zScoreResCov", True),
         ("gray z-score", "zScoreGray", False), ("IMED", "imedValue", True))
#: Table columns: (row key, item attribute, heading, format).
COLUMNS = (("outlierScore", "_qc_outlierScore", "outlier score", "{:.2f}"),
           ("isOutlier", "_qc_isOutlier", "flagged", "{}"),
           ("reason", "_qc_reason", "reason", "{}"),
           ("reasonValue", "_qc_reasonValue", "reason value", "{:.4g}"),
           ("outlierWhy", None, "largest parts of the outlier score", "{}"),
           ("cost", "_xmipp_cost", "cost", "{:.3f}"),
           ("zScoreGray", "_qc_zScoreGray", "gray z", "{:.2f}"),
           ("zScoreResCov", "_xmipp_zScoreResCov", "cov. z", "{:.2f}"),
           ("zResMean", "_qc_zResMean", "res. mean z", "{:.2f}"),
           ("zResStd", "_qc_zResStd", "res. std z", "{:.2f}"),
           ("imedValue", "_xmipp_imedValue", "IMED", "{:.3g}"),
           ("corrIdx", "_xmipp_corrIdx", "corr.", "{:.3f}"),
           ("resLowPower", "_qc_resLowPower", "res. large-scale share", "{:.3f}"),
           ("offCentre", "_qc_offCentre", "off-centre (px)", "{:.1f}"),
           ("matchCorr", "_qc_matchCorr", "match corr.", "{:.3f}"),
           ("angleChange", "_qc_angleChange", "best-fit angle move (°)", "{:.2f}"),
           ("shiftChange", "_qc_shiftChange", "shift move (px)", "{:.2f}"),
           ("angleSE", "_qc_angleSE", "angle s.e. (°)", "{:.2f}"),
           ("anglePinned", "_qc_anglePinned", "angles pinned (1 = yes)", "{:.0f}"),
           ("moveKept", "_qc_moveKept", "angles moved (1 = yes)", "{:.0f}"))
#: Image pointers of an output item: (row key, item attribute).
IMAGES = (("image", "_xmipp_image"), ("reprojection", "_xmipp_imageRef"),
          ("residual", "_xmipp_imageResidual"))
#: Scores drawn as histograms.
HISTOGRAM_SCORES = ("outlierScore", "zScoreGray", "zScoreResCov", "zResMean", "zResStd",
                    "cost")
KEEP_INLIERS, KEEP_OUTLIERS = 0, 1
TITLE = "Compare reprojections"


def outlierWhy(item, top=2):
    """The largest parts of an item's outlier score: ``"cost 2.1, offCentre 1.4"``."""
    prefix = "_qc_" + PART_PREFIX
    parts = [(attr[len(prefix):], obj.get()) for attr, obj in vars(item).items()
             if attr.startswith(prefix) and obj.get() is not None]
    parts = sorted((p for p in parts if np.isfinite(p[1])), key=lambda p: -p[1])[:top]
    return ", ".join(f"{name[0].lower() + name[1:]} {value:.1f}" for name, value in parts)


class XmippQcCompareReprojectionsViewer(ProtocolViewer):
    """Images with reprojections and residuals sorted by score, histograms, ranking, subsets."""

    _label = "viewer compare reprojections"
    _targets = [XmippQcProtCompareReprojections]
    _environments = [DESKTOP_TKINTER]

    def _defineParams(self, form):
        form.addSection(label="Visualization")
        form.addParam("volumeIndex", params.EnumParam, default=self.bestIndex(),
                      choices=self._outputNames() or ["(none yet)"], label="Map",
                      help="The candidate map whose images, scores and residuals are shown "
                           "(at first the best-ranked one).")
        form.addParam("sortBy", params.EnumParam, default=0, choices=[s[0] for s in SORTS],
                      label="Sort by (worst first)",
                      help="Initial order of the table; click a column heading to re-sort.")
        form.addParam("displayTable", params.LabelParam,
                      label="Images, reprojections and residuals",
                      help="One row per image: the aligned image, its reprojection and the "
                           "residual (red above, blue below the gray-fitted reprojection), "
                           "its scores, worst first. Select rows (shift/ctrl-click) and "
                           "press 'Subset from selected rows' to make a new set of them.")
        form.addParam("displayHistograms", params.LabelParam,
                      label="Score histograms",
                      help="One histogram per score; flagged images in red; the outlier "
                           "threshold on the outlier score.")
        form.addParam("displayRanking", params.LabelParam, label="Ranking of the maps",
                      help="Mean score per map with its bootstrap interval, best first.")
        form.addParam("displaySession", params.LabelParam,
                      label="Outlier rate over the session",
                      help="Fraction of flagged particles per micrograph (in acquisition "
                           "order) and per window of particles in order of arrival, with the "
                           "bad-micrograph threshold. Needs particles that carry their "
                           "micrograph (streaming or closed input).")
        form.addParam("displayCtfCheck", params.LabelParam,
                      label="CTF check per micrograph",
                      help="One row per micrograph: whether its CTF is suspect (the CTF as "
                           "given explains its particles clearly worse than a scaled "
                           "defocus, the astigmatism turned by 90°, the phase flipped or no "
                           "CTF), the best defocus scale and the correlation gain; and the "
                           "mean correlation against the defocus scale, one line per "
                           "micrograph. Needs the CTF (Ignore CTF = No) and particles that "
                           "carry their micrograph.")
        form.addParam("keep", params.EnumParam, default=KEEP_INLIERS,
                      choices=["images not flagged", "flagged images"], label="Subset keeps")
        form.addParam("createSubset", params.LabelParam, label="Create the subset",
                      help="Launches a subset protocol with the images chosen above.")

    def _getVisualizeDict(self):
        return {"displayTable": self._showTable, "displayHistograms": self._showHistograms,
                "displayRanking": self._showRanking, "displaySession": self._showSession,
                "displayCtfCheck": self._showCtfCheck, "createSubset": self._createSubset}

    # --------------------------- selection in the form -----------------------
    def _outputNames(self):
        """Output names in id order, the best-ranked map marked ``(best)``."""
        names = list(readOutputsJson(self.protocol._getExtraPath()).values())
        best = self.bestIndex()
        return [f"{n} (best)" if i == best and len(names) > 1 else n
                for i, n in enumerate(names)]

    def bestIndex(self):
        """Position of the best-ranked map among the outputs (0 without a ranking)."""
        table = readRanking(self.protocol._getExtraPath())
        vids = list(readOutputsJson(self.protocol._getExtraPath()))
        best = None if not table else int(str(table["best"]).removeprefix("vol"))
        return vids.index(best) if best in vids else 0

    def _selected(self):
        """``(volumeId, outputName)`` chosen in the form, or None."""
        items = list(readOutputsJson(self.protocol._getExtraPath()).items())
        index = self.volumeIndex.get() or 0
        return items[index] if index < len(items) else None

    def _figure(self, fig, title):
        return FigureView(fig, title=f"{TITLE}: {title}", masterWindow=self.getWindow())

    # --------------------------- the table -----------------------------------
    def tableRows(self, outSet):
        """One dict per output item: id, scores (:data:`COLUMNS`), image locations."""
        rows = []
        for item in outSet.iterItems():
            row = {"id": item.getObjId()}
            for key, attr, _, _ in COLUMNS:
                obj = getattr(item, attr, None) if attr else None
                row[key] = None if obj is None else obj.get()
            row["outlierWhy"] = outlierWhy(item)
            for key, attr in IMAGES:
                row[key] = imageLocation(getattr(item, attr, None))
            rows.append(row)
        return rows

    def _showTable(self, _=None):
        sel = self._selected()
        outSet = getattr(self.protocol, sel[1], None) if sel else None
        if outSet is None:
            return [self.infoMessage("No output yet.", title=TITLE)]
        label, key, descending = SORTS[self.sortBy.get() or 0]
        rows = self.tableRows(outSet)
        flagged = sum(bool(r["isOutlier"]) for r in rows)
        header = (f"Map {sel[0]} ({sel[1]}): {len(rows)} images, {flagged} flagged (outlier "
                  f"score > {OUTLIER_THRESHOLD:g}); sorted by {label}, worst first.\n"
                  "Pictures: aligned image | reprojection | residual (red: image above "
                  "the reprojection, blue: below). Select rows to make a subset of them.")
        why = reason_lines([r["reason"] or "" for r in rows],
                           [np.nan if r["reasonValue"] is None else r["reasonValue"]
                            for r in rows])
        if why:
            header += "\nWhy flagged (column 'reason'):\n  " + "\n  ".join(why)
        return [TableView(self, sel, rows, key, descending, header)]

    def subsetFromRows(self, rows, label=None):
        """Launch a ProtUserSubSet keeping the given table rows of the selected map;
        returns the line the table window shows."""
        if not rows:
            return "Select rows first (click, shift- or ctrl-click)."
        subset = self.launchSubsetIds([r["id"] for r in rows],
                                      label or f"{len(rows)} selected images")
        self.lastSubset = subset
        return f"Launched '{subset.getObjLabel()}'; its output appears in the project."

    # --------------------------- figures -------------------------------------
    def _showHistograms(self, _=None):
        sel = self._selected()
        if sel is None:
            return [self.infoMessage("No scores yet.", title=TITLE)]
        scores = readScores(self.protocol._getExtraPath(), sel[0])
        fig = plots.plot_score_histograms(scores, OUTLIER_THRESHOLD,
                                          is_outlier=scores["isOutlier"],
                                          names=HISTOGRAM_SCORES,
                                          map_name=self.mapNames().get(sel[0], sel[1]))
        return [self._figure(fig, "score histograms")]

    def _showRanking(self, _=None):
        table = readRanking(self.protocol._getExtraPath())
        if table is None:
            return [self.infoMessage("No ranking (a single map, or ranking off).", title=TITLE)]
        return [self._figure(plots.plot_ranking(table, self.mapNames()), "ranking of the maps")]

    def _showSession(self, _=None):
        sel = self._selected()
        session = readSession(self.protocol._getExtraPath(), sel[0]) if sel else None
        if session is None:
            return [self.infoMessage("No session rates: the particles carry no micrograph, "
                                     "or no particle has been scored yet.", title=TITLE)]
        fig = sessionFigure(session, self.protocol.badMicRate.get(),
                            self.protocol.badMicMinParticles.get(),
                            self.mapNames().get(sel[0], sel[1]))
        return [self._figure(fig, "outlier rate over the session")]

    def _showCtfCheck(self, _=None):
        from xmipp_qc.viewers.ctf_check_view import ctfCheckViews

        sel = self._selected()
        views = ctfCheckViews(self.protocol, sel[0], self.mapNames().get(sel[0], sel[1]),
                              TITLE, masterWindow=self.getWindow()) if sel else None
        if views is None:
            return [self.infoMessage("No CTF check: the CTF was ignored, the particles "
                                     "carry no micrograph, or none has been scored yet.",
                                     title=TITLE)]
        return views

    def mapNames(self):
        """``{volumeId: "map <id>: <file name>"}`` of the candidate maps."""
        names = {}
        for vid, vol in self.protocol._iterCandidates():
            label = vol.getObjLabel() or os.path.basename(vol.getFileName() or "")
            names[vid] = f"map {vid}: {label}" if label else f"map {vid}"
        return names

    # --------------------------- subsets -------------------------------------
    def _createSubset(self, _=None):
        if self._selected() is None:
            return [self.infoMessage("No output yet.", title=TITLE)]
        subset = self.launchSubset(self.keep.get())
        return [self.infoMessage(f"Launched '{subset.getObjLabel()}' (ProtUserSubSet); its "
                                 "output appears in the project.", title="Create subset")]

    def launchSubset(self, keep=KEEP_INLIERS, wait=False):
        """Launch a ProtUserSubSet keeping the images (not) flagged in the selected output."""
        volId, name = self._selected()
        wanted = keep == KEEP_OUTLIERS
        ids = [item.getObjId() for item in getattr(self.protocol, name).iterItems()
               if bool(item._qc_isOutlier.get()) == wanted]
        return self.launchSubsetIds(ids, f"{'flagged' if wanted else 'kept'} images",
                                    wait=wait)

    def launchSubsetIds(self, ids, what, wait=False):
        """Launch a ProtUserSubSet of the selected output keeping item ``ids``.

        The selection is written to ``extra/subsets/`` of the protocol; returns
        the new subset protocol.
        """
        volId, name = self._selected()
        outSet = getattr(self.protocol, name)
        folder = self.protocol._getExtraPath("subsets")
        os.makedirs(folder, exist_ok=True)
        tag = what.replace(" ", "_")
        fn = os.path.abspath(os.path.join(folder, f"{name}_{tag}.txt"))
        with open(fn, "w") as fh:
            fh.write(" ".join(str(i) for i in ids))
        project = self.getProject()
        subset = project.newProtocol(ProtUserSubSet, outputClassName=outSet.getClassName(),
                                     sqliteFile=fn + ",")
        subset.inputObject.set(self.protocol)
        subset.inputObject.setExtended(name)
        subset.setObjLabel(f"{what} of map {volId}")
        project.launchProtocol(subset, wait=wait)
        return subset


def rowPicture(row, size=64):
    """Aligned image | reprojection | residual of one table row (RGB array).

    The residual is the saved one when the run saved residuals, otherwise the
    gray-fitted difference computed here by :func:`~xmipp_qc.core.residuals.gray_residuals`.
    """
    if row.get("image") is None or row.get("reprojection") is None:
        return None
    image, reprojection = readImages([row["image"], row["reprojection"]])
    if row.get("residual") is not None:
        residual = readImages([row["residual"]])[0]
    else:
        residual = gray_residuals(image, reprojection)[0][0]
    return thumbnails.strip([thumbnails.grayThumb(image, size),
                             thumbnails.grayThumb(reprojection, size),
                             thumbnails.signedThumb(residual, size)])


class TableView:
    """View opening the per-image table of one map (a pyworkflow View: ``show()``)."""

    def __init__(self, viewer, selected, rows, sortBy, descending, header):
        self.viewer, self.selected, self.rows = viewer, selected, rows
        self.sortBy, self.descending, self.header = sortBy, descending, header
        self.window = None

    def show(self):
        viewer = self.viewer
        columns = [Column(key, label, fmt, width=240, anchor="w") if key == "reason"
                   else Column(key, label, fmt) for key, _, label, fmt in COLUMNS]
        self.window = TableWindow(
            f"{TITLE}: images of map {self.selected[0]}", self.rows, columns,
            picture=rowPicture, pictureLabel="image | reproj. | residual",
            sortBy=self.sortBy, descending=self.descending, header=self.header,
            actions=[("Subset from selected rows", viewer.subsetFromRows)],
            masterWindow=viewer.getWindow())
        self.window.show()
        return self.window
