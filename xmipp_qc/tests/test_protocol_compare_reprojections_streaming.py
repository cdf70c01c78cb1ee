"""Scipion project tests of XmippQcProtCompareReprojections in streaming.

The source is the hidden XmippQcProtSyntheticParticles helper emitting batches
of particles over time, grouped by micrograph, with a junk-rich stretch of bad
micrographs; the compare protocol runs on its open output in a real project.
"""

import glob
import json
import os
import signal
import time

import numpy as np
import pytest
from pyworkflow import Config

Config.setDomain("pwem")

from pyworkflow.protocol.constants import MODE_RESUME  # noqa: E402
from pyworkflow.tests import BaseTest, setupTestProject  # noqa: E402

from xmipp_qc.core import pipeline  # noqa: E402
from xmipp_qc.core.compare_results import burn_in_reference  # noqa: E402
from xmipp_qc.formats.json_files import read_json  # noqa: E402
from xmipp_qc.protocols import (  # noqa: E402
    XmippQcProtCompareReprojections,
    XmippQcProtSyntheticParticles,
)
from xmipp_qc.protocols.compare_reprojections_results import (  # noqa: E402
    readOutputsJson,
    readRanking,
)
from xmipp_qc.protocols.compare_reprojections_session import RUNNING_RANKING  # noqa: E402
from xmipp_qc.protocols.protocol_compare_reprojections import EXTRACT_VOLUME  # noqa: E402
from xmipp_qc.tests.run_polling import refreshed, wait_until_ended  # noqa: E402

pytestmark = pytest.mark.scipion

N, PER_MIC, BAD = 240, 20, (7, 8)


