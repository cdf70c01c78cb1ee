"""Consensus of two global motion-correction trajectories of one movie.

A trajectory is the cumulative ``(x, y)`` shift (px) of every frame, as written
by RELION, MotionCor2 or Xmipp; units and zero frame differ between programs.
Unlike Xmipp's ``XmippProtConsensusMovieAlignment``, :func:`compare_trajectories`
matches frames by number, converts the secondary to reference px (``binning``),
centres both runs on their mean over the common frames (removing the offset of
different zero frames), superposes by translation only or by the best *proper*
rotation (never a reflection; the angle is always reported), gates correlation
per axis, measures Euclidean per-frame errors and never returns NaN.
Conventions of :mod:`xmipp_qc.core`: px, degrees, ``(x, y)`` columns; frames
are 1-based.

Decision rules, in order (the first that fails names the reason):

``invalid``
    Non-finite shifts, ``|shift| >= 9999`` px (RELION's ``-9999`` sentinel),
    repeated frame numbers, or fewer than 3 common frames.
``low_correlation``
    An axis is *active* when its range (max - min) exceeds ``min_range_px`` in
    BOTH runs. ``corr``, the minimum Pearson correlation over active axes (1.0
    if none), must be ``>= min_corr``.
``rotation``
    With ``allow_rotation``, a moving movie (some axis active) needs
    ``|rotation_deg| <= max_rotation_deg``.
``scale``
    ``scale`` = RMS distance of the secondary from its centroid / that of the
    reference (path length is inflated by jitter; this ratio inverts exactly
    when the runs are swapped). A moving movie needs
    ``1 - t <= scale <= 1 / (1 - t)`` for ``t = scale_tolerance`` (0.1: 0.90 to
    1.11, symmetric in log scale).
``high_rmse``
    ``rmse_px > max_rmse_px`` (default 1 px; None or <= 0 is off). On by default
    because correlation and scale are blind to an x/y swap when x and y drift
    alike: with correlation alone 27 % of 1000 simulated swaps were accepted.
    Runs that agree differ far less (MotionCor2 1.5.0 vs 1.6.4: 0.19 px).
    Independently, the axes excluded from the correlation must agree to
    ``min_range_px / 2`` px RMS, so a flat movie is judged by RMSE alone and a
    run that did not move while the other did is discarded (Xmipp: NaN).
``accepted``
    All rules passed. ``missing`` comes only from :func:`missing_comparison`.

Whatever the decision, when the runs do not align the same frames the message
ends with the frame counts, e.g. ``"; compared on the 20 common frames
(reference 24, secondary 20)"``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np
from numpy.typing import ArrayLike, NDArray

from xmipp_qc.core.trajectory_metrics import (
    accumulated_motion,
    axis_correlations,
    best_rotation_deg,
    match_frames,
    spread_ratio,
    superpose,
)

__all__ = [
    "REASONS", "SENTINEL_ABS_PX", "ConsensusParams", "TrajectoryComparison",
    "accumulated_motion", "axis_correlations", "best_rotation_deg", "compare_trajectories",
    "match_frames", "missing_comparison", "superpose",
]

#: Decision reason codes (exact strings), see the module docstring.
REASONS = ("accepted", "low_correlation", "high_rmse", "scale", "invalid", "missing", "rotation")

#: Shifts with an absolute value at or above this (px) are treated as sentinels.
SENTINEL_ABS_PX = 9999.0

_MIN_COMMON_FRAMES = 3
_TINY = 1e-12
_AXES = ("X", "Y")


@dataclass(frozen=True)
class ConsensusParams:
    """Thresholds of the consensus decision (rules in the module docstring).

    Attributes
    ----------
    min_corr : float
        Xmipp ``minConsCorrelation``; -1 never discards on correlation.
    min_range_px : float
        Xmipp ``minRangeShift`` (px), applied per axis.
    max_rmse_px : float or None
        Maximum Euclidean RMSE (px of the reference); None or <= 0 is off.
    scale_tolerance : float or None
        ``t`` of the scale band ``[1 - t, 1 / (1 - t)]``, < 1; None or <= 0 is off.
    allow_rotation : bool
        Superpose with the best proper rotation as well as the translation.
    max_rotation_deg : float
        With ``allow_rotation``, larger fitted angles are discarded ("rotation").
    """

    min_corr: float = 0.75
    min_range_px: float = 3.0
    max_rmse_px: Optional[float] = 1.0
    scale_tolerance: Optional[float] = 0.1
    allow_rotation: bool = False
    max_rotation_deg: float = 5.0

    def __post_init__(self) -> None:
        """Reject values that have no meaning."""
        if not -1.0 <= self.min_corr <= 1.0:
            raise ValueError(f"min_corr must be in [-1, 1], got {self.min_corr}")
        if not self.min_range_px >= 0.0:
            raise ValueError(f"min_range_px must be >= 0 px, got {self.min_range_px}")
        if self.scale_tolerance is not None and not self.scale_tolerance < 1.0:
            raise ValueError(f"scale_tolerance must be < 1, got {self.scale_tolerance}")
        if not self.max_rotation_deg >= 0.0:
            raise ValueError(f"max_rotation_deg must be >= 0, got {self.max_rotation_deg}")


@dataclass(frozen=True)
class TrajectoryComparison:
    """Agreement of two trajectories of one movie; every float is finite.

    Attributes
    ----------
    accepted : bool
        True only for reason "accepted".
    reason : str
        One of :data:`REASONS`.
    message : str
        Human-readable explanation, e.g. ``"corrY 0.41 < 0.75"``.
    n_frames : int
        Number of common frames compared.
    corr_x, corr_y : float
        Pearson correlation of each axis after superposition; 1.0 when both runs
        are constant on that axis, 0.0 when only one is.
    corr : float
        Minimum of ``corr_x, corr_y`` over active axes; 1.0 if none is active.
    rmse_px, max_error_px : float
        RMS and maximum of the Euclidean per-frame distance after superposition,
        px of the reference movie.
    rmse_a, max_error_a : float
        The same in Angstrom; -1.0 when the pixel size is unknown.
    scale : float
        RMS spread ratio secondary / reference (1.0 if both are constant; capped
        at 1e12 if only the reference is).
    rotation_deg : float
        Best-fit proper rotation (degrees, counter-clockwise, in (-180, 180])
        mapping the centred secondary onto the centred reference. Reported even
        when ``allow_rotation`` is False, when it is not applied.
    total_ref_px, early_ref_px, late_ref_px : float
        RELION-style accumulated motion of the reference (px), see
        :func:`accumulated_motion`.
    total_sec_px, early_sec_px, late_sec_px : float
        The same for the secondary, in px of the reference movie.
    """

    accepted: bool
    reason: str
    message: str
    n_frames: int
    corr_x: float
    corr_y: float
    corr: float
    rmse_px: float
    max_error_px: float
    rmse_a: float
    max_error_a: float
    scale: float
    rotation_deg: float
    total_ref_px: float
    early_ref_px: float
    late_ref_px: float
    total_sec_px: float
    early_sec_px: float
    late_sec_px: float

    def as_dict(self) -> dict:
        """Return the fields as JSON-ready Python scalars (bool, str, int, float)."""
        return asdict(self)


def _zero_metrics() -> dict:
    zeros = dict.fromkeys(
        ("corr_x", "corr_y", "corr", "rmse_px", "max_error_px", "scale", "rotation_deg",
         "total_ref_px", "early_ref_px", "late_ref_px",
         "total_sec_px", "early_sec_px", "late_sec_px"),
        0.0,
    )
    zeros.update(rmse_a=0.0, max_error_a=0.0)
    return zeros


def missing_comparison(which: str = "secondary") -> TrajectoryComparison:
    """Comparison of a movie that one run lacks.

    Parameters
    ----------
    which : {"secondary", "reference"}
        The run without the movie.

    Returns
    -------
    TrajectoryComparison
        ``accepted=False, reason="missing"``, ``n_frames=0``, all metrics 0.0
        (as for "invalid" results).
    """
    if which not in ("secondary", "reference"):
        raise ValueError(f"which must be 'secondary' or 'reference', got {which!r}")
    return TrajectoryComparison(
        accepted=False, reason="missing", message=f"movie missing from the {which} run",
        n_frames=0, **_zero_metrics(),
    )


def _invalid(message: str, n_frames: int = 0) -> TrajectoryComparison:
    return TrajectoryComparison(
        accepted=False, reason="invalid", message=message, n_frames=n_frames, **_zero_metrics()
    )


def _check_input(frames: ArrayLike, shifts: ArrayLike, name: str):
    f = np.asarray(frames)
    s = np.asarray(shifts, dtype=np.float64)
    if f.ndim != 1 or s.shape != (f.shape[0], 2):
        raise ValueError(f"{name}: frames must have shape (F,) and shifts (F, 2); "
                         f"got {f.shape} and {s.shape}")
    return f, s


def _data_problem(frames: NDArray, shifts: NDArray, name: str) -> Optional[str]:
    """Describe why a run's data cannot be compared, or return None."""
    if not np.isfinite(frames).all():
        return f"{name}: non-finite frame numbers"
    if shifts.size and not np.abs(shifts).max() < SENTINEL_ABS_PX:  # NaN fails too
        bad = ~np.isfinite(shifts).all(axis=1)
        if bad.any():
            return f"{name}: non-finite shifts (NaN/inf) in {int(bad.sum())} frame(s)"
        n_bad = int((np.abs(shifts) >= SENTINEL_ABS_PX).any(axis=1).sum())
        return f"{name}: {n_bad} frame(s) with sentinel shifts (|shift| >= 9999 px)"
    steps = np.diff(frames)
    if not (steps > 0).all() and (np.diff(np.sort(frames)) == 0).any():
        return f"{name}: repeated frame numbers"
    return None


