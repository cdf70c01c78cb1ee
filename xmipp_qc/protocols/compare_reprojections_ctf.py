"""The per-micrograph CTF check of *compare reprojections* (a collaborator of the protocol).

With the CTF applied, every chunk result carries each particle's correlation
under alternative CTFs (:mod:`xmipp_qc.core.ctf_check`). :class:`CtfCheckMonitor`
turns them, with the particles' ``micId`` and flags, into the per-micrograph
table of :func:`xmipp_qc.core.micrograph_table.micrograph_table` (the one the
CLI writes as ``volK_micrographs.star``), saved per map as
``extra/micrographs_vol<vid>.json`` and ``.star``. A micrograph's CTF verdict is
made once it has ``MIN_PARTICLES`` scored particles and then frozen
(``extra/ctf_verdicts_vol<vid>.json``): in streaming it never changes as more
particles arrive. The suspect micrographs of the first map go to the output
``ctfSuspectMicrographs`` (items of the optional input micrographs), as the
bad ones go to ``badMicrographs``.
"""

import os

import numpy as np
from pyworkflow.object import Set

from xmipp_qc import compare_run
from xmipp_qc.core.ctf_check import ALTERNATIVES, DEFOCUS_SCALES, MIN_PARTICLES
from xmipp_qc.core.micrograph_table import micrograph_table
from xmipp_qc.formats.json_files import read_json, write_json
from xmipp_qc.protocols.compare_reprojections_results import readScores
from xmipp_qc.protocols.streaming_outputs import updateOutput

CTF_MICS = "ctfSuspectMicrographs"
#: Table columns frozen with a micrograph's verdict.
_VERDICT = ("ctf_suspect", "defocus_scale", "ctf_gain", "ctf_gain_low", "ctf_gain_high",
            "ctf_best")


def readMicrographTable(extraPath, volId):
    """The saved micrograph table of one map (dict of lists, ``names`` included) or None."""
    return read_json(os.path.join(extraPath, f"micrographs_vol{volId}.json"))


def ctfLines(table, volId):
    """Summary lines of the CTF check of one map's saved table."""
    if not table or "ctf_suspect" not in table:
        return []
    names, sus = table["names"], table["ctf_suspect"]
    decided = int(sum(table["ctf_decided"]))
    if not any(sus):
        return [f"Map {volId} CTF check: no suspect micrograph ({decided} of {len(names)} "
                f"decided, >= {table['min_particles']} particles each)."]
    items = [f"{names[r]} (best defocus x{table['defocus_scale'][r]:.2f}, gain "
             f"{table['ctf_gain'][r]:+.3f})" for r in range(len(names)) if sus[r]]
    return [f"Map {volId} CTF check: suspect CTF in {len(items)} of {len(names)} "
            f"micrographs: " + ", ".join(items)]


