"""Session monitoring: outlier rates per micrograph and over acquisition order.

During a collection, particles arrive in acquisition order, grouped by the
micrograph they were picked from. The questions are which micrographs produce
particles the map does not explain, and whether a part of the session does.
Everything here is counting on per-particle flags (no Scipion).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["MicrographRates", "bad_micrographs", "micrograph_rates", "window_rates"]


@dataclass(frozen=True)
class MicrographRates:
    """Outlier rate of each micrograph, in order of first arrival.

    Attributes
    ----------
    mic_ids : ndarray of int, shape (m,)
        Micrograph ids, ordered by the arrival of their first particle.
    counts : ndarray of int, shape (m,)
        Particles per micrograph.
    flagged : ndarray of int, shape (m,)
        Flagged particles per micrograph.
    first : ndarray of int, shape (m,)
        Arrival position (0-based) of each micrograph's first particle.
    """

    mic_ids: NDArray[np.int64]
    counts: NDArray[np.int64]
    flagged: NDArray[np.int64]
    first: NDArray[np.int64]

    @property
    def rates(self) -> NDArray[np.float64]:
        """Flagged fraction per micrograph, shape (m,)."""
        return self.flagged / np.maximum(self.counts, 1)


def micrograph_rates(mic_ids: ArrayLike, is_outlier: ArrayLike) -> MicrographRates:
    """Count particles and flagged particles per micrograph.

    Parameters
    ----------
    mic_ids : array_like of int, shape (n,)
        Micrograph of each particle, in arrival order; negative = unknown (skipped).
    is_outlier : array_like of bool, shape (n,)
        Final flag of each particle.

    Returns
    -------
    MicrographRates
    """
    mic = np.asarray(mic_ids, dtype=np.int64).reshape(-1)
    bad = np.asarray(is_outlier, dtype=bool).reshape(-1)
    if mic.shape != bad.shape:
        raise ValueError(f"mic_ids {mic.shape} and is_outlier {bad.shape} differ")
    known = mic >= 0
    pos = np.flatnonzero(known)
    ids, first_idx, inverse = np.unique(mic[known], return_index=True, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(ids))
    flagged = np.bincount(inverse, weights=bad[known], minlength=len(ids)).astype(np.int64)
    first = pos[first_idx] if len(ids) else np.zeros(0, np.int64)
    order = np.argsort(first, kind="stable")
    return MicrographRates(ids[order], counts[order], flagged[order], first[order])


def window_rates(is_outlier: ArrayLike, window: int) -> tuple[NDArray, NDArray]:
    """Outlier rate in consecutive windows of ``window`` particles (arrival order).

    Parameters
    ----------
    is_outlier : array_like of bool, shape (n,)
    window : int
        Particles per window (>= 1); the last window may be shorter.

    Returns
    -------
    centres : ndarray, shape (w,)
        Arrival position (1-based) of each window's centre.
    rates : ndarray, shape (w,)
        Flagged fraction per window.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    bad = np.asarray(is_outlier, dtype=np.float64).reshape(-1)
    starts = np.arange(0, len(bad), window)
    sums = np.add.reduceat(bad, starts) if len(bad) else np.zeros(0)
    sizes = np.minimum(starts + window, len(bad)) - starts
    return starts + (sizes + 1) / 2.0, sums / np.maximum(sizes, 1)


def bad_micrographs(rates: MicrographRates, *, max_rate: float, min_particles: int,
                    complete: ArrayLike | None = None) -> NDArray[np.int64]:
    """Micrographs whose particles are mostly flagged.

    Parameters
    ----------
    rates : MicrographRates
    max_rate : float
        A micrograph is bad when its flagged fraction is at least this.
    min_particles : int
        ... and it has at least this many particles.
    complete : array_like of bool, shape (m,), optional
        Only these micrographs are decided (all their particles have arrived).

    Returns
    -------
    ndarray of int
        Their ids, in arrival order.
    """
    sel = (rates.rates >= max_rate) & (rates.counts >= min_particles)
    if complete is not None:
        sel &= np.asarray(complete, dtype=bool)
    return rates.mic_ids[sel]
