"""Sub-commands of ``xmipp-qc`` (see :mod:`xmipp_qc.cli`)."""
