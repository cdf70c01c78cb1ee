"""The run folder of compare reprojections and its chunk worker.

The protocol (its ``extra/`` folder) and ``xmipp-qc compare-reprojections`` (a
``run/`` folder in ``--out``) prepare the same files; one chunk of images is
then processed against one map by :func:`run_chunk`, either in-process by the
thread pool of :func:`run_local` or as its own program (a cluster job)::

    python -m xmipp_qc.compare_run --folder RUN --map ID --chunk K [--chunk K2 ...]

Its arguments are JSON primitives: any step (a queue job, a streaming step) can
run a chunk once its input file exists. Imports nothing from Scipion.

Run folder (names in :func:`path`)::

    run.json                  options (CompareOptions), map ids, saved stacks, matching
    images_work.mrcs          the images on the working grid
    volume_<id>.mrc           each map on the working grid
    chunks/chunk_<k>.npz      chunk k: positions in images_work.mrcs, ids, given angles
                              and shifts (px of the working grid), defocus, acquisition
    vol<id>/chunk_<k>.npz     result of chunk k against map id (written last, atomically:
                              its presence marks a finished chunk)
    vol<id>/<stack>_<k>.mrcs  aligned / reprojections / residuals / covariances of chunk k
    vol<id>/chunk_<k>.log     the worker's log of that chunk (host, SLURM_JOB_ID, timing)
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict

import numpy as np

from xmipp_qc.core.chunk_result import ChunkResult
from xmipp_qc.core.pipeline import CompareOptions, MapModel, process_chunk
from xmipp_qc.formats.json_files import read_json, write_json

__all__ = ["STACKS", "ChunkError", "Progress", "chunk_count", "chunk_images", "load_model",
           "load_results",
           "missing_chunks", "path", "read_run", "run_chunk", "run_local", "write_chunk_input",
           "write_run"]

logger = logging.getLogger("xmipp_qc.compare_run")

#: Chunk stacks the worker can save, by ChunkResult attribute.
STACKS = ("aligned", "reprojections", "residuals", "covariances")
_ACQUISITION = ("voltage_kv", "cs_mm", "amplitude_contrast", "phase_shift_deg")


class ChunkError(RuntimeError):
    """A chunk failed; the message names the map and the chunk."""


def path(folder: str, what: str, map_id: int | None = None, chunk: int | None = None) -> str:
    """Return the path of a run-folder file.

    ``what`` is ``run``, ``images``, ``volume``, ``input`` (the ``chunks``
    folder without ``chunk``), ``result``, ``log`` or one of :data:`STACKS`.
    """
    names = {"run": "run.json", "images": "images_work.mrcs", "volume": f"volume_{map_id}.mrc",
             "input": os.path.join("chunks", f"chunk_{chunk:05d}.npz") if chunk is not None
             else "chunks"}
    if what in names:
        return os.path.join(folder, names[what])
    name = {"result": "chunk_{:05d}.npz", "log": "chunk_{:05d}.log"}.get(what,
                                                                        what + "_{:05d}.mrcs")
    return os.path.join(folder, f"vol{map_id}", name.format(chunk))


def write_run(folder: str, options: CompareOptions, *, maps, stacks=("aligned",
              "reprojections"), matching: bool) -> None:
    """Write ``run.json``: the options, the map ids, the stacks to save, matching or not."""
    unknown = set(stacks) - set(STACKS)
    if unknown:
        raise ValueError(f"unknown stacks {sorted(unknown)}")
    data = {"options": asdict(options), "maps": [int(m) for m in maps],
            "stacks": list(stacks), "matching": bool(matching)}
    write_json(path(folder, "run"), data)


def read_run(folder: str) -> dict:
    """``run.json`` with ``options`` as a :class:`CompareOptions`."""
    data = read_json(path(folder, "run"))
    data["options"] = CompareOptions(**data["options"])
    return data


def write_chunk_input(folder: str, chunk: int, *, positions, ids, angles=None, shifts=None,
                      defocus=None, acquisition=None, stack: str | None = None) -> None:
    """Write the input of one chunk (atomically).

    Parameters
    ----------
    positions : array_like of int, shape (n,)
        0-based positions of its images in ``images_work.mrcs`` (or ``stack``).
    ids : array_like of int, shape (n,)
        The caller's item ids.
    angles, shifts : array_like, shape (n, 3), (n, 2), optional
        Given Xmipp angles (degrees) and shifts (px of the working grid); None
        to find them by projection matching.
    defocus : array_like, shape (n, 3), optional
        ``defocusU, defocusV`` (Å), ``defocusAngle`` (degrees), for the CTF.
    acquisition : mapping, optional
        ``voltage_kv``, ``cs_mm``, ``amplitude_contrast`` (one value for the
        chunk) and ``phase_shift_deg`` (one value or one per image).
    stack : str, optional
        Stack of the images on the working grid, relative to the folder, when
        not ``images_work.mrcs`` (e.g. one stack per chunk of a streaming run).
    """
    data = {"positions": np.asarray(positions, dtype=np.int64),
            "ids": np.asarray(ids, dtype=np.int64)}
    for name, v in (("angles", angles), ("shifts", shifts), ("defocus", defocus)):
        if v is not None:
            data[name] = np.asarray(v, dtype=np.float64)
    for k, v in (acquisition or {}).items():
        if k not in _ACQUISITION:
            raise ValueError(f"unknown acquisition key {k}")
        data[f"acq_{k}"] = np.asarray(v, dtype=np.float64)
    if stack is not None:
        data["stack"] = np.asarray(str(stack))
    os.makedirs(path(folder, "input"), exist_ok=True)
    target = path(folder, "input", chunk=chunk)
    with open(target + ".part", "wb") as fh:
        np.savez(fh, **data)
    os.replace(target + ".part", target)


def chunk_count(folder: str) -> int:
    """Count the chunk inputs in the run folder (numbered 0 .. count - 1)."""
    d = path(folder, "input")
    return len([f for f in os.listdir(d) if f.endswith(".npz")]) if os.path.isdir(d) else 0


def missing_chunks(folder: str, map_id: int, chunks) -> list[int]:
    """List the chunks among ``chunks`` without a saved result for ``map_id``."""
    return [k for k in chunks if not os.path.exists(path(folder, "result", map_id, k))]


def load_results(folder: str, map_id: int, chunks) -> list[ChunkResult]:
    """Load the saved results of ``chunks`` for ``map_id`` (images not read), in that order."""
    return [ChunkResult.load(path(folder, "result", map_id, k)) for k in chunks]


def load_model(folder: str, map_id: int, run: dict | None = None) -> MapModel:
    """Load map ``map_id`` of the run folder on the working grid, with the run's options."""
    from xmipp_qc.formats.mrc import read_volume

    run = run or read_run(folder)
    volume, _ = read_volume(path(folder, "volume", map_id))
    return MapModel(volume, run["options"])


