"""Which images of a compare-reprojections run are saved as image stacks, and the disk they take.

Every image has three working images (aligned, reprojection, residual: float32,
``(N, N)`` at the working box ``N``); for a million particles at box 96 that is
110 GB. The output-stack choice (:data:`OUTPUT_STACKS`) decides which are
written:

``all``
    every image (the default; the viewer's thumbnails and every table row
    have their images);
``flagged``
    the flagged images (outliers and failures) plus the ``n_worst`` worst
    images by each score of :data:`WORST_FIRST` (the viewer's sort orders), so
    that the first rows of the viewer's table, whatever the order, have their
    images;
``none``
    no stack (the report's few worst images are recomputed for its figure).

Nothing here depends on which scores exist beyond the ones named: a caller
adds its own (e.g. a CTF check's) to ``worst_first``.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from numpy.typing import NDArray

__all__ = ["OUTPUT_STACKS", "STACK_NAMES", "WORST_FIRST", "rows_to_save", "stack_bytes"]

#: The output-stack choices, default first.
OUTPUT_STACKS = ("all", "flagged", "none")
#: The three stacks of working images, in the order they are written.
STACK_NAMES = ("reprojections", "residuals", "aligned")
#: Scores the viewer sorts by, and whether a HIGHER value is worse.
WORST_FIRST: dict[str, bool] = {"outlierScore": True, "cost": False, "zScoreResCov": True,
                                "zScoreGray": False, "imedValue": True}


def _worst(values: NDArray, n_worst: int, higher_is_worse: bool) -> NDArray[np.int64]:
    """Return the indices of the ``n_worst`` worst finite values (fewer if fewer)."""
    v = np.asarray(values, dtype=np.float64)
    finite = np.flatnonzero(np.isfinite(v))
    if n_worst <= 0 or not finite.size:
        return np.zeros(0, dtype=np.int64)
    key = -v[finite] if higher_is_worse else v[finite]
    k = min(n_worst, finite.size)
    return finite[np.argpartition(key, k - 1)[:k]]


def rows_to_save(scores: Mapping[str, NDArray], mode: str, *, n_worst: int = 50,
                 worst_first: Mapping[str, bool] | None = None) -> NDArray[np.int64]:
    """Rows (positions in ``scores``' arrays) whose images are saved, ascending.

    Parameters
    ----------
    scores : mapping of str to ndarray of shape (n,)
        Per-image set scores with at least ``isOutlier`` (bool); the scores of
        ``worst_first`` that are present are used, the others ignored.
    mode : {"all", "flagged", "none"}
        See the module docstring.
    n_worst : int
        With ``flagged``: images kept per score of ``worst_first`` (NaN
        scores never count as worst; failed images are flagged anyway).
    worst_first : mapping of str to bool, optional
        Score name -> higher is worse; default :data:`WORST_FIRST`.

    Returns
    -------
    ndarray of int64, shape (k,)
    """
    if mode not in OUTPUT_STACKS:
        raise ValueError(f"output stacks must be one of {', '.join(OUTPUT_STACKS)}, got {mode!r}")
    flagged = np.asarray(scores["isOutlier"], dtype=bool).reshape(-1)
    if mode == "all":
        return np.arange(len(flagged), dtype=np.int64)
    if mode == "none":
        return np.zeros(0, dtype=np.int64)
    keep = flagged.copy()
    for name, higher in (WORST_FIRST if worst_first is None else worst_first).items():
        if name in scores:
            keep[_worst(scores[name], int(n_worst), bool(higher))] = True
    return np.flatnonzero(keep).astype(np.int64)


def stack_bytes(n_images: int, box: int, n_stacks: int = len(STACK_NAMES)) -> int:
    """Disk of ``n_stacks`` float32 stacks of ``n_images`` images of ``box`` px (bytes).

    One MRC header (1024 bytes) per stack plus ``4 N^2`` bytes per image.
    """
    return int(n_stacks) * (1024 + int(n_images) * int(box) ** 2 * 4)
