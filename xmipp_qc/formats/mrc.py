"""MRC/MRCS images, stacks and volumes (CCP-EM ``mrcfile``), always as float32.

Arrays follow :mod:`xmipp_qc.core`: an image is ``(N, N)`` ``[y, x]``, a stack
``(n, N, N)``, a volume ``(N, N, N)`` ``[z, y, x]`` — the MRC file order
(sections, rows, columns) read as is. Modes 0 (int8), 1 (int16), 2 (float32),
6 (uint16) and 12 (float16) are read and converted to float32; the pixel size
is the header's ``voxel_size.x`` in Å (None when unset, i.e. 0). RELION numbers stack items from 1
(``k@stack.mrcs``); functions here take 0-based indices.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from typing import Optional, Sequence

import mrcfile
import numpy as np

__all__ = [
    "MRC_MODES",
    "StackWriter",
    "pixel_size",
    "read_images",
    "read_volume",
    "stack_shape",
    "write_stack",
    "write_volume",
]

#: MRC data modes this module reads (mode -> numpy dtype in the file).
MRC_MODES = {0: np.int8, 1: np.int16, 2: np.float32, 6: np.uint16, 12: np.float16}


@contextmanager
def _open(path: str, opener=mrcfile.open, **kw):
    """Open an MRC file read-only; a damaged file raises ValueError naming it and why.

    mrcfile's own warnings (bad map ID, unknown mode, NaN values) are not
    printed: a problem that stops the read becomes the error's message, and
    non-finite values are reported by the caller's checks.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            mrc = opener(path, mode="r", permissive=True, **kw)
        except ValueError as err:
            raise ValueError(f"{path}: damaged MRC file ({err})") from None
    why = "; ".join(str(w.message) for w in caught if "NaN" not in str(w.message))
    try:
        h = mrc.header
        dims = (int(h.nx), int(h.ny), int(h.nz))
        if min(dims) < 1 or (not kw.get("header_only") and mrc.data is None):
            raise ValueError(f"{path}: damaged MRC header (nx, ny, nz = {dims}, mode "
                             f"{int(h.mode)}{'; ' + why if why else ''})")
        yield mrc
    finally:
        mrc.close()


def _check_mode(mrc, path: str) -> None:
    mode = int(mrc.header.mode)
    if mode not in MRC_MODES:
        raise ValueError(f"{path}: MRC mode {mode} is not supported (use {sorted(MRC_MODES)})")


def _pixel(mrc) -> Optional[float]:
    px = float(mrc.voxel_size.x)
    return px if np.isfinite(px) and px > 0 else None


def pixel_size(path: str) -> Optional[float]:
    """Pixel size (Å/px) from the header of an MRC file, None when unset."""
    with _open(path, header_only=True) as mrc:
        return _pixel(mrc)


def stack_shape(path: str) -> tuple[int, int, int]:
    """``(n, Ny, Nx)`` of an image or stack (a 2D file is a stack of 1)."""
    with _open(path, header_only=True) as mrc:
        _check_mode(mrc, path)
        h = mrc.header
        return int(h.nz), int(h.ny), int(h.nx)


def read_images(path: str, indices: Optional[Sequence[int]] = None) -> np.ndarray:
    """Read images of a stack (or the single image of a 2D file) as float32.

    Parameters
    ----------
    path : str
        ``.mrcs``/``.mrc`` file; every section of a 3D file is an image.
    indices : sequence of int, optional
        0-based items to read, in the order given (default all). The file is
        memory mapped, so reading a few items of a large stack is cheap.

    Returns
    -------
    ndarray of shape (n, Ny, Nx), float32
    """
    with _open(path, mrcfile.mmap) as mrc:
        _check_mode(mrc, path)
        data = mrc.data if mrc.data.ndim == 3 else mrc.data[None]
        if data.ndim != 3:
            raise ValueError(f"{path}: expected images, got data of shape {mrc.data.shape}")
        if indices is None:
            return np.array(data, dtype=np.float32)
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(data)):
            raise ValueError(f"{path}: item index out of range 0..{len(data) - 1}")
        return np.array(data[idx], dtype=np.float32)


def read_volume(path: str) -> tuple[np.ndarray, Optional[float]]:
    """Read a map as a float32 ``(N, N, N)`` array ``[z, y, x]`` and its pixel size (Å or None)."""
    with _open(path) as mrc:
        _check_mode(mrc, path)
        vol = np.array(mrc.data, dtype=np.float32)
        px = _pixel(mrc)
    if vol.ndim != 3 or len(set(vol.shape)) != 1:
        raise ValueError(f"{path}: expected a cubic volume, got shape {vol.shape}")
    return vol, px


