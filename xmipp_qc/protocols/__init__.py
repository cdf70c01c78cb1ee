"""Protocols of xmipp_qc; Scipion discovers the classes re-exported here."""

__all__: list = []
