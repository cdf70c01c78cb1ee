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
    0.0 when the set has no sampling rate.
    """
    return float(movieSet.getSamplingRate() or 0.0)


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
    if "plot" in record:  # present for every movie of a run with plots ("" = none)
        item.plotCart = emobj.Image(location=record["plot"] or None)


# --------------------------------------------------------------------------
# Particles, volumes, CTF: Scipion images <-> arrays, alignment, defocus
# --------------------------------------------------------------------------
# Alignment conventions. Inside xmipp_qc, angles and shifts follow
# :mod:`xmipp_qc.core`: Xmipp ZYZ (rot, tilt, psi) in degrees with the matrix
# ``E = euler_to_matrix(angles)`` of :mod:`xmipp_qc.core.geometry`, and the
# Xmipp shift ``s`` (px) with ``I(r) = P(r + s)``. A Scipion ``Transform`` is
# the 4x4 matrix Xmipp's plugin writes for these values:
#   ALIGN_PROJ  M = inverse([[E, -s], [0, 1]])     (s = (shiftX, shiftY, 0))
#   ALIGN_2D    M = [[E(0, 0, psi), s], [0, 1]]    (a first row negated = flip)
# Shifts of a Transform are in px of the set that holds it.

#: Extensions read directly with mrcfile (memory-mapped); others via ImageHandler.
_MRC_EXTENSIONS = (".mrc", ".mrcs", ".st", ".map", ".rec", ".ali")


def transformToXmipp(matrix, alignType):
    """Xmipp ``(angles (3,), shifts (2,), flip)`` of a Scipion 4x4 transform matrix.

    ``alignType`` is ``pwem.constants.ALIGN_PROJ`` or ``ALIGN_2D`` (ALIGN_2D
    gives angles ``(0, 0, psi)``; a mirrored 2D transform gives ``flip=True``,
    as Xmipp reads it). The conventions are those of :mod:`xmipp_qc.core.geometry`.
    """
    from pwem.constants import ALIGN_2D, ALIGN_PROJ

    from xmipp_qc.core import geometry

    m = np.array(matrix, dtype=np.float64)
    if m.shape != (4, 4):
        raise ValueError(f"a Scipion transform is 4x4, got {m.shape}")
    if alignType == ALIGN_PROJ:
        angles, shifts = geometry.transform_to_angles_shifts(m, inverse=True)
        return angles, shifts, False
    if alignType != ALIGN_2D:
        raise ValueError(f"unsupported alignment type {alignType!r} for images")
    psi, shifts, flip = geometry.transform_to_alignment_2d(m)
    return np.array([0.0, 0.0, psi]), shifts, flip


def xmippToTransform(angles, shifts, alignType=None, flip=False):
    """Scipion ``Transform`` of Xmipp angles (degrees) and shifts (px); inverse of
    :func:`transformToXmipp` (``alignType`` ALIGN_PROJ by default, or ALIGN_2D,
    which uses psi and ``flip``)."""
    from pwem.constants import ALIGN_2D, ALIGN_PROJ

    from xmipp_qc.core import geometry

    alignType = ALIGN_PROJ if alignType is None else alignType
    if alignType == ALIGN_PROJ:
        m = geometry.angles_shifts_to_transform(angles, shifts, inverse=True)
    elif alignType == ALIGN_2D:
        m = geometry.alignment_2d_to_transform(float(angles[2]), shifts, flip)
    else:
        raise ValueError(f"unsupported alignment type {alignType!r} for images")
    return emobj.Transform(matrix=m)


def imageAlignment(item, alignType):
    """Xmipp ``(angles, shifts, flip)`` of one image; None without a transform."""
    from pwem.constants import ALIGN_2D, ALIGN_PROJ

    if alignType not in (ALIGN_PROJ, ALIGN_2D) or not item.hasTransform():
        return None
    return transformToXmipp(item.getTransform().getMatrix(), alignType)


def ctfToDefocus(ctf):
    """``(defocusU, defocusV, defocusAngle)`` (Å, Å, degrees) of a ``CTFModel``.

    Scipion stores Xmipp's/RELION's definitions, used as they are by
    :func:`xmipp_qc.core.ctf.ctf_image`.
    """
    return (float(ctf.getDefocusU()), float(ctf.getDefocusV()), float(ctf.getDefocusAngle()))


def acquisitionToDict(imgSet):
    """``{voltage_kv, cs_mm, amplitude_contrast}`` of an image set's acquisition."""
    acq = imgSet.getAcquisition()
    return {"voltage_kv": float(acq.getVoltage() or 300.0),
            "cs_mm": float(acq.getSphericalAberration() or 0.0),
            "amplitude_contrast": float(acq.getAmplitudeContrast() or 0.0)}


