"""The one bridge between Scipion objects and the numpy arrays of :mod:`xmipp_qc.core`.

Protocols and viewers never read Scipion objects into arrays themselves: they call
the functions below, one section per kind of object. Units follow
:mod:`xmipp_qc.core` (shifts in px, pixel sizes in Angstrom/px).
"""

import numpy as np
import pwem.objects as emobj

# --------------------------------------------------------------------------
# Movies: MovieAlignment <-> (frames, shifts)
# --------------------------------------------------------------------------
#: Prefix of every consensus attribute stored on output movies and micrographs.
ALIGNMENT_PREFIX = "_alignment_"


def movieAlignmentToArrays(movie):
    """Return ``(frames, shifts)`` of a movie's global alignment.

    frames: (F,) int64, 1-based frame numbers of the aligned range;
    shifts: (F, 2) float64, cumulative (x, y) shifts in px of the movie set
    that holds the alignment (see :func:`shiftPixelSize`). A movie without
    alignment, or with empty shifts, gives arrays of length 0. When the stored
    range does not match the number of shifts (some programs leave last=0),
    the frames are numbered from the stored first frame (1 if unset).
    """
    alignment = movie.getAlignment() if movie.hasAlignment() else None
    if alignment is None:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 2))
    xs, ys = alignment.getShifts()
    xs = np.asarray(list(xs), dtype=np.float64)
    ys = np.asarray(list(ys), dtype=np.float64)
    if xs.size != ys.size:
        raise ValueError(
            f"movie {movie.getObjId()}: {xs.size} x shifts but {ys.size} y shifts"
        )
    first, last = alignment.getRange()
    first = first if first and first > 0 else 1
    if last is not None and last >= first and last - first + 1 == xs.size:
        frames = np.arange(first, last + 1, dtype=np.int64)
    else:
        frames = np.arange(first, first + xs.size, dtype=np.int64)
    return frames, np.column_stack([xs, ys])


def arraysToMovieAlignment(frames, shifts, roi=None):
    """Build a ``MovieAlignment`` from frames (F,) and shifts (F, 2) in px.

    The frames must be consecutive (the Scipion object stores a first-last
    range). ``roi`` is ``[x, y, width, height]`` (0 = full frame), default all 0.
    """
    frames = np.asarray(frames, dtype=np.int64)
    shifts = np.asarray(shifts, dtype=np.float64)
    if shifts.ndim != 2 or shifts.shape[1] != 2 or shifts.shape[0] != frames.size:
        raise ValueError(f"shifts must be ({frames.size}, 2), got {shifts.shape}")
    if frames.size and np.any(np.diff(frames) != 1):
        raise ValueError("a MovieAlignment needs consecutive frame numbers")
    first, last = (int(frames[0]), int(frames[-1])) if frames.size else (-1, -1)
    alignment = emobj.MovieAlignment(
        first=first, last=last,
        xshifts=[float(v) for v in shifts[:, 0]],
        yshifts=[float(v) for v in shifts[:, 1]],
    )
    alignment.setRoi(list(roi) if roi is not None else [0, 0, 0, 0])
    return alignment


def shiftPixelSize(movieSet):
    """Pixel size (Angstrom/px) in which a movie set's shifts are expressed.

    ProtAlignMovies subclasses report shifts in px of the movies they put in
    their output set, whose sampling rate already includes their binning.
    """
    return float(movieSet.getSamplingRate())


def relativeBinning(refMovies, secMovies):
    """Secondary shift pixel size / reference shift pixel size.

    The contract of :func:`xmipp_qc.core.trajectories.compare_trajectories`:
    secondary shifts times this factor are in px of the reference.
    """
    ref, sec = shiftPixelSize(refMovies), shiftPixelSize(secMovies)
    if ref <= 0 or sec <= 0:
        raise ValueError(f"sampling rates must be positive (reference {ref}, secondary {sec})")
    return sec / ref


def movieDoseInfo(movieSet):
    """Return ``(dose_per_frame, pre_exposure)`` in e/Angstrom^2 of a movie set.

    ``dose_per_frame`` is None when the acquisition does not record it (<= 0).
    """
    acq = movieSet.getAcquisition()
    dose = acq.getDosePerFrame() if acq is not None else None
    initial = acq.getDoseInitial() if acq is not None else None
    dose = float(dose) if dose and dose > 0 else None
    return dose, float(initial or 0.0)


def setAlignmentAttributes(item, record):
    """Store a consensus decision on a movie or micrograph as Scipion attributes.

    ``record`` is a decision dict (``TrajectoryComparison.as_dict()`` plus the
    protocol's bookkeeping). The Xmipp names are kept (``_alignment_corr``,
    ``_alignment_rmse_error``, ``_alignment_max_error``, px) and the other
    metrics get the same prefix: ``_alignment_reason``, ``_alignment_message``,
    ``_alignment_corr_x``/``_y``, ``_alignment_rmse_error_A``,
    ``_alignment_max_error_A`` (Angstrom), ``_alignment_scale``,
    ``_alignment_rotation`` (degrees), ``_alignment_n_frames`` and the
    accumulated motion of the reference ``_alignment_accum_total``/``_early``/
    ``_late`` (px, RELION's definition).
    """
    floats = {
        "corr": "corr", "corr_x": "corr_x", "corr_y": "corr_y",
        "rmse_error": "rmse_px", "max_error": "max_error_px",
        "rmse_error_A": "rmse_a", "max_error_A": "max_error_a",
        "scale": "scale", "rotation": "rotation_deg",
        "accum_total": "total_ref_px", "accum_early": "early_ref_px",
        "accum_late": "late_ref_px",
    }
    for name, key in floats.items():
        setattr(item, ALIGNMENT_PREFIX + name, emobj.Float(float(record.get(key, 0.0))))
    setattr(item, ALIGNMENT_PREFIX + "n_frames", emobj.Integer(int(record.get("n_frames", 0))))
    setattr(item, ALIGNMENT_PREFIX + "reason", emobj.String(record["reason"]))
    setattr(item, ALIGNMENT_PREFIX + "message", emobj.String(record.get("message", "")))
    if record.get("plot"):
        item.plotCart = emobj.Image(location=record["plot"])
