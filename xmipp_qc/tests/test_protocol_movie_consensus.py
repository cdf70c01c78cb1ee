"""Scipion project tests of XmippQcProtConsensusMovieAlignment.

Inputs are two runs of XmippQcProtSyntheticMovies with the same seed; every
expected decision is recomputed here with compare_trajectories on the same
simulated pair, so the tests pin the protocol's bookkeeping, not the maths.
"""

import glob
import json
import os
import signal
import sqlite3
import time
from collections import Counter

import numpy as np
import pytest
from pyworkflow import Config

Config.setDomain("pwem")

from pyworkflow.protocol import MODE_RESUME  # noqa: E402
from pyworkflow.tests import BaseTest, setupTestProject  # noqa: E402

from xmipp_qc.convert import movieAlignmentToArrays  # noqa: E402
from xmipp_qc.core.simulate import simulate_trajectory_pair  # noqa: E402
from xmipp_qc.core.trajectories import ConsensusParams, compare_trajectories  # noqa: E402
from xmipp_qc.protocols import (  # noqa: E402
    XmippQcProtConsensusMovieAlignment,
    XmippQcProtSyntheticMovies,
)
from xmipp_qc.protocols.movie_consensus_records import decisionBatchFiles  # noqa: E402
from xmipp_qc.protocols.protocol_movie_alignment_consensus import (  # noqa: E402
    readDecisionRecords,
)
from xmipp_qc.protocols.protocol_synthetic_movies import (  # noqa: E402
    RUN_REFERENCE,
    RUN_SECONDARY,
)
from xmipp_qc.tests.run_polling import refreshed, wait_until_ended  # noqa: E402

pytestmark = pytest.mark.scipion
N_FRAMES = 16


def expectedDecision(kind, movieId, seed, binning=1.0, first=1, firstRef=1):
    pair = simulate_trajectory_pair(kind, n_frames=N_FRAMES, binning=binning,
                                    seed=np.random.default_rng([seed, movieId]))
    keep, keepRef = pair.frames_sec >= first, pair.frames_ref >= firstRef
    return compare_trajectories(pair.frames_ref[keepRef], pair.ref[keepRef],
                                pair.frames_sec[keep], pair.sec[keep], binning=binning,
                                pixel_size_a=1.0, dose_per_frame=1.0, params=ConsensusParams())


