"""The per-micrograph table of compare reprojections (CLI and protocol alike).

One row per micrograph, in order of its first particle: particles, flagged
particles, outlier rate (:func:`xmipp_qc.core.session.micrograph_rates`),
median ``cost`` and, when the CTF was applied, the verdict of the CTF check
(:func:`xmipp_qc.core.ctf_check.check_micrographs`). The CLI writes it as
``volK_micrographs.star``; the protocol saves it in ``extra/`` and shows it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from xmipp_qc.core.ctf_check import check_micrographs
from xmipp_qc.core.session import micrograph_rates

__all__ = ["STAR_LABELS", "micrograph_table"]

#: Table key -> STAR label of ``volK_micrographs.star`` (after ``rlnMicrographName``).
STAR_LABELS = {
    "particles": "xmippQcParticles",
    "flagged": "xmippQcFlagged",
    "outlier_rate": "xmippQcOutlierRate",
    "median_cost": "xmippQcMedianCost",
    "ctf_suspect": "xmippQcCtfSuspect",
    "defocus_scale": "xmippQcDefocusScale",
    "ctf_gain": "xmippQcCtfGain",
    "ctf_gain_low": "xmippQcCtfGainLow",
    "ctf_gain_high": "xmippQcCtfGainHigh",
    "ctf_best": "xmippQcCtfBest",
    "ctf_decided": "xmippQcCtfDecided",
    "ctf_particles": "xmippQcCtfParticles",
}


def micrograph_table(mic_ids: ArrayLike, is_outlier: ArrayLike, cost: ArrayLike,
                     ctf_corr: ArrayLike | None = None, **check_options: Any) -> dict[str, NDArray]:
    """Per-micrograph counts, costs and CTF verdicts.

    Parameters
    ----------
    mic_ids : array_like of int, shape (n,)
        Micrograph of each particle, in arrival order; negative = unknown (skipped).
    is_outlier : array_like of bool, shape (n,)
        Final flag of each particle (outliers and failed images).
    cost : array_like, shape (n,)
        Per-particle ``cost`` (NaN for failed images).
    ctf_corr : array_like, shape (n, K), optional
        :func:`~xmipp_qc.core.ctf_check.ctf_correlations` of each particle;
        None when the CTF was not applied (no CTF columns).
    **check_options
        ``min_particles``, ``min_relative_gain``, ``confidence`` of
        :func:`~xmipp_qc.core.ctf_check.check_micrographs`.

    Returns
    -------
    dict of str to ndarray of shape (m,)
        ``mic_ids``, ``particles``, ``flagged``, ``outlier_rate``,
        ``median_cost``; with ``ctf_corr`` also ``ctf_suspect`` (0/1),
        ``defocus_scale``, ``ctf_gain``, ``ctf_gain_low``, ``ctf_gain_high``
        (correlation units), ``ctf_best`` (name of the best alternative),
        ``ctf_decided`` (0/1), ``ctf_particles`` (the scored particles the
        verdict rests on) and ``ctf_mean_corr`` of shape (m, K).
    """
    mic = np.asarray(mic_ids, dtype=np.int64).reshape(-1)
    c = np.asarray(cost, dtype=np.float64).reshape(-1)
    if c.shape != mic.shape:
        raise ValueError(f"mic_ids {mic.shape} and cost {c.shape} differ")
    rates = micrograph_rates(mic, is_outlier)
    order = np.argsort(mic, kind="stable")
    keys = mic[order]
    lo = np.searchsorted(keys, rates.mic_ids, "left")
    hi = np.searchsorted(keys, rates.mic_ids, "right")
    median = np.array([_median(c[order[a:b]]) for a, b in zip(lo, hi)])
    table: dict[str, NDArray] = {"mic_ids": rates.mic_ids, "particles": rates.counts,
                                 "flagged": rates.flagged, "outlier_rate": rates.rates,
                                 "median_cost": median}
    if ctf_corr is None:
        return table
    check = check_micrographs(mic, ctf_corr, **check_options)
    if not np.array_equal(check.mic_ids, rates.mic_ids):
        raise RuntimeError("micrograph order differs between the rates and the CTF check")
    table.update(ctf_suspect=check.suspect.astype(np.int64), defocus_scale=check.best_scale,
                 ctf_gain=check.gain, ctf_gain_low=check.gain_low, ctf_gain_high=check.gain_high,
                 ctf_best=np.array([n.replace(" ", "_") for n in check.best_names()], dtype=str),
                 ctf_decided=check.decided.astype(np.int64), ctf_particles=check.n_used,
                 ctf_mean_corr=check.mean_corr)
    return table


def _median(values: NDArray) -> float:
    """Median of the finite values (NaN when there are none)."""
    v = values[np.isfinite(values)]
    return float(np.median(v)) if len(v) else float("nan")
