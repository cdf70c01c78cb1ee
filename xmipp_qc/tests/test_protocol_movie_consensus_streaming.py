"""Movie alignment consensus fed by producers that misbehave, in real projects.

The producers are XmippQcProtSyntheticMovies runs: micrographs written some
batches after their movies (so the micrograph output appears after the
consensus started), a run that fails mid-stream and is then continued, a run
that closes without any movie, two inputs at very different rates. Every
wait is on a state that stays true (a run that ended, saved files), and every
decision is checked against compare_trajectories on the same simulated pair.
"""

import glob
import os
import signal
import sqlite3
import time
from contextlib import closing

import pytest
from pyworkflow import Config

Config.setDomain("pwem")

from pwem.objects import SetOfMovies  # noqa: E402
from pyworkflow.protocol import MODE_RESUME  # noqa: E402
from pyworkflow.tests import BaseTest, setupTestProject  # noqa: E402

from xmipp_qc.protocols import (  # noqa: E402
    XmippQcProtConsensusMovieAlignment,
    XmippQcProtSyntheticMovies,
)
from xmipp_qc.protocols.movie_consensus_records import (  # noqa: E402
    decisionBatchFiles,
    readDecisionRecords,
)
from xmipp_qc.protocols.protocol_synthetic_movies import (  # noqa: E402
    RUN_REFERENCE,
    RUN_SECONDARY,
)
from xmipp_qc.tests.run_polling import run_log, run_pid, wait_until_ended  # noqa: E402
from xmipp_qc.tests.test_protocol_movie_consensus import N_FRAMES, expectedDecision  # noqa: E402

pytestmark = pytest.mark.scipion
KINDS = ["agree", "noise"]
OUTPUTS = ("outputMovies", "outputMoviesDiscarded", "outputMicrographs",
           "outputMicrographsDiscarded")


