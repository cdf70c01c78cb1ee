"""Why an image is flagged or could not be scored: one category per cause, and its value.

:data:`REASONS` is the one table of the categories (category -> description),
used by the ``xmipp-qc`` command (STAR column ``xmippQcReason``), the protocol
(item attribute ``_qc_reason``), the viewer and the README. A category names
the cause (``given_shift_too_large``), so that reasons can be counted and
filtered; the number that triggered it, when there is one, goes in its own
column (``xmippQcReasonValue``, ``_qc_reasonValue``; NaN when the category has
no value), in the unit the description gives.

Inside :mod:`xmipp_qc.core` a reason travels through the per-image ``reasons``
string arrays (chunk summaries, chunk results, set statistics) as
:func:`reason` writes it: the category alone, or ``"category:value"``.
:func:`split_reasons` turns such an array into the two output columns, once,
in :func:`xmipp_qc.core.compare_results.finalize`. "" means "no reason" (the
image was scored and is not flagged).
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["FAILED", "OUTLIER", "REASONS", "is_failure", "reason", "reason_lines",
           "split_reasons"]

#: The image was scored and its outlier score is above the threshold.
OUTLIER = "outlier_score_above_threshold"

#: Category -> description (with the unit of the value column, when there is one).
REASONS = {
    OUTLIER: "scored, and its outlier score is above the threshold (the score is in "
             "its own column)",
    "non_finite_image": "the image has NaN or Inf pixel values",
    "image_values_too_large": "pixel values beyond 1e12 would overflow the sums; "
                              "value: the largest absolute pixel value",
    "constant_image": "the image is empty or constant inside the comparison disc",
    "constant_reprojection": "the map's reprojection is constant inside the comparison "
                             "disc (the alignment points at an empty part of the map)",
    "non_finite_reprojection": "the reprojection has NaN or Inf values",
    "non_finite_angles": "a given Euler angle is NaN or Inf",
    "non_finite_shift": "the given shift (origin) is NaN or Inf",
    "given_shift_too_large": "the given shift (origin) is longer than 25% of the box: a "
                             "damaged or foreign value; value: its length, px of the "
                             "working sampling",
    "non_finite_covariance": "the residual covariance has NaN or Inf values",
    "extreme_image_scale": "the image's standard deviation is more than 100 times above "
                           "or below the set's median; value: that ratio",
}

#: Categories of images that could not be scored (every one but :data:`OUTLIER`).
FAILED = tuple(k for k in REASONS if k != OUTLIER)

_SEP = ":"


def reason(category: str, value: Optional[float] = None) -> str:
    """Write the reason of one image: ``category`` or ``"category:value"``.

    Parameters
    ----------
    category : str
        A key of :data:`REASONS` (KeyError otherwise: a new cause needs its
        row in the table, and in the README).
    value : float, optional
        The number that triggered it, in the unit of the description.
    """
    if category not in REASONS:
        raise KeyError(f"unknown reason category {category!r}: add it to REASONS")
    return category if value is None else f"{category}{_SEP}{float(value):.6g}"


def split_reasons(reasons: ArrayLike) -> tuple[NDArray[np.str_], NDArray[np.float64]]:
    """Categories and values of reason strings (:func:`reason`).

    Parameters
    ----------
    reasons : array_like of str, shape (n,)

    Returns
    -------
    categories : ndarray of str, shape (n,)
        "" where there is no reason. A string without a value is its own
        category (kept as is, even if it is not in :data:`REASONS`).
    values : ndarray of float64, shape (n,)
        NaN where the reason has no value.
    """
    r = np.asarray(reasons, dtype=str).reshape(-1)
    cats = np.full(len(r), "", dtype=object)
    values = np.full(len(r), np.nan)
    for i, text in enumerate(r.tolist()):
        head, sep, tail = text.partition(_SEP)
        cats[i] = head
        if sep:
            try:
                values[i] = float(tail)
            except ValueError:  # not one of ours: keep the whole sentence
                cats[i] = text
    return cats.astype(str), values


def is_failure(categories: ArrayLike) -> NDArray[np.bool_]:
    """Tell the images that could not be scored (a reason other than :data:`OUTLIER`)."""
    c = np.asarray(categories, dtype=str)
    return (c != "") & (c != OUTLIER)


def reason_lines(categories: ArrayLike, values: Optional[ArrayLike] = None) -> list[str]:
    """One line per category present, most frequent first: count, category, description.

    With ``values``, the range of the values of that category is added.
    """
    c = np.asarray(categories, dtype=str)
    v = None if values is None else np.asarray(values, dtype=np.float64)
    names, counts = np.unique(c[c != ""], return_counts=True)
    lines = []
    for name, n in sorted(zip(names.tolist(), counts.tolist()), key=lambda t: (-t[1], t[0])):
        line = f"{n} x {name}: {REASONS.get(name, 'not a known category')}"
        vals = [] if v is None else v[(c == name) & np.isfinite(v)]
        if len(vals):
            lo, hi = float(np.min(vals)), float(np.max(vals))
            line += f" ({lo:.4g})" if math.isclose(lo, hi) else f" ({lo:.4g} to {hi:.4g})"
        lines.append(line)
    return lines
