"""Fourier central-slice projector and an exact real-space reference projector.

Conventions are those of :mod:`xmipp_qc.core`: volumes ``[z, y, x]``, origin at
voxel ``N // 2``, Xmipp ZYZ Euler angles with ``P(x, y) = integral of
V(E.T @ [x, y, z]) dz`` and Xmipp shifts, an image with shift ``s`` being
``I(r) = P(r + s)``. Projections are line integrals in voxel units: the
projection at angles ``(0, 0, 0)`` is ``volume.sum(axis=0)``.

Method (central-slice theorem). The volume is zero-padded (centred) to
``M = pad * N`` and Fourier transformed once; the 2D spectrum of a projection
at frequency ``k = (kx, ky)`` (cycles/px) is the 3D spectrum at ``E.T @ (kx, ky,
0)``, read at the padded-grid index ``k3 * M``. Only the Hermitian half-plane
of the image (numpy ``rfft2`` layout) is sampled and only the half-space
``k3x >= 0`` of the volume is stored (``F(-k) = conj F(k)`` for real maps).
The spectrum is periodic with period 1 cycle/px, so the sampling grid wraps.

Interpolation:

``linear``
    Trilinear interpolation of the complex spectrum (8 taps).
``cubic``
    Cubic B-spline interpolation (64 taps). The B-spline prefilter along a
    periodic axis is a convolution, i.e. a product in real space, so it is
    applied exactly and for free by dividing the padded volume by
    ``prod_axes (4 + 2 cos(2 pi x / M)) / 6`` before the FFT. Grid-aligned
    samples therefore return the exact DFT values, as for ``linear``.

Unlike Xmipp's projector (reference study §3.2(c)), the band limit is opt-in
(``max_freq``) rather than a fixed 0.25 cycles/px, and the full band keeps the
corners of the 2D spectrum that fall inside the volume's Nyquist cube.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from xmipp_qc.core.geometry import euler_to_matrix

__all__ = ["FourierProjector", "project", "project_real_space"]

_INTERPOLATIONS = {"linear": 2, "cubic": 4}  # taps per axis
_GATHER_BUDGET = 1 << 22  # gathered complex values per chunk (bounds memory)


def _bspline_weights(t: NDArray) -> tuple[NDArray, ...]:
    """Cubic B-spline weights of nodes ``floor-1 .. floor+2`` for fraction ``t``."""
    t2 = t * t
    t3 = t2 * t
    w0 = (1.0 - t) ** 3 / 6.0
    w1 = (3.0 * t3 - 6.0 * t2 + 4.0) / 6.0
    w2 = (-3.0 * t3 + 3.0 * t2 + 3.0 * t + 1.0) / 6.0
    w3 = t3 / 6.0
    return w0, w1, w2, w3


def _bspline_prefilter_factor(m: int) -> NDArray[np.float64]:
    """Real-space factor of the periodic cubic B-spline filter ``[1, 4, 1] / 6``.

    Returned for the ``ifftshift``-ed axis of length ``m`` (index 0 = origin).
    """
    x = np.arange(m)
    return (4.0 + 2.0 * np.cos(2.0 * np.pi * x / m)) / 6.0


def _hermitian_block(spec: NDArray, m: int, fz: NDArray, fy: NDArray, fx: NDArray) -> NDArray:
    """Full 3D spectrum at integer frequency indices from an ``rfftn`` half.

    Parameters
    ----------
    spec : ndarray of shape (M, M, M//2+1), complex
        ``rfftn`` of the ifftshifted padded volume.
    m : int
        Padded box M.
    fz, fy, fx : ndarray of int
        Frequency indices (any integers; the spectrum is periodic with M).

    Returns
    -------
    ndarray of shape (len(fz), len(fy), len(fx)), complex
    """
    iz, iy, ix = fz % m, fy % m, fx % m
    direct = ix <= m // 2
    out = np.empty((iz.size, iy.size, ix.size), dtype=spec.dtype)
    out[:, :, direct] = spec[np.ix_(iz, iy, ix[direct])]
    mirror = ~direct
    if mirror.any():
        out[:, :, mirror] = np.conj(spec[np.ix_((-iz) % m, (-iy) % m, (m - ix[mirror]) % m)])
    return out


def _make_hermitian(spec: NDArray) -> None:
    """Enforce ``F(-ky) = conj F(ky)`` in place on the self-conjugate rfft columns.

    Columns ``kx = 0`` and (even N) ``kx = 1/2`` of an (n, N, N//2+1) spectrum;
    afterwards the spectrum is exactly ``rfft2`` of its ``irfft2``.
    """
    n = spec.shape[-2]
    neg = (-np.arange(n)) % n
    cols = [0, spec.shape[-1] - 1] if n % 2 == 0 else [0]
    for c in cols:
        col = spec[..., c]
        spec[..., c] = 0.5 * (col + np.conj(col[..., neg]))


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
        if interpolation not in _INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {sorted(_INTERPOLATIONS)}")
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
        """FFT the padded map and keep the bordered half-space block it needs."""
        padded = np.zeros((m, m, m), dtype=self.dtype)
        o = m // 2 - n // 2
        padded[o : o + n, o : o + n, o : o + n] = vol
        padded = np.fft.ifftshift(padded)
        if self.interpolation == "cubic":
            f = _bspline_prefilter_factor(m).astype(self.dtype)
            padded /= f[:, None, None] * f[None, :, None] * f[None, None, :]
        spec = sfft.rfftn(padded, workers=-1)
        del padded
        reach = m / 2 if self.max_freq is None else self.max_freq * m
        border = 1 if self.interpolation == "linear" else 2
        hi = int(np.ceil(reach)) + border + 1
        lo_yz = -hi
        lo_x = -border
        self._lo = np.array([lo_yz, lo_yz, lo_x], dtype=np.float64)
        fyz = np.arange(lo_yz, hi + 1)
        fx = np.arange(lo_x, hi + 1)
        block = _hermitian_block(spec, m, fyz, fyz, fx).astype(self._cdtype)
        self._shape = np.array(block.shape)
        self._flat = block.ravel()
        self._strides = np.array([block.shape[1] * block.shape[2], block.shape[2], 1])

    def _build_samples(self, n: int) -> None:
        """Frequencies (cycles/px) of the rfft2 half-plane that are projected."""
        fy = np.fft.fftfreq(n)
        fx = np.fft.rfftfreq(n)
        ky, kx = np.meshgrid(fy, fx, indexing="ij")
        keep = np.ones(ky.shape, dtype=bool)
        if self.max_freq is not None:
            keep = kx**2 + ky**2 <= self.max_freq**2 + 1e-12
        self._sel = np.flatnonzero(keep)
        self._kx = kx.ravel()[self._sel]
        self._ky = ky.ravel()[self._sel]
        self._fy, self._fx = fy, fx

    def _slice_coords(self, mats: NDArray) -> tuple[NDArray, NDArray, NDArray | None]:
        """Block coordinates of the slice samples for a chunk of matrices.

        Returns the (c, S, 3) block coordinates (z, y, x order), the (c, S)
        conjugation flags (samples read at ``-k3``) and the (c, S) validity mask
        (``None`` when every sample is inside the Nyquist cube).
        """
        # k3 = E.T @ (kx, ky, 0) = kx * E[0] + ky * E[1], components (x, y, z)
        kx, ky = self._kx[None, :, None], self._ky[None, :, None]
        k3 = kx * mats[:, None, 0, :] + ky * mats[:, None, 1, :]
        conj = k3[..., 0] < 0
        k3[conj] *= -1.0
        valid = None
        if self.max_freq is None:
            inside = np.all(np.abs(k3) <= 0.5 + 1e-9, axis=-1)
            if not inside.all():
                valid = inside
                k3[~inside] = 0.0
        coords = k3[..., ::-1] * self._m - self._lo  # (z, y, x) block coordinates
        return coords, conj, valid

    def _gather(self, coords: NDArray) -> NDArray:
        """Interpolate the block at (..., 3) coordinates; returns (...) complex."""
        base_f = np.floor(coords)
        frac = (coords - base_f).astype(self.dtype)
        base = base_f.astype(np.intp) @ self._strides
        flat = self._flat
        sz, sy, sx = self._strides
        if self.interpolation == "linear":
            tz, ty, tx = frac[..., 0], frac[..., 1], frac[..., 2]
            out = None
            for dz, wz in ((0, 1 - tz), (sz, tz)):
                for dy, wy in ((0, 1 - ty), (sy, ty)):
                    b = base + (dz + dy)
                    row = flat[b] * (1 - tx) + flat[b + sx] * tx
                    term = row * (wz * wy)
                    out = term if out is None else out + term
            return out
        wz, wy, wx = (_bspline_weights(frac[..., a]) for a in range(3))
        base = base - (sz + sy + sx)
        out = None
        for iz in range(4):
            for iy in range(4):
                b = base + (iz * sz + iy * sy)
                row = (
                    flat[b] * wx[0]
                    + flat[b + 1] * wx[1]
                    + flat[b + 2] * wx[2]
                    + flat[b + 3] * wx[3]
                )
                term = row * (wz[iz] * wy[iy])
                out = term if out is None else out + term
        return out

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
        """
        mats = self._matrices(angles)
        n_img, n, nh = mats.shape[0], self.box, self.box // 2 + 1
        out = np.zeros((n_img, n * nh), dtype=self._cdtype)
        taps = _INTERPOLATIONS[self.interpolation] ** 3
        chunk = max(1, _GATHER_BUDGET // max(1, self._sel.size * taps))
        for start in range(0, n_img, chunk):
            sl = slice(start, min(start + chunk, n_img))
            coords, conj, valid = self._slice_coords(mats[sl])
            vals = self._gather(coords)
            np.conjugate(vals, out=vals, where=conj)
            if valid is not None:
                vals[~valid] = 0
            out[sl, self._sel] = vals
        out = out.reshape(n_img, n, nh)
        self._apply_filters(out, shifts, ctf)
        _make_hermitian(out)
        return out

    def _matrices(self, angles: ArrayLike) -> NDArray:
        a = np.asarray(angles, dtype=np.float64)
        if a.ndim == 1:
            a = a[None, :]
        if a.ndim != 2 or a.shape[1] != 3 or not np.all(np.isfinite(a)):
            raise ValueError(f"angles must be finite with shape (n, 3), got {a.shape}")
        return np.atleast_3d(euler_to_matrix(a)).reshape(-1, 3, 3)

    def _apply_filters(
        self, spec: NDArray, shifts: ArrayLike | None, ctf: ArrayLike | None
    ) -> None:
        """Multiply spectra (n, N, N//2+1) in place by shift phases and a CTF."""
        n_img, n, nh = spec.shape
        if shifts is not None:
            s = np.asarray(shifts, dtype=np.float64).reshape(-1, 2)
            if s.shape[0] not in (1, n_img) or not np.all(np.isfinite(s)):
                raise ValueError(f"shifts must be finite with shape ({n_img}, 2), got {s.shape}")
            # I(r) = P(r + s)  <=>  I^(k) = P^(k) exp(+2 pi i k.s)
            phase_y = np.exp(2j * np.pi * s[:, 1, None] * self._fy[None, :])
            phase_x = np.exp(2j * np.pi * s[:, 0, None] * self._fx[None, :])
            spec *= (phase_y[:, :, None] * phase_x[:, None, :]).astype(self._cdtype)
        if ctf is not None:
            c = np.asarray(ctf)
            if c.shape not in ((n, nh), (n_img, n, nh), (1, n, nh)) or np.iscomplexobj(c):
                raise ValueError(
                    f"ctf must be real with shape ({n}, {nh}) or ({n_img}, {n}, {nh}), "
                    f"got {c.shape}"
                )
            spec *= c.astype(self.dtype, copy=False)

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
        spec = self.project_fourier(angles, shifts=shifts, ctf=ctf)
        n = self.box
        img = sfft.irfft2(spec, s=(n, n), workers=-1)
        return np.fft.fftshift(img, axes=(-2, -1)).astype(self.dtype, copy=False)


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


def project_real_space(volume: ArrayLike, angles: ArrayLike, *, order: int = 1) -> NDArray:
    """Slow reference projector: sums of interpolated samples along each ray.

    Samples ``V(E.T @ [x, y, z])`` at unit steps of z covering the box diagonal
    (zero outside the box) and sums them; exact for ``E = I``.

    Parameters
    ----------
    volume : array_like of shape (N, N, N)
        Real map ``[z, y, x]``, origin at ``N // 2``.
    angles : array_like of shape (n, 3) or (3,)
        Xmipp Euler angles in degrees.
    order : int
        Spline order of :func:`scipy.ndimage.map_coordinates` (0 to 5).

    Returns
    -------
    ndarray of shape (n, N, N), float64
        Line integrals in voxel units, origin at ``N // 2``.
    """
    vol = np.asarray(volume, dtype=np.float64)
    if vol.ndim != 3 or len(set(vol.shape)) != 1:
        raise ValueError(f"volume must be a cubic 3D array, got shape {vol.shape}")
    if order not in range(6):
        raise ValueError(f"order must be 0..5, got {order}")
    n = vol.shape[0]
    mats = np.atleast_3d(euler_to_matrix(np.atleast_2d(angles))).reshape(-1, 3, 3)
    coeffs = ndimage.spline_filter(vol, order, mode="grid-constant") if order > 1 else vol
    g = np.arange(n, dtype=np.float64) - n // 2
    half = int(np.ceil(n * np.sqrt(3) / 2)) + 1
    zs = np.arange(-half, half + 1, dtype=np.float64)
    yy, xx = np.meshgrid(g, g, indexing="ij")
    out = np.zeros((mats.shape[0], n, n))
    for i, e in enumerate(mats):
        for z in zs:
            pts = e.T @ np.stack([xx.ravel(), yy.ravel(), np.full(xx.size, z)])  # (x, y, z)
            zyx = pts[::-1] + n // 2
            out[i] += ndimage.map_coordinates(
                coeffs, zyx, order=order, mode="grid-constant", prefilter=False
            ).reshape(n, n)
    return out
