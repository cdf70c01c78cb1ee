"""Local refinement of the orientation and shift of images against a map.

Conventions of :mod:`xmipp_qc.core`: images ``(n, N, N)`` indexed ``[y, x]``
with the origin at ``N // 2``; Xmipp ZYZ Euler angles ``(rot, tilt, psi)`` in
degrees; Xmipp shifts ``(shift_x, shift_y)`` in px, an image with shift ``s``
being modelled as ``I(r) = P(r + s)`` (the reprojection is moved, never the
noisy image).

Method (batched over all images of a chunk, every step is one projector call).
The comparison is done in Fourier space on the band ``0 < |k| <= search_freq``
cycles/px (the DC term absorbs the gray offset ``b``), with the image's CTF on
the reprojection when given. The cost is the normalised correlation of image
and shifted reprojection (invariant to the gray model ``a P + b``).

* Shift: for the current angles it is solved exactly per image: the
  cross-correlation over integer shifts inside the allowed disc (one inverse
  FFT), then Newton steps on the analytic Fourier correlation for sub-pixel
  accuracy.
* Angles: Gauss-Newton on a rotation vector ``w`` in the image frame, the new
  orientation being ``Rotation.from_rotvec(w) @ E`` (no gimbal lock at tilt 0).
  The three derivatives are forward differences (one projector call for all
  three). The
  fit ``F_I ~ a F_P + sum_j c_j D_j`` is linear in ``(a, c)``, ``w = c / a``.
  A step is kept only if the correlation improves (else the trust radius of
  that image is halved), and the total change ``|w_total|`` (the geodesic
  angle to the input orientation) is bounded by ``max_angle_deg``.

Evidence to move (:mod:`xmipp_qc.core.move_evidence`, stated there in full):
the refined orientation replaces the input one only when (1) its gain beats
the noise: with the shift and the gray scale fitted at both orientations and
each Fourier ring weighted by 1 / the mean power of the two fits' residuals
there, ``F = [(c1^2 - c0^2) / 3] / [(1 - c1^2) / (D - 6)]`` (``c0``, ``c1``
the weighted band correlations at the input and refined orientations, ``D``
the number of Fourier samples in the band) exceeds the ``1 - move_alpha``
quantile of ``F(3, D - 6)`` (default 0.05: 5 % of the images whose input
orientation is right move by chance), and (2) neither the lower nor the
middle third of the band (in ``|k|``) is fitted worse by more than 9 noise
units (a real orientation error shows at every frequency; a model
difference, e.g. a real-space projector's aliasing near Nyquist, does not).
Otherwise the image keeps its input angles, with the shift solved at them
(:attr:`RefineResult.move_kept` False): a gain that 3 fitted parameters
would take out of noise -- or out of the differences between the map and
the image -- is not evidence.

Flat correlations: the fit also gives the covariance of ``w`` (from the
band residual's power, ``cov(c) / a^2``). Where the largest standard error
exceeds ``max_se_deg`` (default: the bound ``max_angle_deg`` on the change;
pure noise, a featureless or too noisy image, a
rotation the projection does not change), the data do not pin the angles and
the image keeps its input angles and shift, flagged ``pinned = False``,
rather than following the noise (or the projector's own errors).

Bounds: Xmipp's ``continuous_assign2`` bounds each Euler increment by 5° and
the shift change by ``floor(0.05 N)`` px (compare reprojections); here the
geodesic rotation angle and the shift-change radius are bounded (defaults 5°
and ``0.05 N`` px).
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft
from numpy.typing import ArrayLike, NDArray
from scipy.spatial.transform import Rotation

from xmipp_qc.core.geometry import euler_to_matrix, matrix_to_euler
from xmipp_qc.core.move_evidence import (
    PART_LOSS_LIMIT,
    band_parts,
    move_statistic,
    move_threshold,
    shell_groups,
    whitened_gains,
)
from xmipp_qc.core.projection import FourierProjector
from xmipp_qc.core.refine_result import RefineResult
from xmipp_qc.core.search_band import default_band
from xmipp_qc.core.similarity import fit_gray
from xmipp_qc.core.transform import circular_mask

__all__ = ["LocalRefiner", "RefineResult", "refine_local"]


class LocalRefiner:
    """Local refinement of images against one map (build once, refine many chunks).

    Parameters
    ----------
    volume : array_like, shape (N, N, N)
        The map, ``[z, y, x]``, origin ``N // 2``.
    max_angle_deg : float
        Bound on the geodesic orientation change (degrees).
    max_shift_px : float, optional
        Bound on the shift change (px); default ``0.05 N`` (Xmipp's protocol).
    search_freq : float, optional
        Band limit of the search in cycles/px, in (0, 0.5]; default
        :func:`~xmipp_qc.core.search_band.default_band` (0.25 from N = 64, the
        full band up to Nyquist for N <= 32: a small box's angular information
        is mostly beyond 0.25).
    n_iter : int
        Maximum Gauss-Newton iterations (each: two band-limited projector
        calls on the images still moving by more than 0.01 deg).
    step_deg : float
        Finite-difference step of the out-of-plane derivatives (degrees).
    chunk : int
        Images refined at once (bounds memory).
    pad, interpolation : int, str
        Of the :class:`~xmipp_qc.core.projection.FourierProjector` of the
        final, full-band reprojections.
    search_pad, search_interpolation : int, str
        Of the band-limited projector of the search. Pad 4 has a quarter of the
        interpolation error of pad 2 at the same cost per projection: the
        search must not follow the projector's own errors (noiseless images
        of an independent projector moved by up to 1 deg with pad 2).
    max_se_deg : float, optional
        An image pins its orientation when the largest standard error of its
        angles (at the refined orientation, from the Gauss-Newton fit and its
        residual) is at most this (degrees; default ``max_angle_deg``: the
        correlation is not flat over the allowed change); otherwise it keeps
        its input angles and shift (:attr:`RefineResult.pinned` is False).
    move_alpha : float
        False-move rate of the evidence test (module docstring), in [0, 1]:
        the share of images with right input angles that still move (default
        0.05); 1 turns the test off (every move that improves the
        correlation is kept, as before the test), 0 keeps every input
        orientation.
    """

    def __init__(self, volume: ArrayLike, *, max_angle_deg: float = 5.0,
                 max_shift_px: float | None = None, search_freq: float | None = None,
                 n_iter: int = 4, step_deg: float = 0.3, chunk: int = 256, pad: int = 2,
                 interpolation: str = "linear", search_interpolation: str = "linear",
                 search_pad: int = 4, max_se_deg: float | None = None,
                 move_alpha: float = 0.05) -> None:
        vol = np.asarray(volume, dtype=np.float32)
        if search_freq is None:
            search_freq = default_band(vol.shape[-1])
        if not 0 < search_freq <= 0.5:
            raise ValueError(f"search_freq must be in (0, 0.5] cycles/px, got {search_freq}")
        if max_angle_deg < 0 or (max_shift_px is not None and max_shift_px < 0):
            raise ValueError("max_angle_deg and max_shift_px must be >= 0")
        if n_iter < 0 or step_deg <= 0 or chunk < 1:
            raise ValueError("n_iter must be >= 0, step_deg > 0 and chunk >= 1")
        self._full = FourierProjector(vol, pad=pad, interpolation=interpolation)
        self._band = FourierProjector(vol, pad=search_pad, interpolation=search_interpolation,
                                      max_freq=search_freq)
        n = self.box = self._full.box
        self.max_angle = np.radians(max_angle_deg)
        self.max_se = self.max_angle if max_se_deg is None else np.radians(max_se_deg)
        self.max_shift = 0.05 * n if max_shift_px is None else float(max_shift_px)
        self.n_iter, self.step, self.chunk = int(n_iter), np.radians(step_deg), int(chunk)
        self._tol = np.radians(0.01)  # an image stops when its step or trust is below it
        ky = np.fft.fftfreq(n)[:, None] * np.ones((1, n // 2 + 1))
        kx = np.fft.rfftfreq(n)[None, :] * np.ones((n, 1))
        k2 = kx * kx + ky * ky
        self._sel = np.flatnonzero((k2 > 0) & (k2 <= search_freq**2 + 1e-12))
        self._kx = kx.ravel()[self._sel].astype(np.float32)
        self._ky = ky.ravel()[self._sel].astype(np.float32)
        w = np.full(kx.shape, 2.0)
        w[:, 0] = 1.0
        if n % 2 == 0:
            w[:, -1] = 1.0
        self._w = w.ravel()[self._sel].astype(np.float32)
        self._dof = float(self._w.sum())  # real degrees of freedom of the band
        self.move_alpha = float(move_alpha)
        self.move_threshold = move_threshold(move_alpha, self._dof)
        rad = np.hypot(self._kx, self._ky) * n  # radius in Fourier px
        self._rings, self._parts = shell_groups(rad, self._w), band_parts(rad, search_freq * n)

    # --- band-limited spectra -------------------------------------------------
    def _spectra(self, mats: NDArray, ctf: NDArray | None) -> NDArray:
        """Band samples (n, S) of the (CTF-filtered) reprojections at matrices."""
        spec = self._band.project_fourier(matrix_to_euler(mats), ctf=ctf)
        return spec.reshape(len(mats), -1)[:, self._sel]

    def _image_spectra(self, images: NDArray) -> NDArray:
        spec = sfft.rfft2(np.fft.ifftshift(images.astype(np.float32), axes=(-2, -1)))
        return spec.reshape(len(images), -1)[:, self._sel]

    def _dot(self, a: NDArray, b: NDArray) -> NDArray:
        """Real weighted inner product over the band, ``Re sum w conj(a) b``."""
        return np.einsum("...s,...s->...", self._w * a.conj(), b).real.astype(np.float64)

    def _phase(self, shifts: NDArray) -> NDArray:
        """``exp(2 pi i k.s)`` on the band, shape (n, S)."""
        t = (2 * np.pi) * (self._kx * shifts[:, :1] + self._ky * shifts[:, 1:])
        t = t.astype(np.float32)
        return np.cos(t) + 1j * np.sin(t)

    # --- shift ------------------------------------------------------------------
    def _best_shift(self, fi: NDArray, fp: NDArray, s0: NDArray,
                    start: NDArray | None = None) -> NDArray:
        """Shift maximising the correlation within ``max_shift`` of ``s0``.

        Without ``start`` the integer shifts of the disc are searched first (one
        inverse FFT); with it, Newton steps start from ``start``.
        """
        x = fi * fp.conj() * self._phase(s0).conj()
        delta = self._integer_peak(x) if start is None else start - s0
        k = np.stack([self._kx, self._ky])  # (2, S)
        kk = np.stack([self._kx**2, self._kx * self._ky, self._ky**2]) * (-4 * np.pi**2)
        xw = x * self._w
        for _ in range(2 if start is None else 1):
            e = xw * np.exp(-2j * np.pi * (delta @ k))
            g = (e @ k.T * (-2j * np.pi)).real
            hh = (e @ kk.T).real
            h = np.stack([hh[:, :2], hh[:, 1:]], axis=1)
            ok = (np.linalg.det(h) > 0) & (h[:, 0, 0] < 0)
            step = np.zeros_like(delta)
            step[ok] = -np.linalg.solve(h[ok], g[ok][..., None])[..., 0]
            delta += np.clip(step, -1.0, 1.0)
        norm = np.hypot(delta[:, 0], delta[:, 1])
        over = norm > self.max_shift
        delta[over] *= (self.max_shift / norm[over])[:, None]
        return s0 + delta

    def _integer_peak(self, x: NDArray) -> NDArray:
        """Integer shift change (n, 2) of the correlation peak inside the disc."""
        n, nb = self.box, len(x)
        full = np.zeros((nb, n * (n // 2 + 1)), dtype=np.complex128)
        full[:, self._sel] = x
        cc = np.fft.irfft2(full.reshape(nb, n, n // 2 + 1), s=(n, n))
        r = int(np.floor(self.max_shift))
        d = np.arange(-r, r + 1)
        dy, dx = np.meshgrid(d, d, indexing="ij")
        inside = dx**2 + dy**2 <= self.max_shift**2 + 1e-9
        dx, dy = dx[inside], dy[inside]
        vals = cc[:, (-dy) % n, (-dx) % n]
        best = np.argmax(vals, axis=1)
        return np.stack([dx[best], dy[best]], axis=1).astype(np.float64)

    def _gray(self, fi: NDArray, fp: NDArray, shifts: NDArray) -> tuple[NDArray, NDArray]:
        """Band-limited least-squares scale ``a`` of ``F_I ~ a F_P`` and its standard error."""
        g = fp * self._phase(shifts)
        pp = np.maximum(self._dot(g, g), 1e-300)
        a = self._dot(g, fi) / pp
        res = np.maximum(self._dot(fi, fi) - a * a * pp, 0.0)
        return a, np.sqrt(res / (pp * self._w.sum()))

    def _corr(self, fi: NDArray, fp: NDArray, shifts: NDArray) -> NDArray:
        """Normalised band correlation of images and shifted reprojections."""
        num = self._dot(fp * self._phase(shifts), fi)
        den = np.sqrt(self._dot(fp, fp) * self._dot(fi, fi))
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)

    # --- angles -----------------------------------------------------------------
    def _gn_step(self, fi: NDArray, fp: NDArray, mats: NDArray, shifts: NDArray,
                 ctf: NDArray | None) -> tuple[NDArray, NDArray]:
        """Gauss-Newton rotation vector (n, 3) and its covariance (n, 3, 3), radians.

        The fit ``F_I ~ a F_P + sum_j c_j D_j`` is least squares in the band;
        its residual gives the noise level, hence ``cov(c)``, and ``w = c / a``
        has ``cov(w) = cov(c) / a^2`` (infinite when ``a <= 0``).
        """
        g = fi * self._phase(shifts).conj()
        n = len(mats)
        rots = Rotation.from_rotvec(np.eye(3) * self.step).as_matrix()  # (3, 3, 3)
        moved = np.einsum("aij,njk->anik", rots, mats).reshape(-1, 3, 3)
        ctf3 = np.concatenate([ctf] * 3) if ctf is not None and ctf.ndim == 3 else ctf
        d = (self._spectra(moved, ctf3).reshape(3, n, -1) - fp) / self.step
        b = np.concatenate([fp[:, None], np.transpose(d, (1, 0, 2))], axis=1)  # (n, 4, S)
        bw = (b * self._w).conj()
        a_mat = np.matmul(bw, np.transpose(b, (0, 2, 1))).real.astype(np.float64)
        rhs = np.matmul(bw, g[..., None])[..., 0].real.astype(np.float64)
        a_mat += 1e-9 * np.trace(a_mat, axis1=1, axis2=2)[:, None, None] * np.eye(4)
        sol = np.linalg.solve(a_mat, rhs[..., None])[..., 0]
        gain = sol[:, 0]
        w = np.where(gain[:, None] > 0, sol[:, 1:] / np.where(gain > 0, gain, 1.0)[:, None], 0.0)
        res = g - np.einsum("nj,njs->ns", sol.astype(np.float32), b)
        tau2 = self._dot(res, res) / max(float(self._w.sum()) - 4.0, 1.0)
        cov = np.linalg.inv(a_mat)[:, 1:, 1:] * tau2[:, None, None]
        scale = np.where(gain > 0, 1.0 / np.where(gain > 0, gain * gain, 1.0), np.inf)
        with np.errstate(invalid="ignore"):  # 0 * inf: unbounded too (NaN -> inf below)
            cov = cov * scale[:, None, None]  # no positive gain: unbounded
        return w, np.nan_to_num(cov, nan=np.inf)

    @staticmethod
    def _largest_se(cov: NDArray) -> NDArray:
        """Largest standard error (n,) in radians of covariances (n, 3, 3); inf if unbounded."""
        ok = np.isfinite(cov).all(axis=(1, 2)) & (np.abs(cov).max(axis=(1, 2)) < 1e6)
        safe = np.where(ok[:, None, None], cov, np.eye(3))
        val = np.linalg.eigvalsh(0.5 * (safe + np.transpose(safe, (0, 2, 1))))
        return np.where(ok, np.sqrt(np.maximum(val[:, -1], 0.0)), np.inf)

    def _clamp(self, mats: NDArray, m0: NDArray) -> NDArray:
        """Project orientations onto the ball of radius ``max_angle`` about ``m0``."""
        rv = Rotation.from_matrix(mats @ np.transpose(m0, (0, 2, 1))).as_rotvec()
        norm = np.linalg.norm(rv, axis=1)
        over = norm > self.max_angle
        rv[over] *= (self.max_angle / norm[over])[:, None]
        return Rotation.from_rotvec(rv).as_matrix() @ m0

    def _refine_chunk(self, fi: NDArray, angles: NDArray, shifts: NDArray,
                      ctf: NDArray | None) -> tuple[NDArray, NDArray, NDArray]:
        """Refined matrices, shifts and (n, 9) fits.

        Columns: corr initial/final, gray a0 and its se, angle se (deg), the
        move's F statistic, whether the move was kept (1/0), and the
        correlation and angular change (deg) of the best fit before the
        evidence test.
        """
        m0 = np.atleast_3d(euler_to_matrix(angles)).reshape(-1, 3, 3)
        fp = self._spectra(m0, ctf)
        corr0 = self._corr(fi, fp, shifts)
        a0, se0 = self._gray(fi, fp, shifts)
        best_s = self._best_shift(fi, fp, shifts)
        best_c, best_m, best_fp = self._corr(fi, fp, best_s), m0.copy(), fp.copy()
        trust = np.full(len(fi), max(self.max_angle, self.step))
        active = np.arange(len(fi)) if self.max_angle > 0 else np.arange(0)
        se, s_start = np.full(len(fi), np.nan), best_s.copy()
        for _ in range(self.n_iter):
            if active.size == 0:
                break
            act, c_act = active, (ctf[active] if ctf is not None and ctf.ndim == 3 else ctf)
            w, cov = self._gn_step(fi[act], best_fp[act], best_m[act], best_s[act], c_act)
            se[act] = self._largest_se(cov)  # at the current best orientation
            norm = np.linalg.norm(w, axis=1)
            w *= np.minimum(1.0, trust[act] / np.maximum(norm, 1e-12))[:, None]
            prop_m = self._clamp(Rotation.from_rotvec(w).as_matrix() @ best_m[act], m0[act])
            prop_fp = self._spectra(prop_m, c_act)
            prop_s = self._best_shift(fi[act], prop_fp, shifts[act], start=best_s[act])
            prop_c = self._corr(fi[act], prop_fp, prop_s)
            ok = prop_c > best_c[act]
            good = act[ok]
            best_m[good], best_fp[good], best_s[good], best_c[good] = (
                prop_m[ok], prop_fp[ok], prop_s[ok], prop_c[ok])
            trust[act] = np.where(ok, np.minimum(2.0 * trust[act], self.max_angle),
                                  0.5 * trust[act])
            done = (ok & (np.minimum(norm, trust[act]) < self._tol)) | (trust[act] < self._tol)
            active = act[~done]
        c_start = self._corr(fi, fp, s_start)
        cw0, cw1, part_gain = whitened_gains(fi, fp * self._phase(s_start),
                                             best_fp * self._phase(best_s), self._w,
                                             self._rings, self._parts)
        stat = move_statistic(cw0, cw1, self._dof)
        stay = se > self.max_se  # the data do not pin the orientation: keep the input
        best_m[stay], best_s[stay], best_c[stay] = m0[stay], s_start[stay], c_start[stay]
        fit_c = best_c.copy()  # the best fit, before the evidence test
        fit_move = Rotation.from_matrix(best_m @ np.transpose(m0, (0, 2, 1))).magnitude()
        if self.move_alpha < 1.0:  # ... nor where the gain is noise or a model difference
            stay |= ~(stat > self.move_threshold)
            stay |= part_gain[:, :-1].min(axis=1) < -PART_LOSS_LIMIT
        best_m[stay], best_s[stay], best_c[stay] = m0[stay], s_start[stay], c_start[stay]
        fits = np.stack([corr0, best_c, a0, se0, np.degrees(se), stat, ~stay, fit_c,
                         np.degrees(fit_move)], axis=1)
        return best_m, best_s, fits

    def refine(self, images: ArrayLike, angles: ArrayLike, shifts: ArrayLike | None = None, *,
               ctf: ArrayLike | None = None, gray: bool = True,
               mask_radius: float | None = None) -> RefineResult:
        """Refine the angles and shifts of images, starting from the given ones.

        Parameters
        ----------
        images : array_like, shape (n, N, N)
            Experimental images (not aligned).
        angles : array_like, shape (n, 3)
            Starting Xmipp Euler angles (degrees).
        shifts : array_like, shape (n, 2), optional
            Starting Xmipp shifts (px); default zeros.
        ctf : array_like, shape (n, N, N//2+1) or (N, N//2+1), optional
            CTF of each image in ``rfft2`` layout, applied to the reprojection.
        gray : bool
            Fit ``a P + b`` in the mask (else ``a = 1, b = 0``).
        mask_radius : float, optional
            Radius (px) of the gray-fit mask; default ``N // 2``.

        Returns
        -------
        RefineResult
        """
        x = np.asarray(images, dtype=np.float32)
        n, box = len(x), self.box
        if x.ndim != 3 or x.shape[1:] != (box, box):
            raise ValueError(f"images must be (n, {box}, {box}), got {x.shape}")
        ang = np.asarray(angles, dtype=np.float64).reshape(-1, 3)
        sh = np.zeros((n, 2)) if shifts is None else np.asarray(shifts, np.float64).reshape(-1, 2)
        if len(ang) != n or len(sh) != n:
            raise ValueError(f"angles {ang.shape} and shifts {sh.shape} must have {n} rows")
        if not (np.isfinite(ang).all() and np.isfinite(sh).all() and np.isfinite(x).all()):
            raise ValueError("images, angles and shifts must be finite")
        c = None if ctf is None else np.asarray(ctf, dtype=np.float32)
        per_image = c is not None and c.ndim == 3
        if per_image and len(c) != n:
            raise ValueError(f"ctf has {len(c)} images, expected {n}")
        mats, out_s = np.empty((n, 3, 3)), np.empty((n, 2))
        fits = np.empty((n, 9))
        for s in range(0, n, self.chunk):
            sl = slice(s, min(n, s + self.chunk))
            cc = c[sl] if per_image else c
            res = self._refine_chunk(self._image_spectra(x[sl]), ang[sl], sh[sl], cc)
            mats[sl], out_s[sl], fits[sl] = res
        return self._finish(x, ang, sh, mats, out_s, fits, c, gray, mask_radius)

    def _finish(self, x: NDArray, ang: NDArray, sh: NDArray, mats: NDArray, out_s: NDArray,
                fits: NDArray, ctf: NDArray | None, gray: bool,
                mask_radius: float | None) -> RefineResult:
        """Full-band model, gray fit, residual and the parameter changes."""
        new_ang = matrix_to_euler(mats).reshape(-1, 3)
        proj = self._full.project(new_ang, shifts=out_s, ctf=ctf)
        if gray:
            a, b, _ = fit_gray(x, proj, circular_mask(self.box, mask_radius, dtype=bool))
            a, b = np.nan_to_num(a, nan=0.0), np.nan_to_num(b, nan=0.0)
        else:
            a, b = np.ones(len(x)), np.zeros(len(x))
        resid = x - (a[:, None, None] * proj + b[:, None, None]).astype(np.float32)
        m0 = np.atleast_3d(euler_to_matrix(ang)).reshape(-1, 3, 3)
        rel = Rotation.from_matrix(mats @ np.transpose(m0, (0, 2, 1))).magnitude()
        return RefineResult(angles=new_ang, shifts=out_s, gray_a=a, gray_b=b, projections=proj,
                            residuals=resid, corr_initial=fits[:, 0], corr_final=fits[:, 1],
                            gray_initial=fits[:, 2], gray_initial_se=fits[:, 3],
                            angle_change_deg=np.degrees(rel),
                            shift_change_px=np.hypot(*(out_s - sh).T),
                            angle_se_deg=fits[:, 4],
                            pinned=~(fits[:, 4] > np.degrees(self.max_se)),
                            move_statistic=fits[:, 5], move_kept=fits[:, 6] > 0.5,
                            corr_fit=fits[:, 7], angle_fit_change_deg=fits[:, 8])


def refine_local(volume: ArrayLike, images: ArrayLike, angles: ArrayLike,
                 shifts: ArrayLike | None = None, *, ctf: ArrayLike | None = None,
                 gray: bool = True, **options: float) -> RefineResult:
    """Refine images against a map once (convenience wrapper of :class:`LocalRefiner`).

    Parameters
    ----------
    volume : array_like, shape (N, N, N)
        The map.
    images, angles, shifts, ctf, gray
        As in :meth:`LocalRefiner.refine`.
    **options
        Keyword arguments of :class:`LocalRefiner` (``max_angle_deg``,
        ``max_shift_px``, ``search_freq``, ``n_iter``, ...).

    Returns
    -------
    RefineResult
    """
    return LocalRefiner(volume, **options).refine(images, angles, shifts, ctf=ctf, gray=gray)
