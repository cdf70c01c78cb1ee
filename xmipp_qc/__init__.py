# **************************************************************************
# * xmipp_qc: quality control for cryo-EM, a Scipion plugin.
# * Licensed under the GNU General Public License v3 or later (see LICENSE).
# **************************************************************************
"""Scipion plugin ``xmipp_qc``: compare reprojections and movie-alignment consensus.

The numeric work lives in :mod:`xmipp_qc.core` (numpy/scipy only); this module
only registers the plugin with Scipion.
"""

import os

import pwem
import pyworkflow.utils as pwutils

__version__ = "0.1.0"
_logo = None
_references = ["Cherian2013", "Sorzano2004", "delaRosaTrevin2013"]


class Plugin(pwem.Plugin):
    """Pure-Python plugin: no binaries to install or locate."""

    _homeVar = ""
    _pathVars = []
    _supportedVersions = [__version__]
    _url = "https://github.com/xmipp-qc/scipion-em-xmipp-qc"

    @classmethod
    def _defineVariables(cls):
        # Where per-step working files may be written; the protocol folders by default.
        cls._defineVar("XMIPP_QC_CHUNK_SIZE", "256")

    @classmethod
    def getEnviron(cls):
        return pwutils.Environ(os.environ)

    @classmethod
    def defineBinaries(cls, env):
        """Nothing to install: everything runs on numpy and scipy."""
