"""Figures of xmipp_qc: pure functions of saved arrays, free of Scipion.

Each function builds a :class:`matplotlib.figure.Figure` without pyplot state
and returns it. The viewers show them in Scipion windows, the protocols and the
``xmipp-qc`` command save them as PNG files. Nothing here imports pyworkflow,
pwem or tkinter, so a command-line run never loads Scipion's GUI stack.
"""
