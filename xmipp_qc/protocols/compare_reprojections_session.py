"""Session monitoring of a *compare reprojections* run.

While streaming (at most every ``SESSION_SECONDS``, more often when an update
is cheap: at least 2 s and 10 times its own duration apart), and once at the
end, for each map:
the outlier rate per micrograph (particles' ``micId``) and per window of
``sessionWindow`` particles in order of arrival
(:mod:`xmipp_qc.core.session`), saved as ``extra/session_vol<vid>.json`` and
drawn by :func:`xmipp_qc.plots.session.plot_session` into
``extra/session_vol<vid>.png``. Micrographs whose particles are mostly flagged
by the first map (rate >= ``badMicRate`` with at least ``badMicMinParticles``
particles) go, once complete, to the open output ``badMicrographs`` (items of
the optional ``inputMicrographs``), so a pipeline can stop using them. A
micrograph is complete when a particle of a later micrograph has been output
(particles arrive grouped by micrograph) or the input is closed. A closed run
whose particles carry micrographs gets the same files, and the output once, at
the end. With several maps, the running ranking (with its interval) is saved in ``ranking.json``
(``running``: true, until the ranking step replaces it) and, kept after the end, in
``ranking_running.json``; the first one as soon as particles are output for every
map (later ones with the session update). The micrographs input may appear after the run started
(it is looked for again at each update) and must close before the outputs do.
"""

import os
import time

import numpy as np
import pwem.objects as emobj
import pyworkflow.protocol.params as params
from pyworkflow.object import Set

from xmipp_qc.core import pipeline
from xmipp_qc.core.session import bad_micrographs, micrograph_rates, window_rates
from xmipp_qc.formats.json_files import read_json
from xmipp_qc.protocols.compare_reprojections_results import (
    outputName,
    readScores,
)
from xmipp_qc.protocols.streaming_outputs import updateOutput, usableSqlite

SESSION_SECONDS = 20.0  # longest wait between two session updates
_SESSION_OVERHEAD = 10  # wait at least this many times the last update's duration
BAD_MICS = "badMicrographs"
RUNNING_RANKING = "ranking_running.json"  # the last running ranking of a streaming run


def readSession(extraPath, volId):
    """The saved session rates of one map (dict) or None."""
    return read_json(os.path.join(extraPath, f"session_vol{volId}.json"))


def sessionFigure(session, threshold, minParticles, mapName):
    """The session figure of one map from its saved rates (:func:`readSession`)."""
    from xmipp_qc.plots.session import plot_session

    counts = np.asarray(session["mic_counts"], dtype=np.int64)
    flagged = np.asarray(session["mic_flagged"], dtype=np.float64)
    rates = flagged / np.maximum(counts, 1)  # as core.session.MicrographRates.rates
    bad = np.isin(np.asarray(session["mic_ids"]), np.asarray(session["bad_mics"]))
    return plot_session(rates, counts, session["window_centres"], session["window_rates"],
                        threshold=threshold, min_particles=minParticles, map_name=mapName,
                        bad=bad, window=session["window"],
                        n_particles=session.get("n_output"))


def tapMicIds(images, micIds):
    """Yield ``images``, appending each one's micrograph id (-1: none) to ``micIds``."""
    for img in images:
        micIds.append(int(img.getMicId()) if isinstance(img, emobj.Particle)
                      and img.hasMicId() else -1)
        yield img


def _cat(arrays, dtype):
    return np.concatenate(arrays) if arrays else np.zeros(0, dtype)


