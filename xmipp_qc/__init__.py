# **************************************************************************
# * xmipp_qc: quality control for cryo-EM, a Scipion plugin.
# * Licensed under the GNU General Public License v3 or later (see LICENSE).
# **************************************************************************
"""Scipion plugin ``xmipp_qc``: compare reprojections and movie-alignment consensus.

The numeric work lives in :mod:`xmipp_qc.core` (numpy/scipy only); this module
registers the plugin with Scipion. The :class:`Plugin` class is built on first
access (PEP 562 module ``__getattr__``): Scipion's plugin discovery reads
``xmipp_qc.Plugin`` as usual, while the ``xmipp-qc`` command and the core,
which import this package too, never load pwem, pyworkflow or a GUI toolkit.
"""

__version__ = "0.1.0"
#: Plugin icon shown by Scipion's protocol form (package data, 64x64 PNG).
_logo = "xmipp_qc_logo.png"
#: Bibtex keys (entries in the docstring of :mod:`xmipp_qc.bibtex`).
_references = ["Cherian2013", "Sorzano2004", "delaRosaTrevin2013"]

_PLUGIN = None


def _makePlugin():
    import os

    import pwem
    import pyworkflow.utils as pwutils

    class Plugin(pwem.Plugin):
        """Pure-Python plugin: no binaries to install or locate, no variables."""

        _homeVar = ""
        _pathVars = []
        _supportedVersions = [__version__]
        _url = "https://github.com/xmipp-qc/scipion-em-xmipp-qc"

        @classmethod
        def _defineVariables(cls):
            """No variables: everything runs on numpy and scipy in the protocol folders."""

        @classmethod
        def getEnviron(cls):
            return pwutils.Environ(os.environ)

        @classmethod
        def defineBinaries(cls, env):
            """Nothing to install: everything runs on numpy and scipy."""

    Plugin.__module__ = __name__
    Plugin.__qualname__ = "Plugin"
    return Plugin


def __getattr__(name):
    global _PLUGIN
    if name == "Plugin":
        if _PLUGIN is None:
            _PLUGIN = _makePlugin()
        return _PLUGIN
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
