"""Scipion project tests of the per-micrograph CTF check of XmippQcProtCompareReprojections.

The hidden XmippQcProtSyntheticParticles helper makes particles with a CTF,
grouped by micrograph, whose micrographs 3 and 4 report twice the defocus their
images were made with (``wrongCtfMicrographs``). Closed and streaming runs must
name exactly those and output them as ``ctfSuspectMicrographs``; in streaming,
every verdict seen while the run goes on is the final one.
"""

import json
import time

import numpy as np
import pytest
from pyworkflow import Config

Config.setDomain("pwem")

from pyworkflow.tests import BaseTest, setupTestProject  # noqa: E402

from xmipp_qc.formats.star import read_star  # noqa: E402
from xmipp_qc.protocols import (  # noqa: E402
    XmippQcProtCompareReprojections,
    XmippQcProtSyntheticParticles,
)
from xmipp_qc.protocols.compare_reprojections_ctf import readMicrographTable  # noqa: E402
from xmipp_qc.protocols.compare_reprojections_results import readOutputsJson  # noqa: E402
from xmipp_qc.tests.run_polling import refreshed  # noqa: E402

pytestmark = pytest.mark.scipion

PER_MIC, WRONG = 20, (3, 4)
SOURCE = {"boxSize": 40, "samplingRate": 2.5, "snr": 1.0, "maxShift": 1.0, "withCtf": True,
          "particlesPerMicrograph": PER_MIC, "wrongCtfMicrographs": f"{WRONG[0]}-{WRONG[1]}",
          "wrongCtfScale": 2.0}


class TestCompareReprojectionsCtfCheck(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)

    def compare(self, **kwargs):
        kwargs = {"doRanking": False, "chunkSize": 64, "numberOfThreads": 2,
                  "ignoreCTF": False, **kwargs}
        return self.newProtocol(XmippQcProtCompareReprojections, **kwargs)

    @staticmethod
    def volId(prot):
        return next(iter(readOutputsJson(prot._getExtraPath())))

    def assertWrongOnesSuspect(self, prot, nMics):
        vid = self.volId(prot)
        table = readMicrographTable(prot._getExtraPath(), vid)
        names = [f"mic_{m:05d}.mrc" for m in range(1, nMics + 1)]
        self.assertEqual(table["names"], names)
        self.assertEqual(table["particles"], [PER_MIC] * nMics)
        suspect = [m for m, s in zip(table["mic_ids"], table["ctf_suspect"]) if s]
        self.assertEqual(suspect, list(range(WRONG[0], WRONG[1] + 1)))
        for r, m in enumerate(table["mic_ids"]):  # given x2: the best scale undoes it
            lo, hi = (0.4, 0.63) if m in WRONG else (0.79, 1.26)
            self.assertTrue(lo <= table["defocus_scale"][r] <= hi, (m, table["defocus_scale"]))
        self.assertEqual(sorted(prot.ctfSuspectMicrographs.getIdSet()), suspect)
        self.assertTrue(prot.ctfSuspectMicrographs.isStreamClosed())
        star = read_star(prot._getExtraPath(f"micrographs_vol{vid}.star"))["micrographs"]
        self.assertEqual(star.text("rlnMicrographName"), names)
        self.assertEqual([int(v) for v in star.text("xmippQcCtfSuspect")],
                         [int(m in WRONG) for m in range(1, nMics + 1)])
        line = next(x for x in prot.summary() if "CTF check" in x)
        self.assertIn(f"suspect CTF in 2 of {nMics} micrographs", line)
        self.assertIn("mic_00003.mrc", line)
        self.assertIn("mic_00004.mrc", line)
        return table

    def test_closed_run_outputs_the_wrong_ctf_micrographs(self):
        syn = self.newProtocol(XmippQcProtSyntheticParticles, nImages=6 * PER_MIC, seed=31,
                               **SOURCE)
        self.launchProtocol(syn)
        prot = self.compare(numberOfThreads=1)
        prot.inputSet2D.set(syn.outputParticles)
        prot.inputSet3D.set(syn.outputVolume)
        prot.inputMicrographs.set(syn.outputMicrographs)
        self.launchProtocol(prot)
        table = self.assertWrongOnesSuspect(prot, 6)
        self.assertEqual(table["ctf_decided"], [1] * 6)
        scale = np.array(table["defocus_scale"])[np.isin(table["mic_ids"], WRONG)]
        self.assertTrue(np.all(scale < 0.63))

    def test_streaming_verdicts_never_change(self):
        n = 12 * PER_MIC
        src = self.newProtocol(XmippQcProtSyntheticParticles, nImages=n, seed=32, interval=3.0,
                               particlesPerBatch=40, **SOURCE)
        self.proj.launchProtocol(src, wait=False)
        self._waitOutput(src, "outputParticles", sleepTime=1)
        self._waitOutput(src, "outputMicrographs", sleepTime=1)
        prot = self.compare(numberOfThreads=3, burnIn=80)
        for param, name in ((prot.inputSet2D, "outputParticles"),
                            (prot.inputSet3D, "outputVolume"),
                            (prot.inputMicrographs, "outputMicrographs")):
            param.set(src)
            param.setExtended(name)
        self.proj.launchProtocol(prot, wait=False)
        seen, deadline = [], time.time() + 240
        while time.time() < deadline:
            prot = refreshed(self.proj, prot)
            names = readOutputsJson(prot._getExtraPath())
            verdicts = prot._getExtraPath(f"ctf_verdicts_vol{next(iter(names), '')}.json")
            try:
                with open(verdicts) as fh:
                    seen.append((src.isActive(), json.load(fh)))
            except FileNotFoundError:
                pass
            if not prot.isActive():
                break
            src = refreshed(self.proj, src) if src.isActive() else src
            time.sleep(0.5)
        self.assertTrue(prot.isFinished(), f"compare did not finish: {prot.getErrorMessage()}")
        with open(prot._getExtraPath(f"ctf_verdicts_vol{self.volId(prot)}.json")) as fh:
            final = json.load(fh)
        # every verdict seen while the run went on is the final one (that a verdict is
        # frozen when more particles arrive is test_ctf_check_monitor's, deterministic)
        for _, snapshot in seen:
            self.assertEqual({m: final[m] for m in snapshot}, snapshot)
        self.assertEqual(sorted(map(int, final)), list(range(1, 13)))
        self.assertWrongOnesSuspect(prot, 12)
