"""Import first in a benchmark script: a private, headless Scipion for this run.

pyworkflow reads its environment once, when first imported (and importing
xmipp_qc imports it), so this loads ``xmipp_qc/headless.py`` by path, points
Scipion at a fresh temporary home and selects the pwem domain. The home (its
projects, with every protocol's files) is removed when the script exits.
"""

import atexit
import importlib.util
import shutil
import tempfile
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "_xmipp_qc_headless", Path(__file__).resolve().parents[1] / "xmipp_qc" / "headless.py")
_headless = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_headless)
HOME = tempfile.mkdtemp(prefix="xmipp-qc-bench-")
atexit.register(shutil.rmtree, HOME, ignore_errors=True)
_headless.prepare_environment(HOME)

from pyworkflow import Config  # noqa: E402

Config.setDomain("pwem")
