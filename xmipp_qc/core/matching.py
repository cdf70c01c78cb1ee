"""Global projection matching of images against a gallery of reprojections.

For every image the best orientation ``(rot, tilt, psi)`` (Xmipp ZYZ Euler
angles, degrees) and shift ``(shift_x, shift_y)`` (px, Xmipp convention
``I(r) = P(r + s)``; see :mod:`xmipp_qc.core`) are searched over all gallery
directions x all in-plane rotations x all shifts within ``max_shift_px``.

Algorithm (polar Fourier representation of :mod:`xmipp_qc.core.polar`):

1. Gallery: projections at the directions of
   :func:`xmipp_qc.core.sampling.sample_directions` (asymmetric unit of the
   symmetry group, psi = 0), masked, transformed to angular Fourier
   coefficients per ring; once per map, for a fine level (``angular_step``, band
   ``max_freq``) and a coarse level (``coarse_step``, band ``coarse_freq``).
2. Coarse search: for a hexagonal grid of trial shifts (every shift within
   ``1 / (6 coarse_freq)`` px of one)
   the image is brought into register by exact Fourier phases, and its
   rotational correlation with ALL coarse references is one matrix product per
   angular frequency followed by an inverse FFT over ``m``.
3. The best ``n_candidates`` mutually distinct directions (non-maximum
   suppression) are refined against every fine reference within
   ``coarse_step`` of them (symmetry-aware), over a 1 px grid of shifts that
   covers the coarse shift's cell and psi at the angular Nyquist step.
4. The winner is polished: shift by quadratic fits on 3 x 3 grids of 0.5 and
   0.25 px, psi by a parabola through the correlation samples.
5. The direction leaves the grid (:mod:`xmipp_qc.core.direction_polish`): a
   cubic fit of the correlations (at the found shift, psi-maximised) at the
   fine directions within two steps (at least 10 deg) of the winner gives the peak
   direction (within one step of the grid point) and a linear fit of their psi
   the in-plane angle there.

Search scores are correlations of the band-limited (``1/N .. max_freq``)
image, masked by a disk of ``mask_radius + max_shift_px``, with the references
(masked inside ``mask_radius <= N/2``, DC excluded), divided by the reference
norm; the reported ``corr`` is the Pearson correlation inside the particle
disk moved to the found shift. With a CTF, the image is multiplied by its own
CTF, which makes the numerator exactly ``<I, CTF * P>`` (a matched filter;
phase flipping or Wiener filtering would change the noise statistics); the
norm ``||CTF * P||`` uses the ring-averaged CTF^2 (exact for non-astigmatic
CTFs). Mirrors are not searched: a mirrored projection is (up to an in-plane
rotation) the projection from the opposite direction, and the gallery covers
the whole sphere modulo the symmetry group (for groups with improper elements,
whose Xmipp units assume a mirror search, :class:`Gallery` adds the antipodal
directions), so an orientation found is always a proper rotation. Shifts found are kept and
refined (Xmipp discards its 5D translation), and the Fourier transforms are of
the zero-extended images (no wrap-around).

The ``margin`` of an image is the best correlation minus the best correlation
among evaluated orientations more than ``2 * angular_step`` away (full rotation,
symmetry-aware) from the best one: near 0 for ambiguous images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft
from numpy.typing import ArrayLike, NDArray

from xmipp_qc.core.direction_polish import polish_orientations, stencil_correlations
from xmipp_qc.core.gallery import Gallery, Level
from xmipp_qc.core.geometry import rotation_distance
from xmipp_qc.core.peaks import GRID_3X3, parabolic_peak, quadratic_peak_3x3, two_psi_peaks
from xmipp_qc.core.polar import apply_mask, rotational_correlation, soft_disk

__all__ = ["Gallery", "MatchResult", "match_images"]

_BUDGET = 48 * 2**20  # bytes of the largest float32 temporary of a search block
_POLISH_PSI = 1440
_PSI_WINDOW_STEPS = 2.0  # psi of stencil neighbours within this many steps of the prediction


@dataclass(frozen=True)
class _Images:
    """Prepared images: half-ring samples (CTF applied), norms, ring-mean CTF^2."""

    half: NDArray[np.complex64]  # (n, n_rings, n_theta // 2)
    norm2: NDArray[np.float64]  # (n,) weighted ||I||^2 in band
    ctf2: NDArray[np.float32] | None  # (n, n_rings) ring mean of CTF^2


@dataclass(frozen=True)
class MatchResult:
    """Best orientation of each image.

    Attributes
    ----------
    angles : ndarray of shape (n, 3)
        Xmipp Euler ``(rot, tilt, psi)`` in degrees: the polished orientation,
        off the gallery grid (at most one angular step from the direction
        ``ref_index``; on it where the correlation fit has no maximum).
    shifts : ndarray of shape (n, 2)
        ``(shift_x, shift_y)`` in px, Xmipp convention ``I(r) = P(r + s)``,
        sub-pixel refined, ``|s| <= max_shift_px``.
    corr : ndarray of shape (n,)
        Pearson correlation of the masked, band-limited image with the
        (CTF-affected) reference of the gallery direction ``ref_index`` at its
        best psi and the found shift (the grid correlation: the gallery has no
        reference at the polished orientation).
    margin : ndarray of shape (n,)
        ``corr`` of the best minus that of the best orientation more than
        ``2 * angular_step`` away (symmetry-aware, both on the fine grid);
        NaN if no such orientation was evaluated.
    ref_index : ndarray of shape (n,), int
        Index of the best grid direction in :attr:`Gallery.angles`.
    """

    angles: NDArray[np.float64]
    shifts: NDArray[np.float64]
    corr: NDArray[np.float64]
    margin: NDArray[np.float64]
    ref_index: NDArray[np.int64]


def _prepare_images(images: NDArray, ctf, gallery: Gallery, mask: NDArray) -> _Images:
    """Mask, transform to half rings and multiply by each image's CTF (if any)."""
    grid = gallery.grid
    half = grid.sample(apply_mask(images, mask))
    w = grid.weights
    norm2 = 2 * np.einsum("k,nkt->n", w, (np.abs(half) ** 2).astype(np.float64))
    ctf2 = None
    if ctf is not None:
        h = grid.sample_filter(ctf)
        half = half * h
        ctf2 = np.broadcast_to((h**2).mean(axis=-1), (len(half), grid.n_rings))
    return _Images(half, norm2, ctf2)


