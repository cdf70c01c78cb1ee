"""Streaming emission of *compare reprojections*: flags that are final when output.

Per map, the location and scale of every score are fixed on a burn-in
(:func:`xmipp_qc.core.compare_results.burn_in_reference`): the first chunks, in
order of arrival, holding at least ``burnIn`` images. They are saved in
``vol<vid>/reference.json`` (with the run, shown in the summary, reused by
"continue"). Until then nothing is output; then the burn-in images, and every
later chunk as soon as it is scored, are flagged against that reference alone
(``vol<vid>/scores_<k>.npz``, written before the chunk's items are output) and
appended to the open output ``reprojections_vol<vid>``. An image's flag never
depends on images that arrive after it, so it never changes. If the input
closes before the burn-in is complete, the whole set is the burn-in, scored as
in a closed run (``reference.json`` then says ``whole_set``).

Continue: the saved reference and scores are reused, and of each scored chunk
only the ids not yet in the output sqlite are appended: every particle is
output exactly once and nothing is re-flagged.
"""

import glob
import os

import numpy as np
import pwem.objects as emobj
from pyworkflow.object import Set

from xmipp_qc.convert import readImages
from xmipp_qc.core import pipeline
from xmipp_qc.core.chunk_result import ChunkResult
from xmipp_qc.core.compare_results import burn_in_reference
from xmipp_qc.core.outliers import MATCHED_OUTLIER_COMPONENTS
from xmipp_qc.formats.json_files import read_json, write_json
from xmipp_qc.protocols.compare_reprojections_results import (
    decorateItem,
    outputName,
    readScores,
)
from xmipp_qc.protocols.streaming_outputs import updateOutput, usableSqlite

_ID_CHUNK = 500


def readReference(volPath):
    """The saved burn-in reference of one map (dict) or None."""
    return read_json(os.path.join(volPath, "reference.json"))


def concatScores(parts):
    """Join per-chunk score dicts (a score a chunk lacks is NaN there)."""
    keys = list(dict.fromkeys(k for p in parts for k in p))
    out = {}
    for k in keys:
        ref = next(p[k] for p in parts if k in p)
        out[k] = np.concatenate([p[k] if k in p else np.full((len(p["ids"]),) + ref.shape[1:],
                                                               np.nan) for p in parts])
    return out


