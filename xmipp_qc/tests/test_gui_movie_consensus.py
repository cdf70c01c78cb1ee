"""GUI test of the movie-consensus viewer in real Scipion windows (needs an X display).

A finished run in a real project (6 movies: 2 agree, 1 mirrored per 3, movie 6
never aligned by the secondary run); Scipion's project window is opened, the
run selected and "Analyze results" pressed; every eye button of the viewer's
form is clicked and each new window checked for content and saved as a
screenshot (see :mod:`xmipp_qc.tests.gui_driver`).
"""

import numpy as np
import pytest
from pyworkflow import Config

Config.setDomain("pwem")

from pyworkflow.tests import BaseTest, setupTestProject  # noqa: E402

from xmipp_qc.tests import gui_driver as gd  # noqa: E402
from xmipp_qc.tests.movie_consensus_runs import launchFinishedConsensus  # noqa: E402

pytestmark = pytest.mark.scipion
SHOT = "movie_consensus"


class TestMovieConsensusGui(BaseTest):
    @classmethod
    def setUpClass(cls):
        gd.requireDisplay()
        setupTestProject(cls)
        launchFinishedConsensus(cls)

    def test_every_eye_button_opens_a_window_with_content(self):
        results = gd.analyzeResults(self.proj, self.prot, self._clickEverything, SHOT)
        self.assertEqual(sorted(results), ["accepted", "discarded", "form", "histograms",
                                           "missing", "motion", "project", "row",
                                           "scatter", "trajectory"])

    # --------------------------- the clicks ----------------------------------
    def _clickEverything(self, viewer):
        form = viewer.getWindow()
        gd.pump(form.root, 0.5)
        done = {"form": gd.screenshot(form.root, f"{SHOT}_0_form")}
        done["accepted"] = self._checkAccepted(form)
        done["discarded"] = self._checkDiscarded(form)
        done["row"] = self._checkRowTrajectory(form)
        done["scatter"] = self._checkScatter(form)
        done["histograms"] = self._checkHistograms(form)
        done["motion"] = self._checkMotion(form)
        done["trajectory"] = self._checkTrajectory(form)
        done["missing"] = self._checkMissingMessage(form)
        return done

    def _open(self, form, param, settle=1.0):
        before = gd.toplevels(form.root._root())
        gd.click(gd.eyeButton(form, param), settle=settle)
        new = gd.newWindows(form.root, before)
        self.assertEqual(len(new), 1, f"{param}: expected one new window, got {new}")
        return new[0]

    def _checkAccepted(self, form):
        top = self._open(form, "displayAccepted")
        table = top.qcWindow
        accepted = sorted(m.getObjId() for m in self.prot.outputMovies)
        self.assertEqual(sorted(r["id"] for r in table.rows), accepted)
        self.assertEqual(len(table.tree.get_children()), len(accepted))
        self.assertTrue(all(r["reason"] == "accepted" for r in table.rows))
        pics = [table.pictures[r["id"]] for r in table.rows]
        self.assertTrue(all(p is not None and p.shape == (64, 64, 3) for p in pics))
        for a, b in zip(pics, pics[1:]):  # every movie its own trajectories
            self.assertGreater(np.abs(a.astype(int) - b.astype(int)).mean(), 1.0)
        headings = [table.tree.heading(c)["text"] for c in table.tree["columns"]]
        self.assertIn("RMSE (px)", headings)
        self.assertIn("decision", headings)
        gd.screenshot(top, f"{SHOT}_1_accepted")
        return top

    def _checkDiscarded(self, form):
        top = self._open(form, "displayDiscarded")
        table = top.qcWindow
        self.discarded = table
        self.assertEqual(len(table.rows), 3)
        missing = next(r for r in table.rows if r["id"] == 6)
        self.assertEqual(missing["reason"], "missing")
        self.assertEqual(missing["message"], "movie missing from the secondary run")
        self.assertIsNone(table.pictures[6])
        others = [table.pictures[r["id"]] for r in table.rows if r["id"] != 6]
        self.assertTrue(all(p is not None for p in others))
        gd.screenshot(top, f"{SHOT}_2_discarded")
        return top

    def _checkRowTrajectory(self, form):
        table = self.discarded
        table.tree.selection_set(["6"])  # the movie without partner
        gd.pump(table.root, 0.2)
        gd.click(table.actionButtons["Trajectories"])
        self.assertIn("missing from the secondary run", table.status.cget("text"))
        gd.screenshot(table.root, f"{SHOT}_3_discarded_missing_selected")
        row = next(r for r in table.rows if r["reason"] != "missing")
        before = gd.toplevels(form.root._root())
        x, y, _, h = table.tree.bbox(str(row["id"]), "#1")
        gd.doubleClick(table.tree, x + 5, y + h // 2)
        new = gd.newWindows(form.root, before)
        self.assertEqual(len(new), 1)
        fig = new[0].qcWindow.figure
        self.assertIn(f"movie {row['id']}", fig.get_suptitle())
        gd.screenshot(new[0], f"{SHOT}_4_row_{row['id']}_trajectories")
        return new[0]

    def _checkScatter(self, form):
        top = self._open(form, "displayScatter")
        ax = top.qcWindow.figure.axes[0]
        points = sum(len(c.get_offsets()) for c in ax.collections)
        self.assertEqual(points, 5)  # 6 decided, 1 missing
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        self.assertIn("accepted (3)", labels)
        self.assertIn("discarded (2)", labels)
        self.assertIn("1 missing", ax.get_title())
        gd.screenshot(top, f"{SHOT}_5_corr_vs_rmse")
        return top

    def _checkHistograms(self, form):
        top = self._open(form, "displayHistograms")
        axes = [ax for ax in top.qcWindow.figure.axes if ax.get_visible()]
        self.assertEqual(len(axes), 4)
        for ax in axes:
            self.assertEqual(sum(p.get_height() for p in ax.patches), 5)
        gd.screenshot(top, f"{SHOT}_6_histograms")
        return top

    def _checkMotion(self, form):
        top = self._open(form, "displayMotion")
        ax = top.qcWindow.figure.axes[0]
        total = next(ln for ln in ax.get_lines() if ln.get_label() == "total (reference)")
        self.assertEqual(list(total.get_xdata()), [1, 2, 3, 4, 5])
        self.assertEqual(ax.get_xlabel(), "movie id")
        gd.screenshot(top, f"{SHOT}_7_accumulated_motion")
        return top

    def _checkTrajectory(self, form):
        form.setVar("movieId", 2)  # typed into the form
        top = self._open(form, "displayTrajectory")
        fig = top.qcWindow.figure
        self.assertIn("movie 2", fig.get_suptitle())
        self.assertEqual(len(fig.axes[0].get_lines()[0].get_xdata()), 12)
        gd.screenshot(top, f"{SHOT}_8_trajectories_movie_2")
        return top

    def _checkMissingMessage(self, form):
        """Movie 6 has no partner: the eye button answers with a message window."""
        form.setVar("movieId", 6)
        seen = {}
        before = gd.toplevels(form.root._root())

        def closeDialog():  # the message is modal: look at it, then close it
            new = gd.newWindows(form.root, before)
            seen["windows"] = new
            if new:
                seen["shot"] = gd.screenshot(new[0], f"{SHOT}_9_missing_movie_message")
                seen["text"] = " ".join(gd.texts(new[0]))
                new[0].destroy()

        form.root.after(1500, closeDialog)
        gd.eyeButton(form, "displayTrajectory").invoke()
        self.assertEqual(len(seen.get("windows", [])), 1)
        self.assertIn("missing from the secondary run", seen["text"])
        return seen["shot"]
