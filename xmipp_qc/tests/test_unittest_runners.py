"""The Scipion project tests run under unittest and Scipion's runner, not only pytest.

``scipion3 tests xmipp_qc.tests.<module>`` is pyworkflow's runner
(``pyworkflow.apps.pw_run_tests``) on unittest's loader; ``python -m
xmipp_qc.tests`` is the same runner in a private environment. Both are run here
in a fresh process whose environment has no Scipion variable and a HOME of its
own: :mod:`xmipp_qc.tests` must prepare a private Scipion home, as conftest.py
does for pytest, and nothing may land in ``~/ScipionUserData``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.scipion

MODULE = "xmipp_qc.tests.test_protocol_synthetic_movies"
ONE_TEST = f"{MODULE}.TestSyntheticMovies.test_reference_and_secondary_are_the_simulated_pair"


def _run(tmp_path, *args):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SCIPION_", "PYTEST_", "XMIPP_QC_"))}
    env["HOME"] = str(tmp_path)
    run = subprocess.run([sys.executable, "-m", *args], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600, check=False)
    assert not (tmp_path / "ScipionUserData").exists(), "tests wrote to ~/ScipionUserData"
    return run.returncode, re.sub(r"\x1b\[[0-9;]*m", "", run.stdout + run.stderr)


def test_unittest_runs_a_scipion_test_module(tmp_path):
    import unittest

    n = unittest.defaultTestLoader.loadTestsFromName(MODULE).countTestCases()
    code, out = _run(tmp_path, "unittest", "-v", MODULE)
    assert code == 0 and n >= 2, out[-3000:]
    assert re.search(rf"^Ran {n} tests in", out, re.M) and out.rstrip().endswith("OK"), \
        out[-3000:]


def test_scipion_runner_runs_one_test(tmp_path):
    code, out = _run(tmp_path, "xmipp_qc.tests", ONE_TEST)
    assert code == 0, out[-3000:]
    assert "[  PASSED  ] 1 tests" in out, out[-3000:]


def test_scipion_runner_fails_on_an_unknown_test(tmp_path):
    code, out = _run(tmp_path, "xmipp_qc.tests", f"{MODULE}.TestSyntheticMovies.test_nothing")
    assert code == 1, out[-3000:]
