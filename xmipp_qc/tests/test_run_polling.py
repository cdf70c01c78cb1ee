"""The tests' run poll (tests/run_polling.py) against pyworkflow's stale-state race.

The race is timing-dependent; these tests put a run into the state it leaves
(the in-memory run says "running" with a time stamp newer than its run.db's last
write, its process gone) and check that pyworkflow's own poll fails it while
``refreshed`` restores what the run.db says, and that a run whose process really
died stays failed.
"""

import os
import signal
import time

import pytest
from pyworkflow import Config

Config.setDomain("pwem")

import pyworkflow.protocol.constants as pwcts  # noqa: E402
from pyworkflow.tests import BaseTest, setupTestProject  # noqa: E402
from pyworkflow.utils import getFileLastModificationDate  # noqa: E402

from xmipp_qc.protocols.protocol_synthetic_movies import XmippQcProtSyntheticMovies  # noqa: E402
from xmipp_qc.tests.run_polling import (  # noqa: E402
    NOT_FOUND,
    refreshed,
    run_pid,
    run_process_alive,
    wait_until_ended,
)

pytestmark = pytest.mark.scipion


class TestRunPolling(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)

    def staleRunning(self, prot):
        """What pyworkflow's poll keeps when the run ends between its read and its
        time stamp: "running" with the run's PID, and a time stamp that says "up to
        date"."""
        prot.setStatus(pwcts.STATUS_RUNNING)
        prot.setPid(run_pid(prot))
        prot.lastUpdateTimeStamp.set(getFileLastModificationDate(prot.getDbPath()))

    def test_a_finished_run_read_stale_is_restored(self):
        prot = self.newProtocol(XmippQcProtSyntheticMovies, nMovies=2, nFrames=4)
        self.launchProtocol(prot)
        self.assertTrue(prot.isFinished())
        self.assertFalse(run_process_alive(prot))
        self.staleRunning(prot)
        self.proj._updateProtocol(prot)  # pyworkflow's verdict on the stale state
        self.assertTrue(prot.isFailed())
        self.assertIn(NOT_FOUND, prot.getErrorMessage())
        self.staleRunning(prot)
        self.assertIs(refreshed(self.proj, prot), prot)
        self.assertTrue(prot.isFinished(), prot.getErrorMessage())
        self.assertEqual(prot.outputMovies.getSize(), 2)
        self.staleRunning(prot)
        self.assertTrue(wait_until_ended(self.proj, prot, timeout=10).isFinished())

    def test_a_killed_run_stays_failed(self):
        prot = self.newProtocol(XmippQcProtSyntheticMovies, nMovies=20, interval=1.0,
                                moviesPerInterval=1)
        self.proj.launchProtocol(prot, wait=False)
        deadline = time.time() + 60
        while run_pid(prot) is None and time.time() < deadline:  # logged when it starts
            time.sleep(0.2)
        self.assertTrue(run_process_alive(prot), "the run never started")
        os.kill(run_pid(prot), signal.SIGKILL)
        wait_until_ended(self.proj, prot, timeout=30)
        self.assertTrue(prot.isFailed())
        self.assertIn(NOT_FOUND, prot.getErrorMessage())
