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

__all__ = ["ctf_line", "micrograph_ids", "micrograph_summary", "write_micrograph_table"]


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


def ctf_line(summary: dict) -> str:
    """The summary line of the CTF check: suspect micrographs named."""
    sus, n = summary["ctf_suspect"], summary["n_micrographs"]
    if not sus:
        return (f"no micrograph of {n} has a suspect CTF; micrograph table in "
                f"{summary['micrographs_star']}")
    return (f"suspect CTF in {len(sus)} of {n} micrographs: "
            + ", ".join(f"{name} (best defocus x{scale:.2f}, gain {gain:+.3f})"
                        for name, scale, gain in sus)
            + f"; micrograph table in {summary['micrographs_star']}")


def _ctf_plot(table: dict, names: list, prefix: str, out: str, map_name: str) -> str:
    """``prefix_ctf_check.png``: correlation against defocus scale per micrograph."""
    from xmipp_qc.core.ctf_check import ALTERNATIVES, DEFOCUS_SCALES
    from xmipp_qc.plots.ctf_check import plot_ctf_check

    corr = table["ctf_mean_corr"]
    fig = plot_ctf_check(DEFOCUS_SCALES, corr[:, :len(DEFOCUS_SCALES)], names,
                         suspect=table["ctf_suspect"].astype(bool),
                         best_scale=table["defocus_scale"], map_name=map_name,
                         no_ctf=corr[:, ALTERNATIVES.index("no CTF")],
                         decided=table["ctf_decided"].astype(bool))
    name = f"{prefix}_ctf_check.png"
    fig.savefig(os.path.join(out, name), dpi=90)
    return name


def micrograph_summary(particles, final: dict, corr, prefix: str, out: str,
                 map_name: str) -> dict:
    """Write ``prefix_micrographs.star``; its summary for the log and ranking.json.

    ``final`` and ``corr`` (the CTF check's correlations, None without) are in
    row order.
    """
    written = write_micrograph_table(particles, final, corr, prefix, out)
    if written is None:
        return {}
    name, table, names = written
    summary = {"micrographs_star": name, "n_micrographs": len(names)}
    if corr is not None:
        summary["ctf_plot"] = _ctf_plot(table, names, prefix, out, map_name)
        summary["ctf_suspect"] = [(n, float(table["defocus_scale"][r]),
                                   float(table["ctf_gain"][r]))
                                  for r, n in enumerate(names) if table["ctf_suspect"][r]]
    return summary
