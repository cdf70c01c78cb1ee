"""Small JSON files of a run (options, outputs, rankings, references, session rates).

One reader and one writer: the writer goes through a ``.part`` file renamed into
place, so a reader (a viewer, a summary, a streaming step) sees the old or the new
file, never a half-written one; numpy scalars and arrays are written as numbers
and lists.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

__all__ = ["read_json", "to_json", "write_json"]


def to_json(value: Any) -> Any:
    """``json.dump`` default: numpy scalars as Python numbers, arrays as lists.

    Raises
    ------
    TypeError
        For any other type.
    """
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value)}")


def write_json(path: str, data: Any) -> None:
    """Write ``data`` to ``path`` atomically (``path.part``, then renamed)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(f"{path}.part", "w") as fh:
        json.dump(data, fh, indent=1, default=to_json)
    os.replace(f"{path}.part", path)


def read_json(path: str, default: Any = None) -> Any:
    """Read ``path``, or return ``default`` if it does not exist."""
    if not os.path.exists(path):
        return default
    with open(path) as fh:
        return json.load(fh)
