"""Compare reprojections in streaming: particles scored as they arrive.

Design
    The protocol keeps pyworkflow's serial executor. An open input gets three
    steps: ``streamStep`` (one long step that reads the new particles, scores
    them in chunks on a thread pool and emits them), ``closeStreamStep`` (set
    files, plots, closes the outputs) and the ranking. Why not
    ``ProtStreamingBase`` (a generator step inserting one step per chunk, run
    by the parallel executor)? That executor sleeps 3 s whenever a loop
    launches no step, i.e. up to 3 s per chunk and between any two dependent
    steps, and the same executor would run closed inputs: 3,000 particles took
    31.5 s with it against 13.0 s with serial steps and a chunk pool
    (``benchmarks/compare_reprojections.py``). Here a closed input runs exactly
    the steps of a non-streaming run, and in streaming a chunk starts as soon
    as a thread is free.
Chunks
    New particles (in id order, the order of arrival) are converted to the
    working grid as soon as a thread is idle, in chunks of at most
    ``chunkSize``: a slow session gets small chunks (low lag), a backlog gets
    full ones. Chunk ``k`` is ``extra/stream/input_<k>.npz`` (ids, given
    alignment, defocus, micrograph ids, sampling) and ``images_<k>.mrcs``; the
    chunk of one map is scored by the chunk worker's
    :func:`~xmipp_qc.compare_run.run_chunk` (in-process, from the chunk input
    ``chunks/chunk_<k>.npz`` naming that stack) into ``vol<vid>/chunk_<k>.npz``,
    as in a closed run.
Flags and continue
    See :mod:`.compare_reprojections_emission`: flags are computed against
    burn-in statistics and saved before any item is output; a continued run
    rebuilds everything from the files (chunks read, chunks scored, scores
    saved, ids already output).
"""

import glob
import os
import sqlite3
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from datetime import datetime

import numpy as np
import pwem.objects as emobj
import pyworkflow.protocol.params as params
from pwem.constants import ALIGN_NONE, ALIGN_PROJ

from xmipp_qc import compare_run
from xmipp_qc.convert import acquisitionToDict, imagesToArrays, readImages
from xmipp_qc.core import compare_policy
from xmipp_qc.core.working_grid import to_working_grid
from xmipp_qc.formats.mrc import write_stack
from xmipp_qc.protocols.compare_reprojections_results import outputName
from xmipp_qc.protocols.streaming_inputs import StreamingInputs

POLL_SECONDS = 1.0  # wait between input checks when there is nothing to do
_ID_CHUNK = 500  # ids per SQL "IN" query


class StreamBook:
    """What a streaming run has read and scored (rebuilt from files on continue)."""

    def __init__(self):
        self.seen = set()  # input ids read (enabled or not)
        self.nextChunk = 0
        self.sizes = {}  # chunk -> number of images (0: only disabled items)
        self.micIds = {}  # chunk -> micId of its images (-1: none)
        self.closed = False
        self.todo = []  # (volId, chunk) to score
        self.running = {}  # future -> (volId, chunk)


