"""The tests' run poll (tests/run_polling.py) against pyworkflow's stale-state race.

The race is timing-dependent; these tests put a run into the state it leaves
(the in-memory run says "running" with a time stamp newer than its run.db's last
write, its process gone) and check that pyworkflow's own poll fails it while
``refreshed`` restores what the run.db says. (A SIGKILLed run is not tested
here: pyworkflow keeps its launcher's PID until the run's first write, and that
unreaped launcher counts as alive, so the verdict depends on timing.)
"""

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
