"""RELION particle tables (3.0 and 3.1+ with optics groups): read, and write back.

The particle block of a STAR file read by :func:`xmipp_qc.formats.star.read_star`
(the one STAR reader; every value kept as its text) turned into arrays, and the
input written back by :func:`xmipp_qc.formats.star.write_star` with columns
appended and the alignment updated, every other column unchanged.

Conventions (pinned by ``xmipp_qc/tests/core/test_relion_conventions.py`` and
``xmipp_qc/tests/test_formats_star_mrc.py``; this module is the ONE place where
they are applied):
* Angles: ``rlnAngleRot/Tilt/Psi`` are Xmipp's ``(rot, tilt, psi)`` unchanged.
* Origins: the Xmipp shift (see :mod:`xmipp_qc.core`) is ``s = +rlnOrigin`` in
  px: ``rlnOriginX/Y`` (px, RELION 3.0) or ``rlnOriginX/YAngst`` divided by the
  pixel size (RELION 3.1+; preferred when both are present).
* ``relion_project`` output of an ODD box is translated by +1 px in x and y
  relative to an origin-at-``N // 2`` projector: such images have
  ``s = rlnOrigin - (1, 1)`` (:data:`RELION_PROJECT_ODD_OFFSET`; opt-in with
  ``relion_project=True``, not a property of extracted particles).
* Pixel size of a row: its optics group's ``rlnImagePixelSize``, else
  ``rlnDetectorPixelSize`` (µm) ``* 1e4 / rlnMagnification`` (3.0 style), else
  the caller's value.
* CTF: ``rlnDefocusU/V`` (Å), ``rlnDefocusAngle`` (degrees), ``rlnVoltage``
  (kV), ``rlnSphericalAberration`` (mm), ``rlnAmplitudeContrast``,
  ``rlnPhaseShift`` (degrees), taken from the particle row or its optics group,
  used as is by :func:`xmipp_qc.core.ctf.ctf_image`.
* Images: ``rlnImageName = k@stack.mrcs`` (k from 1); relative stack paths are
  resolved against the STAR file's folder, then the working directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Optional

import numpy as np

from xmipp_qc.formats.star import StarBlock, read_star, write_star

__all__ = [
    "RELION_PROJECT_ODD_OFFSET",
    "Particles",
    "origins_to_shifts",
    "read_particles",
    "shifts_to_origins",
    "write_particles",
]

#: (x, y) px translation of ``relion_project`` output for odd boxes.
RELION_PROJECT_ODD_OFFSET = np.array([1.0, 1.0])


def origins_to_shifts(origins_px: np.ndarray, box: np.ndarray | int,
                      relion_project: bool = False) -> np.ndarray:
    """RELION origins (px) -> Xmipp shifts (px).

    ``s = o``, minus :data:`RELION_PROJECT_ODD_OFFSET` for odd boxes of
    ``relion_project`` output.
    """
    s = np.asarray(origins_px, dtype=np.float64).copy()
    if relion_project:
        odd = (np.broadcast_to(np.asarray(box), s.shape[:1]) % 2) == 1
        s[odd] -= RELION_PROJECT_ODD_OFFSET
    return s


def shifts_to_origins(shifts_px: np.ndarray, box: np.ndarray | int,
                      relion_project: bool = False) -> np.ndarray:
    """Inverse of :func:`origins_to_shifts`."""
    o = np.asarray(shifts_px, dtype=np.float64).copy()
    if relion_project:
        odd = (np.broadcast_to(np.asarray(box), o.shape[:1]) % 2) == 1
        o[odd] += RELION_PROJECT_ODD_OFFSET
    return o


@dataclass
class Particles:
    """Particles of a STAR file, with the conventions of the module docstring.

    Attributes
    ----------
    path : str
        The STAR file.
    blocks : dict of str to StarBlock
        Every block of the file (``particles`` written back with new columns).
    table : str
        Name of the particle block (``particles``, or ``""`` for RELION 3.0).
    angles : ndarray of shape (n, 3) or None
        Xmipp Euler angles in degrees; None without ``rlnAngle*`` columns.
    shifts : ndarray of shape (n, 2)
        Xmipp shifts in px of the row's images (0 without origin columns).
    pixel_size_a : ndarray of shape (n,)
        Å/px of each row.
    optics_group : ndarray of int, shape (n,)
        ``rlnOpticsGroup`` (1 when absent).
    stacks : list of str
        Resolved path of each row's image stack.
    items : ndarray of int, shape (n,)
        0-based index of each row's image in its stack.
    box : ndarray of int, shape (n,)
        Image size N of each row (px): ``rlnImageSize``, else the stack's
        header (0 if the stack is missing).
    defocus : ndarray of shape (n, 3) or None
        ``(defocusU, defocusV, defocusAngle)`` in Å, Å, degrees.
    acquisition : dict of str to ndarray of shape (n,)
        ``voltage_kv``, ``cs_mm``, ``amplitude_contrast``, ``phase_shift_deg``
        where the file has them.
    relion_project : bool
        Images made by ``relion_project`` (odd-box offset applied).
    """

    path: str
    blocks: dict[str, StarBlock]
    table: str
    angles: Optional[np.ndarray]
    shifts: np.ndarray
    pixel_size_a: np.ndarray
    optics_group: np.ndarray
    stacks: list[str]
    items: np.ndarray
    box: np.ndarray
    defocus: Optional[np.ndarray]
    acquisition: dict[str, np.ndarray]
    relion_project: bool = False

    @property
    def n(self) -> int:
        """Number of particles."""
        return len(self.items)

    @property
    def block(self) -> StarBlock:
        """The particle block."""
        return self.blocks[self.table]


def _particle_block(blocks: Mapping[str, StarBlock], path: str) -> str:
    if "particles" in blocks:
        return "particles"
    loops = [k for k, b in blocks.items() if b.is_loop and b.has("rlnImageName")]
    if not loops:
        raise ValueError(f"{path}: no particle table (a loop with rlnImageName)")
    return loops[0]


def _from_row_or_optics(label: str, part: StarBlock, optics: Optional[StarBlock],
                        group: np.ndarray) -> Optional[np.ndarray]:
    """Per-row values of ``label`` from the particle row, else from its optics group."""
    if part.has(label):
        return part.numbers(label)
    if optics is None or not optics.has(label):
        return None
    table = dict(zip(optics.numbers("rlnOpticsGroup").astype(int), optics.numbers(label)))
    missing = set(np.unique(group)) - set(table)
    if missing:
        raise ValueError(f"optics groups {sorted(missing)} are not in data_optics")
    return np.array([table[g] for g in group])


def _pixel_sizes(part: StarBlock, optics, group, override, path: str) -> np.ndarray:
    if override is not None:
        return np.full(len(part.rows), float(override))
    px = _from_row_or_optics("rlnImagePixelSize", part, optics, group)
    if px is None:
        det = _from_row_or_optics("rlnDetectorPixelSize", part, optics, group)
        mag = _from_row_or_optics("rlnMagnification", part, optics, group)
        if det is not None and mag is not None:
            px = det * 1e4 / mag
    if px is None or not np.all(np.isfinite(px) & (px > 0)):
        raise ValueError(f"{path}: no valid pixel size (rlnImagePixelSize or "
                         "rlnDetectorPixelSize/rlnMagnification); give one explicitly")
    return px


def _image_locations(part: StarBlock, path: str, root: Optional[str]) -> tuple[list, np.ndarray]:
    base = [root] if root else [os.path.dirname(os.path.abspath(path)), os.getcwd()]
    stacks, items, cache = [], np.empty(len(part.rows), dtype=np.int64), {}
    for i, name in enumerate(part.text("rlnImageName")):
        k, sep, stack = name.partition("@")
        if not sep:
            k, stack = "1", name
        if stack not in cache:
            found = [os.path.join(b, stack) for b in base if os.path.exists(os.path.join(b, stack))]
            cache[stack] = found[0] if found else os.path.join(base[0], stack)
        stacks.append(cache[stack])
        if not (k.strip().isdigit() and int(k) >= 1):
            raise ValueError(f"data_{part.name} row {i + 1}: rlnImageName {name!r} is not "
                             "k@stack with k >= 1")
        items[i] = int(k) - 1
    return stacks, items


def _boxes(part: StarBlock, optics, group: np.ndarray, stacks: list[str]) -> np.ndarray:
    """Box of each row: rlnImageSize, else the header of its stack (0 if unreadable)."""
    box = _from_row_or_optics("rlnImageSize", part, optics, group)
    if box is not None:
        return box.astype(int)
    from xmipp_qc.formats.mrc import stack_shape

    sizes = {s: (stack_shape(s)[2] if os.path.exists(s) else 0) for s in set(stacks)}
    return np.array([sizes[s] for s in stacks], dtype=int)


def read_particles(path: str, *, pixel_size_a: Optional[float] = None,
                   relion_project: bool = False, root: Optional[str] = None) -> Particles:
    """Read a RELION particle STAR file (3.0 or 3.1+).

    Parameters
    ----------
    path : str
        STAR file.
    pixel_size_a : float, optional
        Override of the pixel size (Å/px) of every row.
    relion_project : bool
        The images were made by ``relion_project`` (odd-box +1 px offset).
    root : str, optional
        Folder against which relative stack paths are resolved.

    Returns
    -------
    Particles
    """
    blocks = read_star(path)
    table = _particle_block(blocks, path)
    if not blocks[table].rows:
        raise ValueError(f"{path}: data_{table} has a header but no rows (no particles)")
    try:
        return _particles(path, blocks, table, pixel_size_a, relion_project, root)
    except ValueError as err:
        raise ValueError(err if str(err).startswith(path) else f"{path}: {err}") from None


def _particles(path: str, blocks: dict, table: str, pixel_size_a: Optional[float],
               relion_project: bool, root: Optional[str]) -> Particles:
    part, optics = blocks[table], blocks.get("optics")
    n = len(part.rows)
    group = part.numbers("rlnOpticsGroup").astype(int) if part.has("rlnOpticsGroup") \
        else np.ones(n, dtype=int)
    px = _pixel_sizes(part, optics, group, pixel_size_a, path)
    angles = None
    if all(part.has(f"rlnAngle{a}") for a in ("Rot", "Tilt", "Psi")):
        angles = np.stack([part.numbers(f"rlnAngle{a}") for a in ("Rot", "Tilt", "Psi")], 1)
    if part.has("rlnOriginXAngst") and part.has("rlnOriginYAngst"):
        origin = np.stack([part.numbers("rlnOriginXAngst"),
                           part.numbers("rlnOriginYAngst")], 1) / px[:, None]
    elif part.has("rlnOriginX") and part.has("rlnOriginY"):
        origin = np.stack([part.numbers("rlnOriginX"), part.numbers("rlnOriginY")], 1)
    else:
        origin = np.zeros((n, 2))
    stacks, items = _image_locations(part, path, root)
    box = _boxes(part, optics, group, stacks)
    if relion_project and not box.all():
        raise ValueError(f"{path}: relion_project needs the box (rlnImageSize or the stacks)")
    defocus = None
    if part.has("rlnDefocusU"):
        dv = part.numbers("rlnDefocusV") if part.has("rlnDefocusV") else part.numbers("rlnDefocusU")
        da = part.numbers("rlnDefocusAngle") if part.has("rlnDefocusAngle") else np.zeros(n)
        defocus = np.stack([part.numbers("rlnDefocusU"), dv, da], 1)
    acq = {}
    for key, label in (("voltage_kv", "rlnVoltage"), ("cs_mm", "rlnSphericalAberration"),
                       ("amplitude_contrast", "rlnAmplitudeContrast"),
                       ("phase_shift_deg", "rlnPhaseShift")):
        v = _from_row_or_optics(label, part, optics, group)
        if v is not None:
            acq[key] = v
    return Particles(path, blocks, table, angles, origins_to_shifts(origin, box, relion_project),
                     px, group, stacks, items, box, defocus, acq, relion_project)


def _fmt(values: np.ndarray) -> list[str]:
    v = np.asarray(values)
    if v.dtype == bool:
        return ["1" if x else "0" for x in v]
    if v.dtype.kind in "iu":
        return [str(int(x)) for x in v]
    if v.dtype.kind in "fc":
        return [f"{float(x):.6f}" if abs(x) < 1e6 or not np.isfinite(x) else f"{float(x):.8g}"
                for x in v]
    return [str(x).replace(" ", "_") or "none" for x in v]


def write_particles(path: str, particles: Particles, columns: Mapping[str, np.ndarray], *,
                    angles: Optional[np.ndarray] = None,
                    shifts: Optional[np.ndarray] = None) -> None:
    """Write the input STAR back with columns appended (and the alignment updated).

    Parameters
    ----------
    path : str
        Output STAR file (every block of the input, in order).
    particles : Particles
        As read by :func:`read_particles`; its blocks are not modified.
    columns : mapping of str to ndarray of shape (n,)
        Extra columns (label without ``_``, e.g. ``xmippQcCost``): floats with
        6 decimals, ints, bools as 0/1, text with spaces replaced by ``_``.
    angles : ndarray of shape (n, 3), optional
        Xmipp angles (degrees) written to ``rlnAngleRot/Tilt/Psi``.
    shifts : ndarray of shape (n, 2), optional
        Xmipp shifts in px of the INPUT images, written as origins to the
        origin columns the file has (``rlnOriginX/YAngst`` for a file with
        neither, when it has optics groups, else ``rlnOriginX/Y``).
    """
    src = particles.block
    new: dict[str, np.ndarray] = {}  # label -> values, replacing or appended in this order
    if angles is not None:
        for j, a in enumerate(("Rot", "Tilt", "Psi")):
            new[f"rlnAngle{a}"] = np.asarray(angles, dtype=float)[:, j]
    if shifts is not None:
        o = shifts_to_origins(shifts, particles.box, particles.relion_project)
        angst = src.has("rlnOriginXAngst") or (not src.has("rlnOriginX")
                                               and "optics" in particles.blocks)
        if angst:
            o = o * particles.pixel_size_a[:, None]
        for j, ax in enumerate("XY"):
            new[f"rlnOrigin{ax}{'Angst' if angst else ''}"] = o[:, j]
            if angst and src.has(f"rlnOrigin{ax}"):  # keep a 3.0 px column consistent
                new[f"rlnOrigin{ax}"] = o[:, j] / particles.pixel_size_a
    for label, values in columns.items():
        if len(values) != particles.n:
            raise ValueError(f"column {label} has {len(values)} values for {particles.n} rows")
        new[label] = np.asarray(values)
    blocks = dict(particles.blocks)
    labels = list(src.columns) + [c for c in new if c not in src.columns]
    blocks[particles.table] = StarBlock(src.name, labels, _rows_with(src.rows, labels, new),
                                        src.is_loop)
    write_star(path, blocks)


def _rows_with(rows: list, labels: list[str], new: Mapping[str, np.ndarray],
               batch: int = 4096):
    """Yield the rows with the ``new`` columns' values, formatted ``batch`` rows at a time.

    A generator: the output table is never held whole.
    """
    where = [(labels.index(label), values) for label, values in new.items()]
    width = len(labels)
    for s in range(0, len(rows), batch):
        texts = [(j, _fmt(values[s:s + batch])) for j, values in where]
        for r, row in enumerate(rows[s:s + batch]):
            out = list(row) + [""] * (width - len(row))
            for j, t in texts:
                out[j] = t[r]
            yield out
