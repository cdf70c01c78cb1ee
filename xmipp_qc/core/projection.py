"""Fourier central-slice projector (and, re-exported, the real-space reference).

Conventions are those of :mod:`xmipp_qc.core`: volumes ``[z, y, x]``, origin at
voxel ``N // 2``, Xmipp ZYZ Euler angles with ``P(x, y) = integral of
V(E.T @ [x, y, z]) dz`` and Xmipp shifts, an image with shift ``s`` being
``I(r) = P(r + s)``. Projections are line integrals in voxel units: the
projection at angles ``(0, 0, 0)`` is ``volume.sum(axis=0)``.

Method (central-slice theorem). The spectrum of the volume zero-padded
(centred) to ``M = pad * N`` is computed once, on the grid of spacing ``1/M``
cycles/px and only where the slices can reach (a separable matrix DFT,
:func:`xmipp_qc.core.band_dft.dft_block`); the 2D spectrum of a projection at frequency ``k = (kx,
ky)`` (cycles/px) is the 3D spectrum at ``E.T @ (kx, ky, 0)``, read at the
padded-grid index ``k3 * M``. Only the Hermitian half-plane of the image
(numpy ``rfft2`` layout) is sampled and only the half-space ``k3x >= 0`` of
the volume is stored (``F(-k) = conj F(k)`` for real maps). The spectrum is
periodic with period 1 cycle/px, which the block's borders respect.

Interpolation (:mod:`xmipp_qc.core.interpolation`):

``linear``
    Trilinear interpolation of the complex spectrum (8 taps).
``cubic``
    Cubic B-spline interpolation (64 taps). The B-spline prefilter along a
    periodic axis is a convolution, i.e. a product in real space, so it is
    applied exactly and for free by dividing the padded volume by
    ``prod_axes (4 + 2 cos(2 pi x / M)) / 6`` before the DFT. Grid-aligned
    samples therefore return the exact DFT values, as for ``linear``.

Performance: the block of the spectrum that the slices can reach (all of it,
or the sphere of radius ``max_freq``) is stored with neighbouring taps packed
in rows (:func:`~xmipp_qc.core.interpolation.pack_taps`, bounded by
``_TABLE_BYTES``), orientations are processed in cache-sized chunks with one
vectorised gather each and the weighting runs on tap-major contiguous arrays.
Images: for narrow bands (``max_freq <= _MATRIX_SYNTHESIS_MAX_FREQ``) each
chunk's band of the spectrum goes to real space by two matrix products with
the ``fftshift`` built in (:func:`xmipp_qc.core.band_dft.band_irfft2`, cheaper
than FFTs for such bands); otherwise the ``fftshift`` is a
per-sample phase and the inverse FFT skips the columns beyond ``max_freq``.

Unlike Xmipp's projector (reference study §3.2(c)), the band limit is opt-in
(``max_freq``) rather than a fixed 0.25 cycles/px, and the full band keeps the
corners of the 2D spectrum that fall inside the volume's Nyquist cube.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.fft as sfft
from numpy.typing import ArrayLike, NDArray

from xmipp_qc.core.band_dft import band_irfft2, dft_block, make_hermitian, synthesis_matrices
from xmipp_qc.core.geometry import euler_to_matrix
from xmipp_qc.core.interpolation import TAPS, interp_cubic, interp_linear, pack_taps
from xmipp_qc.core.projection_reference import project_real_space

__all__ = ["FourierProjector", "project", "project_real_space"]

_CHUNK_SAMPLES = 1 << 18  # gathered taps per vectorised step (a few MB: cache-sized)
_TABLE_BYTES = 1 << 30  # memory allowed for the packed interpolation table
_WORKERS = 1  # FFT threads: the caller parallelises (one process per core)
_MATRIX_SYNTHESIS_MAX_FREQ = 0.25  # narrower bands: images by matrix products, not FFTs


class FourierProjector:
    """Fourier central-slice projector of one map (see module docstring).

    Parameters
    ----------
    volume : array_like of shape (N, N, N)
        Real map indexed ``[z, y, x]``, origin at ``N // 2``, odd or even N.
    pad : int
        Zero-padding factor (>= 1); the padded box is ``M = pad * N``.
    interpolation : {"linear", "cubic"}
        Trilinear or cubic B-spline interpolation of the 3D spectrum.
    max_freq : float or None
        Radial cut-off in cycles/px of the original box, in (0, 0.5]; 2D
        frequencies beyond it are zero. ``None`` keeps the full band (every
        2D frequency whose 3D position lies in the Nyquist cube).
    dtype : numpy dtype
        ``float32`` (complex64 spectra) or ``float64``; dtype of the outputs.

    Attributes
    ----------
    box : int
        N, the box of the volume and of the projections.

    Notes
    -----
    Accuracy and speed (``benchmarks/projection.py``; max error relative to
    the exact line integrals of a blob phantom, box 128): linear pad 1 ~17 %,
    linear pad 2 ~5 % (NCC 0.9995), cubic pad 1 ~1 % (NCC 0.9999), cubic pad
    2 ~0.05 %. Interpolation error falls as ``1 / pad**2`` for linear and the
    set-up cost of a band-limited projector hardly grows with ``pad``, so for
    galleries ``interpolation="linear", pad=4, max_freq=0.25`` matches cubic
    pad 1 (Xmipp's gallery setting) at about 2 to 3 times its speed. Use cubic
    where smooth dependence on the angles matters (local refinement). Cubic,
    pad 1, ``max_freq=0.25`` gives Xmipp's own projector's images (its C++
    ``FourierProjector``, B-spline) to 1e-11 relative.
    The interpolation table of linear, pad 2, full band at box 128 takes
    ~575 MB (float32; ``_TABLE_BYTES`` caps it at the cost of speed).
    """

    def __init__(
        self,
        volume: ArrayLike,
        *,
        pad: int = 2,
        interpolation: str = "linear",
        max_freq: float | None = None,
        dtype: type = np.float32,
    ) -> None:
        vol = np.asarray(volume)
        if vol.ndim != 3 or len(set(vol.shape)) != 1 or vol.shape[0] < 2:
            raise ValueError(f"volume must be a cubic 3D array, got shape {vol.shape}")
        if not np.isrealobj(vol) or not np.all(np.isfinite(vol)):
            raise ValueError("volume must be real and finite")
        if int(pad) != pad or pad < 1:
            raise ValueError(f"pad must be an integer >= 1, got {pad}")
        if interpolation not in TAPS:
            raise ValueError(f"interpolation must be one of {sorted(TAPS)}")
        if max_freq is not None and not 0.0 < max_freq <= 0.5:
            raise ValueError(f"max_freq must be in (0, 0.5] cycles/px or None, got {max_freq}")
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        self.box = n = vol.shape[0]
        self.pad = int(pad)
        self.interpolation = interpolation
        self.max_freq = None if max_freq is None else float(max_freq)
        self._cdtype = np.complex64 if self.dtype == np.float32 else np.complex128
        self._m = m = self.pad * n
        self._build_block(vol, n, m)
        self._build_samples(n)

    def _build_block(self, vol: NDArray, n: int, m: int) -> None:
        """Spectrum of the padded map on the bordered half-space block the slices reach."""
        reach = m / 2 if self.max_freq is None else self.max_freq * m
        taps = TAPS[self.interpolation]
        hi = int(np.ceil(reach)) + taps
        self._lo = np.array([-hi, -hi, -(taps // 2)], dtype=np.float64)  # (z, y, x) origin
        # block coordinates are taken from the first tap (floor - taps/2 + 1) on
        self._first = (self._lo + (taps // 2 - 1)).astype(self.dtype)[:, None, None]
        block = dft_block(
            vol,
            m,
            np.arange(-hi, hi + 1),
            np.arange(-(taps // 2), hi + 1),
            self.interpolation == "cubic",
            self._cdtype,
        )
        self._strides = np.array([block.shape[1] * block.shape[2], block.shape[2], 1])
        self._table, self._row_offsets = pack_taps(
            block.ravel(), taps, self._strides, _TABLE_BYTES
        )

    def _build_samples(self, n: int) -> None:
        """Frequencies (cycles/px) of the rfft2 half-plane that are projected."""
        fy = np.fft.fftfreq(n)
        fx = np.fft.rfftfreq(n)
        ky, kx = np.meshgrid(fy, fx, indexing="ij")
        keep = np.ones(ky.shape, dtype=bool)
        if self.max_freq is not None:
            keep = kx**2 + ky**2 <= self.max_freq**2 + 1e-12
        self._sel = np.flatnonzero(keep)
        wdt = self.dtype
        self._kxy = np.stack([kx.ravel()[self._sel], ky.ravel()[self._sel]]).astype(wdt)
        self._fy, self._fx = fy, fx
        # fftshift of the image (origin N//2 -> pixel N//2) as a phase on the samples
        self._centre = np.exp(-2j * np.pi * (n // 2) * self._kxy.sum(axis=0)).astype(self._cdtype)
        self._synth = None
        if self.max_freq is not None and self.max_freq <= _MATRIX_SYNTHESIS_MAX_FREQ:
            iy = np.rint(ky.ravel()[self._sel] * n).astype(np.intp)  # signed ky index
            ix = np.rint(kx.ravel()[self._sel] * n).astype(np.intp)
            r, cols = int(np.abs(iy).max()), int(ix.max()) + 1
            self._band = (2 * r + 1, cols)
            self._band_index = (iy + r) * cols + ix  # samples in the (2r+1, cols) band
            self._synth = synthesis_matrices(n, r, cols, wdt)

    def _slice_coords(self, mats: NDArray) -> tuple[NDArray, NDArray, NDArray | None]:
        """Block coordinates of the slice samples of a chunk of matrices.

        Returns the (3, c, S) block coordinates (z, y, x) relative to the first
        tap of the interpolation (integer part: first tap), the (c, S)
        conjugation flags (samples read at ``-k3``) and the (c, S) validity mask
        (``None`` when every sample is inside the Nyquist cube).
        """
        # k3 = E.T @ (kx, ky, 0) = kx * E[0] + ky * E[1], components (x, y, z)
        e = (mats[:, :2, :] * self._m).astype(self.dtype)  # rows 0, 1 scaled to block units
        k3 = np.einsum("cra,rs->acs", e, self._kxy)  # (3: x, y, z, c, S)
        sgn = np.copysign(np.ones((), self.dtype), k3[0])
        conj = sgn < 0
        k3 *= sgn
        valid = None
        if self.max_freq is None:
            half = 0.5 * self._m * (1 + 1e-9)
            inside = (k3[0] <= half) & (np.abs(k3[1]) <= half) & (np.abs(k3[2]) <= half)
            if not inside.all():
                valid = inside
                k3 *= inside
        k3 = k3[::-1]  # (z, y, x)
        k3 -= self._first
        return k3, conj, valid

    def _gather(self, coords: NDArray) -> NDArray:
        """Interpolate the block at (3, ...) block coordinates; returns (...) complex."""
        shape = coords.shape[1:]
        c = coords.reshape(3, -1)
        cell = np.floor(c)
        frac = c - cell
        if self._table.shape[0] >= 1 << 24:  # float32 is exact on integers below 2**24
            cell = cell.astype(np.float64)
        base = (self._strides.astype(cell.dtype) @ cell).astype(np.intp)  # first taps
        interp = interp_linear if self.interpolation == "linear" else interp_cubic
        out = interp(self._table, self._row_offsets, base, frac)
        return out.reshape(shape)

    def _values(
        self, mats: NDArray, shifts: NDArray | None, ctf: NDArray | None
    ) -> Iterator[tuple[slice, NDArray]]:
        """Yield (slice of images, (c, S) complex samples) chunk by chunk, filters applied."""
        n_img = mats.shape[0]
        n_s = self._sel.size
        chunk = max(1, _CHUNK_SAMPLES // (n_s * TAPS[self.interpolation] ** 3))
        for start in range(0, n_img, chunk):
            sl = slice(start, min(start + chunk, n_img))
            coords, conj, valid = self._slice_coords(mats[sl])
            vals = self._gather(coords)
            np.conjugate(vals, out=vals, where=conj)
            if valid is not None:
                vals *= valid
            if shifts is not None:
                vals *= np.exp(2j * np.pi * (shifts[sl] @ self._kxy)).astype(self._cdtype)
            if ctf is not None:
                vals *= ctf[sl] if ctf.shape[0] == n_img else ctf
            yield sl, vals

    def _spectra(
        self, mats: NDArray, shifts: NDArray | None, ctf: NDArray | None, centre: bool
    ) -> NDArray:
        """(n, N*(N//2+1)) spectra with shift phases, CTF and optional centring."""
        out = np.zeros((mats.shape[0], self.box * (self.box // 2 + 1)), dtype=self._cdtype)
        for sl, vals in self._values(mats, shifts, ctf):
            if centre:
                vals *= self._centre
            out[sl, self._sel] = vals
        return out

    def _synthesise(self, mats: NDArray, shifts: NDArray | None, ctf: NDArray | None) -> NDArray:
        """Band-limited images chunk by chunk: samples -> band -> two matrix products."""
        img = np.empty((mats.shape[0], self.box, self.box), dtype=self.dtype)
        e_y, m_x = self._synth
        band = None
        for sl, vals in self._values(mats, shifts, ctf):
            k = vals.shape[0]
            if band is None:  # zeros outside the disc stay zero: allocated once
                band = np.zeros((k, self._band[0] * self._band[1]), dtype=self._cdtype)
            band[:k, self._band_index] = vals
            band_irfft2(band[:k].reshape(k, *self._band), e_y, m_x, img[sl])
        return img

    def _matrices(self, angles: ArrayLike) -> NDArray:
        a = np.asarray(angles, dtype=np.float64)
        if a.ndim == 1:
            a = a[None, :]
        if a.ndim != 2 or a.shape[1] != 3 or not np.all(np.isfinite(a)):
            raise ValueError(f"angles must be finite with shape (n, 3), got {a.shape}")
        return np.atleast_3d(euler_to_matrix(a)).reshape(-1, 3, 3)

    def _filters(
        self, n_img: int, shifts: ArrayLike | None, ctf: ArrayLike | None
    ) -> tuple[NDArray | None, NDArray | None]:
        """Validate shifts to (n, 2) and sample the CTF at the slice samples (n or 1, S)."""
        n, nh = self.box, self.box // 2 + 1
        s = c = None
        if shifts is not None:
            s = np.asarray(shifts, dtype=np.float64).reshape(-1, 2)
            if s.shape[0] not in (1, n_img) or not np.all(np.isfinite(s)):
                raise ValueError(f"shifts must be finite with shape ({n_img}, 2), got {s.shape}")
            # I(r) = P(r + s)  <=>  I^(k) = P^(k) exp(+2 pi i k.s)
            s = np.broadcast_to(s, (n_img, 2)).astype(self.dtype)
        if ctf is not None:
            c = np.asarray(ctf)
            if c.shape not in ((n, nh), (n_img, n, nh), (1, n, nh)) or np.iscomplexobj(c):
                raise ValueError(
                    f"ctf must be real with shape ({n}, {nh}) or ({n_img}, {n}, {nh}), "
                    f"got {c.shape}"
                )
            c = c.reshape(-1, n * nh)[:, self._sel].astype(self.dtype)
        return s, c

    def project_fourier(
        self, angles: ArrayLike, *, shifts: ArrayLike | None = None, ctf: ArrayLike | None = None
    ) -> NDArray:
        """Spectra of the projections in numpy's ``rfft2`` layout.

        Parameters
        ----------
        angles : array_like of shape (n, 3) or (3,)
            Xmipp Euler angles ``(rot, tilt, psi)`` in degrees.
        shifts : array_like of shape (n, 2) or (2,), optional
            Xmipp shifts ``(shift_x, shift_y)`` in px: each result models an
            image ``I(r) = P(r + s)``, applied as sub-pixel Fourier phases.
        ctf : array_like of shape (N, N//2+1) or (n, N, N//2+1), optional
            Real multiplicative filter in the same layout (see
            :func:`xmipp_qc.core.ctf.ctf_image`).

        Returns
        -------
        ndarray of shape (n, N, N//2+1), complex64 or complex128
            ``rfft2(ifftshift(P))``: the origin pixel ``N // 2`` is at index 0.
            Frequencies beyond ``max_freq`` are exactly 0.
        """
        mats = self._matrices(angles)
        s, c = self._filters(mats.shape[0], shifts, ctf)
        spec = self._spectra(mats, s, c, centre=False).reshape(-1, self.box, self.box // 2 + 1)
        make_hermitian(spec)
        return spec

    def project(
        self, angles: ArrayLike, *, shifts: ArrayLike | None = None, ctf: ArrayLike | None = None
    ) -> NDArray:
        """Real-space projections (line integrals in voxel units).

        Parameters
        ----------
        angles, shifts, ctf
            As in :meth:`project_fourier`.

        Returns
        -------
        ndarray of shape (n, N, N), dtype of the projector
            Images indexed ``[y, x]`` with origin at ``N // 2``.
        """
        mats = self._matrices(angles)
        s, c = self._filters(mats.shape[0], shifts, ctf)
        if self._synth is not None:  # narrow band: matrix products beat FFTs
            return self._synthesise(mats, s, c)
        n, nh = self.box, self.box // 2 + 1
        spec = self._spectra(mats, s, c, centre=True).reshape(-1, n, nh)
        cols = nh if self.max_freq is None else min(nh, int(np.ceil(self.max_freq * n)) + 1)
        if cols == nh:
            img = sfft.irfft2(spec, s=(n, n), workers=_WORKERS, overwrite_x=True)
        else:  # columns beyond the cut-off are zero: inverse-transform y on the others only
            spec[..., :cols] = sfft.ifft(spec[..., :cols], axis=-2, workers=_WORKERS)
            img = sfft.irfft(spec, n=n, axis=-1, workers=_WORKERS, overwrite_x=True)
        return img.astype(self.dtype, copy=False)


def project(
    volume: ArrayLike,
    angles: ArrayLike,
    *,
    shifts: ArrayLike | None = None,
    ctf: ArrayLike | None = None,
    pad: int = 2,
    interpolation: str = "linear",
    max_freq: float | None = None,
) -> NDArray:
    """Project a map once (convenience wrapper of :class:`FourierProjector`).

    Parameters
    ----------
    volume : array_like of shape (N, N, N)
        Real map ``[z, y, x]``; float32 input gives float32 output, else float64.
    angles, shifts, ctf
        As in :meth:`FourierProjector.project_fourier`.
    pad, interpolation, max_freq
        As in :class:`FourierProjector`.

    Returns
    -------
    ndarray of shape (n, N, N)
        Projections, origin at ``N // 2``.
    """
    vol = np.asarray(volume)
    dtype = np.float32 if vol.dtype == np.float32 else np.float64
    proj = FourierProjector(
        vol, pad=pad, interpolation=interpolation, max_freq=max_freq, dtype=dtype
    )
    return proj.project(angles, shifts=shifts, ctf=ctf)