class TestMovieConsensusStreamingInputs(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)

    # --------------------------- helpers -------------------------------------
    def producer(self, run, nMovies, seed, launch=True, **kwargs):
        """A synthetic alignment run; launched in the background unless ``launch`` is
        False, and followed until its movie output exists."""
        prot = self.newProtocol(XmippQcProtSyntheticMovies, alignmentRun=run, nMovies=nMovies,
                                seed=seed, kinds=",".join(KINDS), nFrames=N_FRAMES,
                                sharedStack=True, **kwargs)
        if launch:
            self.proj.launchProtocol(prot, wait=False)
            self._waitOutput(prot, "outputMovies", sleepTime=1)
        return prot

    def consensus(self, ref, sec, **kwargs):
        """A consensus launched in the background on the producers' outputs, with
        pointers to the protocols as the GUI and a scheduled workflow make them."""
        prot = self.newProtocol(XmippQcProtConsensusMovieAlignment, **kwargs)
        for param, src in ((prot.inputMovies1, ref), (prot.inputMovies2, sec)):
            param.set(src)
            param.setExtended("outputMovies")
        self.proj.launchProtocol(prot, wait=False)
        return prot

    def ended(self, prot, timeout=120):
        return wait_until_ended(self.proj, prot, timeout)

    def decisions(self, prot):
        """{movie id: (accepted, reason)} over both movie outputs (each id once)."""
        got = {}
        for name in ("outputMovies", "outputMoviesDiscarded"):
            for movie in getattr(prot, name):
                self.assertNotIn(movie.getObjId(), got, "movie output twice")
                got[movie.getObjId()] = (name == "outputMovies", movie._alignment_reason.get())
        return got

    def assertDecided(self, got, ids, seed):
        """Every movie of ``ids`` decided as compare_trajectories decides it."""
        self.assertEqual(sorted(got), sorted(ids))
        for movieId in ids:
            want = expectedDecision(KINDS[(movieId - 1) % len(KINDS)], movieId, seed=seed)
            self.assertEqual(got[movieId], (want.accepted, want.reason), movieId)

    def assertClosed(self, prot, names=OUTPUTS):
        for name in names:
            self.assertTrue(getattr(prot, name).isStreamClosed(), name)

    def resumed(self, prot):
        """Continue a run that ended and wait for it."""
        prot = self.proj.getProtocol(prot.getObjId())
        prot.runMode.set(MODE_RESUME)
        self.proj.launchProtocol(prot, wait=True, force=True)
        return self.ended(prot)

    # --------------------------- scenarios -----------------------------------
    def test_late_micrographs_reach_the_outputs(self):
        """The reference writes each micrograph 3 batches after its movie: the micrograph
        output does not exist when the consensus starts, appears later, and the
        consensus outputs every micrograph and closes them after the micrographs."""
        sec = self.producer(RUN_SECONDARY, 5, seed=31, launch=False)
        self.launchProtocol(sec)
        ref = self.producer(RUN_REFERENCE, 5, seed=31, withMicrographs=True, micDelay=3,
                            interval=2.0, moviesPerInterval=1)
        self.proj._updateProtocol(ref)
        self.assertFalse(ref.hasAttribute("outputMicrographs"), "too late: mics exist")
        prot = self.ended(self.consensus(ref, sec))
        self.assertTrue(prot.isFinished(), prot.getErrorMessage())
        got = self.decisions(prot)
        self.assertDecided(got, range(1, 6), seed=31)
        accepted = {i for i, (ok, _) in got.items() if ok}
        self.assertEqual(accepted, {1, 3, 5})
        self.assertEqual(set(prot.outputMicrographs.getIdSet()), accepted)
        self.assertEqual(set(prot.outputMicrographsDiscarded.getIdSet()), {2, 4})
        self.assertClosed(prot)
        self.assertIn("Input found: the micrographs of the reference run (outputMicrographs",
                      run_log(prot))
        self.assertFalse(any("never appeared" in line for line in prot.summary()))

    def test_reference_fails_mid_stream_then_continued(self):
        """The reference fails after 2 of 5 movies (pyworkflow closes its outputs): the
        consensus finishes with those 2 and says the reference failed. Continued,
        the reference outputs movies 3-5; the continued consensus decides just
        those, and the 2 first decisions stay as they were."""
        sec = self.producer(RUN_SECONDARY, 5, seed=33, launch=False)
        self.launchProtocol(sec)
        ref = self.producer(RUN_REFERENCE, 5, seed=33, withMicrographs=True, interval=2.0,
                            moviesPerInterval=1, failAfter=2)
        prot = self.ended(self.consensus(ref, sec))
        ref = self.ended(ref)
        self.assertTrue(ref.isFailed())
        self.assertTrue(prot.isFinished(), prot.getErrorMessage())
        self.assertDecided(self.decisions(prot), [1, 2], seed=33)
        self.assertEqual(set(prot.outputMicrographs.getIdSet()) |
                         set(prot.outputMicrographsDiscarded.getIdSet()), {1, 2})
        self.assertClosed(prot)
        notes = "\n".join(prot.summary())
        self.assertIn(f"The reference movies stopped early: run '{ref.getRunName()}' failed; "
                      "finished with the 2 items that arrived.", notes)
        first = open(decisionBatchFiles(prot._getExtraPath())[0]).read()
        ref = self.resumed(ref)
        self.assertTrue(ref.isFinished(), ref.getErrorMessage())
        self.assertEqual(sorted(ref.outputMovies.getIdSet()), [1, 2, 3, 4, 5])
        prot = self.resumed(prot)
        self.assertTrue(prot.isFinished(), prot.getErrorMessage())
        self.assertDecided(self.decisions(prot), range(1, 6), seed=33)
        self.assertEqual(set(prot.outputMicrographs.getIdSet()), {1, 3, 5})
        self.assertEqual(set(prot.outputMicrographsDiscarded.getIdSet()), {2, 4})
        self.assertClosed(prot)
        self.assertEqual(open(decisionBatchFiles(prot._getExtraPath())[0]).read(), first)
        self.assertEqual([r["id"] for r in readDecisionRecords(prot._getExtraPath())],
                         [1, 2, 3, 4, 5])
        self.assertNotIn("stopped early", "\n".join(prot.summary()))

    def test_secondary_fails_mid_stream_then_continued(self):
        """The secondary fails after 2 of 5 movies: the consensus decides those 2 and
        leaves movies 3-5 undecided (not "missing": the failed run may still align
        them), says so, and finishes. Continued, the secondary outputs 3-5; the
        continued consensus decides just those, as compare_trajectories does."""
        ref = self.producer(RUN_REFERENCE, 5, seed=41, launch=False, withMicrographs=True)
        self.launchProtocol(ref)
        sec = self.producer(RUN_SECONDARY, 5, seed=41, interval=2.0, moviesPerInterval=1,
                            failAfter=2)
        prot = self.ended(self.consensus(ref, sec))
        sec = self.ended(sec)
        self.assertTrue(sec.isFailed())
        self.assertTrue(prot.isFinished(), prot.getErrorMessage())
        self.assertDecided(self.decisions(prot), [1, 2], seed=41)
        self.assertEqual(set(prot.outputMicrographs.getIdSet()) |
                         set(prot.outputMicrographsDiscarded.getIdSet()), {1, 2})
        self.assertClosed(prot)
        notes = "\n".join(prot.summary())
        self.assertIn(f"The secondary movies stopped early: run '{sec.getRunName()}' failed; "
                      "finished with the 2 items that arrived.", notes)
        self.assertIn("3 reference movies are not decided: the secondary run stopped early",
                      notes)
        self.assertIn("2 movies decided", notes)
        sec = self.resumed(sec)
        self.assertTrue(sec.isFinished(), sec.getErrorMessage())
        prot = self.resumed(prot)
        self.assertTrue(prot.isFinished(), prot.getErrorMessage())
        self.assertDecided(self.decisions(prot), range(1, 6), seed=41)
        self.assertNotIn("missing", {reason for _, reason in self.decisions(prot).values()})
        self.assertEqual(set(prot.outputMicrographs.getIdSet()), {1, 3, 5})
        self.assertEqual(set(prot.outputMicrographsDiscarded.getIdSet()), {2, 4})
        self.assertClosed(prot)
        notes = "\n".join(prot.summary())
        self.assertNotIn("stopped early", notes)
        self.assertNotIn("not decided", notes)

    def test_reference_killed_mid_stream(self):
        """The reference's process is killed (SIGKILL) after 2 movies: its output stays
        open and its run.db says running, yet the consensus finishes with the movies
        that arrived and says the reference's process is gone."""
        sec = self.producer(RUN_SECONDARY, 6, seed=39, launch=False)
        self.launchProtocol(sec)
        ref = self.producer(RUN_REFERENCE, 6, seed=39, interval=3.0, moviesPerInterval=1)
        prot = self.consensus(ref, sec)
        movies = ref._getPath("movies.sqlite")
        deadline = time.time() + 60
        while time.time() < deadline and self.sqliteCount(movies) < 2:
            time.sleep(0.3)
        os.kill(run_pid(ref), signal.SIGKILL)
        arrived = sorted(SetOfMovies(filename=movies).getIdSet())
        self.assertLess(len(arrived), 6, "too late to kill")
        prot = self.ended(prot)
        self.assertTrue(prot.isFinished(), prot.getErrorMessage())
        self.assertDecided(self.decisions(prot), arrived, seed=39)
        self.assertClosed(prot, OUTPUTS[:2])
        self.assertIn(f"The reference movies stopped early: run '{ref.getRunName()}' stopped "
                      f"(its process is gone); finished with the {len(arrived)} items that "
                      "arrived.", prot.summary())

    @staticmethod
    def sqliteCount(fn):
        """Items in a set's sqlite file (0 while it has no table)."""
        if not os.path.exists(fn):
            return 0
        with closing(sqlite3.connect(fn)) as db:
            try:
                return db.execute("SELECT count(*) FROM Objects").fetchone()[0]
            except sqlite3.OperationalError:
                return 0

    def test_producers_that_close_without_movies(self):
        """A secondary run that closes without a movie: every reference movie is
        decided "missing"; a reference that closes empty: empty, closed outputs. The
        micrographs of an empty reference never appear: said in the summary."""
        ref = self.producer(RUN_REFERENCE, 3, seed=35, launch=False, withMicrographs=True)
        self.launchProtocol(ref)
        noSec = self.producer(RUN_SECONDARY, 3, seed=35, dropMovies="1,2,3", interval=1.0)
        prot = self.ended(self.consensus(ref, noSec))
        self.assertTrue(prot.isFinished(), prot.getErrorMessage())
        got = self.decisions(prot)
        self.assertEqual(got, {i: (False, "missing") for i in (1, 2, 3)})
        self.assertEqual(set(prot.outputMicrographsDiscarded.getIdSet()), {1, 2, 3})
        self.assertEqual(prot.outputMicrographs.getSize(), 0)
        self.assertClosed(prot)
        self.assertIn("3 movies decided: missing 3", prot.summary()[0])

        noRef = self.producer(RUN_REFERENCE, 3, seed=35, dropMovies="1,2,3", interval=1.0)
        sec = self.producer(RUN_SECONDARY, 3, seed=35, launch=False)
        self.launchProtocol(sec)
        empty = self.ended(self.consensus(noRef, sec))
        self.assertTrue(empty.isFinished(), empty.getErrorMessage())
        self.assertEqual((empty.outputMovies.getSize(), empty.outputMoviesDiscarded.getSize()),
                         (0, 0))
        self.assertClosed(empty, OUTPUTS[:2])
        for name in OUTPUTS[:2]:  # read as a downstream run reads it
            again = SetOfMovies(filename=getattr(empty, name).getFileName())
            again.loadAllProperties()
            self.assertEqual((again.getIdSet(), again.isStreamClosed()), (set(), True), name)
        self.assertFalse(empty.hasAttribute("outputMicrographs"))
        summary = "\n".join(empty.summary())
        self.assertIn("No movie decided yet.", summary)
        self.assertIn(f"The micrographs of the reference run never appeared: run "
                      f"'{noRef.getRunName()}' finished without producing outputMicrographs "
                      "or outputMicrographsDoseWeighted.", summary)

    def test_inputs_at_very_different_rates(self):
        """The reference is out in 2 s, the secondary takes 1 movie every 3 s: movies
        are decided while the secondary streams, none is called missing early, and
        the outputs close only after the secondary closed."""
        ref = self.producer(RUN_REFERENCE, 6, seed=37, interval=0.4, moviesPerInterval=3,
                            withMicrographs=True)
        sec = self.producer(RUN_SECONDARY, 6, seed=37, interval=3.0, moviesPerInterval=1)
        prot = self.ended(self.consensus(ref, sec))
        sec = self.ended(sec)
        self.assertTrue(prot.isFinished(), prot.getErrorMessage())
        self.assertDecided(self.decisions(prot), range(1, 7), seed=37)
        self.assertClosed(prot)
        batches = decisionBatchFiles(prot._getExtraPath())
        self.assertGreater(len(batches), 1, "all decided at once: nothing while streaming")
        secClosed = os.path.getmtime(sec._getPath("movies.sqlite"))  # its last write
        self.assertLess(os.path.getmtime(batches[0]), secClosed, "nothing decided while open")
        closedAt = max(os.path.getmtime(fn) for fn in glob.glob(prot._getPath("*.sqlite")))
        self.assertGreater(closedAt, secClosed)
