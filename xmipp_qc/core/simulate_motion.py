"""Seeded synthetic movie-alignment trajectories (re-exported by :mod:`.simulate`).

Pairs of motion-correction trajectories of the same movie, the second one
disagreeing in a named way, for the movie-alignment consensus tests, demo and
benchmarks. Shifts are cumulative (x, y) in px, frames are numbered from 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "SENTINEL",
    "TRAJECTORY_KINDS",
    "TrajectoryPair",
    "simulate_trajectory",
    "simulate_trajectory_pair",
]

SeedLike = Union[int, np.random.Generator, None]


def rng_from(seed: SeedLike) -> np.random.Generator:
    """Return ``seed`` if it is a Generator, else a new Generator seeded with it."""
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


#: Disagreement kinds of :func:`simulate_trajectory_pair`. ``agree`` and
#: ``offset`` describe the same motion (a consensus must accept them); the others
#: are disagreements a consensus must catch.
TRAJECTORY_KINDS = (
    "agree",
    "offset",
    "noise",
    "scaled",
    "mirrored",
    "swapped",
    "rotated",
    "flat",
    "sentinel",
    "missing_frames",
)

SENTINEL = -9999.0


@dataclass(frozen=True)
class TrajectoryPair:
    """Two alignments of the same movie.

    Attributes
    ----------
    kind : str
        One of :data:`TRAJECTORY_KINDS`.
    frames_ref, frames_sec : ndarray of int, shape (F,) and (G,)
         1-based frame numbers aligned by each run.
    ref, sec : ndarray of shape (F, 2) and (G, 2)
        Cumulative (x, y) shift of each frame in px: ``ref`` in pixels of the
        movie, ``sec`` in pixels of the movie binned by ``binning``.
    binning : float
        Binning of the secondary run relative to the reference.
    """

    kind: str
    frames_ref: NDArray[np.int64]
    ref: NDArray[np.float64]
    frames_sec: NDArray[np.int64]
    sec: NDArray[np.float64]
    binning: float = 1.0


def simulate_trajectory(
    n_frames: int = 40,
    *,
    drift_px: float = 20.0,
    jitter_px: float = 0.1,
    seed: SeedLike = None,
) -> NDArray[np.float64]:
    """Beam-induced drift of one movie: a fast initial jump, then slow drift.

    Parameters
    ----------
    n_frames : int
        Number of frames F (at least 2).
    drift_px : float
        Approximate total path length in px.
    jitter_px : float
        Standard deviation of the per-frame white jitter in px.
    seed : int, Generator or None
        Random state.

    Returns
    -------
    ndarray of shape (F, 2)
        Cumulative (x, y) shifts in px, zero at the first frame.
    """
    rng = rng_from(seed)
    t = np.arange(n_frames, dtype=np.float64)
    tau = rng.uniform(1.5, 5.0)
    fast = 1.0 - np.exp(-t / tau)
    slow = t / max(n_frames - 1, 1)
    curve = 0.2 * np.sin(np.pi * slow * rng.uniform(0.5, 1.5))
    direction = rng.uniform(0, 2 * np.pi, size=2)
    weights = rng.dirichlet([2.0, 2.0])
    traj = np.zeros((n_frames, 2))
    for k, (ang, w) in enumerate(zip(direction, weights)):
        path = w * fast + (1 - w) * slow
        traj[:, 0] += np.cos(ang + k * curve) * path
        traj[:, 1] += np.sin(ang + k * curve) * path
    steps = np.linalg.norm(np.diff(traj, axis=0), axis=1).sum()
    traj *= drift_px / max(steps, 1e-12)
    traj += rng.normal(0.0, jitter_px, size=traj.shape)
    return traj - traj[0]


def simulate_trajectory_pair(
    kind: str = "agree",
    *,
    n_frames: int = 40,
    drift_px: float = 20.0,
    jitter_px: float = 0.05,
    noise_px: float = 2.0,
    scale: float = 0.8,
    angle_deg: float = 90.0,
    offset_px: tuple[float, float] = (7.0, -4.0),
    n_missing: int = 3,
    binning: float = 1.0,
    seed: SeedLike = None,
) -> TrajectoryPair:
    """Simulate a reference trajectory and a secondary one that disagrees as named.

    Parameters
    ----------
    kind : str
        ``agree`` (independent jitter of ``jitter_px``), ``offset`` (plus a
        constant ``offset_px``, as with another zero frame), ``noise`` (plus a
        random walk of ``noise_px`` RMS step), ``scaled`` (path times ``scale``),
        ``mirrored`` (x negated), ``swapped`` (x and y exchanged), ``rotated``
        (rotated by ``angle_deg`` about the first frame), ``flat`` (all zero, a
        failed run), ``sentinel`` (a third of the frames set to -9999) or
        ``missing_frames`` (``n_missing`` frames absent at the start and end).
    n_frames, drift_px : int, float
        Frames F and path length (px) of the reference, as in
        :func:`simulate_trajectory`.
    jitter_px : float
        Independent per-frame jitter (px) added to the secondary of every kind.
    noise_px, scale, angle_deg, offset_px, n_missing : float, float, float, tuple, int
        Size of the disagreement of the corresponding kind.
    binning : float
        The secondary is expressed in px of a movie binned by this factor.
    seed : int, Generator or None
        Random state.

    Returns
    -------
    TrajectoryPair
    """
    if kind not in TRAJECTORY_KINDS:
        raise ValueError(f"unknown trajectory kind {kind!r}; choose from {TRAJECTORY_KINDS}")
    rng = rng_from(seed)
    ref = simulate_trajectory(n_frames, drift_px=drift_px, jitter_px=0.05, seed=rng)
    frames = np.arange(1, n_frames + 1)
    sec = ref + rng.normal(0.0, jitter_px, size=ref.shape)
    frames_sec = frames
    if kind == "offset":
        sec = sec + np.asarray(offset_px)
    elif kind == "noise":
        sec = sec + np.cumsum(rng.normal(0.0, noise_px, size=ref.shape), axis=0)
    elif kind == "scaled":
        sec = sec * scale
    elif kind == "mirrored":
        sec = sec * np.array([-1.0, 1.0])
    elif kind == "swapped":
        sec = sec[:, ::-1].copy()
    elif kind == "rotated":
        c, s = np.cos(np.radians(angle_deg)), np.sin(np.radians(angle_deg))
        sec = sec @ np.array([[c, s], [-s, c]])
    elif kind == "flat":
        sec = np.zeros_like(sec)
    elif kind == "missing_frames":
        lo, hi = n_missing - n_missing // 2, n_frames - n_missing // 2
        frames_sec, sec = frames[lo:hi], sec[lo:hi]
    sec = sec / binning
    if kind == "sentinel":
        bad = rng.choice(n_frames, size=max(1, n_frames // 3), replace=False)
        sec[bad] = SENTINEL
    return TrajectoryPair(kind, frames, ref, frames_sec.copy(), sec, float(binning))
