"""Compare reprojections fed by producers that misbehave, in real projects.

The producers are XmippQcProtSyntheticParticles runs in streaming (particles
grouped by micrograph, a junk-rich stretch of bad micrographs): micrographs
output some batches after their particles (the micrograph output appears after
the compare run started), micrographs from another, much slower run, a run
that fails mid-stream and is then continued, a run that closes without any
particle. Every wait is on a state that stays true (a run that ended, saved
files).
"""

import glob
import os
import signal

import numpy as np
import pytest
from pyworkflow import Config

Config.setDomain("pwem")

from pwem.objects import SetOfParticles  # noqa: E402
from pyworkflow.protocol.constants import MODE_RESUME  # noqa: E402
from pyworkflow.tests import BaseTest, setupTestProject  # noqa: E402

from xmipp_qc.protocols import (  # noqa: E402
    XmippQcProtCompareReprojections,
    XmippQcProtSyntheticParticles,
)
from xmipp_qc.protocols.compare_reprojections_results import readOutputsJson  # noqa: E402
from xmipp_qc.protocols.compare_reprojections_session import readSession  # noqa: E402
from xmipp_qc.tests.run_polling import run_log, run_pid, wait_until_ended  # noqa: E402

pytestmark = pytest.mark.scipion

N, PER_MIC, BAD = 160, 20, (5, 6)


