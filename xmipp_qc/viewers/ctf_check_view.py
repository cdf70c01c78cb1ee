"""The CTF check of compare reprojections in the viewer: a micrograph table and its plot.

From ``extra/micrographs_vol<vid>.json``
(:mod:`xmipp_qc.protocols.compare_reprojections_ctf`): a
:class:`~xmipp_qc.viewers.table_window.TableWindow` with one row per
micrograph (the columns of the CLI's ``volK_micrographs.star``), suspect ones
first, and the figure of :func:`xmipp_qc.plots.ctf_check.plot_ctf_check`.
"""

import numpy as np

from xmipp_qc.core.ctf_check import DEFOCUS_SCALES
from xmipp_qc.plots.ctf_check import plot_ctf_check
from xmipp_qc.protocols.compare_reprojections_ctf import readMicrographTable
from xmipp_qc.viewers.figure_window import FigureView
from xmipp_qc.viewers.table_window import Column, TableWindow

#: Micrograph table columns: (table key, heading, format, width).
MIC_COLUMNS = (("name", "micrograph", "{}", 220), ("ctf_suspect", "CTF suspect", "{}", 80),
               ("defocus_scale", "best defocus (x given)", "{:.2f}", 130),
               ("ctf_gain", "corr. gain", "{:+.3f}", 80),
               ("ctf_gain_low", "gain 95% low", "{:+.3f}", 90),
               ("ctf_gain_high", "gain 95% high", "{:+.3f}", 90),
               ("ctf_best", "best alternative", "{}", 130),
               ("particles", "particles", "{}", 70),
               ("ctf_particles", "scored", "{}", 60), ("flagged", "flagged", "{}", 60),
               ("outlier_rate", "outlier rate", "{:.2f}", 80),
               ("median_cost", "median cost", "{:.3f}", 80),
               ("ctf_decided", "decided", "{}", 60))


def micrographRows(table):
    """One dict per micrograph of a saved table (``id`` = micrograph id)."""
    rows = []
    for r, mic in enumerate(table["mic_ids"]):
        row = {"id": int(mic), "name": table["names"][r]}
        for key, *_ in MIC_COLUMNS[1:]:
            if key in table:
                value = table[key][r]
                row[key] = bool(value) if key in ("ctf_suspect", "ctf_decided") else value
        if "ctf_best" in row:
            row["ctf_best"] = str(row["ctf_best"]).replace("_", " ")
        rows.append(row)
    return rows


def ctfFigure(table, mapName):
    """The correlation-against-defocus-scale figure of a saved table."""
    corr = np.asarray(table["ctf_mean_corr"], dtype=float)
    alternatives = table["alternatives"]
    return plot_ctf_check(table.get("scales", DEFOCUS_SCALES),
                          corr[:, :len(table.get("scales", DEFOCUS_SCALES))], table["names"],
                          suspect=np.asarray(table["ctf_suspect"], bool),
                          best_scale=table["defocus_scale"], map_name=mapName,
                          no_ctf=corr[:, alternatives.index("no CTF")],
                          decided=np.asarray(table["ctf_decided"], bool))


class MicrographTableView:
    """View opening the micrograph table of one map (a pyworkflow View: ``show()``)."""

    def __init__(self, title, rows, header, masterWindow=None):
        self.title, self.rows, self.header = title, rows, header
        self.masterWindow, self.window = masterWindow, None

    def show(self):
        columns = [Column(k, label, fmt, width=w, anchor="w" if fmt == "{}" else "e")
                   for k, label, fmt, w in MIC_COLUMNS]
        self.window = TableWindow(self.title, self.rows, columns, sortBy="ctf_gain",
                                  descending=True, header=self.header, rowHeight=22,
                                  pictureWidth=0, masterWindow=self.masterWindow)
        self.window.show()
        return self.window


def ctfCheckViews(protocol, volId, mapName, title, masterWindow=None):
    """The table and figure views of the CTF check of map ``volId`` (or None: no check)."""
    table = readMicrographTable(protocol._getExtraPath(), volId)
    if not table or "ctf_suspect" not in table:
        return None
    rows = micrographRows(table)
    n_sus = sum(bool(s) for s in table["ctf_suspect"])
    header = (f"{mapName}: {n_sus} of {len(rows)} micrographs with a suspect CTF: the CTF as "
              "given explains their particles clearly worse than a scaled defocus,\nthe "
              "astigmatism turned by 90°, the phase flipped or no CTF (verdict after "
              f"{table['min_particles']} particles; gain = mean correlation difference, "
              "95% interval). Sorted by gain, largest first.")
    figure = FigureView(ctfFigure(table, mapName), title=f"{title}: CTF check, {mapName}",
                        masterWindow=masterWindow)
    return [MicrographTableView(f"{title}: micrographs of {mapName}", rows, header,
                                masterWindow), figure]