def _chunk_input(folder: str, chunk: int) -> dict:
    with np.load(path(folder, "input", chunk=chunk), allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    acq = {k[len("acq_"):]: data.pop(k) for k in list(data) if k.startswith("acq_")}
    if acq:
        data["acquisition"] = {k: (v if k == "phase_shift_deg" and v.ndim else float(v))
                               for k, v in acq.items()}
    data["stack"] = os.path.join(folder, str(data["stack"])) if "stack" in data \
        else path(folder, "images")
    return data


def _images(stack: str, positions: np.ndarray) -> np.ndarray:
    import mrcfile

    with mrcfile.mmap(stack, mode="r") as mrc:
        data = mrc.data if mrc.data.ndim == 3 else mrc.data[None]
        lo = int(positions[0]) if len(positions) else 0
        if np.array_equal(positions, np.arange(lo, lo + len(positions))):  # one slice
            hi = lo + len(positions)
            return np.array(data[lo:hi], dtype=np.float32)
        return np.array(data[positions], dtype=np.float32)


def run_chunk(folder: str, map_id: int, chunk: int, *, model: MapModel | None = None,
              run: dict | None = None) -> int:
    """Process chunk ``chunk`` against map ``map_id`` and save its result; return its size.

    The stacks named in ``run.json`` are written first, the result ``.npz``
    last (``.part`` then rename), so a chunk with a result is complete.
    """
    from xmipp_qc.formats.mrc import write_stack

    run = run or read_run(folder)
    model = model or load_model(folder, map_id, run)
    inp = _chunk_input(folder, chunk)
    images = [s for s in run["stacks"] if s != "covariances"]
    result = process_chunk(model, _images(inp["stack"], inp["positions"]), ids=inp["ids"],
                           angles=inp.get("angles"), shifts=inp.get("shifts"),
                           defocus=inp.get("defocus"), acquisition=inp.get("acquisition"),
                           keep_images=bool(images))
    os.makedirs(os.path.dirname(path(folder, "result", map_id, chunk)), exist_ok=True)
    pixel = model.options.pixel_size_a
    for name in run["stacks"]:
        data = result.summary.covariances if name == "covariances" else getattr(result, name)
        write_stack(path(folder, name, map_id, chunk), data, pixel)
    target = path(folder, "result", map_id, chunk)
    result.save(target + ".part", with_images=False)
    os.replace(target + ".part", target)
    return len(inp["ids"])


def chunk_images(folder: str, map_id: int, chunk: int, members, *,
                 model: MapModel | None = None, run: dict | None = None) -> ChunkResult:
    """Recompute the aligned, reprojection and residual images of some images of a chunk.

    For runs that do not save every image (:mod:`xmipp_qc.core.saved_images`):
    the images are processed again, alone, from the chunk's input, which gives
    the images the chunk gave them (every step of
    :func:`~xmipp_qc.core.pipeline.process_chunk` is per image).

    Parameters
    ----------
    members : array_like of int
        0-based positions of the images in the chunk (its input order).

    Returns
    -------
    ChunkResult
        Of those images, in the order of ``members``, with the images.
    """
    run = run or read_run(folder)
    model = model or load_model(folder, map_id, run)
    inp = _chunk_input(folder, chunk)
    sel = np.asarray(members, dtype=np.int64).reshape(-1)
    kw = {k: (inp[k][sel] if k in inp else None) for k in ("ids", "angles", "shifts",
                                                           "defocus")}
    acq = inp.get("acquisition")
    if acq is not None:
        acq = {k: (v[sel] if np.ndim(v) else v) for k, v in acq.items()}
    return process_chunk(model, _images(inp["stack"], inp["positions"][sel]), acquisition=acq,
                         keep_images=True, **kw)


class _Models:
    """Map models shared by the threads of one :func:`run_local` call, built once each."""

    def __init__(self, folder: str, run: dict):
        self.folder, self.run, self.lock, self.models = folder, run, threading.Lock(), {}

    def get(self, map_id: int, matching: bool) -> MapModel:
        with self.lock:  # the spectra are built under the lock, once per map
            model = self.models.get(map_id)
            if model is None:
                model = self.models[map_id] = load_model(self.folder, map_id, self.run)
            if matching:
                model.gallery  # noqa: B018
            if model.options.refine:
                model.refiner  # noqa: B018
            return model


def run_local(folder: str, jobs, *, threads: int = 1, progress: Progress | None = None) -> None:
    """Run ``(map_id, chunk)`` jobs in-process, ``threads`` at a time.

    One model per map is shared by the threads. A failed chunk raises
    :class:`ChunkError` naming it (the chunks already saved stay saved).
    """
    run = read_run(folder)
    models = _Models(folder, run)

    def one(job):
        map_id, chunk = job
        try:
            n = run_chunk(folder, map_id, chunk, run=run,
                          model=models.get(map_id, run["matching"]))
        except Exception as exc:
            raise ChunkError(f"chunk {chunk} of map {map_id} failed: {exc}") from exc
        if progress is not None:
            progress.done(n)

    with ThreadPoolExecutor(max(1, int(threads)), thread_name_prefix="chunk") as pool:
        for _ in pool.map(one, list(jobs)):
            pass  # re-raises a chunk's error here


class Progress:
    """Logs chunks done of total, images/s and time left (INFO, ``xmipp_qc`` logger)."""

    def __init__(self, chunks: int, images: int, label: str = "chunks"):
        self.total, self.images, self.label = chunks, images, label
        self.n_chunks, self.n_images, self.t0 = 0, 0, time.monotonic()
        self.lock = threading.Lock()

    def done(self, n_images: int) -> None:
        """One chunk of ``n_images`` finished."""
        with self.lock:
            self.n_chunks += 1
            self.n_images += n_images
            elapsed = max(time.monotonic() - self.t0, 1e-9)
            rate = self.n_images / elapsed
            left = (self.images - self.n_images) / rate if rate > 0 else float("nan")
            logger.info("%s %d/%d done, %d/%d images, %.1f images/s, %s left", self.label,
                        self.n_chunks, self.total, self.n_images, self.images, rate,
                        _duration(left))


def _duration(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "?"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"


# --------------------------------------------------------------------------
# The worker program
# --------------------------------------------------------------------------
def _log_line(folder: str, map_id: int, chunk: int, text: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    line = f"{stamp} chunk {chunk} of map {map_id}: {text}"
    print(line, flush=True)
    target = path(folder, "log", map_id, chunk)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "a") as fh:
        fh.write(line + "\n")


def main(argv=None) -> int:
    """Worker: process the given chunks of one map, in order; 1 on the first failure."""
    parser = argparse.ArgumentParser(prog="python -m xmipp_qc.compare_run",
                                     description="Compare reprojections: process chunks of "
                                                 "a run folder against one map.")
    parser.add_argument("--folder", required=True, help="Run folder (run.json, chunks/).")
    parser.add_argument("--map", type=int, required=True, help="Map id (volume_<id>.mrc).")
    parser.add_argument("--chunk", type=int, action="append", required=True,
                        help="Chunk number; repeat for several.")
    args = parser.parse_args(argv)
    from xmipp_qc.native_threads import limit_blas_threads

    limit_blas_threads()
    job = os.environ.get("SLURM_JOB_ID", "none")
    run = read_run(args.folder)
    model = None
    for chunk in args.chunk:
        _log_line(args.folder, args.map, chunk, f"started on {socket.gethostname()}, "
                                                f"pid {os.getpid()}, SLURM_JOB_ID={job}")
        t0 = time.monotonic()
        try:
            model = model or load_model(args.folder, args.map, run)
            n = run_chunk(args.folder, args.map, chunk, model=model, run=run)
        except Exception as exc:
            _log_line(args.folder, args.map, chunk, f"FAILED: {type(exc).__name__}: {exc}")
            raise
        dt = time.monotonic() - t0
        _log_line(args.folder, args.map, chunk, f"{n} images in {dt:.1f} s "
                                                f"({n / max(dt, 1e-9):.1f} images/s), saved")
    return 0


if __name__ == "__main__":
    sys.exit(main())