def _frame_note(f_ref: NDArray, f_sec: NDArray, n_common: int) -> str:
    """``"; compared on the 20 common frames (reference 24, secondary 20)"`` or ""."""
    if len(f_ref) == len(f_sec) == n_common:
        return ""
    return (f"; compared on the {n_common} common frames (reference {len(f_ref)}, "
            f"secondary {len(f_sec)})")


def _fmt_axes(mask: NDArray) -> str:
    return ", ".join(a.lower() for a, m in zip(_AXES, mask) if m)


def _decide(
    corrs: NDArray, active: NDArray, err: NDArray, rmse: float, scale: float,
    angle: float, params: ConsensusParams,
) -> tuple[str, str]:
    """Apply the decision rules of the module docstring; return (reason, message)."""
    moving = bool(active.any())
    if moving:
        worst = int(np.argmin(np.where(active, corrs, np.inf)))
        if corrs[worst] < params.min_corr:
            return "low_correlation", f"corr{_AXES[worst]} {corrs[worst]:.3f} < {params.min_corr:g}"
    if moving and params.allow_rotation and abs(angle) > params.max_rotation_deg:
        return "rotation", f"rotation {angle:.1f} deg beyond +/-{params.max_rotation_deg:g} deg"
    tol = params.scale_tolerance
    if moving and tol is not None and tol > 0:
        lo, hi = 1.0 - tol, 1.0 / (1.0 - tol)
        if not lo <= scale <= hi:
            return "scale", f"scale {scale:.3f} outside [{lo:.3f}, {hi:.3f}]"
    limit = params.max_rmse_px
    if limit is not None and limit > 0 and rmse > limit:
        return "high_rmse", f"RMSE {rmse:.3f} px > {limit:g} px"
    if not active.all():
        flat_rms = math.sqrt(float(np.mean(err[:, ~active] ** 2, axis=0).sum()))
        flat_limit = params.min_range_px / 2.0
        if flat_rms > flat_limit:
            return "high_rmse", (
                f"{_fmt_axes(~active)} without motion in a run (range <= "
                f"{params.min_range_px:g} px): RMS error {flat_rms:.3f} px > {flat_limit:g} px"
            )
    corr = float(corrs[active].min()) if moving else 1.0
    return "accepted", f"corr {corr:.3f}, RMSE {rmse:.3f} px, scale {scale:.3f}"