class CompareReprojectionsStreaming:
    """Streaming steps of :class:`.XmippQcProtCompareReprojections` (a mixin).

    Notes
    -----
    The host provides the form params, ``_writeRunJson``, ``_writeChunkInput``,
    ``_getModel``, ``_downSampleVolumes``,
    ``_iterCandidates``, ``_input2DDims``, ``_input3DDims``, ``_usesAssignment``,
    ``_imageSet``, ``_writeJson``, ``_volPath`` and, from
    :class:`.CompareReprojectionsEmission`, ``_emitReady``, ``_restoreEmission``,
    ``_allEmitted`` and ``_finishEmission``, from
    :class:`.CompareReprojectionsSession`, ``_sessionUpdate``.
    """

    def _defineBurnInParams(self, form):
        form.addSection(label="Streaming")
        form.addParam("burnIn", params.IntParam, default=1000, validators=[params.Positive],
                      label="Burn-in (images)",
                      help="With an open input: the location and scale of every score are "
                           "fixed on the first this many images, which are flagged when "
                           "they are complete; every later image is flagged against them "
                           "on arrival, so a flag never changes once output. A closed "
                           "input (or a session shorter than this) is its own burn-in.")

    def _isStreaming(self):
        """Whether this run streams (decided at the first launch, kept on continue)."""
        value = getattr(self, "streamingRun", None)
        return bool(value.get()) if value is not None and value.hasValue() else False

    def _decideStreaming(self):
        from pyworkflow.protocol.constants import MODE_RESTART

        if self.runMode.get() == MODE_RESTART or not self.streamingRun.hasValue():
            inSet = self.inputSet2D.get()
            self.streamingRun.set(not isinstance(inSet, emobj.SetOfClasses2D)
                                  and inSet.isStreamOpen())
        return self.streamingRun.get()

    def _streamingWarnings(self):
        inSet = self.inputSet2D.get()
        if isinstance(inSet, emobj.SetOfClasses2D) and inSet.isStreamOpen():
            return ["The 2D classes are still changing: they are read once, as they are "
                    "now (streaming is for particles and averages)."]
        return []

    def _insertStreamingSteps(self, volIds):
        """Stream, close, rank: the steps have a time stamp so that they always run (a
        continued run looks at its inputs again: a continued producer adds to them)."""
        stamp = str(datetime.now())
        stream = self._insertFunctionStep(self.streamStep, volIds, stamp, needsGPU=False)
        close = self._insertFunctionStep(self.closeStreamStep, volIds, stamp,
                                         prerequisites=[stream], needsGPU=False)
        if self.doRanking and len(volIds) > 1:
            self._insertFunctionStep(self.computeRankingVolumes, stamp, prerequisites=[close],
                                     needsGPU=False)

    # --------------------------- STEPS functions -----------------------------
    def streamStep(self, volIds, stamp=None):
        """Read, score and emit until the input is closed and every particle is out."""
        book = self._prepareStream(volIds)
        if book is None:
            self._streamingInputs().notes.add("empty", "The images closed without any item: "
                                              "nothing was compared; the outputs are empty.")
            return
        workers = max(1, self.numberOfThreads.get() - 1)
        with ThreadPoolExecutor(workers, thread_name_prefix="stream") as pool:
            while True:
                progressed = self._collectChunks(book)
                if len(book.running) < workers and not book.closed:
                    progressed |= self._readNewParticles(book, volIds)
                while book.todo and len(book.running) < workers:
                    vid, k = book.todo.pop(0)
                    book.running[pool.submit(self._streamChunk, vid, k)] = (vid, k)
                progressed |= self._emitReady(book, volIds)
                self._sessionUpdate(book, volIds)
                if book.closed and not book.running and not book.todo \
                        and self._allEmitted(book, volIds) and self._inputsSettled():
                    return
                if book.running:
                    wait(list(book.running), timeout=POLL_SECONDS,
                         return_when=FIRST_COMPLETED)
                elif not progressed:
                    time.sleep(POLL_SECONDS)

    def closeStreamStep(self, volIds, stamp=None):
        """Whole-set files (input.npz, scores.npz), plots and closed outputs."""
        if not os.path.exists(self._getExtraPath("input.npz")):  # no image ever came
            self._finishEmission(volIds)
            return
        book = self._restoreBook(volIds)
        book.closed = True  # the stream step ends only then
        self._emitReady(book, volIds)  # nothing new: reads the flags back
        self._sessionUpdate(book, volIds, final=True)
        self._writeStreamInput()
        self._finishEmission(volIds)
        self._streamingInputs().writeNotes({"images": len(book.seen)})

    # --------------------------- stream helpers ------------------------------
    def _streamPath(self, *names):
        return self._getExtraPath("stream", *names)

    def _prepareStream(self, volIds):
        """Sampling, acquisition and maps at the working grid (once); the restored book,
        or None if the images closed without any."""
        os.makedirs(self._streamPath(), exist_ok=True)
        if not os.path.exists(self._getExtraPath("input.npz")):
            self._writeJson("outputs.json", {vid: outputName(vid) for vid in volIds})
            inSet = self._waitFirstImages()  # the form's copy may predate the first one
            if inSet is None:
                return None
            box, pixel = int(inSet.getDimensions()[0]), float(inSet.getSamplingRate())
            hasCtf = inSet.hasCTF()
            inSet.close()
            workBox, workPixel = compare_policy.working_grid(
                [(box, pixel)], [v.getSamplingRate() for _, v in self._iterCandidates()],
                downsample=self.doDownSample.get())
            self._runNotes.decide(hasCtf, workPixel)  # before the run.json that uses it
            self._downSampleVolumes(workBox, workPixel)
            self._writeRunJson(workPixel)
            self._writeJson("locations.json", {"locations": [], "acquisition":
                                               acquisitionToDict(self._imageSet())})
            np.savez(self._getExtraPath("input.npz"), ids=np.zeros(0, np.int64),
                     sampling=np.array([box, pixel, workBox, workPixel]))
        return self._restoreBook(volIds)

    def _waitFirstImages(self):
        """The input, reloaded, once it has an image; None if it closed without any."""
        watch = self._streamingInputs()["images"]
        while True:
            watch.refresh()
            try:
                inSet = self._reloadedInput()
            except sqlite3.OperationalError:  # no tables yet: empty, or being written
                if watch.unreadableIsEmpty():
                    return None
                time.sleep(POLL_SECONDS)
                continue
            if inSet.getSize() > 0:
                return inSet
            closed = watch.isClosed(inSet)
            inSet.close()
            if closed:
                return None
            time.sleep(POLL_SECONDS)

    def _streamingInputs(self):
        """The images and micrographs inputs, followed until they close (made once)."""
        inputs = getattr(self, "_watchedInputs", None)
        if inputs is None:
            inputs = self._watchedInputs = StreamingInputs(self)
            inputs.watchPointer("images", "images", self.inputSet2D)
            if self.inputMicrographs.hasValue():  # maybe an output not made yet
                inputs.watchPointer("micrographs", "micrographs", self.inputMicrographs)
        return inputs

    def _sessionMicrographs(self):
        """The micrographs input with its properties (items not read), or None while it
        does not exist or is empty; looked for again at each call until it appears."""
        watch = self._streamingInputs().watches.get("micrographs")
        if watch is None:
            return None
        self._streamingInputs().refresh("micrographs")
        if watch.fileName is None:
            return None
        mics = emobj.SetOfMicrographs(filename=watch.fileName)
        try:
            mics.loadAllProperties()
            watch.isClosed(mics)
        except sqlite3.OperationalError:  # no tables: closed empty, or being written
            watch.unreadableIsEmpty()
            return None
        finally:
            mics.close()
        return mics

    def _inputsSettled(self):
        """Whether the micrographs (if any) closed too and every input's end is known."""
        if "micrographs" in self._streamingInputs().watches:
            self._sessionMicrographs()  # reads its stream state
        return self._streamingInputs().settled()

    def _restoreBook(self, volIds):
        book = StreamBook()
        with np.load(self._getExtraPath("input.npz")) as z:
            self._sampling = z["sampling"]
        self._acquisition = self._loadLocations()["acquisition"]
        for fn in sorted(glob.glob(self._streamPath("input_*.npz"))):
            k = int(os.path.basename(fn)[6:11])
            with np.load(fn) as z:
                book.seen.update(int(i) for i in z["ids"])
                book.seen.update(int(i) for i in z["skipped"])
                book.sizes[k] = len(z["ids"])
            book.nextChunk = max(book.nextChunk, k + 1)
            book.todo += [(vid, k) for vid in volIds if book.sizes[k]
                          and not os.path.exists(self._chunkPath(vid, k))]
        self._restoreEmission(book, volIds)
        return book

    def _reloadedInput(self):
        inSet = self.inputSet2D.get()
        fresh = type(inSet)(filename=inSet.getFileName())
        fresh.loadAllProperties()
        return fresh

    def _readNewParticles(self, book, volIds):
        """Convert the particles that arrived since the last read into new chunks."""
        watch = self._streamingInputs()["images"]
        watch.refresh()
        try:
            inSet = self._reloadedInput()
            closed = watch.isClosed(inSet)  # before the ids: a closed set has them all
            newIds = sorted(set(inSet.getUniqueValues("id")) - book.seen)
            items = []
            for i in range(0, len(newIds), _ID_CHUNK):
                where = f"id IN ({','.join(map(str, newIds[i:i + _ID_CHUNK]))})"
                items += [img.clone() for img in inSet.iterItems(where=where)]
            inSet.close()
        except sqlite3.OperationalError as exc:  # the producer is writing: next time
            self.info(f"Input busy ({exc}); will retry.")
            return False
        enabled = sorted((img for img in items if img.isEnabled()), key=lambda i: i.getObjId())
        skipped = [int(img.getObjId()) for img in items if not img.isEnabled()]
        size = self.chunkSize.get()
        for start in range(0, max(len(enabled), 1 if skipped else 0), size):
            chunk = enabled[start:start + size]
            self._writeStreamChunk(book.nextChunk, chunk, skipped)
            book.sizes[book.nextChunk] = len(chunk)
            book.todo += [(vid, book.nextChunk) for vid in volIds if chunk]
            book.nextChunk, skipped = book.nextChunk + 1, []
        book.seen.update(int(i) for i in newIds)
        book.closed = closed
        return bool(newIds)

    def _writeStreamChunk(self, k, items, skipped):
        """Input arrays and working images of chunk ``k``; the .npz, written last, marks it."""
        meta = imagesToArrays(items, ALIGN_PROJ if self._usesAssignment() else ALIGN_NONE,
                              withCtf=not self.ignoreCTF)
        _, pixel, workBox, workPixel = self._sampling
        if items:
            images = to_working_grid(readImages(meta["locations"]), pixel, int(workBox),
                                     workPixel, ndim=2)[0]
            write_stack(self._streamPath(f"images_{k:05d}.mrcs"), images, workPixel)
        arrays = {key: meta[key] for key in ("angles", "shifts", "defocus")
                  if meta[key] is not None}
        micIds = [(img.getMicId() if img.hasMicId() else None) for img in items]
        part = self._streamPath(f"part_input_{k:05d}.npz")
        np.savez(part, ids=meta["ids"], skipped=np.asarray(skipped, np.int64),
                 micIds=np.array([-1 if m is None else int(m) for m in micIds], np.int64),
                 sampling=self._sampling, **arrays)
        if items:  # the chunk worker's input: this chunk's own stack
            self._writeChunkInput(k, np.arange(len(items)), {"ids": meta["ids"], **arrays},
                                  pixel, workPixel, self._acquisition,
                                  stack=os.path.join("stream", f"images_{k:05d}.mrcs"))
        os.replace(part, self._streamPath(f"input_{k:05d}.npz"))

    def _streamChunkInput(self, k):
        with np.load(self._streamPath(f"input_{k:05d}.npz")) as z:
            return {key: z[key] for key in z.files}

    def _streamChunk(self, volId, k):
        """Score streaming chunk ``k`` against map ``volId`` (a pool thread)."""
        arrays = self._streamChunkInput(k)
        if not len(arrays["ids"]):
            return
        start = time.perf_counter()
        n = compare_run.run_chunk(self._getExtraPath(), volId, k, model=self._getModel(volId))
        seconds = time.perf_counter() - start
        self.info(f"Chunk {k} of map {volId}: {n} images in {seconds:.1f} s "
                  f"({n / seconds:.1f}/s)")

    def _collectChunks(self, book):
        """Forget finished chunk jobs; re-raise the error of a failed one."""
        done = [f for f in book.running if f.done()]
        for f in done:
            book.running.pop(f)
            f.result()
        return bool(done)

    def _streamChunkIds(self):
        """Chunk numbers read so far, in order."""
        return sorted(int(os.path.basename(fn)[6:11])
                      for fn in glob.glob(self._streamPath("input_*.npz")))

    def _writeStreamInput(self):
        """input.npz of the whole stream (ids in chunk order), as a closed run has."""
        ids = [self._streamChunkInput(k)["ids"] for k in self._streamChunkIds()]
        np.savez(self._getExtraPath("input.npz"), sampling=self._loadInput()["sampling"],
                 ids=np.concatenate(ids) if ids else np.zeros(0, np.int64))
