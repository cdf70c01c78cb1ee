"""The top-level ``setup.py`` shim: ``python setup.py --name`` and ``pip install -e .``.

Both read every setting from ``pyproject.toml`` (``setup()`` has no arguments).
The editable install goes into a copy of the sources, with a prefix of its own,
so that the environment running the tests is left as it is.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import xmipp_qc

ROOT = Path(__file__).resolve().parents[2]


def _run(args, cwd, **kw):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, **kw)


def test_setup_py_reads_pyproject():
    text = (ROOT / "setup.py").read_text()
    assert "setuptools.setup()" in text and text.count("setup(") == 1  # no arguments
    name = _run(["setup.py", "--name"], ROOT)
    assert name.returncode == 0, name.stderr
    assert name.stdout.split() == ["scipion-em-xmipp-qc"]
    version = _run(["setup.py", "--version"], ROOT)
    assert version.stdout.split() == [xmipp_qc.__version__]


def test_editable_install_of_a_copy(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "xmipp_qc", src / "xmipp_qc",
                    ignore=shutil.ignore_patterns("tests", "__pycache__"))
    prefix = tmp_path / "prefix"
    # --ignore-installed: without it pip uninstalls this environment's copy first
    pip = _run(["-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                "--no-index", "--ignore-installed", "-e", str(src), "--prefix", str(prefix)],
               tmp_path)
    assert pip.returncode == 0, pip.stderr
    here = _run(["-c", "import xmipp_qc; print(xmipp_qc.__file__)"], tmp_path)
    assert Path(here.stdout.strip()) == ROOT / "xmipp_qc" / "__init__.py"  # left as it was
    site = Path(sysconfig.get_path("purelib", vars={"base": str(prefix),
                                                    "platbase": str(prefix)}))
    (src / "xmipp_qc" / "editable_probe.py").write_text("WHERE = 'the copy'\n")  # after install
    # -S: only the new prefix's .pth files are processed; the test environment's
    # site-packages comes after it for the dependencies (pyworkflow, numpy)
    deps = sysconfig.get_path("purelib")
    probe = _run(["-S", "-c", "import site, sys; site.addsitedir(sys.argv[1]); "
                  "sys.path.append(sys.argv[2]); import importlib.metadata as m; "
                  "import xmipp_qc, xmipp_qc.editable_probe as p; "
                  "print(xmipp_qc.__file__); print(p.WHERE); "
                  "print(m.version('scipion-em-xmipp-qc')); "
                  "print([e.value for e in m.entry_points(group='console_scripts') "
                  "if e.name == 'xmipp-qc'])",
                  str(site), deps], tmp_path)
    assert probe.returncode == 0, probe.stderr
    lines = probe.stdout.splitlines()
    assert Path(lines[0]) == src / "xmipp_qc" / "__init__.py"  # the copy, not this checkout
    assert lines[1] == "the copy"  # a file added after installing is seen: editable
    assert lines[2] == xmipp_qc.__version__
    assert lines[3] == "['xmipp_qc.cli:main']"
