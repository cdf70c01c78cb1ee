"""Start-up of the ``xmipp-qc`` command: time, peak memory and what it imports.

Runs, in fresh processes of this interpreter, for this checkout and optionally
for another one (``--before DIR``, e.g. a ``git archive`` of an older commit,
put first on PYTHONPATH):

(a) ``xmipp-qc --help``: the command's own start-up;
(b) ``xmipp-qc movie-consensus --plots`` on two tiny CSV movies: a whole run
    with figures (the imports dominate; the comparison itself takes ~10 ms);
(c) ``xmipp-qc compare-reprojections`` imports: ``xmipp_qc.cli`` plus the
    modules a run loads (formats, pipeline, the report plots), no data.

Printed per case (median over ``--repeats``): wall time, peak RSS of the
process, whether pyworkflow/pwem and a GUI module (tkinter, pyworkflow.gui,
pwem.viewers) were imported, and the ratio to the other checkout.

Usage::

    .venv/bin/python benchmarks/cli_startup.py [--before /tmp/old-checkout] [--repeats 7]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]

_PROBE = r"""
import importlib, json, resource, sys, time
t0 = time.perf_counter()
case, tmp = sys.argv[1], sys.argv[2]
from xmipp_qc.cli import main
if case == "help":
    try:
        main(["--help"])
    except SystemExit:
        pass
elif case == "movies":
    main(["movie-consensus", "--reference", tmp + "/ref/*.csv", "--secondary",
          tmp + "/sec/*.csv", "--out", tmp + "/out", "--plots"] +
         (["--quiet"] if "--quiet" in sys.argv else []))
else:
    importlib.import_module("xmipp_qc.commands.compare_reprojections")
    for m in ("xmipp_qc.formats.star", "xmipp_qc.formats.mrc", "xmipp_qc.core.pipeline"):
        importlib.import_module(m)
    for m in ("xmipp_qc.plots.reprojections", "xmipp_qc.viewers.plots_reprojections"):
        try:
            importlib.import_module(m)
            break
        except ImportError:
            pass
wall = time.perf_counter() - t0
mods = set(sys.modules)
print(json.dumps({
    "wall": wall, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "scipion": any(m.split(".")[0] in ("pyworkflow", "pwem") for m in mods),
    "gui": sorted(m for m in mods if m in ("tkinter", "pyworkflow.gui", "pwem.viewers")),
}))
"""


def _data(tmp: Path) -> None:
    for run in ("ref", "sec"):
        (tmp / run).mkdir(exist_ok=True)
        for k in range(2):
            rows = [f"{f + 1},{f * 1.0},{f * (0.5 + k)}" for f in range(20)]
            (tmp / run / f"m{k}.csv").write_text("\n".join(rows) + "\n")


def _measure(src: Path, case: str, tmp: Path, repeats: int, quiet_flag: bool) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src), MPLBACKEND="Agg")
    runs, total = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        args = [sys.executable, "-c", _PROBE, case, str(tmp)] + (["--quiet"] * quiet_flag)
        out = subprocess.run(args, env=env, cwd=tmp, capture_output=True, text=True,
                             check=True)
        total.append(time.perf_counter() - t)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {"process_s": statistics.median(total),
            "in_python_s": statistics.median(r["wall"] for r in runs),
            "rss_mb": statistics.median(r["rss_mb"] for r in runs),
            "scipion": runs[0]["scipion"], "gui": ",".join(runs[0]["gui"]) or "-"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=Path, help="another checkout to compare with")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    sources = [("now", HERE)] + ([("before", args.before.resolve())] if args.before else [])
    with tempfile.TemporaryDirectory() as tmp:
        _data(Path(tmp))
        print(f"{'case':10s} {'checkout':8s} {'process s':>9s} {'imports s':>9s} "
              f"{'peak MB':>8s} {'Scipion':>7s}  GUI modules            ratio")
        for case in ("help", "movies", "compare"):
            res = {}
            for label, src in sources:  # interleaved per case: same machine load
                res[label] = _measure(src, case, Path(tmp), args.repeats,
                                      quiet_flag=(label == "now"))
            for label, _ in sources:
                r = res[label]
                ratio = (f"{r['process_s'] / res['now']['process_s']:.2f}x"
                         if label != "now" else "1.00x")
                print(f"{case:10s} {label:8s} {r['process_s']:9.3f} {r['in_python_s']:9.3f} "
                      f"{r['rss_mb']:8.0f} {str(r['scipion']):>7s}  {r['gui']:22s} {ratio}")


if __name__ == "__main__":
    main()
