"""``python -m xmipp_qc.tests [TEST ...]``: Scipion's test runner in a private environment.

What ``scipion3 tests`` does in a Scipion installation, for a plain virtual
environment: importing :mod:`xmipp_qc.tests` prepares a temporary headless
Scipion home (see its docstring) before pyworkflow is imported; then
pyworkflow's runner (``pyworkflow.apps.pw_run_tests``) lists (no argument) or
runs the given tests, e.g. ``xmipp_qc.tests.test_protocol_movie_consensus``.
"""

import xmipp_qc.tests  # noqa: F401  (prepares the environment first)

if __name__ == "__main__":
    import os

    os.environ.setdefault("SCIPION_TESTS_CMD", "python -m xmipp_qc.tests")
    os.environ.setdefault("SCIPION_DOMAIN", "pwem")  # the runner asks for it first
    from pyworkflow.apps.pw_run_tests import Tester

    Tester().main()
