"""The output folder of an ``xmipp-qc`` command: one run's files, never a mix of two.

Policy (both commands):

* ``--out`` may be new, empty, or hold the results of an earlier run of the
  same command (marked by :data:`MARKER`); anything else is refused before any
  work, unless ``--overwrite`` is given.
* A run writes into a fresh staging folder beside ``--out``
  (``.NAME.xmipp-qc-tmp-PID-XXXX``) and, only when it succeeds, swaps it in
  whole: the earlier results are replaced at once, never mixed with new ones.
* A failed run removes its staging folder and leaves ``--out`` as it was; the
  staging folder of a killed run is removed by the next run into the same
  folder (its process being gone).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time

from xmipp_qc import __version__

__all__ = ["MARKER", "OutputFolder"]

#: File that marks a folder as the results of one ``xmipp-qc`` run.
MARKER = ".xmipp-qc-run.json"

_TMP, _OLD = ".xmipp-qc-tmp-", ".xmipp-qc-old-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _marker_command(folder: str) -> str | None:
    try:
        with open(os.path.join(folder, MARKER)) as fh:
            return str(json.load(fh).get("command"))
    except (OSError, ValueError, AttributeError):
        return None


class OutputFolder:
    """Staging folder of one run, swapped in as ``out`` on success (see module docstring).

    The folder is checked when the object is made (call it before any work);
    use it as a context manager, which yields the staging folder to write in.

    Parameters
    ----------
    out : str
        The ``--out`` folder.
    command : str
        Sub-command name, written to :data:`MARKER`.
    overwrite : bool
        Replace ``out`` even if it holds files that are not this command's results.

    Raises
    ------
    ValueError
        If ``out`` is a file, or holds other files and ``overwrite`` is False.
    """

    def __init__(self, out: str, command: str, overwrite: bool = False) -> None:
        self.final = os.path.abspath(out)
        self.command = command
        self.staging: str | None = None
        if os.path.exists(self.final) and not os.path.isdir(self.final):
            raise ValueError(f"{out}: --out exists and is not a folder")
        entries = sorted(os.listdir(self.final)) if os.path.isdir(self.final) else []
        if entries and not overwrite and _marker_command(self.final) != command:
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise ValueError(f"{out}: the output folder holds files that are not results of "
                             f"xmipp-qc {command} ({shown}); choose a new or empty folder, or "
                             "add --overwrite to replace it")

    def _clean_stale(self, parent: str, base: str) -> None:
        """Remove staging and set-aside folders of runs whose process is gone."""
        for name in os.listdir(parent):
            for tag in (_TMP, _OLD):
                head = f".{base}{tag}"
                if name.startswith(head):
                    pid = name[len(head):].split("-", 1)[0]
                    if pid.isdigit() and not _alive(int(pid)):
                        shutil.rmtree(os.path.join(parent, name), ignore_errors=True)

    def __enter__(self) -> str:
        """Create the staging folder and return its path."""
        parent, base = os.path.split(self.final)
        os.makedirs(parent, exist_ok=True)
        self._clean_stale(parent, base)
        self.staging = tempfile.mkdtemp(prefix=f".{base}{_TMP}{os.getpid()}-", dir=parent)
        return self.staging

    def __exit__(self, exc_type, exc, tb) -> None:
        """Swap the staging folder in on success; remove it on failure."""
        staging, self.staging = self.staging, None
        if staging is None:
            return
        if exc_type is not None:
            shutil.rmtree(staging, ignore_errors=True)
            return
        with open(os.path.join(staging, MARKER), "w") as fh:
            json.dump({"command": self.command, "version": __version__,
                       "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, fh)
        old = None
        if os.path.lexists(self.final):
            parent, base = os.path.split(self.final)
            old = tempfile.mkdtemp(prefix=f".{base}{_OLD}{os.getpid()}-", dir=parent)
            os.rename(self.final, os.path.join(old, base))
        os.rename(staging, self.final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
