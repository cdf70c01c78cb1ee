"""Polar Fourier representation of images for rotational and translational search.

An image ``I`` (``[y, x]``, origin at ``N // 2``, see :mod:`xmipp_qc.core`) is
represented by its continuous Fourier transform
``F(k) = sum_r I(r) exp(-2 pi i k.r)`` (the zero-extended image, so no
wrap-around) sampled on rings ``|k| = j / N`` cycles/px, ``j = 1 .. floor(max_freq N)``,
at ``n_theta`` equispaced angles ``theta_t = 2 pi t / n_theta`` with
``k = |k| (cos theta, sin theta)``. Only the half ring ``theta < pi`` is computed:
a real image has ``F(-k) = conj F(k)``.

Rotations and shifts act simply on this representation:

* an in-plane rotation by ``psi`` (the Xmipp Euler ``psi``: the projection at
  ``(rot, tilt, psi)`` is ``P_0(R(psi) r)``) is ``F_psi(k, theta) = F_0(k, theta + psi)``,
  i.e. a phase ``exp(i m psi)`` on the angular Fourier coefficient ``m`` of a ring;
* a shift ``s`` in Xmipp's convention (``I(r) = P(r + s)``) is the phase
  ``exp(+2 pi i k.s)``; :meth:`PolarGrid.shift_phases` returns its inverse,
  which brings an image back into register.

The rotational correlation ``c(psi) = sum_k w_k sum_theta G(k, theta)
conj(F_0(k, theta + psi))`` of two rings is therefore an inverse FFT over ``m``
(:func:`rotational_correlation`), and the sum over rings a matrix product.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.fft
from numpy.typing import ArrayLike, NDArray

__all__ = ["PolarGrid", "apply_mask", "rotational_correlation", "soft_disk"]


def soft_disk(box: int, radius: float, width: float = 3.0,
              centers: ArrayLike | None = None) -> NDArray[np.float32]:  # fmt: skip
    """Circular mask with a raised-cosine edge, centred at the origin ``N // 2``.

    Parameters
    ----------
    box : int
        Image size N in px.
    radius : float
        Radius in px where the mask reaches 0.
    width : float
        Width of the cosine edge in px (1 inside ``radius - width``).
    centers : array_like of shape (n, 2), optional
        ``(x, y)`` centres in px relative to the origin, one mask each.

    Returns
    -------
    ndarray of shape (N, N) or (n, N, N), float32
        Values in [0, 1].
    """
    g = np.arange(box, dtype=np.float64) - box // 2
    if centers is None:
        r = np.hypot(g[:, None], g[None, :])
    else:
        c = np.asarray(centers, dtype=np.float64).reshape(-1, 2)
        r = np.hypot(g[None, None, :] - c[:, 0, None, None], g[None, :, None] - c[:, 1, None, None])
    t = np.clip((radius - r) / max(width, 1e-6), 0.0, 1.0)
    return (np.sin(0.5 * np.pi * t) ** 2).astype(np.float32)


def apply_mask(images: ArrayLike, mask: ArrayLike) -> NDArray[np.float32]:
    """Subtract the mask-weighted mean of each image, then multiply by the mask.

    Parameters
    ----------
    images : array_like of shape (n, N, N)
        Real images.
    mask : array_like of shape (N, N) or (n, N, N)
        Weights in [0, 1] (e.g. :func:`soft_disk`), one for all or one per image.

    Returns
    -------
    ndarray of shape (n, N, N), float32
    """
    imgs = np.asarray(images, dtype=np.float32)
    m = np.broadcast_to(np.asarray(mask, dtype=np.float32), imgs.shape)
    mean = np.einsum("nyx,nyx->n", imgs, m) / np.maximum(m.sum(axis=(1, 2)), 1e-12)
    return (imgs - mean[:, None, None]) * m


@dataclass(frozen=True)
class PolarGrid:
    """Half-ring polar sampling of the 2D Fourier plane of an N x N image.

    Use :meth:`create`. Ring ``j`` has radius ``radii[j] = (j + 1) / N``
    cycles/px; angular coefficients ``m = 0 .. n_m - 1`` are kept, with
    ``n_m - 1 >= 2 pi max_freq radius_px``: the angular band limit of an object
    inside a disk of ``radius_px``; ``n_theta >= n_m + 2 pi max_freq
    image_radius_px``, so that the coefficients ``m < n_m`` of an image of that
    support are not aliased.

    Attributes
    ----------
    box : int
        Image size N in px.
    max_freq : float
        Outer ring radius bound in cycles/px.
    radius_px : float
        Real-space support radius in px (sets the angular band limit).
    n_theta : int
        Samples on a full ring (even); ``n_theta // 2`` are stored.
    n_m : int
        Angular Fourier coefficients kept per ring.
    radii : ndarray of shape (n_rings,)
        Ring radii in cycles/px.
    kx, ky : ndarray of shape (n_rings, n_theta // 2)
        Sample frequencies in cycles/px (``ky >= 0``).
    """

    box: int
    max_freq: float
    radius_px: float
    n_theta: int
    n_m: int
    radii: NDArray[np.float64]
    kx: NDArray[np.float64]
    ky: NDArray[np.float64]
    _ex: NDArray[np.float32] = field(repr=False)
    _ey: NDArray[np.complex64] = field(repr=False)
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def create(cls, box: int, max_freq: float, radius_px: float,
               image_radius_px: float | None = None) -> PolarGrid:  # fmt: skip
        """Build the grid.

        Parameters
        ----------
        box : int
            Image size N (odd or even, >= 8).
        max_freq : float
            Largest ring radius in cycles/px, in (0, 0.5]; at least one ring
            (``max_freq >= 1 / N``).
        radius_px : float
            Support radius of the references in px (> 0): sets ``n_m``.
        image_radius_px : float, optional
            Support radius of the images compared with them (default
            ``radius_px``): sets ``n_theta`` so that their angular spectrum up to
            ``n_m`` is not aliased.

        Returns
        -------
        PolarGrid
        """
        if int(box) != box or box < 8:
            raise ValueError(f"box must be an integer >= 8, got {box}")
        if not 1.0 / box <= max_freq <= 0.5:
            raise ValueError(f"max_freq must be in [1/N, 0.5] cycles/px, got {max_freq}")
        if not radius_px > 0:
            raise ValueError(f"radius_px must be positive, got {radius_px}")
        n_rings = int(math.floor(max_freq * box + 1e-9))
        radii = np.arange(1, n_rings + 1, dtype=np.float64) / box
        n_m = int(math.ceil(2 * np.pi * radii[-1] * radius_px)) + 2
        r_img = radius_px if image_radius_px is None else max(radius_px, image_radius_px)
        band = int(math.ceil(2 * np.pi * radii[-1] * r_img)) + 2
        n_theta = 2 * ((n_m + band + 1) // 2)
        theta = 2 * np.pi * np.arange(n_theta // 2) / n_theta
        kx = radii[:, None] * np.cos(theta)[None, :]
        ky = radii[:, None] * np.sin(theta)[None, :]
        g = np.arange(box, dtype=np.float64) - box // 2
        ex = np.exp(-2j * np.pi * g[:, None] * kx.reshape(1, -1))  # (N, P)
        ex_real = np.concatenate([ex.real, ex.imag], axis=1).astype(np.float32)
        ey = np.exp(-2j * np.pi * g[:, None] * ky.reshape(1, -1)).astype(np.complex64)
        return cls(int(box), float(max_freq), float(radius_px), n_theta, n_m, radii, kx, ky,
                   ex_real, ey)  # fmt: skip

    @property
    def n_rings(self) -> int:
        """Number of rings."""
        return len(self.radii)

    @property
    def weights(self) -> NDArray[np.float32]:
        """Quadrature weight of each ring (its radius, ``|k| dk``), shape (n_rings,)."""
        return self.radii.astype(np.float32)

    def sample(self, images: ArrayLike) -> NDArray[np.complex64]:
        """Fourier transform of images at the half-ring samples (exact, no interpolation).

        Parameters
        ----------
        images : array_like of shape (n, N, N) or (N, N)
            Real images indexed ``[y, x]``, origin at ``N // 2``.

        Returns
        -------
        ndarray of shape (n, n_rings, n_theta // 2), complex64
            ``F(k) = sum_r I(r) exp(-2 pi i k.r)``.
        """
        imgs = np.asarray(images, dtype=np.float32)
        if imgs.ndim == 2:
            imgs = imgs[None]
        n, big_n = imgs.shape[0], self.box
        if imgs.shape[1:] != (big_n, big_n):
            raise ValueError(f"images must be ({big_n}, {big_n}), got {imgs.shape[1:]}")
        n_pts = self._ey.shape[1]
        full = self._full_matrix()
        if full is not None:  # one real matrix product: fastest for small boxes
            out = imgs.reshape(n, -1) @ full
            out = out[:, :n_pts] + 1j * out[:, n_pts:]
            return out.reshape(n, self.n_rings, self.n_theta // 2).astype(np.complex64)
        t = (imgs.reshape(n * big_n, big_n) @ self._ex).reshape(n, big_n, 2, n_pts)
        tc = t[:, :, 0, :] + 1j * t[:, :, 1, :]  # sum over x, (n, N(y), P)
        out = np.einsum("nyp,yp->np", tc, self._ey, optimize=False)
        return out.reshape(n, self.n_rings, self.n_theta // 2).astype(np.complex64, copy=False)

    def _full_matrix(self) -> NDArray[np.float32] | None:
        """Real (N^2, 2P) transform matrix if it takes at most 64 MB, cached."""
        cache = self._cache
        if "full" not in cache:
            n_pts = self._ey.shape[1]
            if self.box**2 * 2 * n_pts * 4 > 64 * 2**20:
                cache["full"] = None
            else:
                ex = self._ex[:, :n_pts] + 1j * self._ex[:, n_pts:]  # (N(x), P)
                e = (self._ey[:, None, :] * ex[None, :, :]).reshape(self.box**2, n_pts)
                cache["full"] = np.concatenate([e.real, e.imag], axis=1).astype(np.float32)
        return cache["full"]

    def shift_phases(self, shifts: ArrayLike, n_rings: int | None = None) -> NDArray[np.complex64]:
        """Phases ``exp(-2 pi i k.s)`` that undo Xmipp shifts ``s`` (``I(r) = P(r + s)``).

        Parameters
        ----------
        shifts : array_like of shape (..., 2)
            ``(shift_x, shift_y)`` in px.
        n_rings : int, optional
            Only the first ``n_rings`` rings (default all).

        Returns
        -------
        ndarray of shape (..., n_rings, n_theta // 2), complex64
        """
        s = np.asarray(shifts, dtype=np.float64)
        r = self.n_rings if n_rings is None else n_rings
        arg = s[..., 0, None, None] * self.kx[:r] + s[..., 1, None, None] * self.ky[:r]
        return np.exp(-2j * np.pi * arg).astype(np.complex64)

    def ring_coefficients(self, half: NDArray, n_m: int | None = None) -> NDArray[np.complex64]:
        """Angular Fourier coefficients ``m = 0 .. n_m - 1`` of Hermitian half rings.

        Parameters
        ----------
        half : ndarray of shape (..., n_rings', n_theta // 2), complex
            Samples of a real image's transform on ``theta < pi``.
        n_m : int, optional
            Coefficients to keep (default :attr:`n_m`).

        Returns
        -------
        ndarray of shape (..., n_rings', n_m), complex64
            ``a_m = sum_t F(theta_t) exp(-i m theta_t)`` over the full ring.
        """
        full = np.concatenate([half, np.conj(half)], axis=-1)
        coeffs = scipy.fft.fft(full, axis=-1, workers=-1)
        return coeffs[..., : (self.n_m if n_m is None else n_m)].astype(np.complex64, copy=False)

    def sample_filter(self, filters: ArrayLike) -> NDArray[np.float32]:
        """Bilinear samples of real even filters (e.g. CTFs) given in rfft layout.

        Parameters
        ----------
        filters : array_like of shape (N, N//2+1) or (n, N, N//2+1)
            Real filters in numpy's ``rfft2`` layout (``ky`` in fftfreq order),
            with ``H(-k) = H(k)``, e.g. :func:`xmipp_qc.core.ctf.ctf_image`.

        Returns
        -------
        ndarray of shape (n, n_rings, n_theta // 2), float32
        """
        h = np.asarray(filters)
        big_n, nh = self.box, self.box // 2 + 1
        if h.ndim == 2:
            h = h[None]
        if h.ndim != 3 or h.shape[1:] != (big_n, nh) or np.iscomplexobj(h):
            raise ValueError(f"filters must be real with shape (n, {big_n}, {nh}), got {h.shape}")
        flip = self.kx < 0  # use H(k) = H(-k) to stay in the kx >= 0 half plane
        col = np.where(flip, -self.kx, self.kx) * big_n
        row = np.where(flip, -self.ky, self.ky) * big_n
        c0, r0 = np.floor(col).astype(np.int64), np.floor(row).astype(np.int64)
        fc, fr = (col - c0).astype(np.float32), (row - r0).astype(np.float32)
        c1 = np.minimum(c0 + 1, nh - 1)
        r0m, r1m = r0 % big_n, (r0 + 1) % big_n
        hf = h.astype(np.float32, copy=False)
        top = hf[:, r0m, c0] * (1 - fc) + hf[:, r0m, c1] * fc
        bottom = hf[:, r1m, c0] * (1 - fc) + hf[:, r1m, c1] * fc
        return top * (1 - fr) + bottom * fr


def rotational_correlation(x: NDArray, n_psi: int, n_theta: int, axis: int = -1) -> NDArray:
    """Correlation as a function of ``psi`` from its angular cross-spectrum.

    Parameters
    ----------
    x : ndarray, complex
        ``X_m = sum_k w_k g_m(k) conj(b_m(k))`` for ``m = 0 .. n_m - 1`` along
        ``axis`` (coefficients from :meth:`PolarGrid.ring_coefficients`).
    n_psi : int
        Number of equispaced ``psi_j = 360 j / n_psi`` degrees (>= 2 n_m - 1 for
        no loss).
    n_theta : int
        Ring length the coefficients were computed with.
    axis : int
        Axis of ``m``.

    Returns
    -------
    ndarray, float32
        ``c(psi_j) = sum_k w_k sum_theta G(k, theta) conj(F(k, theta + psi_j))``
        on ``axis`` (length ``n_psi``).
    """
    n_m = x.shape[axis]
    if n_m > n_psi // 2 + 1:
        x = np.take(x, np.arange(n_psi // 2 + 1), axis=axis)
    c = scipy.fft.irfft(np.conj(x), n=n_psi, axis=axis, workers=-1)
    return (c * np.float32(n_psi / n_theta)).astype(np.float32, copy=False)