class TestCompareReprojectionsStreamingInputs(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)

    # --------------------------- helpers -------------------------------------
    def source(self, seed, interval=2.0, particlesPerBatch=40, **kwargs):
        """A synthetic session launched in the background, followed until its
        particle output exists."""
        params = {"nImages": N, "boxSize": 32, "samplingRate": 3.0, "snr": 1.0,
                  "maxShift": 1.0, "outlierFraction": 0.0, "particlesPerMicrograph": PER_MIC,
                  "badMicrographs": f"{BAD[0]}-{BAD[1]}", "badJunkFraction": 0.9,
                  "interval": interval, "particlesPerBatch": particlesPerBatch,
                  "seed": seed, **kwargs}
        src = self.newProtocol(XmippQcProtSyntheticParticles, **params)
        self.proj.launchProtocol(src, wait=False)
        self._waitOutput(src, "outputParticles", sleepTime=1)
        return src

    def compare(self, src, mics=None, **kwargs):
        """A compare run launched in the background on ``src``'s (growing) outputs;
        its micrographs pointer names ``mics``' outputMicrographs, made or not."""
        kwargs = {"doRanking": False, "chunkSize": 40, "burnIn": 60, "numberOfThreads": 3,
                  "badMicMinParticles": 10, "badMicRate": 0.5, "sessionWindow": 40, **kwargs}
        prot = self.newProtocol(XmippQcProtCompareReprojections, **kwargs)
        pointers = [(prot.inputSet2D, src, "outputParticles"),
                    (prot.inputSet3D, src, "outputVolume")]
        if mics is not None:
            pointers.append((prot.inputMicrographs, mics, "outputMicrographs"))
        for param, producer, name in pointers:
            param.set(producer)  # as the GUI and a scheduled workflow make them
            param.setExtended(name)
        self.proj.launchProtocol(prot, wait=False)
        return prot

    def ended(self, prot, timeout=240):
        return wait_until_ended(self.proj, prot, timeout)

    def resumed(self, prot):
        prot = self.proj.getProtocol(prot.getObjId())
        prot.runMode.set(MODE_RESUME)
        self.proj.launchProtocol(prot, wait=True, force=True)
        return self.ended(prot)

    def output(self, prot):
        (vid, name), = readOutputsJson(prot._getExtraPath()).items()
        return vid, getattr(prot, name)

    def flags(self, outSet):
        return {item.getObjId(): bool(item._qc_isOutlier.get()) for item in outSet}

    def assertBadStretch(self, prot):
        """The bad stretch, and only it, in the closed badMicrographs output."""
        self.assertEqual(sorted(prot.badMicrographs.getIdSet()), list(range(BAD[0], BAD[1] + 1)))
        self.assertTrue(prot.badMicrographs.isStreamClosed())

    # --------------------------- scenarios -----------------------------------
    def test_late_micrographs_give_the_bad_micrographs(self):
        """The source writes each batch's micrographs 3 batches after its particles:
        the micrograph output does not exist when compare starts; it is found later
        and the bad stretch is output from it, closed after the micrographs."""
        src = self.source(seed=41, micDelay=3)
        self.proj._updateProtocol(src)
        self.assertFalse(src.hasAttribute("outputMicrographs"), "too late: mics exist")
        prot = self.ended(self.compare(src, mics=src))
        src = self.ended(src)
        self.assertTrue(prot.isFinished(), prot.getErrorMessage())
        vid, out = self.output(prot)
        self.assertEqual(sorted(out.getIdSet()), list(range(1, N + 1)))
        self.assertTrue(out.isStreamClosed())
        self.assertBadStretch(prot)
        self.assertIn("Input found: the micrographs (outputMicrographs of run", run_log(prot))
        self.assertGreaterEqual(os.path.getmtime(prot._getPath("micrographs_bad.sqlite")),
                                os.path.getmtime(src._getPath("micrographs.sqlite")))
        session = readSession(prot._getExtraPath(), vid)
        self.assertEqual(session["bad_mics"], list(range(BAD[0], BAD[1] + 1)))

    def test_micrographs_from_a_much_slower_run(self):
        """Particles in 4 batches 0.5 s apart; their micrographs from another run, one
        every 2.5 s: every particle is output, the bad micrographs are output when
        they arrive and the output closes after the slow run closed its micrographs."""
        slow = self.source(seed=43, interval=2.5, particlesPerBatch=PER_MIC)
        fast = self.source(seed=43, interval=0.5)
        prot = self.ended(self.compare(fast, mics=slow))
        slow = self.ended(slow)
        self.assertTrue(prot.isFinished(), prot.getErrorMessage())
        _, out = self.output(prot)
        self.assertEqual(sorted(out.getIdSet()), list(range(1, N + 1)))
        self.assertBadStretch(prot)
        self.assertGreaterEqual(os.path.getmtime(prot._getPath("micrographs_bad.sqlite")),
                                os.path.getmtime(slow._getPath("micrographs.sqlite")))

    def test_source_fails_mid_stream_then_continued(self):
        """The source fails after 2 of 4 batches (pyworkflow closes its outputs):
        compare finishes with the 80 particles and says the source failed.
        Continued, the source outputs the rest; the continued compare adds just
        those, every particle once, and no saved flag or statistic changes."""
        src = self.source(seed=45, failAfter=2)
        prot = self.ended(self.compare(src, mics=src))
        src = self.ended(src)
        self.assertTrue(src.isFailed())
        self.assertTrue(prot.isFinished(), prot.getErrorMessage())
        vid, out = self.output(prot)
        self.assertEqual(sorted(out.getIdSet()), list(range(1, 81)))
        self.assertTrue(out.isStreamClosed())
        self.assertIn(f"The images stopped early: run '{src.getRunName()}' failed; finished "
                      "with the 80 items that arrived.", "\n".join(prot.summary()))
        scores = prot._getExtraPath(f"vol{vid}", "scores_*.npz")
        before = {fn: open(fn, "rb").read() for fn in glob.glob(scores)}
        reference = open(prot._getExtraPath(f"vol{vid}", "reference.json")).read()
        first = self.flags(out)

        src = self.resumed(src)
        self.assertTrue(src.isFinished(), src.getErrorMessage())
        self.assertEqual(src.outputParticles.getSize(), N)
        prot = self.resumed(prot)
        self.assertTrue(prot.isFinished(), prot.getErrorMessage())
        vid, out = self.output(prot)
        ids = [item.getObjId() for item in out]
        self.assertEqual(sorted(ids), list(range(1, N + 1)))  # every particle once
        self.assertTrue(out.isStreamClosed())
        final = self.flags(out)
        self.assertEqual({i: final[i] for i in first}, first)
        for fn, data in before.items():
            self.assertEqual(open(fn, "rb").read(), data, fn)
        self.assertEqual(open(prot._getExtraPath(f"vol{vid}", "reference.json")).read(),
                         reference)
        self.assertBadStretch(prot)
        self.assertNotIn("stopped early", "\n".join(prot.summary()))
        with np.load(prot._getExtraPath(f"vol{vid}", "scores.npz")) as z:
            self.assertEqual(sorted(z["ids"].tolist()), list(range(1, N + 1)))

    def test_source_killed_mid_stream(self):
        """The source's process is killed (SIGKILL) after its first batch: its output
        stays open and its run.db says running, yet compare finishes with the
        particles that arrived and says the source's process is gone."""
        src = self.source(seed=49, interval=3.0)
        prot = self.compare(src)
        os.kill(run_pid(src), signal.SIGKILL)
        parts = SetOfParticles(filename=src._getPath("particles.sqlite"))
        arrived = sorted(parts.getIdSet())
        parts.close()
        self.assertLess(len(arrived), N, "too late to kill")
        prot = self.ended(prot)
        self.assertTrue(prot.isFinished(), prot.getErrorMessage())
        _, out = self.output(prot)
        self.assertEqual(sorted(out.getIdSet()), arrived)
        self.assertTrue(out.isStreamClosed())
        self.assertIn(f"The images stopped early: run '{src.getRunName()}' stopped (its "
                      f"process is gone); finished with the {len(arrived)} items that "
                      "arrived.", prot.summary())

    def test_source_closes_without_particles(self):
        """The particle set opens, stays empty, closes: compare finishes with an empty,
        closed output and says why, instead of failing or waiting forever."""
        src = self.source(seed=47, closeEmpty=True, interval=3.0)
        prot = self.ended(self.compare(src))
        self.assertTrue(prot.isFinished(), prot.getErrorMessage())
        self.assertTrue(prot.streamingRun.get())
        _, out = self.output(prot)
        self.assertEqual(out.getSize(), 0)
        self.assertTrue(out.isStreamClosed())
        again = type(out)(filename=out.getFileName())  # as a downstream run reads it
        again.loadAllProperties()
        self.assertEqual((again.getSize(), again.getIdSet(), again.isStreamClosed()),
                         (0, set(), True))
        self.assertIn("The images closed without any item: nothing was compared; the "
                      "outputs are empty.", prot.summary())
        closed = self.newProtocol(XmippQcProtCompareReprojections, doRanking=False)
        closed.inputSet2D.set(self.ended(src).outputParticles)
        closed.inputSet3D.set(src.outputVolume)
        self.assertIn("empty, closed set", " ".join(closed.validate()))
