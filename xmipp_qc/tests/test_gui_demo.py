"""GUI test of the demo as a newcomer meets it: every view of both viewers shows something.

The demo's own protocols (:mod:`xmipp_qc.demo`: synthetic movies and their
consensus; 300 synthetic particles on 30 micrographs with a bad stretch, against
3 candidate maps) run in a real project; Scipion's project window is opened and
"Analyze results" pressed for each run (:mod:`xmipp_qc.tests.gui_driver`); every
view button of each viewer's form is clicked and must open a window with
content (a table with rows, a figure with data), never a "nothing to show"
message. The compare viewer opens on the best-ranked map. The session view's
screenshot is also copied to ``$XMIPP_QC_NOTES`` when that is set.
"""

import json
import os
import shutil

import numpy as np
import pytest
from pyworkflow import Config

Config.setDomain("pwem")

from pyworkflow.tests import BaseTest, setupTestProject  # noqa: E402

from xmipp_qc import demo  # noqa: E402
from xmipp_qc.core.reasons import OUTLIER  # noqa: E402
from xmipp_qc.protocols import XmippQcProtSyntheticParticles  # noqa: E402
from xmipp_qc.protocols.compare_reprojections_results import (  # noqa: E402
    readOutputsJson,
    readRanking,
)
from xmipp_qc.protocols.compare_reprojections_session import readSession  # noqa: E402
from xmipp_qc.tests import gui_driver as gd  # noqa: E402

pytestmark = pytest.mark.scipion
SHOT = "demo"
COMPARE_VIEWS = ("displayTable", "displayHistograms", "displayRanking", "displaySession")
MOVIE_VIEWS = ("displayAccepted", "displayDiscarded", "displayScatter", "displayHistograms",
               "displayMotion", "displayTrajectory")


class TestDemoGui(BaseTest):
    @classmethod
    def setUpClass(cls):
        gd.requireDisplay()
        setupTestProject(cls)
        cls.movies = demo.demoMovieConsensus(cls.proj, 0)
        cls.compare = demo.demoCompareReprojections(cls.proj, 0)
        syn, = [p for p in cls.proj.getRuns() if isinstance(p, XmippQcProtSyntheticParticles)]
        with open(syn._getExtraPath("truth.json")) as fh:
            cls.truth = json.load(fh)

    def _open(self, form, param):
        before = gd.toplevels(form.root._root())
        gd.click(gd.eyeButton(form, param), settle=1.5)
        new = gd.newWindows(form.root, before)
        self.assertEqual(len(new), 1, f"{param}: expected one new window, got {new}")
        top = new[0]
        self.assertTrue(hasattr(top, "qcWindow"), f"{param}: a message instead of a view: "
                        f"{gd.texts(top)}")
        return top

    def assertHasContent(self, top, param):
        win = top.qcWindow
        if hasattr(win, "rows"):
            self.assertGreater(len(win.rows), 0, param)
        else:
            axes = win.figure.get_axes()
            drawn = sum(len(ax.lines) + len(ax.patches) + len(ax.collections) for ax in axes)
            self.assertGreater(drawn, 0, f"{param}: an empty figure")

    # --------------------------- compare reprojections -----------------------
    def test_compare_viewer_opens_on_best_map_and_every_view_shows_something(self):
        results = gd.analyzeResults(self.proj, self.compare, self._clickCompare, f"{SHOT}_cr")
        self.assertEqual(sorted(results), sorted(["form", "project", *COMPARE_VIEWS]))

    def _clickCompare(self, viewer):
        form = viewer.getWindow()
        gd.pump(form.root, 0.5)
        done = {"form": gd.screenshot(form.root, f"{SHOT}_cr_0_form")}
        extra = self.compare._getExtraPath()
        best, outputs = int(readRanking(extra)["best"]), readOutputsJson(extra)
        self.assertEqual(best, int(self.truth["trueVolumeId"]))  # the true map ranks first
        self.assertEqual(list(outputs).index(best), 1)  # ... and is not the first
        self.assertEqual(viewer.volumeIndex.get(), 1)  # the form opens on it
        self.assertEqual(viewer._outputNames()[1], f"{outputs[best]} (best)")
        for param in COMPARE_VIEWS:
            top = self._open(form, param)
            self.assertHasContent(top, param)
            done[param] = gd.screenshot(top, f"{SHOT}_cr_{param}")
            if param == "displayTable":
                self._checkTable(top, best)
            if param == "displaySession":
                self._checkSession(top, best, done[param])
        return done

    def _checkTable(self, top, best):
        table = top.qcWindow
        self.assertEqual(len(table.rows), 300)
        self.assertIn(f"Map {best} ", table.headerLabel.cget("text"))
        flagged = sum(r["reason"] == OUTLIER for r in table.rows)
        self.assertGreater(flagged, 0)
        self.assertIn(f"{flagged} x {OUTLIER}", table.headerLabel.cget("text"))
        flaggedIds = [r["id"] for r in table.rows if r["isOutlier"]]  # what is flagged is planted
        self.assertGreaterEqual(np.isin(flaggedIds, self.truth["outlierIds"]).mean(), 0.9)

    def _checkSession(self, top, best, shot):
        perMic, perWindow = top.qcWindow.figure.get_axes()
        self.assertIn(f"map {best}", perMic.get_title())
        self.assertIn("30 micrographs", perMic.get_title())
        self.assertEqual(len(perMic.patches), 30)
        bars = sorted(perMic.patches, key=lambda p: p.get_x())  # bad ones are drawn last
        rates = np.array([p.get_height() for p in bars])  # % flagged, micrographs 1..30
        lo, hi = (int(x) for x in demo.BAD_MICROGRAPHS.split("-"))
        stretch = np.arange(lo - 1, hi)
        self.assertGreaterEqual(rates[stretch].min(), 50.0, rates)  # the bad stretch
        # elsewhere ~18% of the particles are planted outliers (3% of each of 6 kinds)
        self.assertLess(np.median(np.delete(rates, stretch)), 30.0, rates)
        self.assertGreater(len(perWindow.get_lines()[0].get_xdata()), 0)
        session = readSession(self.compare._getExtraPath(), best)
        bad = set(session["bad_mics"])
        self.assertLessEqual(set(range(lo, hi + 1)), bad)
        mics = np.array(self.truth["micIds"])
        planted = np.isin(np.arange(1, len(mics) + 1), self.truth["outlierIds"])
        for m in bad - set(range(lo, hi + 1)):  # by chance rich in planted outliers
            self.assertGreaterEqual(planted[mics == m].sum(), 4, m)
        notes = os.environ.get("XMIPP_QC_NOTES")
        if notes:
            shutil.copy(shot, os.path.join(notes, "issue-23-demo-session.png"))

    # --------------------------- movie consensus -----------------------------
    def test_movie_viewer_every_view_shows_something(self):
        results = gd.analyzeResults(self.proj, self.movies, self._clickMovies, f"{SHOT}_mc")
        self.assertEqual(sorted(results), sorted(["form", "project", *MOVIE_VIEWS]))

    def _clickMovies(self, viewer):
        form = viewer.getWindow()
        gd.pump(form.root, 0.5)
        done = {"form": gd.screenshot(form.root, f"{SHOT}_mc_0_form")}
        for param in MOVIE_VIEWS:
            top = self._open(form, param)
            self.assertHasContent(top, param)
            done[param] = gd.screenshot(top, f"{SHOT}_mc_{param}")
        return done
