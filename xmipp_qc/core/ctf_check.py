"""CTF consistency check: whether each micrograph's CTF is the one its particles show.

A wrong CTF (a failed CTFFIND fit, defoci in the wrong unit, a flipped sign,
an astigmatism angle in another convention) makes the map explain every
particle of a micrograph worse, and nothing else says why. At each image's
final alignment (the pose found with the CTF as given) the reprojection is
filtered by alternative CTFs and correlated with the image; the correlations
are paired particle by particle and aggregated per micrograph.

Alternatives (:data:`ALTERNATIVES`, the columns of :func:`ctf_correlations`):

* the defocus scaled by :data:`DEFOCUS_SCALES`, ``2**(k/3)`` for
  ``k = -7 .. 7`` (x0.2 to x5, so that a peak at x0.25 or x4 is still
  bracketed; scale 1 is the CTF as given, :data:`GIVEN`), both defoci
  multiplied, the angle kept;
* ``astigmatism +90 deg``: the defocus angle turned by 90 degrees (U and V swapped);
* ``phase flipped``: the CTF as given with the opposite sign;
* ``no CTF``: the reprojection unfiltered.

Per image the correlation is that of the image inside the comparison disc
with the CTF-filtered reprojection over the whole box, in the band of the
refinement (:func:`ctf_correlations`, computed in Fourier space: one sine per
band pixel and alternative). Per micrograph
(:func:`check_micrographs`), the *gain* of an alternative is its mean paired
difference to the given CTF, with a Student-t interval; the micrograph is
*suspect* when the lower bound of the gain of the best alternative exceeds
:data:`MIN_RELATIVE_GAIN` of that alternative's mean correlation and
:data:`MIN_GAIN` (the CTF as given is clearly worse, not just within the noise
of picking the best of 18, nor on a micrograph of junk where every correlation
is near 0).
The best defocus scale is the peak of the mean correlation over the scales,
refined by a parabola in ``log2(scale)``. Everything is numpy/scipy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["ALTERNATIVES", "DEFOCUS_SCALES", "GIVEN", "MIN_GAIN", "MIN_PARTICLES",
           "MIN_RELATIVE_GAIN", "chunk_correlations",
           "MicrographCtfCheck", "check_micrographs", "ctf_correlations"]

#: Defocus scales tried (x0.2 .. x5, three per octave); index :data:`GIVEN` is x1.
DEFOCUS_SCALES = 2.0 ** (np.arange(-7, 8) / 3.0)
#: Column of the CTF as given in :func:`ctf_correlations`.
GIVEN = 7
#: Names of the columns of :func:`ctf_correlations`, in order.
ALTERNATIVES = tuple(f"defocus x{s:.3g}" for s in DEFOCUS_SCALES) + (
    "astigmatism +90 deg", "phase flipped", "no CTF")
#: A micrograph is decided once it has this many scored particles.
MIN_PARTICLES = 20
#: Suspect when the gain's lower bound exceeds this fraction of the best correlation ...
MIN_RELATIVE_GAIN = 0.05
#: ... and this correlation difference (junk-rich micrographs: all near 0).
MIN_GAIN = 0.01
#: Confidence of the gain interval.
CONFIDENCE = 0.95

_ACQUISITION = ("voltage_kv", "cs_mm", "amplitude_contrast", "phase_shift_deg")


def _band_pixels(box: int, max_freq: float | None) -> tuple[NDArray, NDArray]:
    """Return the flat rfft2 half-plane indices and Parseval weights of the band.

    The band is ``0 < |k| <= max_freq`` cycles/px (every frequency but DC
    without ``max_freq``); the weight is 2, or 1 on the kx = 0 and Nyquist
    columns, which the half-plane holds once.
    """
    w = np.full((box, box // 2 + 1), 2.0, dtype=np.float32)
    w[:, 0] = 1.0
    if box % 2 == 0:
        w[:, -1] = 1.0
    k = np.hypot(np.fft.fftfreq(box)[:, None], np.fft.rfftfreq(box)[None, :])
    inside = (k > 0) & (k <= (np.inf if max_freq is None else max_freq) + 1e-9)
    idx = np.flatnonzero(inside)
    return idx, w.reshape(-1)[idx]


def ctf_correlations(images: ArrayLike, spectra: ArrayLike, defocus: ArrayLike,
                     acquisition: Mapping[str, ArrayLike] | None, *, pixel_size_a: float,
                     mask_radius: float | None = None,
                     max_freq: float | None = None) -> NDArray[np.float32]:
    """Correlation of each image with its reprojection under every alternative CTF.

    The correlation is ``sum (m (I - mean_m I)) P_c / (||m (I - mean_m I)|| ||P_c||)``
    over the frequencies ``0 < |k| <= max_freq`` (Parseval): the image inside
    the comparison disc m (as for ``cost``), the CTF-filtered reprojection
    ``P_c`` over the whole box, so that CTF signal delocalised out of the disc
    counts against a CTF. One sine per band pixel and alternative, no inverse
    transform. Without ``max_freq`` (every frequency) it differs from ``cost``
    only by the reprojection's energy outside the disc.

    Parameters
    ----------
    images : array_like, shape (n, N, N)
        Images as scored (``[y, x]``, origin ``N // 2``).
    spectra : array_like of complex, shape (n, N, N//2+1)
        CTF-free reprojections at each image's final alignment, shift included:
        ``rfft2(ifftshift(P(r + s)))``
        (:meth:`xmipp_qc.core.projection.FourierProjector.project_fourier`).
    defocus : array_like, shape (n, 3)
        ``defocusU, defocusV`` (Å, positive underfocus) and ``defocusAngle``
        (degrees) as given.
    acquisition : mapping, optional
        ``voltage_kv``, ``cs_mm``, ``amplitude_contrast``, ``phase_shift_deg``
        of :func:`xmipp_qc.core.ctf.ctf_image`.
    pixel_size_a : float
        Sampling of the images, Å/px.
    mask_radius : float, optional
        Radius of the comparison disc in px (default ``N // 2``).
    max_freq : float, optional
        Band of the comparison in cycles/px (default: up to the corners).

    Returns
    -------
    ndarray, shape (n, len(ALTERNATIVES)), float32
        Correlations in [-1, 1], columns in :data:`ALTERNATIVES` order; NaN
        where the image or reprojection has no signal in the band.
    """
    from scipy import fft as sfft

    from xmipp_qc.core.ctf import ctf_phases
    from xmipp_qc.core.transform import circular_mask

    x = np.asarray(images, dtype=np.float32)
    fp = np.asarray(spectra)
    d = np.asarray(defocus, dtype=np.float64)
    n, box = len(x), x.shape[-1] if x.ndim == 3 else 0
    if x.ndim != 3 or fp.shape != (n, box, box // 2 + 1) or d.shape != (n, 3):
        raise ValueError(f"images {x.shape}, spectra {fp.shape} and defocus {d.shape} do not "
                         "match (n, N, N), (n, N, N//2+1), (n, 3)")
    acq = dict(acquisition or {})
    unknown = set(acq) - set(_ACQUISITION)
    if unknown:
        raise ValueError(f"unknown acquisition keys {sorted(unknown)}")
    out = np.full((n, len(ALTERNATIVES)), np.nan, dtype=np.float32)
    if n == 0:
        return out
    idx, w = _band_pixels(box, max_freq)
    m = circular_mask(box, mask_radius, dtype=bool)
    xm = np.where(m, x - x[:, m].mean(axis=1)[:, None, None], 0.0).astype(np.float32)
    fi = sfft.rfft2(np.fft.ifftshift(xm, axes=(-2, -1))).reshape(n, -1)[:, idx]
    fp = fp.reshape(n, -1)[:, idx].astype(np.complex64)
    cross = (fi.real * fp.real + fi.imag * fp.imag) * w  # (n, P)
    power = (fp.real ** 2 + fp.imag ** 2) * w
    energy = (fi.real ** 2 + fi.imag ** 2) @ w
    d = np.where(np.isfinite(d), d, 0.0)
    term, rest = ctf_phases(box, pixel_size_a, d[:, 0], d[:, 1], d[:, 2], rfft=True, **acq)
    term = term.reshape(n, -1)[:, idx].astype(np.float32)
    rest = np.broadcast_to(rest, (len(rest) if np.ndim(rest) == 3 else 1,) + rest.shape[-2:])
    rest = rest.reshape(len(rest), -1)[:, idx].astype(np.float32)
    # the defocus term of the angle turned by 90 deg: pi lambda (2 mean - df(theta)) k^2
    unit = ctf_phases(box, pixel_size_a, 1.0, 1.0, 0.0, rfft=True, **acq)[0]  # pi lambda k^2
    mean = (0.5 * (d[:, 0] + d[:, 1])).astype(np.float32)[:, None]
    turned = 2.0 * mean * unit.reshape(-1)[idx].astype(np.float32) - term

    def corr(c):
        num = np.einsum("np,np->n", c, cross)
        den = np.sqrt(energy * np.einsum("np,np->n", c * c, power))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / den, np.nan)

    n_scales = len(DEFOCUS_SCALES)
    for j, scale in enumerate(DEFOCUS_SCALES):
        out[:, j] = corr(np.sin(np.float32(scale) * term + rest))
    out[:, n_scales] = corr(np.sin(turned + rest))
    out[:, n_scales + 1] = -out[:, GIVEN]
    out[:, n_scales + 2] = corr(np.ones((1, len(idx)), dtype=np.float32))
    return out


def chunk_correlations(model, images: NDArray, valid: NDArray, angles: NDArray,
                       shifts: NDArray, defocus: ArrayLike, acquisition: Mapping | None,
                       spectra: NDArray | None = None) -> NDArray[np.float32]:
    """:func:`ctf_correlations` of one chunk of :func:`xmipp_qc.core.pipeline.process_chunk`.

    Parameters
    ----------
    model : xmipp_qc.core.pipeline.MapModel
        The map and the options (sampling, mask, band ``model.search_freq``).
    images : ndarray, shape (n, N, N)
        The images as scored.
    valid : ndarray of bool, shape (n,)
        Images with a valid score; the others get NaN.
    angles, shifts : ndarray, shape (n, 3), (n, 2)
        Final alignment (Xmipp degrees; px).
    defocus, acquisition
        As in :func:`ctf_correlations` (``phase_shift_deg`` may be per image).
    spectra : ndarray, shape (n, N, N//2+1), optional
        CTF-free reprojections already made (without refinement); else they
        are projected by ``model.band_projector`` (the refiner's band projector).

    Returns
    -------
    ndarray, shape (n, len(ALTERNATIVES)), float32
    """
    out = np.full((len(images), len(ALTERNATIVES)), np.nan, dtype=np.float32)
    if not valid.any():
        return out
    if spectra is None:
        spectra = model.band_projector.project_fourier(angles[valid], shifts=shifts[valid])
    else:
        spectra = spectra[valid]
    o = model.options
    acq = {k: (np.asarray(v)[valid] if np.ndim(v) else v)
           for k, v in dict(acquisition or {}).items()}
    out[valid] = ctf_correlations(images[valid], spectra, np.asarray(defocus)[valid], acq,
                                  pixel_size_a=o.pixel_size_a, mask_radius=o.mask_radius,
                                  max_freq=model.search_freq)
    return out


@dataclass(frozen=True)
class MicrographCtfCheck:
    """The CTF check of each micrograph (``m`` micrographs, ``K`` alternatives).

    Attributes
    ----------
    mic_ids : ndarray of int, shape (m,)
        Micrograph ids, ordered by first arrival.
    n_used : ndarray of int, shape (m,)
        Particles with a correlation under every alternative.
    mean_corr : ndarray, shape (m, K)
        Mean correlation per alternative (:data:`ALTERNATIVES` order).
    best : ndarray of int, shape (m,)
        Column of the best alternative (-1 without particles).
    best_scale : ndarray, shape (m,)
        Defocus scale of the highest mean correlation over the scales
        (parabolic peak in ``log2``; 1 = as given).
    gain, gain_low, gain_high : ndarray, shape (m,)
        Mean paired correlation gain of the best alternative over the CTF as
        given, and its :data:`CONFIDENCE` Student-t interval (0 when the
        given CTF is the best).
    decided : ndarray of bool, shape (m,)
        At least ``min_particles`` particles: the verdict stands.
    suspect : ndarray of bool, shape (m,)
        Decided, and ``gain_low > max(min_gain, min_relative_gain * mean_corr[best])``.
    """

    mic_ids: NDArray[np.int64]
    n_used: NDArray[np.int64]
    mean_corr: NDArray[np.float64]
    best: NDArray[np.int64]
    best_scale: NDArray[np.float64]
    gain: NDArray[np.float64]
    gain_low: NDArray[np.float64]
    gain_high: NDArray[np.float64]
    decided: NDArray[np.bool_]
    suspect: NDArray[np.bool_]

    def best_names(self) -> list[str]:
        """Name of each micrograph's best alternative ("" without particles)."""
        return [ALTERNATIVES[b] if b >= 0 else "" for b in self.best]


def _peak_scale(curve: NDArray) -> float:
    """Scale of the maximum of ``curve`` over :data:`DEFOCUS_SCALES` (parabola in log2)."""
    if not np.isfinite(curve).any():
        return float("nan")
    k = int(np.nanargmax(curve))
    t = np.log2(DEFOCUS_SCALES)
    if 0 < k < len(curve) - 1 and np.isfinite(curve[k - 1:k + 2]).all():
        y0, y1, y2 = curve[k - 1:k + 2]
        den = y0 - 2 * y1 + y2
        if den < 0:
            return float(2.0 ** (t[k] + 0.5 * (y0 - y2) / den * (t[1] - t[0])))
    return float(DEFOCUS_SCALES[k])


def _one_micrograph(corr: NDArray, confidence: float) -> tuple:
    """Mean correlations, best column, scale, gain and its interval of one micrograph."""
    from scipy.special import stdtrit  # Student-t quantile (scipy.stats is slow to import)

    n = len(corr)
    if n == 0:
        return np.full(corr.shape[1], np.nan), -1, np.nan, np.nan, np.nan, np.nan
    mean = corr.mean(axis=0)
    best = int(np.argmax(mean))
    diff = corr[:, best] - corr[:, GIVEN]
    gain = float(diff.mean())
    half = np.inf
    if n > 1:
        half = stdtrit(n - 1, 0.5 + confidence / 2) * diff.std(ddof=1) / np.sqrt(n)
    if best == GIVEN:
        half = 0.0
    return mean, best, _peak_scale(mean[:len(DEFOCUS_SCALES)]), gain, gain - half, gain + half


def _groups(mic: NDArray, usable: NDArray, ids: NDArray) -> list[NDArray]:
    """Rows of each micrograph of ``ids`` among the ``usable`` ones (one sort, O(n log n))."""
    rows = np.flatnonzero(usable)
    rows = rows[np.argsort(mic[rows], kind="stable")]
    keys = mic[rows]
    lo, hi = np.searchsorted(keys, ids, "left"), np.searchsorted(keys, ids, "right")
    return [rows[a:b] for a, b in zip(lo, hi)]


def check_micrographs(mic_ids: ArrayLike, correlations: ArrayLike, *,
                     min_particles: int = MIN_PARTICLES,
                     min_relative_gain: float = MIN_RELATIVE_GAIN,
                     min_gain: float = MIN_GAIN,
                     confidence: float = CONFIDENCE) -> MicrographCtfCheck:
    """Aggregate :func:`ctf_correlations` per micrograph and judge each.

    Parameters
    ----------
    mic_ids : array_like of int, shape (n,)
        Micrograph of each particle, in arrival order; negative = unknown (skipped).
    correlations : array_like, shape (n, len(ALTERNATIVES))
        Per-particle correlations; a row with any NaN (a failed image) is left out.
    min_particles : int
        Particles a micrograph needs for a verdict (>= 2).
    min_relative_gain : float
        Suspect when the gain's lower bound exceeds this fraction of the best
        alternative's mean correlation (>= 0) ...
    min_gain : float
        ... and this correlation difference (>= 0).
    confidence : float
        Of the gain interval, in (0, 1).

    Returns
    -------
    MicrographCtfCheck
    """
    mic = np.asarray(mic_ids, dtype=np.int64).reshape(-1)
    c = np.asarray(correlations, dtype=np.float64)
    if c.shape != (len(mic), len(ALTERNATIVES)):
        raise ValueError(f"correlations {c.shape} must be ({len(mic)}, {len(ALTERNATIVES)})")
    if min_particles < 2 or min(min_relative_gain, min_gain) < 0 or not 0 < confidence < 1:
        raise ValueError("need min_particles >= 2, min_relative_gain and min_gain >= 0, "
                         "0 < confidence < 1")
    known = mic >= 0
    ids, first = np.unique(mic[known], return_index=True)
    ids = ids[np.argsort(first, kind="stable")]
    usable = known & np.isfinite(c).all(axis=1)
    groups = _groups(mic, usable, ids)
    rows = [_one_micrograph(c[g], confidence) for g in groups]
    n_used = np.array([len(g) for g in groups], dtype=np.int64)
    mean = np.array([r[0] for r in rows]).reshape(len(ids), len(ALTERNATIVES))
    best = np.array([r[1] for r in rows], dtype=np.int64)
    scale, gain, low, high = (np.array([r[k] for r in rows], dtype=np.float64)
                              for k in (2, 3, 4, 5))
    decided = n_used >= min_particles
    best_corr = np.array([mean[i, b] if b >= 0 else np.nan for i, b in enumerate(best)])
    with np.errstate(invalid="ignore"):
        suspect = decided & (low > np.maximum(min_gain, min_relative_gain * best_corr))
    return MicrographCtfCheck(ids, n_used, mean, best, scale, gain, low, high, decided,
                              suspect)