class TestCompareReprojectionsStreaming(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)

    def source(self, seed, interval=2.5, **kwargs):
        params = {"nImages": N, "boxSize": 32, "samplingRate": 3.0, "snr": 1.0,
                  "maxShift": 1.0, "outlierFraction": 0.0, "particlesPerMicrograph": PER_MIC,
                  "badMicrographs": f"{BAD[0]}-{BAD[1]}", "badJunkFraction": 0.9,
                  "interval": interval, "particlesPerBatch": 40, "seed": seed, **kwargs}
        src = self.newProtocol(XmippQcProtSyntheticParticles, **params)
        self.proj.launchProtocol(src, wait=False)
        self._waitOutput(src, "outputParticles", sleepTime=1)
        return src

    def compare(self, src, maps="outputVolume", **kwargs):
        kwargs = {"doRanking": False, "chunkSize": 64, "burnIn": 80, "numberOfThreads": 3,
                  **kwargs}
        prot = self.newProtocol(XmippQcProtCompareReprojections, **kwargs)
        for param, name in ((prot.inputSet2D, "outputParticles"), (prot.inputSet3D, maps)):
            param.set(src)  # pointers to the (still growing) outputs, as the GUI makes them
            param.setExtended(name)
        return prot

    def refreshed(self, prot):
        return refreshed(self.proj, prot)

    def flagsOf(self, outSet):
        return {item.getObjId(): bool(item._qc_isOutlier.get()) for item in outSet}

    def ended(self, prot, timeout=200):
        """``prot`` once it has ended (a state that stays true), asserted finished."""
        prot = wait_until_ended(self.proj, prot, timeout)
        self.assertTrue(prot.isFinished(), f"{prot.getRunName()}: {prot.getErrorMessage()}")
        return prot

    def savedWhileOpen(self, prot, vid, src):
        """{id: flag} of the chunks whose scores were saved (before their items were
        output, never rewritten) before the source wrote its last batch."""
        with open(src._getExtraPath("arrivals.txt")) as fh:
            lastBatch = float(fh.read().split()[-2])
        early = {}
        for fn in glob.glob(prot._getExtraPath(f"vol{vid}", "scores_*.npz")):
            if os.path.getmtime(fn) < lastBatch:
                with np.load(fn) as z:
                    early.update(zip(z["ids"].tolist(), z["isOutlier"].tolist()))
        return early

    def test_streaming_final_flags_burn_in_bad_micrographs_ranking(self):
        src = self.source(seed=21, decoys="mirrored", truePosition=1, blankImages="3,150")
        self._waitOutput(src, "outputMicrographs", sleepTime=1)
        prot = self.compare(src, maps="outputVolumes", doRanking=True,
                            extractOption=EXTRACT_VOLUME, badMicMinParticles=10,
                            badMicRate=0.5, sessionWindow=40)
        prot.inputMicrographs.set(src)
        prot.inputMicrographs.setExtended("outputMicrographs")
        self.proj.launchProtocol(prot, wait=False)
        prot, src = self.ended(prot), self.ended(src)
        names = readOutputsJson(prot._getExtraPath())
        self.assertEqual(len(names), 2)
        vid, name = sorted(names.items())[0]  # the true map
        early = self.savedWhileOpen(prot, vid, src)
        out = getattr(prot, name)
        self.assertTrue(out.isStreamClosed())
        ids = [item.getObjId() for item in out]
        self.assertEqual(sorted(ids), list(range(1, N + 1)))  # all, once
        final = self.flagsOf(out)
        self.assertGreater(len(early), 0, "nothing output before the input closed")
        self.assertEqual({i: final[i] for i in early}, early)  # flags final when emitted
        self.assertBurnIn(prot, f"vol{vid}")
        self.assertBadStretchFound(prot, {i: f for i, f in final.items() if i not in (3, 150)})
        for item in out.iterItems(where="id IN (3, 150)"):  # one in the burn-in, one after
            self.assertTrue(item._qc_isOutlier.get())
            self.assertEqual(item._qc_reason.get(), "constant_image")
        self.assertEqual(sorted(prot.badMicrographs.getIdSet()), list(range(BAD[0], BAD[1] + 1)))
        self.assertTrue(prot.badMicrographs.isStreamClosed())
        with open(prot._getExtraPath(f"session_vol{vid}.json")) as fh:
            session = json.load(fh)
        self.assertEqual(session["n_output"], N)
        self.assertEqual(session["mic_ids"], list(range(1, N // PER_MIC + 1)))
        self.assertEqual(session["bad_mics"], list(range(BAD[0], BAD[1] + 1)))
        self.assertGreater(os.path.getsize(prot._getExtraPath(f"session_vol{vid}.png")), 5000)
        running = read_json(prot._getExtraPath(RUNNING_RANKING))  # saved, kept at the end
        self.assertIsNotNone(running, "no running ranking while streaming")
        self.assertTrue(running["running"])
        self.assertEqual(running["best"], vid)
        # written by the stream step only; its last update may already hold every particle
        self.assertGreater(running["n_output"], 0)
        self.assertLessEqual(running["n_output"], N)
        table = readRanking(prot._getExtraPath())
        self.assertFalse(table.get("running", False))
        self.assertEqual((table["best"], table["n_images"], table["n_excluded"]),
                         (vid, N - 2, 2))  # the two blank images
        self.assertTrue(prot.bestVolume.getFileName().endswith("map_01.mrc"))

    def assertBurnIn(self, prot, vol):
        with open(prot._getExtraPath(vol, "reference.json")) as fh:
            ref = json.load(fh)
        self.assertFalse(ref.get("whole_set", False))
        self.assertGreaterEqual(ref["n_images"], 80)
        self.assertLess(ref["n_images"], N)
        results = [pipeline.ChunkResult.load(prot._getExtraPath(vol, f"chunk_{k:05d}.npz"))
                   for k in ref["chunks"]]
        self.assertEqual(sum(len(r.ids) for r in results), ref["n_images"])
        again = burn_in_reference(results, components=ref["components"])
        np.testing.assert_allclose(again["location_scale"]["combined"],
                                   ref["location_scale"]["combined"], rtol=1e-12)
        # a later chunk's scores are its images against the saved reference alone
        last = sorted(glob.glob(prot._getExtraPath(vol, "chunk_*.npz")))[-1]
        k = int(os.path.basename(last)[6:11])
        with np.load(prot._getExtraPath(vol, f"scores_{k:05d}.npz")) as z:
            saved = z["outlierScore"]
        alone = pipeline.finalize([pipeline.ChunkResult.load(last)], reference=ref)
        np.testing.assert_allclose(saved, alone["outlierScore"], rtol=1e-12)
        self.assertIn("burn-in statistics fixed on the first", "\n".join(prot.summary()))

    def assertBadStretchFound(self, prot, final):
        mics = np.array([(i - 1) // PER_MIC + 1 for i in sorted(final)])
        flags = np.array([final[i] for i in sorted(final)])
        rates = np.array([flags[mics == m].mean() for m in range(1, N // PER_MIC + 1)])
        worst = set((np.argsort(-rates)[:2] + 1).tolist())
        self.assertEqual(worst, set(BAD), rates)
        self.assertGreater(rates[BAD[0] - 1:BAD[1]].min(), 0.5, rates)
        self.assertLess(np.delete(rates, [b - 1 for b in BAD]).max(), 0.3, rates)

    def test_kill_and_continue_every_particle_once_nothing_reflagged(self):
        src = self.source(seed=23, interval=2.0)
        prot = self.compare(src)
        self.proj.launchProtocol(prot, wait=False)
        scores = prot._getExtraPath("vol*", "scores_*.npz")
        deadline = time.time() + 90
        while time.time() < deadline and len(glob.glob(scores)) < 2:
            time.sleep(0.2)
        prot = self.refreshed(prot)
        self.assertFalse(prot.isFinished(), "too late to kill")
        os.kill(prot.getPid(), signal.SIGKILL)
        before = {fn: open(fn, "rb").read() for fn in glob.glob(scores)}
        (vid, name), = readOutputsJson(prot._getExtraPath()).items()
        with open(prot._getExtraPath(f"vol{vid}", "reference.json")) as fh:
            reference = fh.read()
        while src.isActive():
            time.sleep(0.5)
            src = self.refreshed(src)
        time.sleep(2.5)  # a survivor would have scored the rest by now
        self.assertEqual(set(glob.glob(scores)), set(before), "not killed")
        self.assertLess(len(before), 5)
        prot = self.proj.getProtocol(prot.getObjId())
        prot.runMode.set(MODE_RESUME)
        self.proj.launchProtocol(prot, wait=True, force=True)
        prot = self.refreshed(prot)
        self.assertTrue(prot.isFinished(), prot.getErrorMessage())
        ids = [item.getObjId() for item in getattr(prot, name)]
        self.assertEqual(sorted(ids), list(range(1, N + 1)))  # every particle exactly once
        for fn, data in before.items():  # nothing re-scored or re-flagged
            self.assertEqual(open(fn, "rb").read(), data, fn)
        with open(prot._getExtraPath(f"vol{vid}", "reference.json")) as fh:
            self.assertEqual(fh.read(), reference)
        final = self.flagsOf(getattr(prot, name))
        for fn in before:
            with np.load(fn) as z:
                for i, flag in zip(z["ids"], z["isOutlier"]):
                    self.assertEqual(final[int(i)], bool(flag), i)

    def test_session_shorter_than_burn_in_scores_like_a_closed_run(self):
        src = self.source(seed=25, interval=1.0, nImages=120, badMicrographs="")
        streamed = self.compare(src, burnIn=10000)
        self.proj.launchProtocol(streamed, wait=False)
        streamed = self.ended(streamed)
        (vid, name), = readOutputsJson(streamed._getExtraPath()).items()
        with open(streamed._getExtraPath(f"vol{vid}", "reference.json")) as fh:
            self.assertTrue(json.load(fh)["whole_set"])
        closed = self.compare(self.refreshed(src), chunkSize=40, numberOfThreads=1)
        self.launchProtocol(closed)
        self.assertFalse(closed.streamingRun.get())
        got, want = (self.itemScores(getattr(p, name)) for p in (streamed, closed))
        self.assertEqual(sorted(got), list(range(1, 121)))
        self.assertEqual({i: v[1] for i, v in got.items()}, {i: v[1] for i, v in want.items()})
        np.testing.assert_allclose([got[i][0] for i in sorted(got)],
                                   [want[i][0] for i in sorted(got)], rtol=1e-7, atol=1e-9)
        for prot in (streamed, closed):  # session rates also from a closed run
            with open(prot._getExtraPath(f"session_vol{vid}.json")) as fh:
                session = json.load(fh)
            self.assertEqual(session["mic_ids"], list(range(1, 7)))
            self.assertEqual(session["mic_counts"], [PER_MIC] * 6)
            self.assertEqual(session["n_flagged"], sum(v[1] for v in want.values()))

    def itemScores(self, outSet):
        return {item.getObjId(): (item._qc_outlierScore.get(), bool(item._qc_isOutlier.get()))
                for item in outSet}