class CtfCheckMonitor:
    """Micrograph tables, frozen CTF verdicts and the ``ctfSuspectMicrographs`` output.

    Parameters
    ----------
    prot : XmippQcProtCompareReprojections
        The protocol: its form (``ignoreCTF``, ``inputMicrographs``), extra
        folder, ``_loadInput``, ``_micItems``, ``_openMicSet``, ``_micSetIds``
        and ``_updateOutputSet`` (through :func:`.streaming_outputs.updateOutput`).
    """

    def __init__(self, prot):
        self.prot = prot
        self._corr = {}  # (vid, chunk) -> (ids, ctf_corr) of a scored chunk

    # --------------------------- entry points --------------------------------
    def closedRun(self, volIds):
        """Tables (and output) of a closed run whose particles have micrographs."""
        with self.prot._loadInput() as z:
            if "micIds" not in z.files or not (z["micIds"] >= 0).any():
                return
            micOf = dict(zip(z["ids"].tolist(), z["micIds"].tolist()))
        for pos, vid in enumerate(volIds):
            s = readScores(self.prot._getExtraPath(), vid)
            mics = np.array([micOf.get(int(i), -1) for i in s["ids"]], np.int64)
            self._update(vid, s["ids"], mics, s["isOutlier"], s["cost"], pos == 0, True)

    def streamUpdate(self, book, volIds, final):
        """Tables of the particles output so far (streaming; ``book.micIds`` filled)."""
        for pos, vid in enumerate(volIds):
            chunks = [k for k in sorted(book.flags[vid]) if k in book.micIds]
            if not chunks:
                continue
            ids, flags, cost = (np.concatenate([book.flags[vid][k][j] for k in chunks])
                                for j in range(3))
            mics = np.concatenate([book.micIds[k] for k in chunks])
            if not (mics >= 0).any():
                continue
            self._update(vid, ids, mics, flags, cost, pos == 0, final and book.closed,
                         chunks)

    # --------------------------- helpers -------------------------------------
    def _active(self):
        return not self.prot.ignoreCTF.get()

    def _update(self, vid, ids, mics, flags, cost, emit, final, chunks=None):
        corr = self._correlations(vid, ids, chunks) if self._active() else None
        table = micrograph_table(mics, flags, cost, corr, min_particles=MIN_PARTICLES)
        if corr is not None:
            self._freeze(vid, table)
        names = self._names(table["mic_ids"])
        data = {k: np.asarray(v).tolist() for k, v in table.items()}
        data.update(names=names, min_particles=MIN_PARTICLES,
                    alternatives=list(ALTERNATIVES), scales=DEFOCUS_SCALES.tolist())
        extra = self.prot._getExtraPath()
        write_json(os.path.join(extra, f"micrographs_vol{vid}.json"), data)
        from xmipp_qc.formats.relion_micrographs import write_qc_micrographs

        write_qc_micrographs(os.path.join(extra, f"micrographs_vol{vid}.star"), table, names)
        if emit and corr is not None and self.prot.inputMicrographs.get() is not None:
            self._emit(table, final)

    def _correlations(self, vid, ids, chunks):
        """ctf_corr of ``ids`` (None when a chunk has none), from the chunk results."""
        extra = self.prot._getExtraPath()
        chunks = range(compare_run.chunk_count(extra)) if chunks is None else chunks
        for k in chunks:
            if (vid, k) not in self._corr:
                r = compare_run.load_results(extra, vid, [k])[0]
                self._corr[(vid, k)] = (r.ids, r.ctf_corr)
        parts = [self._corr[(vid, k)] for k in chunks]
        if not parts or any(c is None for _, c in parts):
            return None
        allIds = np.concatenate([i for i, _ in parts])
        corr = np.concatenate([c for _, c in parts])
        order = np.argsort(allIds, kind="stable")
        pos = order[np.searchsorted(allIds[order], ids)]
        if not np.array_equal(allIds[pos], ids):
            raise RuntimeError("the CTF check lost particles between the chunks and the flags")
        return corr[pos]

    def _freeze(self, vid, table):
        """Keep the first verdict of every decided micrograph (saved); apply the saved ones."""
        path = self.prot._getExtraPath(f"ctf_verdicts_vol{vid}.json")
        frozen = read_json(path) or {}
        changed = False
        table["ctf_best"] = np.asarray(table["ctf_best"], dtype=object)
        for r, mic in enumerate(table["mic_ids"].tolist()):
            if table["ctf_decided"][r] and str(mic) not in frozen:
                frozen[str(mic)] = {k: np.asarray(table[k][r]).item() for k in _VERDICT}
                changed = True
            if str(mic) in frozen:
                for k in _VERDICT:
                    table[k][r] = frozen[str(mic)][k]
                table["ctf_decided"][r] = 1
        if changed:
            write_json(path, frozen)

    def _names(self, micIds):
        """Micrograph names: the input micrographs' when given, else ``micrograph <id>``."""
        inSet = self.prot.inputMicrographs.get()
        known = {}
        if inSet is not None and len(micIds):
            known = {m.getObjId(): m.getMicName() or os.path.basename(m.getFileName())
                     for m in self.prot._micItems([int(i) for i in micIds])}
        return [known.get(int(i), f"micrograph {int(i)}") for i in micIds]

    def _emit(self, table, final):
        """Append the newly suspect micrographs (once each) to ctfSuspectMicrographs."""
        fn = self.prot._getPath("micrographs_ctf_suspect.sqlite")
        done = self.prot._micSetIds(fn)
        new = [int(m) for m, s in zip(table["mic_ids"], table["ctf_suspect"])
               if s and int(m) not in done]
        items = self.prot._micItems(new)
        if items or final:
            out = self.prot._openMicSet(fn)
            for mic in items:
                out.append(mic)
            updateOutput(self.prot, CTF_MICS, out,
                         Set.STREAM_CLOSED if final else Set.STREAM_OPEN)