def imagesToArrays(images, alignType, withCtf=True):
    """Metadata of an iterable of Scipion images as arrays (no pixels read).

    Returns a dict: ``ids`` (n,) int64; ``locations`` list of (index, filename)
    with 1-based stack indices (0 = single-image file); ``angles`` (n, 3) and
    ``shifts`` (n, 2) (px of the set) or None when no image has a usable
    alignment of ``alignType``; ``flip`` (n,) bool; ``defocus`` (n, 3) or None
    when ``withCtf`` is False or an image lacks a CTF. Images without a
    transform get NaN angles and shifts.
    """
    ids, locations, ali, defocus = [], [], [], []
    for img in images:
        ids.append(int(img.getObjId()))
        index, fn = img.getLocation()
        locations.append((int(index or 0), str(fn)))
        ali.append(imageAlignment(img, alignType))
        defocus.append(ctfToDefocus(img.getCTF()) if withCtf and img.hasCTF() else None)
    n = len(ids)
    have = [a is not None for a in ali]
    angles = shifts = None
    if any(have):
        angles, shifts = np.full((n, 3), np.nan), np.full((n, 2), np.nan)
        for i, a in enumerate(ali):
            if a is not None:
                angles[i], shifts[i] = a[0], a[1]
    flip = np.array([bool(a[2]) if a is not None else False for a in ali], dtype=bool)
    dfc = np.array(defocus, dtype=np.float64).reshape(n, 3) if n and all(
        d is not None for d in defocus) else None
    return {"ids": np.asarray(ids, dtype=np.int64), "locations": locations,
            "angles": angles, "shifts": shifts, "flip": flip, "defocus": dfc}


def _cleanFileName(fn):
    """Drop a Scipion/RELION format suffix such as ``:mrc`` or ``:mrcs``."""
    fn = str(fn)
    head, sep, tail = fn.rpartition(":")
    return head if sep and tail.isalnum() and "/" not in tail else fn


def readImages(locations, dtype=np.float32):
    """Read images at ``(index, filename)`` locations into a stack (n, N, N).

    Indices are 1-based in a stack, 0 for a single-image file. MRC files are
    memory-mapped and read in runs of consecutive indices; other formats go
    through pwem's ImageHandler. Arrays are ``[y, x]`` as stored.
    """
    import mrcfile

    out = None
    i = 0
    while i < len(locations):
        index, fn = locations[i]
        j = i + 1
        while (j < len(locations) and locations[j][1] == fn
               and locations[j][0] == locations[j - 1][0] + 1):
            j += 1
        path = _cleanFileName(fn)
        if path.lower().endswith(_MRC_EXTENSIONS):
            with mrcfile.mmap(path, mode="r", permissive=True) as mrc:
                data = mrc.data
                block = data[None] if data.ndim == 2 else data[max(index, 1) - 1:
                                                               max(index, 1) - 1 + j - i]
                block = np.array(block, dtype=dtype)
        else:
            block = np.stack([_readWithImageHandler(loc) for loc in locations[i:j]])
        if out is None:
            out = np.empty((len(locations),) + block.shape[-2:], dtype=dtype)
        if block.shape[0] != j - i:
            raise ValueError(f"{path}: cannot read images {index}..{index + j - i - 1}")
        out[i:j] = block
        i = j
    return np.empty((0, 0, 0), dtype=dtype) if out is None else out


def _readWithImageHandler(location):
    from pwem.emlib.image import ImageHandler

    return np.asarray(ImageHandler().read(location).getData(), dtype=np.float32)


def readVolume(volume, dtype=np.float32):
    """Density of a Scipion ``Volume`` as an (N, N, N) array indexed ``[z, y, x]``."""
    import mrcfile

    path = _cleanFileName(volume.getFileName())
    if path.lower().endswith(_MRC_EXTENSIONS):
        with mrcfile.mmap(path, mode="r", permissive=True) as mrc:
            data = np.array(mrc.data, dtype=dtype)
    else:
        data = _readWithImageHandler(volume.getLocation()).astype(dtype)
    if data.ndim != 3 or len(set(data.shape)) != 1:
        raise ValueError(f"{path}: a cubic volume is required, got shape {data.shape}")
    return data
