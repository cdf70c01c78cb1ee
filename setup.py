"""Shim for the tools that still call ``setup.py``: every setting is in ``pyproject.toml``.

``pip install -e .`` from old scripts and ``python setup.py --name`` both work.
"""

import sys

import setuptools

# pyproject.toml gives the licence as an SPDX expression (PEP 639), which older
# setuptools reject with a page of schema errors: say what to do instead.
if int(setuptools.__version__.split(".")[0]) < 77:
    sys.exit(f"setuptools {setuptools.__version__} cannot read pyproject.toml (needs >= 77): "
             "run  python -m pip install -U 'setuptools>=77'  or  pip install -e .")

setuptools.setup()
