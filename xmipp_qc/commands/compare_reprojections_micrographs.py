"""``volK_micrographs.star`` of ``xmipp-qc compare-reprojections``: one row per micrograph.

A RELION micrograph table (``data_micrographs``, written by
:func:`xmipp_qc.formats.relion_micrographs.write_micrographs`) with the
columns of :func:`xmipp_qc.core.micrograph_table.micrograph_table`:
``rlnMicrographName``, ``xmippQcParticles``, ``xmippQcFlagged``,
``xmippQcOutlierRate``, ``xmippQcMedianCost`` and, with ``--use-ctf``, the CTF
check (``xmippQcCtfSuspect`` 0/1, ``xmippQcDefocusScale``, ``xmippQcCtfGain``
and its interval ``xmippQcCtfGainLow``/``High``, ``xmippQcCtfBest``,
``xmippQcCtfDecided``, ``xmippQcCtfParticles``: the scored particles the
verdict rests on). Written only when the particle STAR has
``rlnMicrographName``.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["micrograph_ids", "write_micrograph_table"]


def micrograph_ids(particles) -> tuple[np.ndarray, list[str]] | None:
    """Micrograph id of each row (0.. in order of first appearance) and the names; None
    without ``rlnMicrographName``."""
    block = particles.block
    if not block.has("rlnMicrographName"):
        return None
    names = block.text("rlnMicrographName")
    index: dict[str, int] = {}
    ids = np.array([index.setdefault(n, len(index)) for n in names], dtype=np.int64)
    return ids, list(index)


def write_micrograph_table(particles, final: dict, ctf_corr, prefix: str, out: str):
    """Write ``prefix_micrographs.star``; return ``(file name, table, names)`` or None.

    ``final`` and ``ctf_corr`` (None without the CTF) are in STAR row order.
    """
    from xmipp_qc.core.micrograph_table import micrograph_table
    from xmipp_qc.formats.relion_micrographs import write_qc_micrographs

    mics = micrograph_ids(particles)
    if mics is None:
        return None
    ids, names = mics
    table = micrograph_table(ids, final["isOutlier"], final["cost"], ctf_corr)
    ordered = [names[m] for m in table["mic_ids"]]
    name = f"{prefix}_micrographs.star"
    write_qc_micrographs(os.path.join(out, name), table, ordered)
    return name, table, ordered