class TestMovieConsensus(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)

    def _pair(self, secKw=None, refKw=None, **common):
        common = {"nFrames": N_FRAMES, "sharedStack": True, **common}
        ref = self.newProtocol(XmippQcProtSyntheticMovies, alignmentRun=RUN_REFERENCE,
                               **common, **(refKw or {}))
        sec = self.newProtocol(XmippQcProtSyntheticMovies, alignmentRun=RUN_SECONDARY,
                               **common, **(secKw or {}))
        return ref, sec

    def _consensus(self, ref, sec, **kwargs):
        return self.newProtocol(XmippQcProtConsensusMovieAlignment,
                                inputMovies1=ref.outputMovies, inputMovies2=sec.outputMovies,
                                **kwargs)

    def _decisions(self, prot):
        out = {}
        for name in ("outputMovies", "outputMoviesDiscarded"):
            for movie in getattr(prot, name):
                self.assertNotIn(movie.getObjId(), out, "movie output twice")
                out[movie.getObjId()] = (name == "outputMovies",
                                         movie._alignment_reason.get(), movie.clone())
        return out

    def test_static_kinds_exact_decisions(self):
        kinds = ["agree", "offset", "scaled", "mirrored", "flat", "sentinel", "noise", "swapped"]
        ref, sec = self._pair(nMovies=8, kinds=",".join(kinds), seed=3,
                              withMicrographs=True, micBinning=2.0)
        self.launchProtocol(ref)
        self.launchProtocol(sec)
        prot = self._consensus(ref, sec, trajectoryPlot=True)
        self.launchProtocol(prot)
        got = self._decisions(prot)
        self.assertEqual(sorted(got), list(range(1, 9)))
        for movieId, kind in enumerate(kinds, start=1):
            want = expectedDecision(kind, movieId, seed=3)
            accepted, reason, movie = got[movieId]
            self.assertEqual((accepted, reason), (want.accepted, want.reason), kind)
            self.assertAlmostEqual(movie._alignment_corr.get(), want.corr, places=6)
            self.assertAlmostEqual(movie._alignment_rmse_error.get(), want.rmse_px, places=6)
            self.assertAlmostEqual(movie._alignment_max_error.get(), want.max_error_px, places=6)
            frames, shifts = movieAlignmentToArrays(movie)
            np.testing.assert_array_equal(frames, np.arange(1, N_FRAMES + 1))
        accepted = {i for i, (ok, _, _) in got.items() if ok}
        self.assertEqual(accepted, {1, 2}, "agree and offset accepted, the rest discarded")
        self.assertEqual(set(prot.outputMicrographs.getIdSet()), accepted)
        self.assertEqual(set(prot.outputMicrographsDiscarded.getIdSet()), set(range(3, 9)))
        self.assertAlmostEqual(prot.outputMicrographs.getSamplingRate(), 2.0)
        for mic in prot.outputMicrographsDiscarded:
            self.assertTrue(os.path.exists(mic.plotCart.getFileName()))
        self.assertTrue(prot.outputMovies.isStreamClosed())
        records = readDecisionRecords(prot._getExtraPath())
        self.assertEqual([r["id"] for r in records], list(range(1, 9)))
        self.assertIn("8 movies decided", prot.summary()[0])

    def test_unequal_frames_binning_missing_and_flat(self):
        kinds = "agree,agree,flat,agree"
        ref, sec = self._pair(nMovies=4, kinds=kinds, seed=5, binning=2.0,
                              refKw={"alignFrame0": 2},
                              secKw={"alignFrame0": 4, "dropMovies": "2"})
        self.launchProtocol(ref)
        self.launchProtocol(sec)
        prot = self._consensus(ref, sec)
        self.launchProtocol(prot)
        got = self._decisions(prot)
        self.assertEqual(sorted(got), [1, 2, 3, 4])
        self.assertEqual(got[2][:2], (False, "missing"))
        flat = expectedDecision("flat", 3, seed=5, binning=2.0, first=4, firstRef=2)
        self.assertFalse(flat.accepted)
        self.assertEqual(got[3][:2], (False, flat.reason))
        for movieId in (1, 4):
            want = expectedDecision("agree", movieId, seed=5, binning=2.0, first=4, firstRef=2)
            self.assertTrue(want.accepted)
            self.assertEqual(got[movieId][:2], (True, "accepted"))
            movie = got[movieId][2]
            self.assertEqual(movie._alignment_n_frames.get(), N_FRAMES - 3)
            self.assertAlmostEqual(movie._alignment_rmse_error.get(), want.rmse_px, places=6)
            self.assertEqual(movie.getAlignment().getRange(), (2, N_FRAMES), "reference kept")
            self.assertEqual(list(movie.getAlignment().getRoi()), [0, 0, 0, 0])
            self.assertEqual(len(movie.getAlignment().getShifts()[0]), N_FRAMES - 1)
        counts = Counter(reason for _, reason, _ in got.values())
        summary = prot.summary()[0]
        self.assertIn(f"missing {counts['missing']}", summary)

    def test_missing_policy_accept(self):
        """Also: explicit micrographs (binned by 3) that lack movie 1's micrograph."""
        ref, sec = self._pair(nMovies=3, seed=9, secKw={
            "dropMovies": "1", "withMicrographs": True, "micBinning": 3.0})
        self.launchProtocol(ref)
        self.launchProtocol(sec)
        prot = self._consensus(ref, sec, missingPolicy=1, inputMicrographs=sec.outputMicrographs)
        self.launchProtocol(prot)
        got = self._decisions(prot)
        self.assertEqual(got[1][:2], (True, "missing"))
        self.assertEqual({i for i, v in got.items() if v[0]}, {1, 2, 3})
        self.assertEqual(prot.outputMoviesDiscarded.getSize(), 0)
        self.assertEqual(set(prot.outputMicrographs.getIdSet()), {2, 3})
        self.assertAlmostEqual(prot.outputMicrographs.getSamplingRate(), 3.0)
        self.assertEqual(prot.outputMicrographsDiscarded.getSize(), 0)
        self.assertTrue(prot.outputMicrographs.isStreamClosed())

    def test_streaming_outputs_grow_before_input_closes(self):
        """Both inputs stream (the secondary faster); pointers as the GUI makes them."""
        ref, sec = self._pair(nMovies=6, seed=11, kinds="agree,scaled",
                              refKw={"interval": 3.0, "moviesPerInterval": 1,
                                     "withMicrographs": True},
                              secKw={"interval": 2.0, "moviesPerInterval": 2})
        for src in (sec, ref):
            self.proj.launchProtocol(src, wait=False)
            self._waitOutput(src, "outputMovies", sleepTime=1)
        prot = self.newProtocol(XmippQcProtConsensusMovieAlignment)
        prot.inputMovies1.set(ref)
        prot.inputMovies1.setExtended("outputMovies")
        prot.inputMovies2.set(sec)
        prot.inputMovies2.setExtended("outputMovies")
        self.proj.launchProtocol(prot, wait=False)
        prot = wait_until_ended(self.proj, prot, timeout=120)
        ref = wait_until_ended(self.proj, ref, timeout=60)
        self.assertTrue(prot.isFinished(), prot.getErrorMessage())
        # saved states, not a poll: the first decisions (saved before their output)
        # were written before the reference's last write, which closed it
        batches = decisionBatchFiles(prot._getExtraPath())
        self.assertLess(os.path.getmtime(batches[0]), os.path.getmtime(
            ref._getPath("movies.sqlite")), "no output before the input closed")
        got = self._decisions(prot)
        self.assertEqual(sorted(got), list(range(1, 7)))
        self.assertEqual({i for i, v in got.items() if v[0]}, {1, 3, 5})
        self.assertEqual(set(prot.outputMicrographs.getIdSet()), {1, 3, 5})
        self.assertEqual(set(prot.outputMicrographsDiscarded.getIdSet()), {2, 4, 6})
        for name in ("outputMovies", "outputMoviesDiscarded", "outputMicrographs",
                     "outputMicrographsDiscarded"):
            self.assertTrue(getattr(prot, name).isStreamClosed(), name)

    def _refreshed(self, prot):
        return refreshed(self.proj, prot)

    def test_kill_and_continue_no_duplicates_no_losses(self):
        # 2 s per movie: the consensus must start and decide some movies well before
        # the reference closes, even when a loaded machine starts it slowly
        ref, sec = self._pair(nMovies=10, seed=13, kinds="agree,noise,agree",
                              refKw={"interval": 2.0, "moviesPerInterval": 1})
        self.launchProtocol(sec)
        self.proj.launchProtocol(ref, wait=False)
        self._waitOutput(ref, "outputMovies", sleepTime=1)
        prot = self._consensus(ref, sec)
        self.proj.launchProtocol(prot, wait=False)
        deadline = time.time() + 60
        while time.time() < deadline and not os.path.exists(prot._getExtraPath("decisions")):
            time.sleep(0.2)
        time.sleep(1.0)
        self.proj._updateProtocol(prot)
        self.assertFalse(prot.isFinished(), "too late to kill")
        os.kill(prot.getPid(), signal.SIGKILL)
        nBefore = len(readDecisionRecords(prot._getExtraPath()))
        while ref.isActive():
            time.sleep(0.5)
            ref = self._refreshed(ref)
        self.assertTrue(ref.isFinished())
        time.sleep(3.5)  # more than a check period: a survivor would have decided more
        self.assertEqual(len(readDecisionRecords(prot._getExtraPath())), nBefore, "not killed")
        self.assertTrue(0 < nBefore < 10, nBefore)
        prot = self.proj.getProtocol(prot.getObjId())
        prot.runMode.set(MODE_RESUME)
        self.proj.launchProtocol(prot, wait=True, force=True)
        self.proj._updateProtocol(prot)
        self.assertTrue(prot.isFinished(), prot.getErrorMessage())
        got = self._decisions(prot)  # asserts no movie is output twice
        self.assertEqual(sorted(got), list(range(1, 11)))
        self.assertEqual(prot.outputMovies.getSize() + prot.outputMoviesDiscarded.getSize(), 10)
        kinds = ["agree", "noise", "agree"]
        for movieId, (accepted, reason, _) in got.items():
            want = expectedDecision(kinds[(movieId - 1) % 3], movieId, seed=13)
            self.assertEqual((accepted, reason), (want.accepted, want.reason), movieId)
        records = readDecisionRecords(prot._getExtraPath())
        self.assertEqual([r["id"] for r in records], list(range(1, 11)))

    def test_restore_rebuilds_the_done_set_from_decisions_and_outputs(self):
        """The crash windows, made deterministic: a movie decided but not output, one undecided."""
        ref, sec = self._pair(nMovies=6, seed=17, kinds="agree,noise")
        self.launchProtocol(ref)
        self.launchProtocol(sec)
        prot = self._consensus(ref, sec)
        self.launchProtocol(prot)
        accepted = sorted(prot.outputMovies.getIdSet())
        lost, undecided = accepted[0], accepted[-1]
        for fn in (prot._getPath("movies.sqlite"),):
            with sqlite3.connect(fn) as db:
                db.execute("DELETE FROM Objects WHERE id IN (?, ?)", (lost, undecided))
        (batch,) = glob.glob(prot._getExtraPath("decisions", "batch_*.json"))
        with open(batch) as fh:
            records = [r for r in json.load(fh) if r["id"] != undecided]
        with open(batch, "w") as fh:
            json.dump(records, fh)
        book = prot._restoreBook()
        prot._readNewInputs(book)
        self.assertEqual([m.getObjId() for m, _ in book.toOutput], [lost])
        self.assertEqual(book.toOutput[0][1]["reason"], "accepted")
        self.assertEqual(set(book.refPending), {undecided})
        self.assertEqual(book.ready, {undecided})
        self.assertEqual(len(book.decided), 5)
        self.assertEqual(sum(book.counts.values()), 5)

    def test_validate(self):
        ref, _ = self._pair(nMovies=2, seed=1)
        self.launchProtocol(ref)
        prot = self._consensus(ref, ref, minConsCorrelation=1.5)
        errors = prot.validate()
        self.assertEqual(len(errors), 2, errors)
        self.assertIn("same set", errors[0])
