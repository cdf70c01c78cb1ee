"""Headless tests of the movie-consensus ProtocolViewer (handlers, never .visualize())."""

import numpy as np
import pytest
from pyworkflow import Config

Config.setDomain("pwem")

from pyworkflow.tests import BaseTest, setupTestProject  # noqa: E402

from xmipp_qc.protocols.protocol_movie_alignment_consensus import (  # noqa: E402
    readDecisionRecords,
)
from xmipp_qc.tests.movie_consensus_runs import launchFinishedConsensus  # noqa: E402
from xmipp_qc.viewers import XmippQcConsensusMovieAlignmentViewer  # noqa: E402

pytestmark = pytest.mark.scipion


class TestMovieConsensusViewer(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        launchFinishedConsensus(cls)

    def _viewer(self):
        viewer = XmippQcConsensusMovieAlignmentViewer(project=self.proj, protocol=self.prot)
        viewer.setProtocol(self.prot)
        return viewer

    def _handler(self, viewer, name):
        return viewer._getVisualizeDict()[name](name)

    def test_viewer_targets_the_protocol(self):
        found = Config.getDomain().findViewers(self.prot, "tkinter")
        self.assertIn(XmippQcConsensusMovieAlignmentViewer, found)

    def test_scatter_plots_every_compared_movie_with_thresholds(self):
        records = readDecisionRecords(self.prot._getExtraPath())
        self.assertEqual(len(records), 6)
        (view,) = self._handler(self._viewer(), "displayScatter")
        ax = view.getFigure().axes[0]
        offsets = [c.get_offsets() for c in ax.collections]
        self.assertEqual(sum(len(o) for o in offsets), 5, "missing movie 6 is not a point")
        points = np.concatenate(offsets)
        compared = [r for r in records if r["reason"] != "missing"]
        np.testing.assert_allclose(sorted(points[:, 0]), sorted(r["corr"] for r in compared))
        np.testing.assert_allclose(sorted(points[:, 1]), sorted(r["rmse_px"] for r in compared))
        self.assertEqual([ln.get_xdata()[0] for ln in ax.lines if ln.get_linestyle() == "--"],
                         [0.75])
        self.assertEqual([ln.get_ydata()[0] for ln in ax.lines if ln.get_linestyle() == ":"],
                         [0.5])
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        self.assertIn("accepted (3)", labels)
        self.assertIn("discarded (2)", labels)  # + 1 missing = 6 decided
        self.assertIn("not plotted (no metrics): 1 missing", ax.get_title())

    def test_histograms_and_motion_use_saved_results(self):
        viewer = self._viewer()
        (hist,) = self._handler(viewer, "displayHistograms")
        counts = sum(p.get_height() for p in hist.getFigure().axes[0].patches)
        self.assertEqual(counts, 5)
        (motion,) = self._handler(viewer, "displayMotion")
        ax = motion.getFigure().axes[0]
        records = readDecisionRecords(self.prot._getExtraPath())
        np.testing.assert_allclose(ax.lines[0].get_ydata(),
                                   [r["total_ref_px"] for r in records[:5]])

    def test_trajectory_of_one_movie_and_tables(self):
        viewer = self._viewer()
        viewer.movieId.set(2)
        (traj,) = self._handler(viewer, "displayTrajectory")
        fig = traj.getFigure()
        ax = fig.axes[0]
        self.assertIn("movie 2", fig.get_suptitle() + ax.get_title())
        self.assertEqual(len(ax.lines[0].get_xdata()), 12)
        (accepted,) = self._handler(viewer, "displayAccepted")
        (discarded,) = self._handler(viewer, "displayDiscarded")
        self.assertEqual(sorted(r["id"] for r in accepted.rows),
                         sorted(m.getObjId() for m in self.prot.outputMovies))
        self.assertEqual(len(discarded.rows), 3)
        missing = next(r for r in discarded.rows if r["id"] == 6)
        self.assertEqual((missing["reason"], missing["message"]),
                         ("missing", "movie missing from the secondary run"))
        self.assertIsNone(viewer._rowPicture(discarded.records[6]))
        self.assertEqual(viewer._rowPicture(discarded.records[2]).shape, (64, 64, 3))
        self.assertIn("missing from the secondary run", viewer.trajectoryText(6))
        self.assertIsNone(viewer.trajectoryText(2))
        self.assertEqual(self.prot.outputMovies.getSize(), 3)
        summary = self.prot.summary()
        self.assertEqual(summary[2], f"Reference run: {self.ref.getRunName()}; secondary "
                                     f"run: {self.sec.getRunName()}.")
        self.assertEqual(summary[3:], [  # the reference run makes no micrographs
            f"The micrographs of the reference run never appeared: run "
            f"'{self.ref.getRunName()}' finished without producing outputMicrographs or "
            "outputMicrographsDoseWeighted."])
        self.assertEqual(self.prot.outputMoviesDiscarded.getSize(), 3)
