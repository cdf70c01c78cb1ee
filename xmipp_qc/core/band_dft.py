"""Band-limited discrete Fourier transforms as matrix products (BLAS).

Conventions are those of :mod:`xmipp_qc.core`: arrays ``[z, y, x]`` / ``[y,
x]`` with the origin at voxel/pixel ``N // 2``; frequencies are integer
indices ``f`` of the grid of spacing ``1 / M`` cycles/px (``M`` the transform
length). Only the frequencies or pixels that are needed are computed, which
beats a full FFT when the band is narrow:

* :func:`dft_block`: the 3D spectrum of a centred, zero-padded map on a block
  of frequencies (the Fourier projector's interpolation block);
* :func:`synthesis_matrices` and :func:`band_irfft2`: real images from the
  low-frequency part of their ``rfft2`` half-plane spectrum, centred (origin
  at pixel ``N // 2``), by two matrix products;
* :func:`make_hermitian`: the self-conjugate columns of ``rfft2`` spectra.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["band_irfft2", "dft_block", "make_hermitian", "synthesis_matrices"]


def dft_block(
    vol: NDArray, m: int, f_yz: NDArray, f_x: NDArray, cubic: bool, cdtype: type
) -> NDArray:
    """DFT of a map zero-padded to M, at integer frequency indices (separable).

    ``B[fz, fy, fx] = sum_u V(u) exp(-2 pi i f.u / M)`` with ``u`` the voxel
    coordinates about the origin ``N // 2``: the spectrum of the centred padded
    map, computed only where needed by three matrix products instead of a full
    ``M^3`` FFT.

    Parameters
    ----------
    vol : ndarray of shape (N, N, N), real
        Map ``[z, y, x]``, origin at ``N // 2``.
    m : int
        Padded box M (>= N); the frequency spacing is ``1 / M`` cycles/px.
    f_yz : ndarray of shape (F,), int
        Frequency indices along z and y.
    f_x : ndarray of shape (Fx,), int
        Frequency indices along x.
    cubic : bool
        Divide the map first by the real-space factor of the periodic cubic
        B-spline prefilter, ``prod_axes (4 + 2 cos(2 pi u / M)) / 6``, so that
        the block holds B-spline coefficients.
    cdtype : complex numpy dtype
        Output dtype (complex64 or complex128).

    Returns
    -------
    ndarray of shape (F, F, Fx), ``cdtype``
    """
    n = vol.shape[0]
    u = np.arange(n) - n // 2
    v = vol.astype(cdtype)
    if cubic:
        b = (4.0 + 2.0 * np.cos(2.0 * np.pi * u / m)) / 6.0
        v /= b[:, None, None] * b[None, :, None] * b[None, None, :]
    e_x = np.exp(-2j * np.pi * np.outer(u, f_x) / m).astype(cdtype)  # (N, Fx)
    e_yz = np.exp(-2j * np.pi * np.outer(f_yz, u) / m).astype(cdtype)  # (F, N)
    t = (v.reshape(n * n, n) @ e_x).reshape(n, n, -1)  # (z, y, fx)
    t = np.matmul(e_yz, t)  # (z, fy, fx)
    return (e_yz @ t.reshape(n, -1)).reshape(f_yz.size, f_yz.size, f_x.size)


def make_hermitian(spec: NDArray) -> None:
    """Enforce ``F(-ky) = conj F(ky)`` in place on the self-conjugate rfft columns.

    Parameters
    ----------
    spec : ndarray of shape (..., N, N//2+1), complex
        ``rfft2`` spectra (numpy layout); columns ``kx = 0`` and (even N)
        ``kx = 1/2`` are symmetrised, after which the spectra are exactly the
        ``rfft2`` of their ``irfft2``.
    """
    n = spec.shape[-2]
    neg = (-np.arange(n)) % n
    cols = [0, spec.shape[-1] - 1] if n % 2 == 0 else [0]
    for c in cols:
        col = spec[..., c]
        spec[..., c] = 0.5 * (col + np.conj(col[..., neg]))


def synthesis_matrices(n: int, r: int, cols: int, dtype: type) -> tuple[NDArray, NDArray]:
    """Matrices of the centred inverse 2D DFT restricted to a low-frequency band.

    The band is ``ky = -r .. r`` and ``kx = 0 .. cols - 1`` (integer indices,
    cycles/px times N) of the ``rfft2`` half-plane; ``cols <= N // 2 + 1``.

    Parameters
    ----------
    n : int
        Image box N (odd or even).
    r : int
        Largest ``|ky|`` index of the band.
    cols : int
        Number of ``kx`` columns of the band.
    dtype : numpy dtype
        float32 or float64: dtype of the images.

    Returns
    -------
    e_y : ndarray of shape (N, 2r+1), complex of the same precision
        ``exp(2 pi i ky (y - N//2) / N) / N``: inverse DFT along y, centred.
    m_x : ndarray of shape (2 cols, N), ``dtype``
        Real inverse DFT along x of the interleaved (re, im) columns, centred,
        with the Hermitian weights of ``irfft`` (1 for ``kx = 0`` and the
        Nyquist column, else 2; their imaginary parts are ignored).
    """
    real = np.dtype(dtype)
    cdtype = np.complex64 if real == np.float32 else np.complex128
    u = np.arange(n) - n // 2  # pixel coordinates about the origin N//2
    e_y = np.exp(2j * np.pi * np.outer(u, np.arange(-r, r + 1)) / n) / n
    kx = np.arange(cols)
    self_conj = (kx == 0) | (2 * kx == n)
    weight = np.where(self_conj, 1.0, 2.0)[:, None] / n
    ang = 2 * np.pi * np.outer(kx, u) / n
    m_x = np.empty((2 * cols, n), dtype=real)
    m_x[0::2] = weight * np.cos(ang)
    m_x[1::2] = -weight * np.sin(ang)
    m_x[1::2][self_conj] = 0.0  # exact zeros: irfft ignores those parts
    return e_y.astype(cdtype), m_x


def band_irfft2(spec: NDArray, e_y: NDArray, m_x: NDArray, out: NDArray) -> None:
    """Centred real images from band-limited half-plane spectra (two matrix products).

    Equivalent to ``fftshift(irfft2(S, s=(N, N)))`` where ``S`` is zero outside
    the band of :func:`synthesis_matrices`.

    Parameters
    ----------
    spec : ndarray of shape (k, 2r+1, cols), complex
        Band of each spectrum: row ``j`` is ``ky = j - r``, column ``kx``.
    e_y, m_x : ndarray
        Matrices of :func:`synthesis_matrices` (same precision as ``spec``).
    out : ndarray of shape (k, N, N), real, C-contiguous
        Receives the images ``[y, x]``, origin at ``N // 2``.
    """
    k, n = spec.shape[0], e_y.shape[0]
    z = np.matmul(e_y, spec)  # (k, N, cols) complex: y transformed
    np.matmul(z.view(m_x.dtype).reshape(k * n, -1), m_x, out=out.reshape(k * n, n))