class CompareReprojectionsEmission:
    """Burn-in, final flags and open outputs of a streaming run (a mixin).

    Notes
    -----
    The host provides ``burnIn``, ``doEvaluateResiduals``, ``inputSet2D``,
    ``inputSet3D``, ``_needsMatching``, ``_chunkPath``, ``_volPath``,
    ``_outputRows``, ``_savePlots``, ``_reloadedInput``, ``_isStreaming`` and
    Scipion's ``_updateOutputSet``/``_defineSourceRelation``.
    """

    def _components(self):
        return MATCHED_OUTLIER_COMPONENTS if self._needsMatching() else None

    def _restoreEmission(self, book, volIds):
        book.refs = {vid: readReference(self._volPath(vid)) for vid in volIds}
        book.scored = {vid: {int(os.path.basename(fn)[7:12]) for fn in
                             glob.glob(self._volPath(vid, "scores_*.npz"))} for vid in volIds}
        book.done = {vid: set() for vid in volIds}
        book.appended = {vid: set() for vid in volIds}
        book.outIds = {vid: self._streamOutputIds(vid) for vid in volIds}
        book.flags = {vid: {} for vid in volIds}  # chunk -> (ids, isOutlier, cost)

    def _allEmitted(self, book, volIds):
        chunks = {k for k, n in book.sizes.items() if n}
        return all(chunks <= book.appended[vid] for vid in volIds)

    def _emitReady(self, book, volIds):
        """Score (against the reference) and output every chunk that is ready."""
        progressed = False
        for vid in volIds:
            book.done[vid].update(k for k in book.sizes if book.sizes[k]
                                  and k not in book.done[vid]
                                  and os.path.exists(self._chunkPath(vid, k)))
            if book.refs[vid] is None and not self._tryReference(book, vid):
                continue
            for k in sorted(book.done[vid] - book.scored[vid]):
                result = ChunkResult.load(self._chunkPath(vid, k))
                self._saveChunkScores(vid, k, pipeline.finalize(
                    [result], reference=book.refs[vid]))
                book.scored[vid].add(k)
            progressed |= self._appendScored(book, vid)
        return progressed

    def _tryReference(self, book, vid):
        """Fix the reference once the first chunks hold ``burnIn`` images."""
        chunks = [k for k in sorted(book.sizes) if book.sizes[k]]
        prefix = []
        for k in chunks:
            if k not in book.done[vid]:
                break
            prefix.append(k)
            if sum(book.sizes[c] for c in prefix) >= self.burnIn.get():
                results = [ChunkResult.load(self._chunkPath(vid, c)) for c in prefix]
                if sum(int(r.summary.valid.sum()) for r in results) >= 3:
                    return self._saveReference(book, vid, burn_in_reference(
                        results, components=self._components()), prefix)
        if book.closed and chunks and len(prefix) == len(chunks):
            return self._wholeSetReference(book, vid, chunks)
        return False

    def _wholeSetReference(self, book, vid, chunks):
        """Input closed before the burn-in was complete: the whole set is the burn-in."""
        results = [ChunkResult.load(self._chunkPath(vid, c)) for c in chunks]
        scores = pipeline.finalize(results, components=self._components())
        start = 0
        for k, r in zip(chunks, results):
            n = len(r.ids)
            self._saveChunkScores(vid, k, {key: v[start:start + n] for key, v in scores.items()})
            book.scored[vid].add(k)
            start += n
        ref = burn_in_reference(results, components=self._components())
        return self._saveReference(book, vid, {**ref, "whole_set": True}, chunks)

    def _saveReference(self, book, vid, ref, chunks):
        ref["chunks"] = [int(k) for k in chunks]
        write_json(self._volPath(vid, "reference.json"), ref)
        book.refs[vid] = ref
        self.info(f"Map {vid}: burn-in statistics fixed on {ref['n_images']} images "
                  f"({'whole set' if ref.get('whole_set') else 'streaming'}).")
        return True

    def _saveChunkScores(self, vid, k, scores):
        part = self._volPath(vid, f"part_scores_{k:05d}.npz")
        with open(part, "wb") as fh:
            np.savez(fh, **scores)
        os.replace(part, self._volPath(vid, f"scores_{k:05d}.npz"))

    def _chunkScores(self, vid, k):
        with np.load(self._volPath(vid, f"scores_{k:05d}.npz")) as z:
            return {key: z[key] for key in z.files}

    # --------------------------- open outputs --------------------------------
    def _streamOutputFile(self, vid):
        return self._getPath(f"reprojections_vol{vid}.sqlite")

    def _streamOutputClass(self):
        inSet = self.inputSet2D.get()
        return emobj.SetOfAverages if isinstance(inSet, emobj.SetOfAverages) \
            else emobj.SetOfParticles

    def _openStreamOutput(self, vid):
        fn = self._streamOutputFile(vid)
        usable = usableSqlite(fn)
        out = self._streamOutputClass()(filename=fn)
        if usable:
            out.loadAllProperties()
            out.enableAppend()
        else:
            out.copyInfo(self.inputSet2D.get())
            out.setAlignmentProj()
            out.setStreamState(Set.STREAM_OPEN)
        return out

    def _streamOutputIds(self, vid):
        fn = self._streamOutputFile(vid)
        if not usableSqlite(fn):
            return set()
        out = self._streamOutputClass()(filename=fn)
        ids = {int(i) for i in out.getUniqueValues("id")}
        out.close()
        return ids

    def _appendScored(self, book, vid, state=Set.STREAM_OPEN):
        """Append the items of scored chunks not yet in the output (ids checked)."""
        pending = sorted(book.scored[vid] - book.appended[vid])
        if not pending and state == Set.STREAM_OPEN:
            return False
        out, isNew = self._openStreamOutput(vid), not self.hasAttribute(outputName(vid))
        for k in pending:
            scores = self._chunkScores(vid, k)
            book.flags[vid][k] = (scores["ids"], scores["isOutlier"], scores["cost"])
            rows = self._outputRows(vid, scores, chunk=k)
            missing = [i for i in rows if i not in book.outIds[vid]]
            for item in self._inputItems(missing):
                decorateItem(item, rows[item.getObjId()], bool(self.doEvaluateResiduals))
                out.append(item)
            book.outIds[vid].update(missing)
            book.appended[vid].add(k)
        updateOutput(self, outputName(vid), out, state)
        if isNew:
            self._defineSourceRelation(self.inputSet2D, out)
            self._defineSourceRelation(self.inputSet3D, out)
        return True

    def _inputItems(self, ids):
        """Input items with these ids, freshly read from the input's sqlite."""
        inSet, items = self._reloadedInput(), []
        for i in range(0, len(ids), _ID_CHUNK):
            where = f"id IN ({','.join(map(str, ids[i:i + _ID_CHUNK]))})"
            items += [img.clone() for img in inSet.iterItems(where=where)]
        inSet.close()
        return items

    # --------------------------- close ---------------------------------------
    def _finishEmission(self, volIds):
        """scores.npz of each map (with chunk and index), plots, closed outputs."""
        for vid in volIds:
            chunks = sorted(int(os.path.basename(fn)[7:12])
                            for fn in glob.glob(self._volPath(vid, "scores_*.npz")))
            parts = []
            for k in chunks:
                s = self._chunkScores(vid, k)
                s["chunk"] = np.full(len(s["ids"]), k)
                s["index"] = np.arange(len(s["ids"]))
                parts.append(s)
            if parts:
                scores = concatScores(parts)
                np.savez(self._volPath(vid, "scores.npz"), **scores)
                self._savePlots(vid, scores)
            out = self._openStreamOutput(vid)
            updateOutput(self, outputName(vid), out, Set.STREAM_CLOSED)

    def _readSaved(self, volId, name, positions):
        """Images of saved chunk stacks at set positions (streaming: chunk/index saved)."""
        if not self._isStreaming():
            return super()._readSaved(volId, name, positions)
        s = readScores(self._getExtraPath(), volId)
        return readImages([(int(s["index"][p]) + 1, self._volPath(
            volId, f"{name}_{int(s['chunk'][p]):05d}.mrcs")) for p in positions])

    def _streamingLines(self, vid, ref, session):
        """Summary lines of a streaming map: burn-in statistics, output so far, session."""
        lines = [self._referenceLine(vid, ref)]
        if session:
            n, bad = session["n_output"], session["n_flagged"]
            lines.append(f"Map {vid}: {n} images output so far, {bad} flagged "
                         f"({100 * bad / max(n, 1):.1f}%); {len(session['mic_ids'])} "
                         f"micrographs, {len(session['bad_mics'])} with at least "
                         f"{100 * self.badMicRate.get():.0f}% flagged.")
        return lines

    def _referenceLine(self, vid, ref):
        """Summary line of a map's burn-in statistics."""
        loc, scale = ref["location_scale"]["combined"]
        kind = "the whole set (closed before the burn-in)" if ref.get("whole_set") \
            else f"the first {ref['n_images']} images"
        return (f"Map {vid}: burn-in statistics fixed on {kind} ({ref['n_valid']} valid; "
                f"combined score location {loc:.3f}, scale {scale:.3f}; threshold "
                f"{ref['threshold']:g}); flags are final when output.")
