"""Tests of xmipp_qc: core known-answer tests (``core/``) and Scipion project tests.

Run them with pytest (the README's ``make test``), or the Scipion project tests
with unittest as Scipion's own runner does::

    python -m unittest xmipp_qc.tests.test_protocol_movie_consensus
    python -m xmipp_qc.tests xmipp_qc.tests.test_protocol_movie_consensus  # Scipion's runner
    scipion3 tests xmipp_qc.tests.test_protocol_movie_consensus            # in a Scipion install

Under pytest the root ``conftest.py`` prepares a private, headless Scipion
environment before pyworkflow is imported. Other runners import this package
first, so it does the same here when nobody did (no ``SCIPION_HOME`` set and
pyworkflow not yet imported): a temporary SCIPION_HOME with its ``hosts.conf``
and user data, removed at exit (kept with ``XMIPP_QC_KEEP_TESTS=1``). A Scipion
installation's environment (``scipion3 tests`` sets ``SCIPION_HOME``) is left
as it is.
"""

import os
import sys


def _prepare_private_scipion() -> None:
    if "SCIPION_HOME" in os.environ or "pyworkflow" in sys.modules:
        return
    import atexit
    import shutil
    import tempfile

    from xmipp_qc.headless import prepare_environment

    base = tempfile.mkdtemp(prefix="xmipp-qc-scipion-")
    if not os.environ.get("XMIPP_QC_KEEP_TESTS"):
        atexit.register(shutil.rmtree, base, ignore_errors=True)
    prepare_environment(base)


_prepare_private_scipion()
