"""Readers of per-movie global motion trajectories (RELION, MotionCor2, CSV).

Every reader returns a :class:`MovieTrajectory`: 1-based frame numbers (F,), the
cumulative ``(x, y)`` shift of each frame (F, 2) in px, and whatever metadata
the file states. Shifts are returned as written; their zero frame differs
between programs and :func:`xmipp_qc.core.trajectories.compare_trajectories`
removes it.

=========================  ==================================================
Format                     Notes
=========================  ==================================================
RELION motion STAR         ``data_global_shift`` loop (``_rlnMicrographFrameNumber``,
                           ``_rlnMicrographShiftX/Y``), px of the unbinned movie
                           (frame 1 = 0); ``data_general`` gives
                           ``_rlnMicrographOriginalPixelSize``, ``_rlnMicrographBinning``
                           (of the output micrograph), ``_rlnMicrographDoseRate`` (per
                           frame) and ``_rlnMicrographPreExposure``.
MotionCor2 <= 1.5 stdout   ``Full-frame alignment shift`` then ``... Frame (n) shift: x y``,
                           relative to the MIDDLE frame (measured on 1.5.0).
MotionCor2 1.6 stdout      ``Full-frame alignment`` then a ``Frame x Shift y Shift``
                           table, relative to frame 1.
MotionCor2 ``-Full.log``   ``# full frame alignment`` then ``frame x y`` rows.
CSV                        ``frame,x,y`` rows (commas or white space), optional header,
                           ``#`` comments; frames 1-based like the others.
=========================  ==================================================

MotionCor2 shifts are in px of the unbinned input (Scipion PR #1356); the log's
``-PixSize``, ``-FtBin``, ``-FmDose`` and ``-InitDose`` are read when present.
A file that cannot be read raises :class:`TrajectoryFormatError` naming the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "MOVIE_NAME_SUFFIXES",
    "MovieTrajectory",
    "TrajectoryFormatError",
    "movie_name",
    "read_motioncor2_log",
    "read_relion_motion_star",
    "read_trajectory",
    "read_trajectory_csv",
]

PathLike = Union[str, Path]

#: Suffixes stripped (repeatedly, longest first, case-insensitive) by :func:`movie_name`.
MOVIE_NAME_SUFFIXES = (
    "-patch-full.log", "-patch-patch.log", "-patch-frame.log", "-full.log",
    ".motioncor2.log", "_log.txt", ".star", ".log", ".csv", ".txt",
    "_shifts", "_shift", "_motion", "_trajectory",
)


class TrajectoryFormatError(ValueError):
    """A trajectory file that cannot be read (message names the file and why)."""


@dataclass(frozen=True)
class MovieTrajectory:
    """Global trajectory of one movie as read from a file.

    Attributes
    ----------
    frames : ndarray of int64, shape (F,)
        1-based frame numbers.
    shifts : ndarray of float64, shape (F, 2)
        Cumulative ``(x, y)`` shift of each frame in px of the unbinned movie
        (CSV: in whatever px the file uses).
    source : str
        ``"relion-star"``, ``"motioncor2-1.5"``, ``"motioncor2-1.6"``,
        ``"motioncor2-full-log"`` or ``"csv"``.
    pixel_size_a : float or None
        Pixel size (A/px) of the unit of ``shifts``, if the file states it.
    dose_per_frame, pre_exposure : float or None
        Dose per frame and pre-exposure in e/A^2, if stated.
    movie : str or None
        Movie file named inside the file, if any.
    extra : dict
        Other metadata as read (e.g. ``{"ft_bin": 2.0}``, ``{"binning": 1.0}``).
    """

    frames: NDArray[np.int64]
    shifts: NDArray[np.float64]
    source: str
    pixel_size_a: Optional[float] = None
    dose_per_frame: Optional[float] = None
    pre_exposure: Optional[float] = None
    movie: Optional[str] = None
    extra: dict = field(default_factory=dict)


def movie_name(path: PathLike) -> str:
    """Movie name used to pair the trajectory files of two runs.

    The rule: take the file's base name, then strip the suffixes of
    :data:`MOVIE_NAME_SUFFIXES` (case-insensitive) from its end, repeatedly,
    until none matches. ``mic_0001_shifts.star``, ``mic_0001-Patch-Full.log``,
    ``mic_0001.log`` and ``mic_0001.csv`` all give ``mic_0001``. A trailing
    ``0`` that MotionCor2 <= 1.5 appends before ``-Patch-Full.log`` is kept.

    Parameters
    ----------
    path : str or Path
        Trajectory file.

    Returns
    -------
    str
        The movie name (the base name itself if nothing was stripped).
    """
    name = Path(path).name
    changed = True
    while changed:
        changed = False
        for suffix in sorted(MOVIE_NAME_SUFFIXES, key=len, reverse=True):
            if name.lower().endswith(suffix) and len(name) > len(suffix):
                name, changed = name[: -len(suffix)], True
                break
    return name


def _read_text(path: PathLike) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError as exc:
        raise TrajectoryFormatError(f"{path}: cannot read file ({exc.strerror or exc})") from exc


def _arrays(rows: list, path: PathLike, what: str) -> tuple[NDArray, NDArray]:
    """Turn ``[(frame, x, y), ...]`` into checked frames (F,) and shifts (F, 2)."""
    if not rows:
        raise TrajectoryFormatError(f"{path}: no {what} found")
    data = np.asarray(rows, dtype=np.float64)
    frames = data[:, 0]
    if not np.all(np.isfinite(frames)) or np.any(frames != np.round(frames)):
        raise TrajectoryFormatError(f"{path}: frame numbers must be integers")
    if frames.min() < 1:
        raise TrajectoryFormatError(f"{path}: frame numbers are 1-based, found {frames.min():g}")
    return frames.astype(np.int64), np.ascontiguousarray(data[:, 1:3])


def _floats(tokens: list, path: PathLike, lineno: int) -> list:
    try:
        return [float(t) for t in tokens]
    except ValueError:
        raise TrajectoryFormatError(
            f"{path}, line {lineno}: expected numbers, got {' '.join(tokens)!r}"
        ) from None


# --- RELION -----------------------------------------------------------------------------


def _star_blocks(path: PathLike) -> dict:
    """Blocks of a STAR file read by :func:`xmipp_qc.formats.star.read_star` (the one reader)."""
    from xmipp_qc.formats.star import read_star

    try:
        return read_star(str(path))
    except (OSError, UnicodeError) as exc:
        raise TrajectoryFormatError(f"{path}: cannot read file ({exc})") from exc
    except ValueError as exc:
        raise TrajectoryFormatError(str(exc) if str(path) in str(exc) else f"{path}: {exc}") \
            from None


def _opt_float(value: Optional[str]) -> Optional[float]:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def read_relion_motion_star(path: PathLike) -> MovieTrajectory:
    """Read RELION's per-movie motion STAR (``data_global_shift`` + ``data_general``).

    Parameters
    ----------
    path : str or Path
        The ``<movie>.star`` written by RELION's motion correction.

    Returns
    -------
    MovieTrajectory
        Shifts in px of the unbinned movie; ``pixel_size_a`` from
        ``_rlnMicrographOriginalPixelSize``; ``extra["binning"]`` from
        ``_rlnMicrographBinning`` and ``extra["voltage_kv"]`` from ``_rlnVoltage``.
        The file is read by :func:`xmipp_qc.formats.star.read_star`.
    """
    blocks = _star_blocks(path)
    shifts_block = blocks.get("global_shift")
    if shifts_block is None or not shifts_block.is_loop:
        raise TrajectoryFormatError(
            f"{path}: no data_global_shift block (not a RELION motion STAR)")
    wanted = ("rlnMicrographFrameNumber", "rlnMicrographShiftX", "rlnMicrographShiftY")
    missing = [f"_{w}" for w in wanted if not shifts_block.has(w)]
    if missing:
        raise TrajectoryFormatError(f"{path}: data_global_shift lacks {', '.join(missing)}")
    columns = [shifts_block.text(w) for w in wanted]
    parsed = [_floats(list(row), path, k + 1) for k, row in enumerate(zip(*columns))]
    frames, shifts = _arrays(parsed, path, "global shifts")
    gen = blocks.get("general")
    general = dict(zip(gen.columns, gen.rows[0])) if gen is not None and not gen.is_loop else {}
    n_movie = _opt_float(general.get("rlnImageSizeZ"))
    if n_movie and "rlnEERGrouping" not in general and len(frames) < n_movie:
        raise TrajectoryFormatError(f"{path}: {len(frames)} global shifts for the "
                                    f"{n_movie:g} frames of the movie (_rlnImageSizeZ): "
                                    "truncated file?")
    binning = _opt_float(general.get("rlnMicrographBinning"))
    voltage = _opt_float(general.get("rlnVoltage"))
    extra = {} if binning is None else {"binning": binning}
    if voltage is not None:
        extra["voltage_kv"] = voltage
    return MovieTrajectory(
        frames, shifts, "relion-star",
        pixel_size_a=_opt_float(general.get("rlnMicrographOriginalPixelSize")),
        dose_per_frame=_opt_float(general.get("rlnMicrographDoseRate")),
        pre_exposure=_opt_float(general.get("rlnMicrographPreExposure")),
        movie=general.get("rlnMicrographMovieName"),
        extra=extra,
    )


# --- MotionCor2 -------------------------------------------------------------------------

_MC2_FRAME = re.compile(r"Frame\s*\(\s*(\d+)\)\s*shift:\s*(\S+)\s+(\S+)")
_MC2_PARAM = re.compile(r"^-(PixSize|FtBin|FmDose|InitDose|InMrc|InTiff|InEer|Throw|Trunc)"
                        r"[ \t]+(\S+)",
                        re.MULTILINE)


_MC2_RENDERED = re.compile(r"^Rendered (?:size|stack):\s+\d+\s+\d+\s+(\d+)", re.MULTILINE)


def _partial(path: PathLike, k: int, line: str) -> TrajectoryFormatError:
    return TrajectoryFormatError(f"{path}, line {k + 1}: incomplete frame row "
                                 f"{line.strip()!r} (truncated file?)")


def _mc2_rows(lines: list, start: int, path: PathLike) -> tuple[list, int]:
    """Numeric ``frame x y`` rows from ``lines[start:]`` up to the first other line.

    Returns the rows and the index of the line that ended them (``len(lines)``
    at the end of the file). A row cut short (a frame number without both
    shifts) raises :class:`TrajectoryFormatError`.
    """
    rows = []
    for k in range(start, len(lines)):
        tokens = lines[k].split()
        if not tokens or not tokens[0].isdigit():
            return rows, k
        if len(tokens) != 3:
            raise _partial(path, k, lines[k])
        rows.append(_floats(tokens, path, k + 1))
    return rows, len(lines)


def _mc2_15_rows(lines: list, start: int, path: PathLike) -> tuple[list, int]:
    """``... Frame (n) shift: x y`` rows of MotionCor2 <= 1.5 (see :func:`_mc2_rows`)."""
    rows = []
    for j in range(start, len(lines)):
        m = _MC2_FRAME.search(lines[j])
        if not m:
            if "Frame" in lines[j] and "(" in lines[j]:
                raise _partial(path, j, lines[j])
            return rows, j
        rows.append(_floats(list(m.groups()), path, j + 1))
    return rows, len(lines)


def _mc2_shifts(text: str, path: PathLike) -> tuple[list, str]:
    lines = text.splitlines()
    first = next((k for k, ln in enumerate(lines) if ln.strip()), 0)
    if lines and lines[first].strip().lower().startswith("# full frame alignment"):
        return _mc2_rows(lines, first + 1, path)[0], "motioncor2-full-log"
    for k, line in enumerate(lines):
        if line.strip() == "Full-frame alignment shift":  # <= 1.5
            (rows, end), source = _mc2_15_rows(lines, k + 1, path), "motioncor2-1.5"
        elif line.strip() == "Full-frame alignment" and k + 1 < len(lines) \
                and "Shift" in lines[k + 1]:  # 1.6 table
            (rows, end), source = _mc2_rows(lines, k + 2, path), "motioncor2-1.6"
        else:
            continue
        if rows and end == len(lines):  # a stdout log always goes on after the table
            raise TrajectoryFormatError(f"{path}: the log ends inside the frame-shift table, "
                                        f"after frame {int(rows[-1][0])} (truncated file?)")
        return rows, source
    raise TrajectoryFormatError(f"{path}: no MotionCor2 full-frame alignment shifts found")


def _mc2_announced(text: str, params: dict) -> Optional[int]:
    """Frames the log says it aligns: the rendered stack minus ``-Throw`` and ``-Trunc``."""
    found = _MC2_RENDERED.findall(text)
    if not found:
        return None
    cut = sum(int(_opt_float(params.get(p)) or 0) for p in ("Throw", "Trunc"))
    return int(found[-1]) - cut


def read_motioncor2_log(path: PathLike) -> MovieTrajectory:
    """Read the full-frame shifts of a MotionCor2 stdout log or ``-Full.log`` file.

    Parameters
    ----------
    path : str or Path
        MotionCor2 output (1.5 or 1.6 stdout, or ``<name>-Patch-Full.log``).

    Returns
    -------
    MovieTrajectory
        Shifts in px of the unbinned input as printed (1.5: relative to the
        middle frame; 1.6 and ``-Full.log``: relative to frame 1).
        ``pixel_size_a`` = ``-PixSize``, ``dose_per_frame`` = ``-FmDose``,
        ``pre_exposure`` = ``-InitDose``, ``extra["ft_bin"]`` = ``-FtBin``.
    """
    text = _read_text(path)
    rows, source = _mc2_shifts(text, path)
    frames, shifts = _arrays(rows, path, "MotionCor2 frame shifts")
    params = dict(_MC2_PARAM.findall(text))
    announced = _mc2_announced(text, params)
    if announced is not None and len(frames) < announced:
        raise TrajectoryFormatError(f"{path}: {len(frames)} frame shifts for the {announced} "
                                    "frames the log announces (Rendered size minus -Throw "
                                    "and -Trunc): truncated file?")
    movie = params.get("InMrc") or params.get("InTiff") or params.get("InEer")
    ft_bin = _opt_float(params.get("FtBin"))
    return MovieTrajectory(
        frames, shifts, source,
        pixel_size_a=_opt_float(params.get("PixSize")),
        dose_per_frame=_opt_float(params.get("FmDose")),
        pre_exposure=_opt_float(params.get("InitDose")),
        movie=movie,
        extra={} if ft_bin is None else {"ft_bin": ft_bin},
    )


# --- CSV and dispatch -------------------------------------------------------------------


def read_trajectory_csv(path: PathLike) -> MovieTrajectory:
    """Read a plain ``frame,x,y`` table (header line optional, ``#`` comments).

    Parameters
    ----------
    path : str or Path
        Text file with three columns separated by commas and/or white space.

    Returns
    -------
    MovieTrajectory
        Frames and shifts as written (px); no metadata.
    """
    rows = []
    for k, raw in enumerate(_read_text(path).splitlines()):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        tokens = [t for t in re.split(r"[,\s;]+", line) if t]
        if not rows and tokens and not re.match(r"^[-+.\d]", tokens[0]):
            continue  # header such as "frame,x,y"
        if len(tokens) != 3:
            raise TrajectoryFormatError(f"{path}, line {k + 1}: expected 3 columns "
                                        f"(frame, x, y), got {len(tokens)}")
        rows.append(_floats(tokens, path, k + 1))
    frames, shifts = _arrays(rows, path, "frame,x,y rows")
    return MovieTrajectory(frames, shifts, "csv")


def read_trajectory(path: PathLike) -> MovieTrajectory:
    """Read a trajectory file of any supported format.

    The format is chosen by extension (``.star`` RELION, ``.csv`` CSV, ``.log``
    MotionCor2), else by content (MotionCor2 markers), else CSV.

    Parameters
    ----------
    path : str or Path
        Trajectory file.

    Returns
    -------
    MovieTrajectory

    Raises
    ------
    TrajectoryFormatError
        If the file cannot be read or parsed; the message names the file.
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".star":
        return read_relion_motion_star(path)
    if suffix == ".csv":
        return read_trajectory_csv(path)
    text = _read_text(path).lower()
    if suffix == ".log" or "full-frame alignment" in text or "# full frame alignment" in text:
        return read_motioncor2_log(path)
    try:
        return read_trajectory_csv(path)
    except TrajectoryFormatError as exc:
        raise TrajectoryFormatError(f"not a RELION STAR, MotionCor2 log or frame,x,y table "
                                    f"({exc})") from None
