"""Packaging of xmipp_qc, a Scipion plugin for cryo-EM quality control."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(
    r'^__version__ = "([^"]+)"', (HERE / "xmipp_qc" / "__init__.py").read_text(), re.M
).group(1)

setup(
    name="scipion-em-xmipp-qc",
    version=VERSION,
    description="Quality control for cryo-EM in Scipion: reprojection residuals "
    "and movie-alignment consensus, in pure numpy/scipy.",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="GPL-3.0-or-later",
    python_requires=">=3.9,<3.13",
    packages=find_packages(include=["xmipp_qc", "xmipp_qc.*"]),
    package_data={"xmipp_qc": ["protocols.conf"]},
    install_requires=[
        "scipion-pyworkflow>=3.11",
        "scipion-em>=3.11",
        # Scipion pins numpy 1.26.1 and scipy <= 1.10; stay inside those.
        "numpy>=1.24,<2",
        "scipy>=1.9",  # pwem pins it per Python (<=1.10.0 on 3.11)
        "matplotlib",
        # Caps numpy/scipy's OpenBLAS pools at run time (xmipp_qc/native_threads.py):
        # Scipion's parallel steps are threads, and spinning pools cost 1.7x.
        "threadpoolctl>=3.1",
        "mrcfile",
        "emtable",
        # scikit-image comes with scipion-em; 0.25 needs scipy>=1.11 and makes
        # pip backtrack through ~60 MB of wheels, so cap it here.
        "scikit-image<0.25",
    ],
    extras_require={"test": ["pytest>=7", "pytest-xdist", "ruff==0.8.6"]},
    entry_points={
        "pyworkflow.plugin": ["xmipp_qc = xmipp_qc"],
        "console_scripts": ["xmipp-qc = xmipp_qc.cli:main"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Bio-Informatics",
    ],
)
