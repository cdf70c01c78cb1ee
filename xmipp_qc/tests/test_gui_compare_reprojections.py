"""GUI test of the compare-reprojections viewer in real Scipion windows (needs an X display).

A finished run in a real project; the viewer is found and opened as the
project window's "Analyze results" does (``Domain.findViewers``, then
``viewer.visualize(prot, windows=projectWindow)``, which enters Tk's main
loop); from inside that loop every eye button of the form is clicked and each
new window is checked for content and saved as a screenshot.
"""


import numpy as np
import pytest
from pyworkflow import Config

Config.setDomain("pwem")

from pyworkflow.tests import BaseTest, setupTestProject  # noqa: E402

from xmipp_qc.core.outliers import OUTLIER_THRESHOLD  # noqa: E402
from xmipp_qc.protocols import (  # noqa: E402
    XmippQcProtCompareReprojections,
    XmippQcProtSyntheticParticles,
)
from xmipp_qc.tests import gui_driver as gd  # noqa: E402
from xmipp_qc.tests.run_polling import wait_until_ended  # noqa: E402

pytestmark = pytest.mark.scipion
N_IMAGES = 60


class TestCompareReprojectionsGui(BaseTest):
    @classmethod
    def setUpClass(cls):
        gd.requireDisplay()
        setupTestProject(cls)
        cls.syn = cls.newProtocol(XmippQcProtSyntheticParticles, nImages=N_IMAGES, boxSize=32,
                                  outlierFraction=0.05, outlierKinds="junk,wrong_conformation",
                                  decoys="other", seed=11, particlesPerMicrograph=10)
        cls.launchProtocol(cls.syn)
        cls.prot = cls.newProtocol(XmippQcProtCompareReprojections,
                                   inputSet2D=cls.syn.outputParticles,
                                   inputSet3D=cls.syn.outputVolumes, extractOption=1,
                                   chunkSize=30)
        cls.launchProtocol(cls.prot)

    def test_every_eye_button_opens_a_window_with_content(self):
        results = gd.analyzeResults(self.proj, self.prot, self._clickEverything,
                                    "compare_reprojections")
        self.assertEqual(sorted(results), ["form", "histograms", "project", "ranking",
                                           "session", "subset", "table"])

    # --------------------------- the clicks ----------------------------------
    def _clickEverything(self, viewer):
        form = viewer.getWindow()
        gd.pump(form.root, 0.5)
        done = {"form": gd.screenshot(form.root, "compare_reprojections_0_form")}
        done["table"] = self._checkTable(form, viewer)
        done["histograms"] = self._checkHistograms(form)
        done["ranking"] = self._checkRanking(form)
        done["session"] = self._checkSession(form)
        done["subset"] = self._checkSelectionSubset(viewer)
        return done

    def _open(self, form, param):
        before = gd.toplevels(form.root._root())
        gd.click(gd.eyeButton(form, param), settle=1.0)
        new = gd.newWindows(form.root, before)
        self.assertEqual(len(new), 1, f"{param}: expected one new window, got {new}")
        return new[0]

    def _checkTable(self, form, viewer):
        top = self._open(form, "displayTable")
        table = top.qcWindow
        self.table = table
        out = self.prot.reprojections_vol1
        self.assertEqual(len(table.rows), N_IMAGES)
        self.assertEqual(len(table.tree.get_children()), min(N_IMAGES, table.pageSize))
        scores = [r["outlierScore"] for r in table.rows if r["outlierScore"] is not None]
        self.assertEqual(scores, sorted(scores, reverse=True), "worst first")
        saved = {i.getObjId(): i._qc_outlierScore.get() for i in out.iterItems()}
        self.assertEqual(table.rows[0]["id"], max(saved, key=lambda k: saved[k] or -np.inf))
        headings = [table.tree.heading(c)["text"] for c in table.tree["columns"]]
        self.assertTrue(headings[0].startswith("outlier score"), headings)
        self.assertIn("cost", headings)
        pics = [table.pictures[r["id"]] for r in table.pageRows()[:8]]
        self.assertTrue(all(p is not None and p.shape == (64, 3 * 64 + 6, 3) for p in pics))
        for i in range(len(pics) - 1):  # every row its own image, reprojection, residual
            for part in range(3):
                a = pics[i][:, part * 67:part * 67 + 64].astype(int)
                b = pics[i + 1][:, part * 67:part * 67 + 64].astype(int)
                self.assertGreater(np.abs(a - b).mean(), 1.0, f"rows {i}, {i + 1}, part {part}")
        flagged = sum(bool(r["isOutlier"]) for r in table.rows)
        self.assertIn(f"{flagged} flagged (outlier score > {OUTLIER_THRESHOLD:g})",
                      table.headerLabel.cget("text"))
        gd.screenshot(top, "compare_reprojections_1_table")
        return top

    def _checkHistograms(self, form):
        top = self._open(form, "displayHistograms")
        win = top.qcWindow
        axes = win.figure.get_axes()
        self.assertEqual(len(axes), 6)
        self.assertIn("map 1", axes[0].get_title())
        self.assertTrue(all(len(ax.patches) > 0 for ax in axes), "every panel has bars")
        dashed = [ln for ln in axes[0].get_lines() if ln.get_linestyle() == "--"]
        self.assertEqual([ln.get_xdata()[0] for ln in dashed], [OUTLIER_THRESHOLD])
        self.assertTrue(all(not ax.get_lines() for ax in axes[1:]), "threshold only where it is")
        self.assertGreater(win.canvas.get_tk_widget().winfo_width(), 300)
        gd.screenshot(top, "compare_reprojections_2_histograms")
        return top

    def _checkRanking(self, form):
        top = self._open(form, "displayRanking")
        ax = top.qcWindow.figure.get_axes()[0]
        self.assertEqual(len(ax.patches), 2)
        self.assertGreaterEqual(ax.patches[0].get_height(), ax.patches[1].get_height())
        self.assertEqual(len(ax.collections), 1, "bootstrap error bars")
        names = [t.get_text() for t in ax.get_xticklabels()]
        self.assertTrue(all(n.startswith("map ") for n in names), names)
        gd.screenshot(top, "compare_reprojections_3_ranking")
        return top

    def _checkSession(self, form):
        top = self._open(form, "displaySession")
        perMic, perWindow = top.qcWindow.figure.get_axes()
        self.assertIn("map 1", perMic.get_title())
        self.assertIn(f"{N_IMAGES // 10} micrographs", perMic.get_title())
        bars = [p for p in perMic.patches if p.get_height() > 0 or p.get_fill() is False]
        self.assertEqual(len(perMic.patches), N_IMAGES // 10, "one bar per micrograph")
        flagged = sum(bool(i._qc_isOutlier.get()) for i in self.prot.reprojections_vol1)
        perMicFlagged = sum(round(p.get_height() / 100 * 10) for p in bars)
        self.assertEqual(perMicFlagged, flagged, "the rates add up to the flagged particles")
        labels = perMic.get_legend_handles_labels()[1]
        self.assertTrue(any("threshold" in label for label in labels), labels)
        self.assertGreater(len(perWindow.get_lines()[0].get_xdata()), 0)
        window = self.prot.sessionWindow.get()
        self.assertLess(N_IMAGES, window, "this run is shorter than one window")
        self.assertEqual(perWindow.get_legend_handles_labels()[1][0],
                         f"all {N_IMAGES} particles (fewer than one window of {window})")
        self.assertEqual(perWindow.get_xlim()[1], N_IMAGES + 1)
        gd.screenshot(top, "compare_reprojections_5_session")
        return top

    def _checkSelectionSubset(self, viewer):
        table = self.table
        wanted = [r["id"] for r in table.rows[:3]]
        table.tree.selection_set([str(i) for i in wanted])  # as a ctrl-click would
        gd.pump(table.root, 0.3)
        self.assertEqual(sorted(r["id"] for r in table.selectedRows()), sorted(wanted))
        gd.click(table.actionButtons["Subset from selected rows"])
        self.assertIn("Launched", table.status.cget("text"))
        gd.screenshot(table.root, "compare_reprojections_4_table_selection")
        subset = viewer.lastSubset
        wait_until_ended(self.proj, subset, timeout=90,
                         pump=lambda seconds: gd.pump(table.root, seconds))
        self.assertTrue(subset.isFinished(), subset.getErrorMessage())
        out = next(iter(subset.iterOutputAttributes()))[1]
        self.assertEqual(sorted(out.getIdSet()), sorted(wanted))
        return subset.getObjLabel()