def _write(path: str, data: np.ndarray, pixel_size_a: Optional[float], stack: bool) -> None:
    tmp = f"{path}.part"
    with mrcfile.new(tmp, overwrite=True) as mrc:
        mrc.set_data(data)
        if stack:
            mrc.set_image_stack()
        else:
            mrc.set_volume()
        if pixel_size_a is not None:
            mrc.voxel_size = float(pixel_size_a)
    os.replace(tmp, path)


def write_stack(path: str, images: np.ndarray, pixel_size_a: Optional[float] = None,
                dtype: type = np.float32) -> None:
    """Write ``(n, N, N)`` images as an MRC image stack (written to a temporary, then renamed).

    ``dtype`` is one of :data:`MRC_MODES`' types (float32 by default).
    """
    arr = np.asarray(images)
    arr = arr[None] if arr.ndim == 2 else arr
    if arr.ndim != 3:
        raise ValueError(f"images must be (n, Ny, Nx), got {arr.shape}")
    if np.dtype(dtype) not in {np.dtype(t) for t in MRC_MODES.values()}:
        raise ValueError(f"dtype {dtype} has no supported MRC mode")
    _write(path, np.ascontiguousarray(arr, dtype=dtype), pixel_size_a, stack=True)


def write_volume(path: str, volume: np.ndarray, pixel_size_a: Optional[float] = None) -> None:
    """Write a ``(N, N, N)`` float32 map ``[z, y, x]`` with its pixel size (Å)."""
    vol = np.asarray(volume)
    if vol.ndim != 3:
        raise ValueError(f"volume must be 3D, got {vol.shape}")
    _write(path, np.ascontiguousarray(vol, dtype=np.float32), pixel_size_a, stack=False)


class StackWriter:
    """Write a float32 image stack of known size slot by slot.

    Use as a context manager; the file appears under its name only when closed
    without error. The header is written by ``mrcfile`` and the images with
    plain positioned writes, never through a memory map: the pages of a mapped
    stack stay in the writer's resident memory until it is closed, so a
    mapped stack of ``n`` images would cost ``n N^2 4`` bytes of RAM; here the
    memory is that of one ``write`` call.

    Parameters
    ----------
    path : str
        Output ``.mrcs`` file.
    n, box : int
        Number of images and their size N (px).
    pixel_size_a : float, optional
        Header pixel size in Å/px.
    """

    def __init__(self, path: str, n: int, box: int, pixel_size_a: Optional[float] = None):
        if n < 1 or box < 1:
            raise ValueError(f"a stack needs n >= 1 and box >= 1, got {n}, {box}")
        self.path, self._tmp, self._n, self._box = path, f"{path}.part", int(n), int(box)
        with mrcfile.new(self._tmp, overwrite=True) as mrc:  # header only, no data
            mrc.header.mode = 2
            mrc.header.nx = mrc.header.ny = box
            mrc.header.nz = n
            mrc.header.mx = mrc.header.my = box
            mrc.header.mz = 1
            mrc.header.ispg = 0  # image stack
            if pixel_size_a is not None:
                mrc.voxel_size = float(pixel_size_a)
            mrc.header.dmin, mrc.header.dmax, mrc.header.dmean = 0.0, -1.0, -2.0  # unknown
            mrc.header.rms = -1.0
            offset = int(mrc.header.nbytes + mrc.extended_header.nbytes)
        self._offset, self._image = offset, box * box * 4
        self._fh = open(self._tmp, "r+b")
        self._fh.truncate(offset + self._n * self._image)  # sparse until written

    def write(self, indices: Sequence[int], images: np.ndarray) -> None:
        """Store ``images`` (k, N, N) at the 0-based slots ``indices``."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        data = np.ascontiguousarray(images, dtype="<f4")
        if data.shape != (len(idx), self._box, self._box):
            raise ValueError(f"{self.path}: {len(idx)} slots for images of shape {data.shape}")
        if idx.size and (idx.min() < 0 or idx.max() >= self._n):
            raise ValueError(f"{self.path}: slot out of range 0..{self._n - 1}")
        start = 0
        for stop in [*(np.flatnonzero(np.diff(idx) != 1) + 1).tolist(), len(idx)]:
            self._fh.seek(self._offset + int(idx[start]) * self._image)  # one run of slots
            self._fh.write(data[start:stop].tobytes())
            start = stop

    def close(self, keep: bool = True) -> None:
        """Close; rename to the final name if ``keep``, else delete."""
        self._fh.close()
        if keep:
            os.replace(self._tmp, self.path)
        else:
            os.remove(self._tmp)

    def __enter__(self) -> StackWriter:
        """Return the writer."""
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """Close; keep the file only without an exception."""
        self.close(keep=exc_type is None)
