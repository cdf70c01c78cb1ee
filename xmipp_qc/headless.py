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

#: Slurm queue of the localhost section (``slurm_hosts_conf``); Slurm's own ``%j``
#: is written ``%%j``, Scipion's variables ``%_(NAME)s``.
SLURM_QUEUE = """NAME = SLURM
MANDATORY = 0
SUBMIT_COMMAND = sbatch %_(JOB_SCRIPT)s
CHECK_COMMAND = squeue -h -j %_(JOB_ID)s
CANCEL_COMMAND = scancel %_(JOB_ID)s
SUBMIT_TEMPLATE = #!/bin/bash
    #SBATCH --job-name=%_(JOB_NAME)s
    #SBATCH --output=%_(JOB_LOGS)s.out
    #SBATCH --error=%_(JOB_LOGS)s.err
    #SBATCH --partition=%_(JOB_QUEUE)s
    #SBATCH --ntasks=%_(JOB_NODES)d
    #SBATCH --cpus-per-task=%_(JOB_CPUS)s
    #SBATCH --time=%_(JOB_HOURS)d:00:00
    echo "Slurm job $SLURM_JOB_ID on $(hostname)"
    %_(JOB_COMMAND)s
QUEUES = {"%(partition)s": [["JOB_CPUS", "1", "CPUs per job", "CPUs Slurm gives each job"]]}
"""


def slurm_hosts_conf(partition: str) -> str:
    """Return a ``hosts.conf`` whose localhost section submits to Slurm partition ``partition``.

    Used only by runs with "Use a queue engine" on: local runs ignore it.
    """
    return HOSTS_CONF + SLURM_QUEUE.replace("%(partition)s", partition)


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
        DISPLAY removed. With XMIPP_QC_SLURM_PARTITION set (by
        ``scripts/services/slurm.sh``) a new hosts.conf has a Slurm queue.
        SCIPION_PYTHON is the running interpreter: Scipion
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
            partition = env.get("XMIPP_QC_SLURM_PARTITION")
            fh.write(slurm_hosts_conf(partition) if partition else HOSTS_CONF)
    env.setdefault("SCIPION_HOSTS", hosts)
    return env
