"""An ``xmipp-qc`` run on plain files never loads Scipion or a GUI toolkit."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from xmipp_qc.core import simulate as sim
from xmipp_qc.formats.mrc import write_stack, write_volume

#: Top-level modules a command-line run must not import (Scipion and its GUI stack).
FORBIDDEN = ("tkinter", "_tkinter", "pyworkflow", "pwem", "PyQt5")

_PROBE = """
import json, sys
from xmipp_qc.cli import main
codes = [main(argv) for argv in json.loads(sys.argv[1])]
loaded = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.argv[2])))
print(json.dumps({"codes": codes, "loaded": loaded,
                  "plots": "xmipp_qc.plots.reprojections" in sys.modules}))
"""


def _particles(root, box=24, n=12, px=4.0):
    blobs = sim.phantom_blobs(box, seed=3)
    ps = sim.simulate_particles(blobs, n, box=box, snr=1.0, pixel_size_a=px, seed=4)
    write_stack(str(root / "stack.mrcs"), ps.images, px)
    write_volume(str(root / "map.mrc"), sim.blobs_volume(blobs, box), px)
    rows = [f"{i + 1}@stack.mrcs {a[0]:.4f} {a[1]:.4f} {a[2]:.4f} {s[0]:.4f} {s[1]:.4f} {px}"
            for i, (a, s) in enumerate(zip(ps.angles, ps.shifts))]
    (root / "particles.star").write_text(
        "data_particles\nloop_\n_rlnImageName\n_rlnAngleRot\n_rlnAngleTilt\n_rlnAnglePsi\n"
        "_rlnOriginX\n_rlnOriginY\n_rlnImagePixelSize\n" + "\n".join(rows) + "\n")


def _trajectories(root):
    for run in ("ref", "sec"):
        (root / run).mkdir()
        for k in range(2):
            shifts = np.outer(np.arange(8.0), [1.0, 0.5 + k])
            (root / run / f"mic_{k}.csv").write_text(
                "\n".join(f"{f + 1},{x},{y}" for f, (x, y) in enumerate(shifts)) + "\n")


def test_a_cli_run_imports_no_scipion_and_no_gui(tmp_path):
    _particles(tmp_path)
    _trajectories(tmp_path)
    argv = [["compare-reprojections", "--images", str(tmp_path / "particles.star"),
             "--volume", str(tmp_path / "map.mrc"), "--out", str(tmp_path / "cmp"),
             "--no-refine", "--quiet"],
            ["movie-consensus", "--reference", str(tmp_path / "ref" / "*.csv"),
             "--secondary", str(tmp_path / "sec" / "*.csv"), "--out", str(tmp_path / "mov"),
             "--plots", "--quiet"]]
    env = dict(os.environ, MPLBACKEND="Agg")
    run = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(argv), json.dumps(FORBIDDEN)],
                         capture_output=True, text=True, env=env, check=False)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["codes"] == [0, 0]
    assert result["plots"], "the report plots were not drawn: the probe proves nothing"
    assert (tmp_path / "cmp" / "vol1_report.png").stat().st_size > 1000
    assert (tmp_path / "mov" / "plots" / "mic_0.png").stat().st_size > 1000
    assert result["loaded"] == [], f"a CLI run imported {result['loaded']}"


def test_the_plugin_class_is_still_found_by_scipion():
    """``xmipp_qc.Plugin`` is built on first access and is a pwem plugin."""
    import pwem

    import xmipp_qc

    assert issubclass(xmipp_qc.Plugin, pwem.Plugin)
    assert xmipp_qc.Plugin is xmipp_qc.Plugin
    assert xmipp_qc.Plugin.__module__ == "xmipp_qc"
