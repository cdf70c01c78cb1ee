"""STAR files: every data block read as text, and written back.

Why a small parser rather than ``emtable``: the output must be the input table
with columns appended, byte for byte in every other column; keeping each value
as its original text (no float round trip, no type guessing, unknown labels and
other data blocks kept in order) makes that exact, and reads 10^5 rows fast.

A block is a loop (``columns`` + ``rows``) or key-value pairs (one row);
labels are stored without their leading ``_``. The RELION particle table
(angles, origins, pixel sizes, CTF, image locations) is
:mod:`xmipp_qc.formats.relion_particles`; its names are re-exported here.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import numpy as np

#: Names of :mod:`xmipp_qc.formats.relion_particles` importable from here (by
#: :func:`__getattr__`: that module imports this one, so it is loaded on use).
_PARTICLE_NAMES = ("RELION_PROJECT_ODD_OFFSET", "Particles", "origins_to_shifts",
                   "read_particles", "shifts_to_origins", "write_particles")

__all__ = ["StarBlock", "read_star", "select_rows", "write_star", *_PARTICLE_NAMES]


def __getattr__(name: str):
    """Re-export the particle table (imported here on first use: it imports this module)."""
    if name in _PARTICLE_NAMES:
        from xmipp_qc.formats import relion_particles

        return getattr(relion_particles, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class StarBlock:
    """One ``data_`` block: a loop (``columns`` + ``rows``) or key-value pairs.

    Values are kept as the file's text. A key-value block has one row.
    """

    name: str
    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    is_loop: bool = True

    def has(self, label: str) -> bool:
        """Return whether the block has the column ``label`` (no leading ``_``)."""
        return label in self.columns

    def text(self, label: str) -> list[str]:
        """Column as text."""
        j = self.columns.index(label)
        return [r[j] for r in self.rows]

    def numbers(self, label: str) -> np.ndarray:
        """Column as float64 (ValueError naming the column and the first bad row)."""
        text = self.text(label)
        try:
            return np.array(text, dtype=np.float64)
        except ValueError:
            pass
        for k, v in enumerate(text):
            try:
                float(v)
            except ValueError:
                raise ValueError(f"data_{self.name} row {k + 1}: {label} is not numeric "
                                 f"({v!r})") from None
        raise ValueError(f"data_{self.name}: column {label} is not numeric")

    def set_column(self, label: str, values: Sequence[str]) -> None:
        """Replace the column ``label`` in place, or append it at the end."""
        if len(values) != len(self.rows):
            raise ValueError(f"column {label} has {len(values)} values for {len(self.rows)} rows")
        if label in self.columns:
            j = self.columns.index(label)
            for r, v in zip(self.rows, values):
                r[j] = v
        else:
            self.columns.append(label)
            for r, v in zip(self.rows, values):
                r.append(v)


def _split(line: str) -> list[str]:
    return shlex.split(line) if ('"' in line or "'" in line) else line.split()


def read_star(path: str) -> dict[str, StarBlock]:
    """Read every data block of a STAR file, in file order (values as text).

    Raises ValueError naming the file (and line) if it is not a STAR file.
    """
    try:
        return _read_star(path)
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not a text STAR file (undecodable byte at offset "
                         f"{err.start})") from None


def _read_star(path: str) -> dict[str, StarBlock]:
    blocks: dict[str, StarBlock] = {}
    cur: Optional[StarBlock] = None
    in_header = False
    with open(path) as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("data_"):
                cur = blocks[line[5:]] = StarBlock(line[5:], is_loop=False, rows=[[]])
                in_header = False
            elif cur is None:
                raise ValueError(f"{path}: content before the first data_ block: {line[:40]!r}")
            elif line.startswith("loop_"):
                cur.is_loop, cur.rows, in_header = True, [], True
            elif line.startswith("_"):
                parts = _split(line)
                cur.columns.append(parts[0][1:])
                if not cur.is_loop:
                    cur.rows[0].append(parts[1] if len(parts) > 1 and not
                                       parts[1].startswith("#") else "")
            elif cur.is_loop and (in_header or cur.columns):
                in_header = False
                values = _split(line)
                if len(values) != len(cur.columns):
                    raise ValueError(f"{path}, line {lineno}: data_{cur.name} row "
                                     f"{len(cur.rows) + 1} has {len(values)} values "
                                     f"for {len(cur.columns)} columns: {line[:60]!r}")
                cur.rows.append(values)
    return blocks


def _quote(v: str) -> str:
    return f'"{v}"' if (not v or any(c.isspace() for c in v)) else v


def write_star(path: str, blocks: Mapping[str, StarBlock]) -> None:
    """Write blocks as a STAR file (to a temporary, then renamed).

    The ``# version 30001`` line is written only when there is an ``optics``
    block, so that a RELION 3.0 table stays a 3.0 table.
    """
    tmp = f"{path}.part"
    version = "\n# version 30001\n" if "optics" in blocks else ""  # RELION 3.1+ files only
    with open(tmp, "w") as fh:
        for b in blocks.values():
            fh.write(f"{version}\ndata_{b.name}\n\n")
            if not b.is_loop:
                for c, v in zip(b.columns, b.rows[0]):
                    fh.write(f"_{c} {_quote(v)}\n")
                continue
            fh.write("loop_\n")
            fh.writelines(f"_{c} #{k + 1}\n" for k, c in enumerate(b.columns))
            fh.writelines(" ".join(_quote(v) for v in r) + "\n" for r in b.rows)
            fh.write("\n")
    os.replace(tmp, path)


def select_rows(blocks: Mapping[str, StarBlock], table: str,
                rows: Sequence[int]) -> dict[str, StarBlock]:
    """Copy of ``blocks`` whose loop ``table`` keeps only ``rows`` (0-based, in that order).

    Every other block (``optics`` included) and every value are kept as read,
    so :func:`write_star` writes the input file restricted to those rows.
    """
    out = {k: StarBlock(b.name, list(b.columns), [list(r) for r in b.rows], b.is_loop)
           for k, b in blocks.items()}
    src = blocks[table]
    if not src.is_loop:
        raise ValueError(f"data_{table} is not a loop")
    out[table].rows = [list(src.rows[int(i)]) for i in rows]
    return out

