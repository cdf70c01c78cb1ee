"""Tests of xmipp_qc: core known-answer tests (``core/``) and Scipion project tests."""
