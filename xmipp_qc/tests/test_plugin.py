"""Guards: registration, GUI tree, class names, the core/framework boundary, harness."""

import ast
import configparser
import inspect
import json
import os
import subprocess
from importlib.metadata import entry_points
from pathlib import Path

import pwem
from pyworkflow import Config
from pyworkflow.protocol import Protocol
from pyworkflow.viewer import Viewer

import xmipp_qc
import xmipp_qc.protocols
import xmipp_qc.viewers

PACKAGE = Path(xmipp_qc.__file__).parent
FRAMEWORK = {"pyworkflow", "pwem", "xmippLib", "mrcfile", "emtable", "matplotlib", "tkinter",
             "threadpoolctl"}


def _exported(module, base):
    return [
        obj for name in module.__all__
        if inspect.isclass(obj := getattr(module, name)) and issubclass(obj, base)
    ]  # fmt: skip


def test_entry_point_resolves_to_the_plugin():
    eps = [ep for ep in entry_points(group="pyworkflow.plugin") if ep.name == "xmipp_qc"]
    assert len(eps) == 1
    module = eps[0].load()
    assert module is xmipp_qc
    assert issubclass(module.Plugin, pwem.Plugin)
    assert module.__version__.count(".") == 2


def test_domain_discovers_our_protocols_and_viewers():
    domain = Config.getDomain()
    assert domain is pwem.Domain
    assert "xmipp_qc" in domain.getPlugins()
    protocols = _exported(xmipp_qc.protocols, Protocol)
    assert protocols, "xmipp_qc.protocols exports no protocol"
    registered = domain.getProtocols()
    for cls in protocols:
        assert registered.get(cls.__name__) is cls, f"{cls.__name__} not registered as ours"
    viewers = domain.getViewers()
    for cls in _exported(xmipp_qc.viewers, Viewer):
        assert viewers.get(cls.__name__) is cls


def test_protocol_names_cannot_collide_with_scipion_em_xmipp():
    # scipion-em-xmipp names its classes Xmipp*, never XmippQc* (checked in its
    # sources); our prefix keeps the bare names stored in project databases apart.
    for cls in _exported(xmipp_qc.protocols, Protocol):
        assert cls.__name__.startswith("XmippQcProt"), cls.__name__
        assert cls.__module__.startswith("xmipp_qc.protocols.")


def _conf_protocols():
    parser = configparser.ConfigParser()
    parser.optionxform = str
    parser.read(PACKAGE / "protocols.conf")
    found, sections = [], []

    def walk(node):
        if node.get("tag") == "protocol":
            found.append(node["value"])
        if node.get("tag") == "section":
            sections.append(node["text"])
        for child in node.get("children", []):
            walk(child)

    for _, value in parser.items("PROTOCOLS"):
        for node in json.loads(value):
            walk(node)
    return found, sections


def test_gui_tree_lists_exported_protocols_only():
    found, sections = _conf_protocols()
    assert "Quality control" in sections
    exported = {cls.__name__ for cls in _exported(xmipp_qc.protocols, Protocol)}
    assert set(found) <= exported, set(found) - exported
    hidden = {c.__name__ for c in _exported(xmipp_qc.protocols, Protocol) if c.isDisabled()}
    assert not set(found) & hidden, "hidden helper protocols must stay out of the GUI tree"
    assert set(found) | hidden == exported, "every public protocol needs a GUI entry"


def _imports(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level >= 2:
                yield "xmipp_qc (relative import leaving core)"
            elif node.module and node.level == 0:
                yield node.module


def test_core_never_imports_the_framework():
    core_files = sorted((PACKAGE / "core").glob("*.py"))
    assert len(core_files) >= 3
    offenders = []
    for path in core_files:
        for name in _imports(path):
            root = name.split(".")[0]
            outside_core = root == "xmipp_qc" and not name.startswith("xmipp_qc.core")
            if root in FRAMEWORK or outside_core:
                offenders.append(f"{path.name}: {name}")
    assert not offenders, offenders


def test_boundary_check_detects_a_framework_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import numpy\nfrom pwem.objects import Volume\nfrom .. import convert\n")
    assert list(_imports(bad)) == [
        "numpy", "pwem.objects", "xmipp_qc (relative import leaving core)"
    ]  # fmt: skip


def test_references_are_in_the_bibtex():
    from pyworkflow.utils import parseBibTex

    import xmipp_qc.bibtex

    keys = set(parseBibTex(xmipp_qc.bibtex.__doc__))
    assert set(xmipp_qc._references) <= keys
    assert "Cherian2013" in keys


def test_harness_is_isolated_and_headless():
    home = Path(os.environ["SCIPION_HOME"])
    assert home.is_dir() and home != Path.cwd()
    assert Path(os.environ["SCIPION_HOSTS"]).is_file()
    user_data = Path(os.environ["SCIPION_USER_DATA"])
    assert user_data != Path.home() / "ScipionUserData", "tests must not write the user's data"
    assert os.environ["SCIPION_DOMAIN"] == "pwem"
    assert os.environ["SCIPION_TEST_NOSYNC"] == "1"
    assert "DISPLAY" not in os.environ
    # Protocols run in subprocesses of $SCIPION_PYTHON: it must see pyworkflow and us.
    probe = subprocess.run(
        [os.environ["SCIPION_PYTHON"], "-c", "import pyworkflow, xmipp_qc.protocols"],
        capture_output=True, text=True, check=False,
    )
    assert probe.returncode == 0, probe.stderr
    import matplotlib

    assert matplotlib.get_backend().lower() == "agg"


def test_limit_blas_threads_caps_every_blas_pool_in_a_fresh_process():
    """numpy and scipy each bundle an OpenBLAS; both pools end at one thread."""
    code = (
        "import numpy, scipy.linalg\n"
        "from xmipp_qc.native_threads import blas_threads, limit_blas_threads\n"
        "print(blas_threads()); limit_blas_threads(); print(blas_threads())\n"
    )
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    out = subprocess.run([os.sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split("\n")
    before, after = json.loads(out[0]), json.loads(out[1])
    assert len(after) >= 2 and set(after) == {1}, (before, after)
    assert max(before) == os.cpu_count() or os.cpu_count() == 1, before
