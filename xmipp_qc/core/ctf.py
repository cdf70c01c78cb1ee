"""Contrast transfer function images (RELION/CTFFIND sign and parameters).

Parameters are those Scipion's ``CTFModel`` stores: ``defocusU``/``defocusV`` in
Å (positive = underfocus), ``defocusAngle`` in degrees, and the acquisition's
voltage (kV), spherical aberration (mm) and amplitude contrast (fraction).
The CTF is

``CTF(k) = sin(pi lambda df(theta) k^2 - pi/2 Cs lambda^3 k^4 + asin(Q0) + phase)``

with ``df(theta) = (U + V)/2 + (U - V)/2 cos(2 (theta - angle))``, where ``theta``
is the azimuth of the frequency ``(kx, ky)`` measured from the +x axis (array
columns) towards +y (increasing row index of a ``[y, x]`` image), i.e.
``theta = atan2(ky, kx)`` in numpy's FFT layout. This is RELION's
``CTF::getCTF`` (``-sin`` of its argument with its negated defocus), pinned by
``test_relion_conventions.py`` against RELION's projections of a point mass:
the CTF is positive at low frequency for underfocus with ``Q0 > 0`` (the
particle is dark on a bright background after multiplying projections by it),
and the astigmatism angle enters with the sign above (``+angle``).

Images are in numpy's unshifted FFT layout (DC at index 0): ``(N, N//2+1)``
matching ``rfft2`` when ``rfft=True``, else ``(N, N)`` matching ``fft2``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["apply_ctf", "ctf_image", "ctf_phases", "electron_wavelength_a"]


def electron_wavelength_a(voltage_kv: float) -> float:
    """Relativistic electron wavelength.

    Parameters
    ----------
    voltage_kv : float
        Acceleration voltage in kV (> 0).

    Returns
    -------
    float
        Wavelength in Å, ``12.2643247 / sqrt(V (1 + 0.978466e-6 V))`` with V in
        volts (0.0197 Å at 300 kV).
    """
    if not np.isfinite(voltage_kv) or voltage_kv <= 0:
        raise ValueError(f"voltage_kv must be positive, got {voltage_kv}")
    v = voltage_kv * 1e3
    return float(12.2643247 / np.sqrt(v * (1.0 + 0.978466e-6 * v)))


def _check_scalars(box: int, pixel_size_a: float, cs_mm: float, q0: float) -> None:
    if int(box) != box or box < 2:
        raise ValueError(f"box must be an integer >= 2, got {box}")
    if not np.isfinite(pixel_size_a) or pixel_size_a <= 0:
        raise ValueError(f"pixel_size_a must be positive, got {pixel_size_a}")
    if not 0.0 <= q0 < 1.0:
        raise ValueError(f"amplitude_contrast must be in [0, 1), got {q0}")
    if not np.isfinite(cs_mm) or cs_mm < 0:
        raise ValueError(f"cs_mm must be >= 0, got {cs_mm}")


def _per_image(name: str, value: ArrayLike) -> NDArray[np.float64]:
    a = np.asarray(value, dtype=np.float64)
    if a.ndim > 1 or not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be a finite scalar or 1D array, got shape {a.shape}")
    return a


def ctf_image(
    box: int,
    pixel_size_a: float,
    defocus_u_a: ArrayLike,
    defocus_v_a: ArrayLike,
    defocus_angle_deg: ArrayLike,
    *,
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.1,
    phase_shift_deg: ArrayLike = 0.0,
    rfft: bool = True,
) -> NDArray[np.float64]:
    """CTF sampled on the DFT grid of an ``N x N`` image (module docstring).

    Parameters
    ----------
    box : int
        Image size N in px (odd or even, >= 2).
    pixel_size_a : float
        Pixel size in Å/px.
    defocus_u_a, defocus_v_a : float or array_like of shape (n,)
        Defocus along the major and minor axes in Å, positive underfocus.
    defocus_angle_deg : float or array_like of shape (n,)
        Azimuth of the U axis in degrees from +x towards +y.
    voltage_kv : float
        Acceleration voltage in kV.
    cs_mm : float
        Spherical aberration in mm (>= 0).
    amplitude_contrast : float
        Amplitude contrast fraction Q0 in [0, 1).
    phase_shift_deg : float or array_like of shape (n,)
        Additional phase shift (phase plate) in degrees.
    rfft : bool
        Return the ``rfft2`` half-plane instead of the full ``fft2`` grid.

    Returns
    -------
    ndarray of shape (N, N//2+1) or (N, N), or (n, ...) if any per-image
    parameter is an array; float64
        CTF values in [-1, 1], DC at index 0 (unshifted layout).
    """
    defocus_term, rest = ctf_phases(
        box, pixel_size_a, defocus_u_a, defocus_v_a, defocus_angle_deg, voltage_kv=voltage_kv,
        cs_mm=cs_mm, amplitude_contrast=amplitude_contrast, phase_shift_deg=phase_shift_deg,
        rfft=rfft)
    return np.sin(defocus_term + rest)


def ctf_phases(
    box: int,
    pixel_size_a: float,
    defocus_u_a: ArrayLike,
    defocus_v_a: ArrayLike,
    defocus_angle_deg: ArrayLike,
    *,
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.1,
    phase_shift_deg: ArrayLike = 0.0,
    rfft: bool = True,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Split the CTF's argument in two parts: ``CTF = sin(defocus_term + rest)``.

    Parameters are those of :func:`ctf_image`.

    Returns
    -------
    defocus_term : ndarray, same shape as :func:`ctf_image`'s
        ``pi lambda df(theta) k^2`` in radians (linear in the defoci: scaling
        both defoci by ``s`` scales it by ``s``).
    rest : ndarray, broadcastable to ``defocus_term``
        ``-pi/2 Cs lambda^3 k^4 + asin(Q0) + phase`` in radians.
    """
    _check_scalars(box, pixel_size_a, cs_mm, amplitude_contrast)
    du, dv, ang, phase = (
        _per_image(k, v)
        for k, v in (
            ("defocus_u_a", defocus_u_a),
            ("defocus_v_a", defocus_v_a),
            ("defocus_angle_deg", defocus_angle_deg),
            ("phase_shift_deg", phase_shift_deg),
        )
    )
    batched = max(du.ndim, dv.ndim, ang.ndim, phase.ndim) == 1
    du, dv, ang, phase = (a.reshape(-1, 1, 1) for a in np.broadcast_arrays(du, dv, ang, phase))
    lam = electron_wavelength_a(voltage_kv)
    box = int(box)
    ky = np.fft.fftfreq(box)[:, None] / pixel_size_a  # 1/Å
    kx = (np.fft.rfftfreq(box) if rfft else np.fft.fftfreq(box))[None, :] / pixel_size_a
    k2 = kx**2 + ky**2
    theta = np.arctan2(ky, kx)
    mean, half_diff = 0.5 * (du + dv), 0.5 * (du - dv)
    defocus = mean + half_diff * np.cos(2.0 * (theta - np.radians(ang)))
    defocus_term = np.pi * lam * defocus * k2
    rest = (
        -0.5 * np.pi * cs_mm * 1e7 * lam**3 * k2**2
        + np.arcsin(amplitude_contrast)
        + np.radians(phase)
    )
    if batched:
        return defocus_term, rest
    return defocus_term[0], rest[0]


def apply_ctf(images: ArrayLike, ctf: ArrayLike) -> NDArray[np.float64]:
    """Filter centred images by a CTF given in ``rfft2`` layout.

    Parameters
    ----------
    images : array_like of shape (n, N, N) or (N, N)
        Real images indexed ``[y, x]``, origin at ``N // 2``.
    ctf : array_like of shape (n, N, N//2+1) or (N, N//2+1)
        Real CTF per image (or one for all), as from :func:`ctf_image` with
        ``rfft=True``.

    Returns
    -------
    ndarray, same shape as ``images``, float64
        ``IFFT(CTF * FFT(image))`` with the origin kept at ``N // 2``.
    """
    x = np.asarray(images, dtype=np.float64)
    spectrum = np.fft.rfft2(np.fft.ifftshift(x, axes=(-2, -1))) * np.asarray(ctf)
    return np.fft.fftshift(np.fft.irfft2(spectrum, s=x.shape[-2:]), axes=(-2, -1))
