"""Headless, self-contained Scipion test environment.

Runs before anything imports pyworkflow: every pytest run gets its own temporary
SCIPION_HOME and SCIPION_USER_DATA (with the ``hosts.conf`` Scipion needs), the
``pwem`` domain, no dataset downloads and the Agg plotting backend, so the suite
needs no environment variables and no display. Variables already set win.
"""

import atexit
import os
import shutil
import tempfile

_OWN_HOME = "SCIPION_HOME" not in os.environ
_base = os.environ.get("SCIPION_HOME") or tempfile.mkdtemp(prefix="xmipp-qc-scipion-")
os.environ.setdefault("SCIPION_HOME", _base)
os.environ.setdefault("SCIPION_USER_DATA", os.path.join(_base, "userdata"))
os.environ.setdefault("SCIPION_DOMAIN", "pwem")
os.environ.setdefault("SCIPION_TEST_NOSYNC", "1")
os.environ.setdefault("SCIPION_NOTIFY", "False")
os.environ.setdefault("SCIPION_STEPS_CHECK_SEC", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.pop("DISPLAY", None)

_hosts = os.environ.get("SCIPION_HOSTS") or os.path.join(
    os.environ["SCIPION_HOME"], "config", "hosts.conf"
)
if not os.path.exists(_hosts):
    os.makedirs(os.path.dirname(_hosts), exist_ok=True)
    with open(_hosts, "w") as fh:
        fh.write(
            "[localhost]\n"
            "PARALLEL_COMMAND = mpirun -np %_(JOB_NODES)d --map-by node %_(COMMAND)s\n"
        )
os.environ.setdefault("SCIPION_HOSTS", _hosts)

if _OWN_HOME and not os.environ.get("XMIPP_QC_KEEP_TESTS"):
    atexit.register(shutil.rmtree, _base, ignore_errors=True)