def _ref_norm(img: _Images, level: Level, idx: NDArray | None, n_rings: int) -> NDArray:
    """``||CTF P||`` per (image, reference): (n, n_ref) or the shape of ``idx``."""
    if img.ctf2 is None:
        tot = level.power.sum(axis=0)
        out = tot[None, :] if idx is None else tot[idx]
    elif idx is None:
        out = img.ctf2[:, :n_rings] @ level.power
    else:
        p = level.power[:, idx.reshape(len(idx), -1)]  # (k, n, c)
        out = np.einsum("nk,knc->nc", img.ctf2[:, :n_rings], p).reshape(idx.shape)
    return np.sqrt(np.maximum(out, 1e-30))


def _shift_grid(radius: float, spacing: float) -> NDArray[np.float64]:
    """Hexagonal lattice of shifts (px) covering the disk of ``radius``, shape (s, 2).

    Every point of the disk is within ``spacing / sqrt(3)`` of a lattice point.
    """
    m = int(math.ceil(radius / spacing)) + 2
    i, j = np.meshgrid(np.arange(-m, m + 1), np.arange(-m, m + 1), indexing="xy")
    x = (i + 0.5 * (j % 2)) * spacing
    y = j * spacing * math.sqrt(3) / 2
    s = np.column_stack([x.ravel(), y.ravel()])
    return s[np.hypot(s[:, 0], s[:, 1]) <= radius + spacing / math.sqrt(3)]


