"""The saved working images of one map of a compare-reprojections run folder.

A run keeps the aligned, reprojection and residual images of every image
(``--output-stacks all``, the chunk worker writes them per chunk) or of some
(``flagged``, ``none``: :func:`xmipp_qc.core.saved_images.rows_to_save`), in
which case they are recomputed here, chunk by chunk, after the set statistics
(:func:`xmipp_qc.compare_run.chunk_images`). Memory: one chunk of images and
one map model; used by the command line and the protocol. Imports nothing
from Scipion.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np

from xmipp_qc import compare_run

__all__ = ["SavedImages"]

_ORDER = ("aligned", "reprojections", "residuals")


class SavedImages:
    """Saved images of map ``map_id`` of a run folder.

    Parameters
    ----------
    folder : str
        Run folder (:mod:`xmipp_qc.compare_run`).
    map_id : int
    chunk_rows : sequence of ndarray of int
        For each chunk, the set position (row) of each of its images, in order.
    n : int
        Images in the set.
    mode : {"all", "flagged", "none"}
        ``all``: the chunk stacks hold every image; otherwise none is saved yet.
    """

    def __init__(self, folder: str, map_id: int, chunk_rows: Sequence[np.ndarray], n: int,
                 mode: str):
        self.folder, self.map_id, self.chunk_rows, self.mode = folder, map_id, chunk_rows, mode
        self.slot = np.full(n, -1, dtype=np.int64)  # 0-based slot of each row, -1: not saved
        self._model = None
        self._paths: dict = {}

    def restore(self, slot: np.ndarray, paths: Mapping[str, str]) -> None:
        """Take the slots and stack files of an earlier :meth:`write` (a later step)."""
        self.slot = np.asarray(slot, dtype=np.int64)
        self._paths = dict(paths)

    def _recompute(self, c: int, members, names) -> dict:
        if self._model is None:
            self._model = compare_run.load_model(self.folder, self.map_id)
        r = compare_run.chunk_images(self.folder, self.map_id, c, members, model=self._model)
        return {name: getattr(r, name) for name in names}

    def write(self, rows: np.ndarray, paths: Mapping[str, str], box: int, pixel: float,
              *, remove_chunk_stacks: bool = True) -> None:
        """Write the images of ``rows`` (ascending set positions) to ``paths``.

        One stack per ``paths`` entry (stack name -> file), slot ``i`` holding
        ``rows[i]``. With mode ``all`` they are copied from the chunk stacks (each removed once
        copied unless ``remove_chunk_stacks`` is False), otherwise recomputed.
        Nothing is written for no rows.
        """
        from xmipp_qc.formats.mrc import StackWriter, read_images

        self.slot[rows] = np.arange(len(rows))
        if not len(rows):
            return
        self._paths = dict(paths)
        writers = {name: StackWriter(p, len(rows), box, pixel) for name, p in paths.items()}
        try:
            for c, chunk_rows in enumerate(self.chunk_rows):
                members = np.flatnonzero(self.slot[chunk_rows] >= 0)
                if not len(members):
                    continue
                if self.mode == "all":
                    images = {}
                    for name in writers:
                        src = compare_run.path(self.folder, name, self.map_id, c)
                        images[name] = read_images(src, members)
                        if remove_chunk_stacks:
                            os.remove(src)
                else:
                    images = self._recompute(c, members, list(writers))
                for name, w in writers.items():
                    w.write(self.slot[chunk_rows[members]], images[name])
        except BaseException:
            for w in writers.values():
                w.close(keep=False)
            raise
        for w in writers.values():
            w.close()

    def images(self, rows) -> list[np.ndarray]:
        """Return the aligned, reprojection and residual images of ``rows``, (k, N, N) each.

        Read where :meth:`write` saved them, else recomputed.
        """
        from xmipp_qc.formats.mrc import read_images

        rows = np.asarray(rows, dtype=np.int64)
        if not len(rows):
            return [np.zeros((0, 1, 1), np.float32)] * 3
        if (self.slot[rows] >= 0).all() and all(n in self._paths for n in _ORDER):
            return [read_images(self._paths[name], self.slot[rows]) for name in _ORDER]
        found = {}
        for c, chunk_rows in enumerate(self.chunk_rows):
            members = np.flatnonzero(np.isin(chunk_rows, rows))
            if len(members):
                got = self._recompute(c, members, _ORDER)
                for j, row in enumerate(chunk_rows[members]):
                    found[int(row)] = [got[name][j] for name in _ORDER]
        return [np.stack([found[int(r)][i] for r in rows]) for i in range(3)]
