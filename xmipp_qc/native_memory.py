"""Give the memory freed by a whole-set step back to the system.

A protocol runs all its steps in one long-lived process. Whole-set steps
(reading the input set, writing the working stack, the set statistics) make
hundreds of thousands of small Python objects and free them at the end; the
C allocator keeps the freed memory in its heap, scattered among live blocks,
so the process's resident size keeps what the largest step needed and the
next step (the chunk threads with the maps) starts from there. Measured on
100,000 particles: reading the set left 36 MB resident after it was freed,
8 MB after :func:`release_memory`. The numeric core (:mod:`xmipp_qc.core`)
does not import this module; protocols call it between steps.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc

__all__ = ["release_memory"]


@functools.cache
def _libc():
    """Load the C library once; None when it cannot be loaded."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def release_memory() -> None:
    """Collect garbage and return the allocator's free memory to the system.

    Uses glibc's ``malloc_trim``; elsewhere only the collection is done.
    """
    gc.collect()
    libc = _libc()
    if libc and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
