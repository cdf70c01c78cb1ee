"""GUI test of the CTF check view of the compare-reprojections viewer (needs an X display).

A finished run with the CTF on particles of 6 micrographs, 3 and 4 reporting
twice their true defocus, in a real project; "Analyze results" is pressed in
the project window and the "CTF check per micrograph" eye button clicked: a
micrograph table and the correlation-against-defocus-scale figure open, their
content is checked and both are saved as screenshots (``gui_driver``).
"""

import numpy as np
import pytest
from pyworkflow import Config

Config.setDomain("pwem")

from pyworkflow.tests import BaseTest, setupTestProject  # noqa: E402

from xmipp_qc.core.ctf_check import DEFOCUS_SCALES  # noqa: E402
from xmipp_qc.protocols import (  # noqa: E402
    XmippQcProtCompareReprojections,
    XmippQcProtSyntheticParticles,
)
from xmipp_qc.tests import gui_driver as gd  # noqa: E402

pytestmark = pytest.mark.scipion
PER_MIC, N_MICS, WRONG = 20, 6, (3, 4)


class TestCtfCheckGui(BaseTest):
    @classmethod
    def setUpClass(cls):
        gd.requireDisplay()
        setupTestProject(cls)
        cls.syn = cls.newProtocol(XmippQcProtSyntheticParticles, nImages=N_MICS * PER_MIC,
                                  boxSize=40, samplingRate=2.5, snr=1.0, maxShift=1.0,
                                  withCtf=True, particlesPerMicrograph=PER_MIC,
                                  wrongCtfMicrographs=f"{WRONG[0]}-{WRONG[1]}",
                                  wrongCtfScale=2.0, seed=33)
        cls.launchProtocol(cls.syn)
        cls.prot = cls.newProtocol(XmippQcProtCompareReprojections,
                                   inputSet2D=cls.syn.outputParticles,
                                   inputSet3D=cls.syn.outputVolume, ignoreCTF=False,
                                   inputMicrographs=cls.syn.outputMicrographs,
                                   doRanking=False, chunkSize=60, numberOfThreads=1)
        cls.launchProtocol(cls.prot)

    def test_ctf_check_button_opens_the_table_and_the_plot(self):
        results = gd.analyzeResults(self.proj, self.prot, self._click, "ctf_check")
        self.assertEqual(sorted(results), ["figure", "project", "table"])

    def _click(self, viewer):
        form = viewer.getWindow()
        gd.pump(form.root, 0.5)
        before = gd.toplevels(form.root._root())
        gd.click(gd.eyeButton(form, "displayCtfCheck"), settle=1.5)
        new = gd.newWindows(form.root, before)
        self.assertEqual(len(new), 2, f"expected a table and a figure, got {new}")
        table = next(w for w in new if hasattr(w.qcWindow, "tree"))
        figure = next(w for w in new if hasattr(w.qcWindow, "figure"))
        return {"table": self._checkTable(table), "figure": self._checkFigure(figure)}

    def _checkTable(self, top):
        table = top.qcWindow
        self.assertEqual(len(table.rows), N_MICS)
        self.assertEqual(len(table.tree.get_children()), N_MICS)
        first = [r["id"] for r in table.rows[:2]]
        self.assertEqual(sorted(first), list(WRONG), "suspect ones first (largest gain)")
        self.assertEqual({r["id"] for r in table.rows if r["ctf_suspect"]}, set(WRONG))
        for r in table.rows:
            self.assertEqual(r["name"], f"mic_{r['id']:05d}.mrc")
            self.assertEqual(r["particles"], PER_MIC)
            if r["id"] in WRONG:
                self.assertTrue(0.4 <= r["defocus_scale"] <= 0.63, r)
        headings = [table.tree.heading(c)["text"] for c in table.tree["columns"]]
        self.assertEqual(headings[:2], ["micrograph", "CTF suspect"])
        values = table.tree.item(table.tree.get_children()[0])["values"]
        self.assertEqual(values[1], "yes")
        self.assertIn("2 of 6 micrographs with a suspect CTF", table.headerLabel.cget("text"))
        return gd.screenshot(top, "ctf_check_1_table")

    def _checkFigure(self, top):
        win = top.qcWindow
        ax = win.figure.get_axes()[0]
        self.assertIn("2 of 6 micrographs with a suspect CTF", ax.get_title())
        self.assertIn("Defocus scale", ax.get_xlabel())
        self.assertIn("correlation", ax.get_ylabel().lower())
        curves = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == len(DEFOCUS_SCALES)]
        self.assertEqual(len(curves), N_MICS, "one line per micrograph")
        labels = ax.get_legend_handles_labels()[1]
        suspect = [label for label in labels if "SUSPECT" in label]
        self.assertEqual(len(suspect), 2)
        self.assertTrue(suspect[0].startswith("mic_0000"), suspect)
        self.assertIn("CTF as given (x1)", labels)
        for ln in curves:  # the suspect curves peak below x1, the others at it
            peak = np.asarray(ln.get_xdata())[np.argmax(ln.get_ydata())]
            self.assertTrue(peak < 0.8 if "SUSPECT" in ln.get_label() else 0.7 < peak < 1.5,
                            (ln.get_label(), peak))
        self.assertGreater(win.canvas.get_tk_widget().winfo_width(), 300)
        return gd.screenshot(top, "ctf_check_2_figure")
