"""Decisions of a compare-reprojections run, taken once for the protocol and the CLI.

The protocol (:mod:`xmipp_qc.protocols.protocol_compare_reprojections`) and the
``xmipp-qc compare-reprojections`` command differ only in how they read their
inputs (Scipion sets vs STAR/MRC files). Everything else that decides the
numbers lives here, so that the same input gives the same numbers on both paths:

* the working grid (:func:`working_grid`): the coarsest input sampling and,
  with downsampling, at least :data:`NEW_SAMPLING_RATE` Å/px; the largest
  physical image box defines the box;
* the comparison options (:func:`compare_options`): the low-pass of the
  comparison applies only above twice the working pixel size (below it the
  images hold no such frequency), and its raised-cosine edge defaults to
  :data:`DEFAULT_SIGMA` Fourier px;
* the chunks (:func:`plan_chunks`): consecutive rows sharing box, pixel size and
  acquisition (one CTF model per chunk), at most ``chunk_size`` each;
* the set statistics (:func:`finalize_map`): the residual-covariance term joins
  the outlier score when the angles were found by projection matching.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from xmipp_qc.core.compare_results import finalize
from xmipp_qc.core.outliers import MATCHED_OUTLIER_COMPONENTS, OUTLIER_THRESHOLD
from xmipp_qc.core.pipeline import CompareOptions
from xmipp_qc.core.working_grid import common_sampling

__all__ = ["DEFAULT_SIGMA", "NEW_SAMPLING_RATE", "compare_options", "exact_pixel", "finalize_map",
           "plan_chunks", "working_grid"]

NEW_SAMPLING_RATE = 3.0  # Å/px, Xmipp's downsampling target
DEFAULT_SIGMA = 3.0  # Fourier px, the raised-cosine edge of the comparison low-pass


def working_grid(image_groups: Sequence[tuple[int, float]], map_pixels: Sequence[float], *,
                 downsample: bool = True) -> tuple[int, float]:
    """Working box (px) and pixel size (Å/px) of a run.

    Parameters
    ----------
    image_groups : sequence of (box, pixel_a)
        Every distinct (box in px, pixel size in Å/px) of the images.
    map_pixels : sequence of float
        Pixel size of every candidate map (Å/px).
    downsample : bool
        Bring the data to at least :data:`NEW_SAMPLING_RATE` Å/px.

    Returns
    -------
    box : int
    pixel_a : float
        From :func:`xmipp_qc.core.working_grid.common_sampling` on the group
        with the largest physical box, at the coarsest of all samplings.
    """
    groups = sorted({(int(b), float(p)) for b, p in image_groups}, key=lambda k: -k[0] * k[1])
    if not groups:
        raise ValueError("no images")
    ref_box, ref_px = groups[0]
    coarsest = max([p for _, p in groups] + [float(p) for p in map_pixels])
    return common_sampling(ref_box, ref_px, ref_box, coarsest, downsample=downsample,
                           target_a=NEW_SAMPLING_RATE)


def exact_pixel(box: int, pixel_a: float, work_pixel_a: float) -> float:
    """Pixel size (Å/px) of images of ``box`` px at ``pixel_a`` on the working grid.

    From :func:`xmipp_qc.core.resample.resized_box`; converts their shifts.
    Equal to ``work_pixel_a`` for the images that defined the grid, else
    within half a pixel of their box.
    """
    from xmipp_qc.core.resample import resized_box

    _, exact = resized_box(int(box), float(pixel_a), float(work_pixel_a))
    return float(work_pixel_a) if abs(exact - work_pixel_a) <= 1e-9 * work_pixel_a else exact


def compare_options(work_pixel_a: float, *, resolution_a: float | None = None,
                    sigma: float | None = None, **others) -> CompareOptions:
    """:class:`~xmipp_qc.core.pipeline.CompareOptions` of a run on the working grid.

    Parameters
    ----------
    work_pixel_a : float
        Working pixel size (Å/px, :func:`working_grid`).
    resolution_a : float or None
        Low-pass of the comparison (Å); None or 0 = none. Ignored (None) at or
        below ``2 * work_pixel_a``: the working grid holds no finer detail.
    sigma : float or None
        Edge of that low-pass (Fourier px); None or 0 = :data:`DEFAULT_SIGMA`.
    **others
        The remaining :class:`CompareOptions` fields (``angular_step``,
        ``symmetry``, ``use_ctf``, ``optimize_gray``, ``refine``, ...).
    """
    resol = resolution_a if resolution_a and resolution_a > 2 * work_pixel_a else None
    return CompareOptions(pixel_size_a=float(work_pixel_a), resolution_a=resol,
                          sigma=float(sigma or DEFAULT_SIGMA), **others)


def plan_chunks(keys: Mapping[str, ArrayLike], n: int, chunk_size: int) -> list[NDArray]:
    """Rows of each chunk: runs of rows sharing every key, ``chunk_size`` at most.

    Parameters
    ----------
    keys : mapping of str to array_like of shape (n,)
        Per-row values that a chunk must share (box, pixel size, voltage, ...).
        Empty for a homogeneous set: chunks are then consecutive rows.
    n : int
        Number of rows.
    chunk_size : int
        Maximum rows per chunk (>= 1).

    Returns
    -------
    list of ndarray of int64
        Row indices of each chunk, ascending within a chunk; groups in the order
        of their sorted key values, every row exactly once.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if n == 0:
        return []
    if keys:
        table = np.stack([np.asarray(keys[k], dtype=np.float64).reshape(n) for k in sorted(keys)],
                         axis=1)
        _, label = np.unique(table, axis=0, return_inverse=True)
        label = label.reshape(-1)
    else:
        label = np.zeros(n, dtype=np.int64)
    chunks = []
    for g in np.unique(label):
        rows = np.flatnonzero(label == g)
        chunks += [rows[a:a + chunk_size] for a in range(0, len(rows), chunk_size)]
    return chunks


def finalize_map(results: Sequence, *, matching: bool,
                 threshold: float = OUTLIER_THRESHOLD) -> dict:
    """Set scores of one map (:func:`xmipp_qc.core.compare_results.finalize`).

    With ``matching`` (the angles were found by projection matching, not
    given), the residual-covariance z-score joins the outlier score
    (:data:`xmipp_qc.core.outliers.MATCHED_OUTLIER_COMPONENTS`).
    """
    return finalize(results, components=MATCHED_OUTLIER_COMPONENTS if matching else None,
                    threshold=threshold)