class CompareReprojectionsSession:
    """Session rates, bad micrographs and running ranking (a mixin).

    Notes
    -----
    The host provides the form params, ``doRanking``, ``_streamChunkInput``,
    ``_volPath``, ``_writeJson`` and the book of
    :class:`.CompareReprojectionsStreaming` (``sizes``, ``closed``) with the
    ``flags`` and ``appended`` of :class:`.CompareReprojectionsEmission`.
    """

    def _defineSessionParams(self, form):
        form.addSection(label="Session")
        form.addParam("sessionWindow", params.IntParam, default=500,
                      validators=[params.Positive], label="Window (particles)",
                      help="Particles per point of the outlier rate over the session.")
        form.addParam("inputMicrographs", params.PointerParam, allowsNull=True,
                      pointerClass="SetOfMicrographs", label="Micrographs",
                      help="Optional: the micrographs of the particles (ids = the "
                           "particles' micId); the bad ones are output as "
                           "'badMicrographs'.")
        form.addParam("badMicRate", params.FloatParam, default=0.5,
                      validators=[params.Range(0.0, 1.0, "Must be a fraction in [0, 1].")],
                      label="Bad micrograph: flagged fraction",
                      help="A micrograph is bad when at least this fraction of its "
                           "particles is flagged (by the first map).")
        form.addParam("badMicMinParticles", params.IntParam, default=10,
                      validators=[params.Positive],
                      label="Bad micrograph: minimum particles",
                      help="Micrographs with fewer particles are never called bad.")

    def _closedSession(self, volIds):
        """Session rates and bad micrographs of a closed run whose images have micrographs."""
        with self._loadInput() as z:
            if "micIds" not in z.files or not (z["micIds"] >= 0).any():
                return
            micOf = dict(zip(z["ids"].tolist(), z["micIds"].tolist()))
        for pos, vid in enumerate(volIds):
            s = readScores(self._getExtraPath(), vid)
            mics = np.array([micOf.get(int(i), -1) for i in s["ids"]], np.int64)
            rates = micrograph_rates(mics, s["isOutlier"])
            self._saveSession(vid, s["ids"], s["isOutlier"], rates)
            if pos == 0 and self._sessionMicrographs() is not None:
                bad = bad_micrographs(rates, max_rate=self.badMicRate.get(),
                                      min_particles=self.badMicMinParticles.get())
                out = self._openBadMics()
                for mic in self._micItems([int(m) for m in bad]):
                    out.append(mic)
                updateOutput(self, BAD_MICS, out, Set.STREAM_CLOSED)

    def _sessionUpdate(self, book, volIds, final=False):
        """Rates, PNG, bad micrographs and running ranking, at most every SESSION_SECONDS."""
        now = time.time()
        if self.doRanking and len(volIds) > 1 and not final and not getattr(book, "ranked", 0):
            book.ranked = self._runningRanking(book, volIds)  # the first one, at once
        wait = min(SESSION_SECONDS, max(2.0, _SESSION_OVERHEAD * getattr(book, "sessionCost", 0)))
        if not final and (now - getattr(book, "lastSession", 0.0) < wait
                          or not any(book.flags[v] for v in volIds)):
            return
        for pos, vid in enumerate(volIds):
            ids, flags, mics, prefix = self._sessionArrays(book, vid)
            rates = micrograph_rates(mics, flags)
            self._saveSession(vid, ids, flags, rates)
            if pos == 0 and self._sessionMicrographs() is not None:
                self._emitBadMicrographs(book, rates, mics, prefix, final)
        self._ctfMonitor.streamUpdate(book, volIds, final)
        if self.doRanking and len(volIds) > 1 and not final:
            self._runningRanking(book, volIds)
        book.lastSession, book.sessionCost = time.time(), time.time() - now

    def _sessionArrays(self, book, vid):
        """Ids, flags and micIds of the output particles in arrival order; the length
        of the contiguous prefix of output chunks (micrographs decided there)."""
        ids, flags, mics, prefix, contiguous = [], [], [], 0, True
        for k in sorted(book.flags[vid]):
            chunkIds, isOut, _ = book.flags[vid][k]
            contiguous = contiguous and all(c in book.flags[vid] for c in range(k)
                                            if book.sizes.get(c))
            if k not in book.micIds:
                book.micIds[k] = self._streamChunkInput(k)["micIds"]
            ids.append(chunkIds)
            flags.append(isOut)
            mics.append(book.micIds[k])
            prefix += len(chunkIds) if contiguous else 0
        return _cat(ids, np.int64), _cat(flags, bool), _cat(mics, np.int64), prefix

    def _saveSession(self, vid, ids, flags, rates):
        window = self.sessionWindow.get()
        centres, wrates = window_rates(flags, window)
        enough = rates.counts >= self.badMicMinParticles.get()
        bad = (rates.rates >= self.badMicRate.get()) & enough
        self._writeJson(f"session_vol{vid}.json", {
            "n_output": int(len(ids)), "n_flagged": int(flags.sum()),
            "mic_ids": rates.mic_ids, "mic_counts": rates.counts,
            "mic_flagged": rates.flagged, "bad_mics": rates.mic_ids[bad],
            "window": window, "window_centres": centres, "window_rates": wrates})
        fig = sessionFigure(readSession(self._getExtraPath(), vid), self.badMicRate.get(),
                            self.badMicMinParticles.get(), outputName(vid))
        fig.savefig(self._getExtraPath(f"session_vol{vid}.png"), dpi=80)

    def _emitBadMicrographs(self, book, rates, mics, prefix, final):
        """Append complete bad micrographs (once) to the open output badMicrographs."""
        done = mics[:prefix]  # the last micrograph there may still be arriving
        complete = np.isin(rates.mic_ids, done) & (rates.mic_ids != (done[-1] if prefix else -2))
        if final and book.closed:
            complete[:] = True
        bad = bad_micrographs(rates, max_rate=self.badMicRate.get(),
                              min_particles=self.badMicMinParticles.get(), complete=complete)
        if not hasattr(book, "badOut"):
            book.badOut = self._badMicIds()
        new = [int(m) for m in bad if int(m) not in book.badOut]
        mics = self._micItems(new)
        if mics or final:
            out = self._openBadMics()
            for mic in mics:
                out.append(mic)
            updateOutput(self, BAD_MICS, out, Set.STREAM_CLOSED if final
                         else Set.STREAM_OPEN)
            book.badOut.update(m.getObjId() for m in mics)
        if final:  # bad, but not in the micrographs input when it closed
            lost = sorted(set(new) - book.badOut)
            self._streamingInputs().notes.add(BAD_MICS, f"{len(lost)} bad micrographs are "
                                              f"not in the micrographs input: {lost}."
                                              if lost else None)

    def _micItems(self, ids):
        if not ids:
            return []
        inSet = self._sessionMicrographs()
        fresh = type(inSet)(filename=inSet.getFileName())
        where = f"id IN ({','.join(map(str, ids))})"
        items = [m.clone() for m in fresh.iterItems(where=where)]
        fresh.close()
        return items

    def _badMicFile(self):
        return self._getPath("micrographs_bad.sqlite")

    def _openBadMics(self):
        return self._openMicSet(self._badMicFile())

    def _openMicSet(self, fn):
        """An output set of input micrographs at ``fn``, opened for appending."""
        usable = usableSqlite(fn)
        out = emobj.SetOfMicrographs(filename=fn)
        if usable:
            out.loadAllProperties()
            out.enableAppend()
        else:
            out.copyInfo(self._sessionMicrographs())
            out.setStreamState(Set.STREAM_OPEN)
        return out

    def _badMicIds(self):
        return self._micSetIds(self._badMicFile())

    def _micSetIds(self, fn):
        """Ids of the micrographs in the output set at ``fn`` (empty if none yet)."""
        if not usableSqlite(fn):
            return set()
        out = emobj.SetOfMicrographs(filename=fn)
        ids = {int(i) for i in out.getUniqueValues("id")}
        out.close()
        return ids

    def _runningRanking(self, book, volIds):
        """Ranking of the maps on the particles output for all of them so far; whether
        one was saved."""
        common = set.intersection(*(set(book.flags[v]) for v in volIds))
        if not common:
            return False
        per = {v: {"ids": np.concatenate([book.flags[v][k][0] for k in sorted(common)]),
                   "cost": np.concatenate([book.flags[v][k][2] for k in sorted(common)])}
               for v in volIds}
        try:
            table = pipeline.rank(per)
        except ValueError as exc:  # too few shared valid images yet
            self.info(f"Running ranking not available yet: {exc}")
            return False
        table.update(running=True, n_output=int(len(per[volIds[0]]["ids"])))
        self._writeJson("ranking.json", table)
        self._writeJson(RUNNING_RANKING, table)  # kept after the final ranking
        return True
