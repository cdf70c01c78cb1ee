"""Headless, self-contained Scipion test environment.

Runs before anything imports pyworkflow: every pytest run gets its own temporary
SCIPION_HOME and SCIPION_USER_DATA (with the ``hosts.conf`` Scipion needs), the
``pwem`` domain, no dataset downloads and the Agg plotting backend, so the suite
needs no environment variables and no display. Variables already set win, except
that each pytest-xdist worker gets its own SCIPION_USER_DATA below our home.
"""

import atexit
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "_xmipp_qc_headless", Path(__file__).parent / "xmipp_qc" / "headless.py"
)
_headless = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_headless)

if "SCIPION_HOME" not in os.environ:
    _base = tempfile.mkdtemp(prefix="xmipp-qc-scipion-")
    if not os.environ.get("XMIPP_QC_KEEP_TESTS"):
        atexit.register(shutil.rmtree, _base, ignore_errors=True)
    os.environ["XMIPP_QC_TEST_HOME"] = _base  # ours: pytest-xdist workers inherit it
    _headless.prepare_environment(_base)
else:
    _worker = os.environ.get("PYTEST_XDIST_WORKER")
    if _worker and os.environ.get("XMIPP_QC_TEST_HOME") == os.environ["SCIPION_HOME"]:
        # one project folder per worker: a test class split across workers would
        # otherwise set up the same Scipion project twice, concurrently
        _data = os.path.join(os.environ["SCIPION_HOME"], f"userdata-{_worker}")
        os.environ["SCIPION_USER_DATA"] = _data
    _headless.prepare_environment(os.environ["SCIPION_HOME"])
