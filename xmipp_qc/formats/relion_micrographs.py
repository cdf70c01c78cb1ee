"""RELION micrograph STAR files (``data_optics`` + ``data_micrographs``), written.

The table a RELION motion-correction job writes as ``corrected_micrographs.star``
and a CTF-estimation job reads: one optics group per distinct acquisition and
one row per micrograph. Written through :func:`xmipp_qc.formats.star.write_star`
(the package's one STAR writer), so ``relion_star_handler``, emtable and our
reader all take it.

Labels (RELION's own, units as RELION defines them)
    ``data_optics``: ``rlnOpticsGroupName``, ``rlnOpticsGroup``,
    ``rlnMicrographOriginalPixelSize`` (Å/px of the movie),
    ``rlnVoltage`` (kV), ``rlnSphericalAberration`` (mm),
    ``rlnAmplitudeContrast``, ``rlnMicrographPixelSize`` (Å/px of the
    micrograph, i.e. after binning).
    ``data_micrographs``: ``rlnMicrographName``, ``rlnMicrographMetadata``
    (the RELION per-movie motion STAR, when there is one), ``rlnOpticsGroup``,
    ``rlnAccumMotionTotal``/``Early``/``Late`` (Å, as RELION computes them).
Other metrics are appended as ``xmippQc*`` columns: RELION 3.1+ keeps labels it
does not know through every job (``EMDL_UNKNOWN_LABEL``) and ignores them.

:func:`select_micrographs` takes the other road: the rows of an existing
micrograph STAR (RELION's own ``corrected_micrographs.star``), every block and
value as read, with columns appended.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

from xmipp_qc.formats.star import StarBlock, select_rows, write_star

__all__ = ["MicrographRow", "Optics", "micrograph_blocks", "micrograph_table",
           "select_micrographs", "write_micrographs", "write_qc_micrographs"]


@dataclass(frozen=True)
class Optics:
    """Acquisition of one optics group (pixel sizes in Å/px, voltage kV, Cs mm)."""

    original_pixel_a: float
    pixel_a: float
    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.1


@dataclass(frozen=True)
class MicrographRow:
    """One micrograph: its file, optics, RELION motion in Å and extra ``xmippQc*`` values.

    ``metadata`` is the RELION per-movie motion STAR (None for other sources);
    ``motion_a`` is ``(total, early, late)`` accumulated motion in Å or None
    when the pixel size is unknown; ``extra`` maps a label (``xmippQcReason``)
    to its value (float, int or text).
    """

    name: str
    optics: Optional[Optics]
    metadata: Optional[str] = None
    motion_a: Optional[tuple] = None
    extra: Optional[Mapping[str, object]] = None


def _text(value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:.6f}"
    return str(value)


def micrograph_blocks(rows: Sequence[MicrographRow]) -> dict[str, StarBlock]:
    """Blocks of a RELION micrograph STAR for ``rows`` (values as STAR text).

    With an :class:`Optics` on every row, a RELION 3.1+ table (``optics`` and
    ``micrographs``, ``rlnOpticsGroup`` numbered from 1 in order of first
    use); otherwise a RELION 3.0 table without optics. Columns that a row
    lacks (metadata, motion) are left out for every row.
    """
    with_optics = bool(rows) and all(r.optics is not None for r in rows)
    groups: dict[Optics, int] = {}
    if with_optics:
        for r in rows:
            groups.setdefault(r.optics, len(groups) + 1)
    columns = ["rlnMicrographName"]
    if rows and all(r.metadata for r in rows):
        columns.append("rlnMicrographMetadata")
    if with_optics:
        columns.append("rlnOpticsGroup")
    motion = bool(rows) and all(r.motion_a is not None for r in rows)
    if motion:
        columns += ["rlnAccumMotionTotal", "rlnAccumMotionEarly", "rlnAccumMotionLate"]
    extra = list(rows[0].extra or {}) if rows else []
    table = StarBlock("micrographs", columns + extra)
    for r in rows:
        values = [r.name]
        values += [r.metadata] if "rlnMicrographMetadata" in columns else []
        values += [str(groups[r.optics])] if with_optics else []
        values += [_text(float(m)) for m in r.motion_a] if motion else []
        values += [_text((r.extra or {}).get(label, "")) for label in extra]
        table.rows.append(values)
    if not with_optics:
        return {"micrographs": table}
    optics = StarBlock("optics", ["rlnOpticsGroupName", "rlnOpticsGroup",
                                  "rlnMicrographOriginalPixelSize", "rlnVoltage",
                                  "rlnSphericalAberration", "rlnAmplitudeContrast",
                                  "rlnMicrographPixelSize"])
    for o, k in groups.items():
        optics.rows.append([f"opticsGroup{k}", str(k), _text(o.original_pixel_a),
                            _text(o.voltage_kv), _text(o.cs_mm), _text(o.amplitude_contrast),
                            _text(o.pixel_a)])
    return {"optics": optics, "micrographs": table}


def write_micrographs(path: str, rows: Sequence[MicrographRow]) -> None:
    """Write :func:`micrograph_blocks` of ``rows`` to ``path`` (atomically)."""
    write_star(path, micrograph_blocks(rows))


def micrograph_table(blocks: Mapping[str, StarBlock], path: str) -> str:
    """Name of the micrograph loop of a STAR file.

    ``micrographs``, else the first loop with ``rlnMicrographName``; a
    ValueError naming ``path`` if there is none.
    """
    if "micrographs" in blocks and blocks["micrographs"].has("rlnMicrographName"):
        return "micrographs"
    loops = [k for k, b in blocks.items() if b.is_loop and b.has("rlnMicrographName")]
    if not loops:
        raise ValueError(f"{path}: no micrograph table (a loop with rlnMicrographName)")
    return loops[0]


def select_micrographs(blocks: Mapping[str, StarBlock], table: str, rows: Sequence[int],
                       columns: Mapping[str, Sequence[object]]) -> dict[str, StarBlock]:
    """``blocks`` with only ``rows`` (0-based) of ``table`` and ``columns`` appended.

    Every other block (optics included) and every value read stay as they
    were; ``columns`` maps a new label to one value per selected row.
    """
    out = select_rows(blocks, table, rows)
    for label, values in columns.items():
        out[table].set_column(label, [_text(v) for v in values])
    return out


def write_qc_micrographs(path: str, table: Mapping[str, Sequence], names: Sequence[str]) -> None:
    """Write the per-micrograph table of compare reprojections as a RELION micrograph STAR.

    ``table`` is :func:`xmipp_qc.core.micrograph_table.micrograph_table`'s
    output (one entry per micrograph), ``names`` the ``rlnMicrographName`` of
    each row; the columns are ``STAR_LABELS`` of that module that the table has.
    """
    from xmipp_qc.core.micrograph_table import STAR_LABELS

    rows = []
    for r, name in enumerate(names):
        extra = {label: _scalar(table[key][r]) for key, label in STAR_LABELS.items()
                 if key in table}
        rows.append(MicrographRow(str(name), None, extra=extra))
    write_micrographs(path, rows)


def _scalar(v):
    """Return a numpy value as the int, float or text that :func:`_text` writes."""
    if hasattr(v, "dtype") and v.dtype.kind in "iub":
        return int(v)
    if hasattr(v, "dtype") and v.dtype.kind == "f" or isinstance(v, float):
        return float(v)
    return v if isinstance(v, (int, str)) else str(v)