def _coarse_spacing(gallery: Gallery) -> float:
    """Spacing (px) of the coarse shift lattice: covering radius ``1 / (6 k_max)``.

    The largest phase error at the coarse band edge ``k_max`` is then ``pi / 3``.
    """
    return math.sqrt(3) / (6.0 * gallery.coarse_rings / gallery.box)


def _fine_offsets(gallery: Gallery) -> NDArray[np.float64]:
    """Square 1 px grid (px) covering the coarse lattice's cells, shape (o, 2)."""
    reach = _coarse_spacing(gallery) / math.sqrt(3) + 0.5
    m = int(math.floor(reach))
    g = np.arange(-m, m + 1, dtype=np.float64)
    offs = np.stack(np.meshgrid(g, g, indexing="xy"), axis=-1).reshape(-1, 2)
    return offs[np.hypot(offs[:, 0], offs[:, 1]) <= reach]


def _coarse_search(img: _Images, gallery: Gallery, max_shift: float) -> tuple:
    """Best score and shift of every coarse reference over shifts and psi: (n, c), (n, c, 2).

    Scores are correlation numerators over ``||CTF P||`` (the image norm is
    constant per image), maximised over psi on ``2 (n_m - 1)`` samples.
    """
    grid, lev = gallery.grid, gallery.coarse
    n_r, n_m = gallery.coarse_rings, gallery.coarse_m
    spacing = _coarse_spacing(gallery)
    shifts = _shift_grid(max_shift, spacing) if max_shift > 0 else np.zeros((1, 2))
    n, n_s, n_ref = len(img.half), len(shifts), len(lev.coeffs)
    refs = np.ascontiguousarray(lev.coeffs.transpose(1, 2, 0))  # (n_m, n_r, n_ref)
    n_psi = 2 * (n_m - 1)
    phases = grid.shift_phases(shifts, n_r)
    block = max(1, _BUDGET // (8 * n_m * n_s * n_ref))
    buf = np.empty((n_m, block * n_s, n_ref), np.complex64)
    score = np.empty((n, n_ref), np.float32)
    ishift = np.empty((n, n_ref), np.int64)
    for a in range(0, n, block):
        b = min(n, a + block)
        rows = (b - a) * n_s
        g = grid.ring_coefficients(img.half[a:b, None, :n_r] * phases[None], n_m)
        g = np.conj(g).transpose(3, 0, 1, 2).reshape(n_m, rows, n_r)
        np.matmul(g, refs, out=buf[:, :rows])  # conj of the cross-spectrum
        c = scipy.fft.irfft(buf[:, :rows], n=n_psi, axis=0, workers=-1)
        cm = c.max(axis=0).reshape(b - a, n_s, n_ref)
        ish = cm.argmax(axis=1)
        score[a:b] = np.take_along_axis(cm, ish[:, None], axis=1)[:, 0]
        ishift[a:b] = ish
    score /= _ref_norm(img, lev, None, n_r)
    return score, shifts[ishift]


def _pick_distinct(score: NDArray, close: NDArray, k: int) -> NDArray[np.int64]:
    """Greedy non-maximum suppression: k mutually distant best indices per row, (n, k)."""
    s = score.copy()
    picks = np.empty((len(s), k), dtype=np.int64)
    for j in range(k):
        best = s.argmax(axis=1)
        picks[:, j] = np.where(np.isfinite(s[np.arange(len(s)), best]), best, picks[:, 0])
        s[close[best]] = -np.inf
    return picks


def _fine_search(img: _Images, gallery: Gallery, cand: NDArray, centers: NDArray,
                 max_shift: float) -> tuple:  # fmt: skip
    """Refine candidates on their fine neighbours, a 1 px grid of shifts and all psi.

    Psi is sampled every ``180 / (n_m - 1)`` degrees. Returns, per evaluated
    direction (n, c): corr, fine index, psi (deg), shift (n, c, 2), and the corr
    and psi of the best psi more than ``2 * angular_step`` from the first.
    """
    grid, lev = gallery.grid, gallery.fine
    offs = _fine_offsets(gallery) if max_shift > 0 else np.zeros((1, 2))
    nb = gallery.neighbours[cand]  # (n, K, n_nb)
    n, k, n_nb = nb.shape
    n_o, n_psi = len(offs), _fine_psi_samples(grid.n_m, gallery.angular_step)
    block = max(1, _BUDGET // (4 * k * n_psi * n_o * n_nb))
    out = np.empty((5, n, k, n_nb))  # corr, psi index, offset index, corr2, psi2 index
    off_phase = grid.shift_phases(offs)  # phases of centre + offset factorise
    for a in range(0, n, block):
        b = min(n, a + block)
        shifts = centers[a:b, :, None, :] + offs  # (m, K, n_o, 2)
        centred = img.half[a:b, None] * grid.shift_phases(centers[a:b])  # (m, K, R, H)
        g = np.conj(grid.ring_coefficients(centred[:, :, None] * off_phase))
        refs = lev.coeffs[nb[a:b]].transpose(0, 1, 3, 4, 2)  # (m, K, n_m, R, n_nb)
        x = g.transpose(0, 1, 4, 2, 3) @ refs  # conj cross-spectrum (m, K, n_m, n_o, n_nb)
        c = scipy.fft.irfft(x, n=n_psi, axis=2, workers=-1)
        bad = np.hypot(shifts[..., 0], shifts[..., 1]) > max_shift + 1e-9
        c[np.broadcast_to(bad[:, :, None, :, None], c.shape)] = -np.inf
        out[:, a:b] = two_psi_peaks(c, 2 * gallery.angular_step)
    scale = (n_psi / grid.n_theta) / (_ref_norm(img, lev, nb, grid.n_rings)
                                      * np.sqrt(np.maximum(img.norm2, 1e-30))[:, None, None])
    shifts = centers[:, :, None, :] + offs[out[2].astype(np.int64)]
    corr, corr2 = (out[0] * scale).reshape(n, -1), (out[3] * scale).reshape(n, -1)
    psi, psi2 = (out[i].reshape(n, -1) * (360.0 / n_psi) for i in (1, 4))
    return corr, nb.reshape(n, -1), psi, shifts.reshape(n, -1, 2), corr2, psi2


def _fine_psi_samples(n_m: int, step: float) -> int:
    """Psi samples of the fine search (an FFT-friendly length).

    At least the angular Nyquist rate ``2 (n_m - 1)`` and a spacing of at most
    half the direction step, so that the fine neighbours of a candidate are
    compared at their peak psi (at the Nyquist rate alone, a small box's psi
    step, e.g. 9 deg at N = 24, decided between neighbours 5 deg apart).
    """
    return scipy.fft.next_fast_len(max(2 * (n_m - 1), int(math.ceil(720.0 / step))), real=True)


def _correlate_one(img: _Images, gallery: Gallery, ref: NDArray, shifts: NDArray) -> NDArray:
    """Correlation numerators c(psi) on ``_POLISH_PSI`` samples, shifts (n, s, 2) -> (n, s, psi)."""
    grid = gallery.grid
    g = grid.ring_coefficients(img.half[:, None] * grid.shift_phases(shifts))  # (n, s, R, m)
    x = np.einsum("nskm,nmk->nsm", g, np.conj(gallery.fine.coeffs[ref]))
    return rotational_correlation(x, _POLISH_PSI, grid.n_theta, axis=-1)


def _polish(img: _Images, gallery: Gallery, ref: NDArray, shift: NDArray,
            max_shift: float) -> NDArray[np.float64]:  # fmt: skip
    """Sub-pixel shifts by quadratic fits on 3 x 3 grids of 0.5 and 0.25 px, (n, 2)."""
    s = shift.astype(np.float64)
    if max_shift > 0:
        for h in (0.5, 0.25):
            c = _correlate_one(img, gallery, ref, s[:, None, :] + h * GRID_3X3).max(axis=-1)
            s = s + h * quadratic_peak_3x3(c)
            r = np.hypot(s[:, 0], s[:, 1])
            s *= np.minimum(1.0, max_shift / np.maximum(r, 1e-12))[:, None]
    return s


def _final_psi_corr(img: _Images, gallery: Gallery, ref: NDArray, s: NDArray) -> tuple:
    """Return psi (parabolic peak) and the Pearson correlation in the moved particle mask.

    ``img`` is prepared with the particle disk centred at ``-s`` (``I(r) = P(r + s)``).
    """
    c = _correlate_one(img, gallery, ref, s[:, None, :])[:, 0]  # (n, psi)
    i = c.argmax(axis=1)
    rows = np.arange(len(c))
    d, peak = parabolic_peak(c[rows, i - 1], c[rows, i], c[rows, (i + 1) % c.shape[1]])
    psi = ((i + d) * (360.0 / _POLISH_PSI)) % 360.0
    den = _ref_norm(img, gallery.fine, ref[:, None], gallery.grid.n_rings)[:, 0]
    return psi, peak / (den * np.sqrt(np.maximum(img.norm2, 1e-30)))


def _polish_direction(img: _Images, gallery: Gallery, ref: NDArray, s: NDArray,
                      psi: NDArray) -> NDArray[np.float64]:  # fmt: skip
    """Off-grid orientations (n, 3) from the stencil of :mod:`~xmipp_qc.core.direction_polish`."""
    st, grid = gallery.stencil, gallery.grid
    idx = st.index[ref]  # (n, K)
    g = grid.ring_coefficients(img.half * grid.shift_phases(s))  # (n, R, m)
    den = _ref_norm(img, gallery.fine, idx, grid.n_rings) * np.sqrt(
        np.maximum(img.norm2, 1e-30))[:, None]  # fmt: skip
    pred = psi[:, None] - st.twist[ref]  # psi of each neighbour predicted from the best
    corr, psi_k = stencil_correlations(g, gallery.fine.coeffs[idx], den, pred, grid.n_theta,
                                       _PSI_WINDOW_STEPS * gallery.angular_step)
    return polish_orientations(st, ref, psi, corr, psi_k)[0]


def _margin(gallery: Gallery, corr: NDArray, ref: NDArray, psi: NDArray) -> NDArray[np.float64]:
    """Best corr minus the best corr farther than 2 angular steps (columns: candidates)."""
    n, c = corr.shape
    best = corr.argmax(axis=1)
    rows = np.arange(n)
    ang = gallery.angles[ref].copy()
    ang[..., 2] = psi
    dist = rotation_distance(np.repeat(ang[rows, best], c, axis=0), ang.reshape(-1, 3),
                             gallery.symmetry).reshape(n, c)  # fmt: skip
    far = np.where(dist > 2 * gallery.angular_step, corr, -np.inf).max(axis=1)
    return np.where(np.isfinite(far), corr[rows, best] - far, np.nan)


def match_images(
    images: ArrayLike,
    gallery: Gallery,
    *,
    max_shift_px: float | None = None,
    mask_radius: float | None = None,
    ctf: ArrayLike | None = None,
    chunk_size: int = 128,
    n_candidates: int = 4,
) -> MatchResult:
    """Find the best gallery orientation, in-plane rotation and shift of each image.

    Parameters
    ----------
    images : array_like of shape (n, N, N) or (N, N)
        Images indexed ``[y, x]``, origin at ``N // 2``, same N as the gallery,
        with the map's contrast (density positive, as Scipion's particles).
    gallery : Gallery
        From :meth:`Gallery.build`.
    max_shift_px : float, optional
        Radius of the shift search in px (default ``0.1 N``, Xmipp's 5D range);
        0 searches no shift.
    mask_radius : float, optional
        Particle radius in px (default: the gallery's). Images are masked with
        a soft disk of ``mask_radius + max_shift_px``, so that a shifted
        particle is not cut (references are masked at ``mask_radius``).
    ctf : array_like of shape (N, N//2+1) or (n, N, N//2+1), optional
        Real CTF of each image in ``rfft2`` layout
        (:func:`xmipp_qc.core.ctf.ctf_image`); the references are compared
        as ``CTF * P``.
    chunk_size : int
        Images processed together (bounds memory; the result does not depend on it).
    n_candidates : int
        Distinct coarse directions refined on the fine gallery (>= 2 for a margin).

    Returns
    -------
    MatchResult
    """
    imgs, h, max_shift, radius = _check_inputs(images, gallery, max_shift_px, mask_radius, ctf)
    if chunk_size < 1 or n_candidates < 1:
        raise ValueError("chunk_size and n_candidates must be >= 1")
    parts = []
    for a in range(0, len(imgs), chunk_size):
        b = min(len(imgs), a + chunk_size)
        hc = h[a:b] if h is not None and h.ndim == 3 else h
        parts.append(_match_chunk(imgs[a:b], hc, gallery, radius, max_shift, n_candidates))
    return MatchResult(*(np.concatenate(p) for p in zip(*parts)))


def _check_inputs(images, gallery: Gallery, max_shift_px, mask_radius, ctf) -> tuple:
    """Return validated ``(images (n, N, N), ctf or None, max_shift, mask radius)``."""
    imgs = np.asarray(images)
    imgs = imgs[None] if imgs.ndim == 2 else imgs
    box = gallery.box
    if imgs.ndim != 3 or imgs.shape[1:] != (box, box) or np.iscomplexobj(imgs):
        raise ValueError(f"images must be real with shape (n, {box}, {box}), got {imgs.shape}")
    if not np.all(np.isfinite(imgs)):
        raise ValueError("images must be finite")
    max_shift = 0.1 * box if max_shift_px is None else float(max_shift_px)
    if not 0 <= max_shift < box / 2:
        raise ValueError(f"max_shift_px must be in [0, N/2), got {max_shift_px}")
    radius = gallery.grid.radius_px if mask_radius is None else float(mask_radius)
    if not radius > 4:
        raise ValueError(f"mask_radius must exceed 4 px, got {mask_radius}")
    h = None if ctf is None else np.asarray(ctf)
    if h is not None and h.ndim == 3 and len(h) != len(imgs):
        raise ValueError(f"ctf has {len(h)} filters for {len(imgs)} images")
    return imgs, h, max_shift, radius


def _match_chunk(imgs: NDArray, ctf, gallery: Gallery, radius: float, max_shift: float,
                 n_candidates: int) -> tuple:  # fmt: skip
    mask = soft_disk(gallery.box, radius + max_shift)  # a shifted particle is not cut
    img = _prepare_images(imgs, ctf, gallery, mask)
    score, shift_c = _coarse_search(img, gallery, max_shift)
    k = min(n_candidates, score.shape[1])
    cand = _pick_distinct(score, gallery.close, k)
    centers = np.take_along_axis(shift_c, cand[..., None], axis=1)
    # the coarse lattice reaches a little beyond max_shift; a centre out there
    # could have no fine shift inside the disc, so bring it onto the disc's edge
    r = np.hypot(centers[..., 0], centers[..., 1])
    centers = centers * np.minimum(1.0, max_shift / np.maximum(r, 1e-12))[..., None]
    corr_f, ref_f, psi_f, shift_f, corr2, psi2 = _fine_search(img, gallery, cand, centers,
                                                              max_shift)
    rows, best = np.arange(len(imgs)), corr_f.argmax(axis=1)
    ref = ref_f[rows, best]
    shift = _polish(img, gallery, ref, shift_f[rows, best], max_shift)
    img = _prepare_images(imgs, ctf, gallery, soft_disk(gallery.box, radius, centers=-shift))
    psi, corr = _final_psi_corr(img, gallery, ref, shift)
    angles = _polish_direction(img, gallery, ref, shift, psi)
    margin = _margin(gallery, np.concatenate([corr_f, corr2], axis=1),
                     np.concatenate([ref_f, ref_f], axis=1), np.concatenate([psi_f, psi2], axis=1))
    return angles, shift, corr.astype(np.float64), margin, ref
