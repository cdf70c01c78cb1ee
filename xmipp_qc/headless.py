"""Environment for running Scipion headless in a private folder.

Imports nothing from Scipion (nor from this package) on purpose: the variables
must be in place before pyworkflow is first imported, because pyworkflow reads
them once, at import time. The root ``conftest.py`` loads this file by path, and
``xmipp-qc demo`` uses it to prepare the environment of its Scipion subprocess.
"""

from __future__ import annotations

import os
import sys
from typing import MutableMapping, Optional

HOSTS_CONF = (
    "[localhost]\n"
    "PARALLEL_COMMAND = mpirun -np %_(JOB_NODES)d --map-by node %_(COMMAND)s\n"
)


def prepare_environment(
    base: str, environ: Optional[MutableMapping[str, str]] = None
) -> MutableMapping[str, str]:
    """Point Scipion at ``base`` and make it headless; existing values win.

    Parameters
    ----------
    base : str
        Folder for SCIPION_HOME (with ``config/hosts.conf``) and, below it,
        SCIPION_USER_DATA (projects).
    environ : mapping, optional
        The environment to complete (``os.environ`` by default).

    Returns
    -------
    mapping
        ``environ``, with SCIPION_HOME, SCIPION_USER_DATA, SCIPION_HOSTS,
        SCIPION_DOMAIN=pwem, SCIPION_TEST_NOSYNC=1, SCIPION_NOTIFY=False,
        SCIPION_STEPS_CHECK_SEC=1, MPLBACKEND=Agg and SCIPION_PYTHON set, and
        DISPLAY removed. SCIPION_PYTHON is the running interpreter: Scipion
        starts every protocol in a subprocess of ``$SCIPION_PYTHON`` (default:
        whatever ``python3`` is first on PATH), which must be the environment
        where pyworkflow and this plugin are installed.
    """
    env = os.environ if environ is None else environ
    env.setdefault("SCIPION_HOME", base)
    env.setdefault("SCIPION_USER_DATA", os.path.join(env["SCIPION_HOME"], "userdata"))
    env.setdefault("SCIPION_DOMAIN", "pwem")
    env.setdefault("SCIPION_TEST_NOSYNC", "1")
    env.setdefault("SCIPION_NOTIFY", "False")
    env.setdefault("SCIPION_STEPS_CHECK_SEC", "1")
    env.setdefault("MPLBACKEND", "Agg")
    env.setdefault("SCIPION_PYTHON", sys.executable)
    if env.get("DISPLAY"):  # kept for the GUI tests, which use it in-process only
        env.setdefault("XMIPP_QC_DISPLAY", env["DISPLAY"])
    env.pop("DISPLAY", None)
    hosts = env.get("SCIPION_HOSTS") or os.path.join(env["SCIPION_HOME"], "config", "hosts.conf")
    if not os.path.exists(hosts):
        os.makedirs(os.path.dirname(hosts), exist_ok=True)
        with open(hosts, "w") as fh:
            fh.write(HOSTS_CONF)
    env.setdefault("SCIPION_HOSTS", hosts)
    return env
