"""Scipion project tests of the synthetic-movies helper protocol."""

import time

import numpy as np
import pytest
from pyworkflow import Config

Config.setDomain("pwem")

from pyworkflow.tests import BaseTest, setupTestProject  # noqa: E402

from xmipp_qc.convert import movieAlignmentToArrays  # noqa: E402
from xmipp_qc.core.simulate import simulate_trajectory_pair  # noqa: E402
from xmipp_qc.protocols.protocol_synthetic_movies import (  # noqa: E402
    RUN_REFERENCE,
    RUN_SECONDARY,
    XmippQcProtSyntheticMovies,
)
from xmipp_qc.tests.run_polling import refreshed  # noqa: E402

pytestmark = pytest.mark.scipion


class TestSyntheticMovies(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)

    def _run(self, **kwargs):
        prot = self.newProtocol(XmippQcProtSyntheticMovies, **kwargs)
        self.launchProtocol(prot)
        return prot

    def test_reference_and_secondary_are_the_simulated_pair(self):
        common = {"nMovies": 4, "kinds": "agree,scaled", "seed": 7, "nFrames": 8,
                  "binning": 2.0, "dropMovies": "3", "withMicrographs": True, "micBinning": 2.0}
        ref = self._run(alignmentRun=RUN_REFERENCE, **common)
        sec = self._run(alignmentRun=RUN_SECONDARY, alignFrame0=2, **common)
        self.assertEqual(sorted(ref.outputMovies.getIdSet()), [1, 2, 4])
        self.assertTrue(ref.outputMovies.isStreamClosed())
        self.assertAlmostEqual(ref.outputMovies.getSamplingRate(), 1.0)
        self.assertAlmostEqual(sec.outputMovies.getSamplingRate(), 2.0)
        self.assertAlmostEqual(sec.outputMicrographs.getSamplingRate(), 4.0)
        self.assertEqual(ref.outputMovies.getAcquisition().getDosePerFrame(), 1.0)
        for i, kind in [(1, "agree"), (2, "scaled"), (4, "scaled")]:
            pair = simulate_trajectory_pair(kind, n_frames=8, binning=2.0,
                                            seed=np.random.default_rng([7, i]))
            fr, sr = movieAlignmentToArrays(ref.outputMovies[i])
            fs, ss = movieAlignmentToArrays(sec.outputMovies[i])
            np.testing.assert_array_equal(fr, np.arange(1, 9))
            np.testing.assert_allclose(sr, pair.ref, atol=1e-9)
            np.testing.assert_array_equal(fs, np.arange(2, 9))
            np.testing.assert_allclose(ss, pair.sec[1:], atol=1e-9)
        mics = {m.getObjId(): m.getMicName() for m in sec.outputMicrographs}
        self.assertEqual(mics, {i: f"movie_{i:05d}.mrc" for i in (1, 2, 4)})

    def test_streaming_output_grows_then_closes(self):
        prot = self.newProtocol(XmippQcProtSyntheticMovies, nMovies=6, interval=1.5,
                                moviesPerInterval=2, sharedStack=True)
        self.proj.launchProtocol(prot, wait=False)
        sizes, states = [], []
        deadline = time.time() + 60
        while time.time() < deadline:
            refreshed(self.proj, prot)
            out = getattr(prot, "outputMovies", None)
            if out is not None:
                out.loadAllProperties()
                sizes.append(out.getSize())
                states.append(out.isStreamClosed())
            if prot.isFinished() or prot.isFailed():
                break
            time.sleep(0.3)
        self.assertTrue(prot.isFinished(), prot.getErrorMessage())
        self.assertIn(False, states, "the output was never seen open")
        self.assertTrue(any(0 < s < 6 for s in sizes), sizes)
        self.assertSetSize(prot.outputMovies, 6)
        self.assertTrue(prot.outputMovies.isStreamClosed())
        files = {m.getFileName() for m in prot.outputMovies}
        self.assertEqual(len(files), 1)

    def test_validate_rejects_unknown_kind(self):
        prot = self.newProtocol(XmippQcProtSyntheticMovies, kinds="agree,wobbly")
        errors = prot.validate()
        self.assertEqual(len(errors), 1)
        self.assertIn("wobbly", errors[0])
