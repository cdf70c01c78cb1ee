"""Checks of run options, shared by the ``xmipp-qc`` commands and the protocols' ``_validate``.

Every check takes the option's label as the user sees it (``--chunk-size`` on
the command line, ``Images per chunk`` in a protocol form) and its value, and
returns a list of problems: one sentence each, naming the option and the value,
empty when the value is fine. Callers collect the problems of all their options
and report them together, before any work is done.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Optional

__all__ = [
    "at_least",
    "choice",
    "finite",
    "in_range",
    "positive",
    "symmetry",
]


def _number(value: Any) -> Optional[float]:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def finite(label: str, value: Any, *, optional: bool = False) -> list[str]:
    """Check a finite number (None allowed with ``optional``)."""
    if value is None and optional:
        return []
    v = _number(value)
    if v is None or not math.isfinite(v):
        return [f"{label} must be a finite number, got {value!r}"]
    return []


def positive(label: str, value: Any, *, optional: bool = False) -> list[str]:
    """Check a finite number > 0 (None allowed with ``optional``)."""
    if value is None and optional:
        return []
    v = _number(value)
    if v is None or not (math.isfinite(v) and v > 0):
        return [f"{label} must be a finite number > 0, got {value!r}"]
    return []


def in_range(label: str, value: Any, low: float, high: float, *,
             optional: bool = False, high_open: bool = False) -> list[str]:
    """Check a finite number in ``[low, high]`` (``[low, high)`` with ``high_open``).

    None is allowed with ``optional``.
    """
    if value is None and optional:
        return []
    v = _number(value)
    inside = v is not None and math.isfinite(v) and low <= v and (
        v < high if high_open else v <= high)
    if not inside:
        span = f"[{low:g}, {high:g}{')' if high_open else ']'}".replace("inf]", "inf)")
        return [f"{label} must be in {span}, got {value!r}"]
    return []


def at_least(label: str, value: Any, minimum: int) -> list[str]:
    """Check an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        return [f"{label} must be an integer >= {minimum}, got {value!r}"]
    return []


def choice(label: str, value: Any, choices: Iterable[str]) -> list[str]:
    """Check one of ``choices``."""
    names = sorted(choices)
    if value not in names:
        return [f"{label} {value!r} is not one of {', '.join(names)}"]
    return []


def symmetry(label: str, value: Any) -> list[str]:
    """Check an Xmipp point-group name (:func:`~xmipp_qc.core.symmetry.parse_symmetry`)."""
    from xmipp_qc.core.symmetry import VALID_SYMMETRY_FORMS, parse_symmetry

    try:
        parse_symmetry(value or "")
    except ValueError:
        return [f"{label}: unknown symmetry group {value!r} (Xmipp names: "
                f"{VALID_SYMMETRY_FORMS})"]
    return []