def compare_trajectories(
    frames_ref: ArrayLike, shifts_ref: ArrayLike, frames_sec: ArrayLike, shifts_sec: ArrayLike,
    *, binning: float = 1.0, pixel_size_a: Optional[float] = None,
    dose_per_frame: Optional[float] = None, pre_exposure: float = 0.0, early_dose: float = 4.0,
    params: ConsensusParams = ConsensusParams(),  # noqa: B008 (frozen, immutable)
) -> TrajectoryComparison:
    """Compare two global alignments of one movie and decide whether they agree.

    Parameters
    ----------
    frames_ref, frames_sec : array_like of shape (F,) and (G,)
        1-based frame numbers aligned by the reference and secondary runs.
    shifts_ref, shifts_sec : array_like of shape (F, 2) and (G, 2)
        Cumulative ``(x, y)`` shifts in px of each run's movie; any zero frame.
    binning : float
        Secondary pixel size / reference pixel size; the secondary shifts are
        multiplied by it to get reference px. Must be finite and > 0.
    pixel_size_a : float or None
        Reference pixel size in A/px for the Angstrom metrics; None or <= 0 means
        unknown (Angstrom metrics are -1.0).
    dose_per_frame, pre_exposure, early_dose : float
        Dose per frame, pre-exposure and early/late cutoff in e/A^2, see
        :func:`accumulated_motion`.
    params : ConsensusParams
        Decision thresholds.

    Returns
    -------
    TrajectoryComparison
        Never raises on bad data: non-finite values, sentinels or fewer than 3
        common frames give ``reason="invalid"``.

    Raises
    ------
    ValueError
        For wrong array shapes or a non-positive binning (programming errors).
    """
    f_ref, s_ref = _check_input(frames_ref, shifts_ref, "reference")
    f_sec, s_sec = _check_input(frames_sec, shifts_sec, "secondary")
    if not (math.isfinite(binning) and binning > 0):
        raise ValueError(f"binning must be finite and > 0, got {binning}")
    problem = _data_problem(f_ref, s_ref, "reference") or _data_problem(f_sec, s_sec, "secondary")
    if problem:
        return _invalid(problem)
    i_ref, i_sec = match_frames(f_ref, f_sec)
    if i_ref.size < _MIN_COMMON_FRAMES:
        return _invalid(f"only {i_ref.size} common frame(s), need >= {_MIN_COMMON_FRAMES}",
                        int(i_ref.size))
    s_sec = s_sec * binning
    ref_c, sec_fit, angle = superpose(s_ref[i_ref], s_sec[i_sec],
                                      allow_rotation=params.allow_rotation)
    ranges = np.minimum(ref_c.max(0) - ref_c.min(0), sec_fit.max(0) - sec_fit.min(0))
    active = ranges > params.min_range_px
    corrs = axis_correlations(ref_c, sec_fit)
    err = ref_c - sec_fit
    dist2 = err[:, 0] ** 2 + err[:, 1] ** 2
    rmse, max_err = math.sqrt(float(dist2.sum()) / dist2.size), math.sqrt(float(dist2.max()))
    scale = spread_ratio(ref_c, sec_fit)
    reason, message = _decide(corrs, active, err, rmse, scale, angle, params)
    message += _frame_note(f_ref, f_sec, int(i_ref.size))
    px_a = pixel_size_a if pixel_size_a is not None and pixel_size_a > 0 else None
    motion = {"dose_per_frame": dose_per_frame, "pre_exposure": pre_exposure,
              "early_dose": early_dose}
    tot_r, early_r, late_r = accumulated_motion(f_ref, s_ref, **motion)
    tot_s, early_s, late_s = accumulated_motion(f_sec, s_sec, **motion)
    return TrajectoryComparison(
        accepted=reason == "accepted", reason=reason, message=message, n_frames=int(i_ref.size),
        corr_x=float(corrs[0]), corr_y=float(corrs[1]),
        corr=float(corrs[active].min()) if active.any() else 1.0,
        rmse_px=rmse, max_error_px=max_err,
        rmse_a=rmse * px_a if px_a else -1.0, max_error_a=max_err * px_a if px_a else -1.0,
        scale=float(scale), rotation_deg=float(angle),
        total_ref_px=tot_r, early_ref_px=early_r, late_ref_px=late_r,
        total_sec_px=tot_s, early_sec_px=early_s, late_sec_px=late_s,
    )
