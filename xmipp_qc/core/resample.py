"""Fourier cropping and padding of images, stacks and volumes.

Resizing a box of N px to M px is band-limited (sinc) interpolation: the
spectrum is cropped (M < N, no aliasing: frequencies the new grid cannot
represent are dropped) or zero-padded (M > N). Conventions of
:mod:`xmipp_qc.core`: the origin pixel ``N // 2`` maps onto ``M // 2`` along
every resized axis, so output pixel ``j`` samples the input at position
``(j - M//2) * N / M + N//2``.

Normalisation
    **Sample values (intensities/densities) are preserved**: a constant stays
    the same constant and a map keeps its density scale. Because projections
    are line integrals in voxel units, resizing by ``M / N`` then projecting
    gives ``N / M`` times less than projecting then resizing:
    ``project(resize(V, M)) * N / M == resize(project(V), M)`` (for
    band-limited maps; pinned by ``test_resample.py``).
Pixel size
    The physical size of the box is preserved, so the new pixel size is
    exactly ``pixel_size * N / M`` (:func:`resized_box`).
Box rule
    :func:`resized_box` picks ``M = round(N * pixel / target)`` (the nearest
    box, at least 2), optionally the nearest *even* box; the returned pixel
    size is then the exact one, which differs slightly from the target.
Nyquist
    For even sizes the Nyquist bin is split (padding) or folded (cropping) so
    that the result stays real and exactly consistent with sinc interpolation.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft
from numpy.typing import ArrayLike, NDArray

__all__ = ["fourier_resize", "resize_to_pixel_size", "resized_box"]


def _resize_axis(x: NDArray, m: int, axis: int) -> NDArray:
    """Band-limited resize of one axis to length m, origin n//2 -> m//2."""
    n = x.shape[axis]
    if m == n:
        return x
    spec = sfft.rfft(np.fft.ifftshift(x, axes=axis), axis=axis)
    k = min(n, m)
    shape = list(spec.shape)
    shape[axis] = m // 2 + 1
    out = np.zeros(shape, dtype=spec.dtype)
    sl = [slice(None)] * x.ndim
    sl[axis] = slice(0, k // 2 + 1)
    out[tuple(sl)] = spec[tuple(sl)]
    if k % 2 == 0:  # the shared Nyquist bin: fold (crop) or split (pad) the +-k/2 pair
        sl[axis] = slice(k // 2, k // 2 + 1)
        out[tuple(sl)] *= 2.0 if m < n else 0.5
    y = sfft.irfft(out, n=m, axis=axis)
    y *= m / n
    return np.fft.fftshift(y, axes=axis)


def _resized_ndim(data: NDArray, ndim: int | None) -> int:
    if ndim is None:
        cubic_volume = data.ndim == 3 and len(set(data.shape)) == 1
        ndim = 3 if cubic_volume else 2
    if ndim not in (2, 3) or data.ndim < ndim:
        raise ValueError(f"ndim must be 2 (images) or 3 (volumes) and <= {data.ndim}")
    if len(set(data.shape[-ndim:])) != 1:
        raise ValueError(f"the last {ndim} axes must be square/cubic, got {data.shape}")
    return ndim


def fourier_resize(data: ArrayLike, box: int, *, ndim: int | None = None) -> NDArray:
    """Fourier-crop or zero-pad the last ``ndim`` axes to ``box`` (module docstring).

    Parameters
    ----------
    data : array_like of shape (..., N, N) or (..., N, N, N)
        Real image, stack ``(n, N, N)`` or volume ``(N, N, N)``.
    box : int
        New size M (>= 2) of each resized axis.
    ndim : {2, 3} or None
        Number of trailing axes to resize. ``None``: 3 for a cubic 3D array
        (a volume), else 2. Pass ``ndim=2`` for a stack of N images of N x N.

    Returns
    -------
    ndarray of shape (..., M, M) or (..., M, M, M)
        float32 for float32 input, else float64; sample values preserved,
        origin at ``M // 2``; the new pixel size is ``pixel * N / M``.
    """
    arr = np.asarray(data)
    if np.iscomplexobj(arr) or not np.all(np.isfinite(arr)):
        raise ValueError("data must be real and finite")
    if int(box) != box or box < 2:
        raise ValueError(f"box must be an integer >= 2, got {box}")
    nd = _resized_ndim(arr, ndim)
    dtype = np.float32 if arr.dtype == np.float32 else np.float64
    out = arr.astype(dtype, copy=False)
    for axis in range(arr.ndim - nd, arr.ndim):
        out = _resize_axis(out, int(box), axis)
    return out.astype(dtype, copy=False)


def resized_box(
    box: int, pixel_size_a: float, target_pixel_size_a: float, *, even: bool = False
) -> tuple[int, float]:
    """Box and exact pixel size after resampling to (about) a target pixel size.

    Parameters
    ----------
    box : int
        Current size N in px.
    pixel_size_a, target_pixel_size_a : float
        Current and wanted pixel sizes in Å/px.
    even : bool
        Round to the nearest even box instead of the nearest box.

    Returns
    -------
    tuple of (int, float)
        New box ``M = round(N * pixel / target)`` (>= 2) and the exact new
        pixel size ``pixel * N / M`` in Å/px.
    """
    if int(box) != box or box < 2:
        raise ValueError(f"box must be an integer >= 2, got {box}")
    for name, v in (("pixel_size_a", pixel_size_a), ("target_pixel_size_a", target_pixel_size_a)):
        if not np.isfinite(v) or v <= 0:
            raise ValueError(f"{name} must be positive, got {v}")
    exact = box * pixel_size_a / target_pixel_size_a
    m = 2 * int(np.floor(exact / 2 + 0.5)) if even else int(np.floor(exact + 0.5))
    m = max(m, 2)
    return m, pixel_size_a * box / m


def resize_to_pixel_size(
    data: ArrayLike,
    pixel_size_a: float,
    target_pixel_size_a: float,
    *,
    ndim: int | None = None,
    even: bool = False,
) -> tuple[NDArray, float]:
    """Resample images or a volume to (about) a target pixel size.

    Parameters
    ----------
    data : array_like of shape (..., N, N) or (N, N, N)
        As in :func:`fourier_resize`.
    pixel_size_a, target_pixel_size_a : float
        Current and wanted pixel sizes in Å/px.
    ndim : {2, 3} or None
        As in :func:`fourier_resize`.
    even : bool
        As in :func:`resized_box`.

    Returns
    -------
    tuple of (ndarray, float)
        The resized data and its exact pixel size in Å/px.
    """
    arr = np.asarray(data)
    m, new_pixel = resized_box(arr.shape[-1], pixel_size_a, target_pixel_size_a, even=even)
    return fourier_resize(arr, m, ndim=ndim), new_pixel
