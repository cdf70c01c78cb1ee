"""``make gui``: open Scipion's project window on the demo project.

``python -m xmipp_qc.demo_gui [--out xmipp-qc-demo]`` builds the demo project
first when it is missing (``xmipp-qc demo``, a few minutes), then starts
Scipion's own project window (``pyworkflow.apps.pw_project``) on it, with the
demo's private Scipion home, in a child Python: pyworkflow reads its
environment once, when first imported. Needs an X display (DISPLAY).
"""

import argparse
import os
import subprocess
import sys

from xmipp_qc.demo import PROJECT, run_demo
from xmipp_qc.headless import prepare_environment


def guiEnvironment(out):
    """Environment of the demo's Scipion home, with the display and a Tk backend."""
    env = dict(os.environ)
    display = env.get("DISPLAY")
    for key in ("SCIPION_HOME", "SCIPION_USER_DATA", "SCIPION_HOSTS", "MPLBACKEND"):
        env.pop(key, None)
    prepare_environment(os.path.join(out, "scipion"), env)
    env["DISPLAY"] = display or ""
    env["MPLBACKEND"] = "TkAgg"
    return env


def main(argv=None):
    """Build the demo project if missing, then open Scipion's project window on it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="xmipp-qc-demo",
                        help="Folder of the demo (as for `xmipp-qc demo`; default %(default)s).")
    args = parser.parse_args(argv)
    out = os.path.abspath(args.out)
    if not os.environ.get("DISPLAY"):
        print("make gui needs an X display: set DISPLAY (e.g. ssh -X, or a VNC session).",
              file=sys.stderr)
        return 2
    env = guiEnvironment(out)
    project = os.path.join(env["SCIPION_USER_DATA"], "projects", PROJECT)
    if not os.path.isdir(project):
        print(f"No demo project in {out}: building it first (xmipp-qc demo) ...", flush=True)
        status = run_demo(out)
        if status:
            return status
    print(f"Opening Scipion's project window on {project}", flush=True)
    # -O: as Scipion's launcher does; pw_project then opens the window in this process
    return subprocess.call([sys.executable, "-O", "-m", "pyworkflow.apps.pw_project", PROJECT],
                           env=env)


if __name__ == "__main__":
    sys.exit(main())
