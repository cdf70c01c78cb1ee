"""Image operations on single images ``(N, N)`` or stacks ``(n, N, N)``.

Conventions are those of :mod:`xmipp_qc.core`: arrays indexed ``[y, x]``, origin
at pixel ``N // 2`` (odd and even N), shifts ``(shift_x, shift_y)`` in px,
angles in degrees. float32 and float64 inputs keep their dtype; other real
inputs are computed in float64.

* :func:`shift_images` -- ``out(r) = I(r - s)`` (content moves by ``+s``): the
  operation Xmipp applies with ``shiftX, shiftY`` to align an experimental
  image. The model of an image with shift ``s`` is ``shift_images(P, -s)``.
* :func:`rotate_images` -- ``out(r) = I(R(a) r)`` with
  ``R(a) = [[cos a, -sin a], [sin a, cos a]]`` acting on ``(x, y)``; the
  projection at ``(rot, tilt, psi)`` equals ``rotate_images(P(rot, tilt, 0), psi)``.
  On screen (y down) a positive angle turns the content counter-clockwise as
  seen in ``[y, x]`` index space, like ``np.rot90`` for 90 degrees.
* :func:`mirror_x` -- ``out(x, y) = I(-x, y)`` about ``N // 2`` (Xmipp's flip).
* :func:`circular_mask`, :func:`normalize`, :func:`normalize_background`,
  :func:`low_pass`.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import scipy.fft as sfft
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

__all__ = [
    "circular_mask",
    "low_pass",
    "mirror_x",
    "normalize",
    "normalize_background",
    "rotate_images",
    "shift_images",
]


def _as_stack(images: ArrayLike) -> tuple:
    """Return a float (n, N, N) view/copy, and whether the input was a single image."""
    a = np.asarray(images)
    if np.iscomplexobj(a):
        raise ValueError("images must be real")
    if a.ndim not in (2, 3) or a.shape[-1] != a.shape[-2] or a.shape[-1] < 2:
        raise ValueError(f"images must have shape (N, N) or (n, N, N), got {a.shape}")
    if a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float64)
    return (a[None] if a.ndim == 2 else a), a.ndim == 2


def _per_image(values: ArrayLike, n: int, width: int, name: str) -> NDArray[np.float64]:
    """Broadcast a parameter of shape (width,) / () or (n, width) / (n,) to (n, width)."""
    v = np.asarray(values, dtype=np.float64)
    target = (n, width) if width > 1 else (n,)
    try:
        return np.broadcast_to(v, target)
    except ValueError:
        raise ValueError(f"{name} must broadcast to {target}, got shape {v.shape}") from None


def _centred_coords(box: int) -> NDArray[np.float64]:
    return np.arange(box, dtype=np.float64) - box // 2


def shift_images(images: ArrayLike, shifts: ArrayLike) -> NDArray:
    """Sub-pixel translation by Fourier phase, ``out(r) = I(r - s)``.

    Parameters
    ----------
    images : array_like, shape (N, N) or (n, N, N)
        Real images, ``[y, x]``.
    shifts : array_like, shape (2,) or (n, 2)
        ``(shift_x, shift_y)`` in px (Xmipp ``shiftX, shiftY``); positive x moves
        the content towards larger column indices.

    Returns
    -------
    ndarray, same shape and float dtype as ``images``
        Circularly translated images (periodic boundary; integer shifts are
        exactly ``np.roll``).
    """
    stack, single = _as_stack(images)
    s = _per_image(shifts, len(stack), 2, "shifts")
    box = stack.shape[-1]
    ky = sfft.fftfreq(box)[None, :, None]
    kx = sfft.rfftfreq(box)[None, None, :]
    phase = np.exp(-2j * np.pi * (kx * s[:, 0, None, None] + ky * s[:, 1, None, None]))
    spec = sfft.rfft2(stack) * phase.astype(np.complex64 if stack.dtype == np.float32 else
                                            np.complex128)  # fmt: skip
    out = sfft.irfft2(spec, s=(box, box)).astype(stack.dtype, copy=False)
    return out[0] if single else out


def rotate_images(images: ArrayLike, angles: ArrayLike, *, order: int = 3) -> NDArray:
    """In-plane rotation about pixel ``N // 2``: ``out(r) = I(R(a) r)``.

    Parameters
    ----------
    images : array_like, shape (N, N) or (n, N, N)
        Real images, ``[y, x]``.
    angles : float or array_like, shape (n,)
        Degrees; ``R(a) = [[cos a, -sin a], [sin a, cos a]]`` on ``(x, y)``, so
        ``rotate_images(P(rot, tilt, 0), psi) == P(rot, tilt, psi)`` (Xmipp psi).
    order : int
        Spline order of :func:`scipy.ndimage.affine_transform` (0-5); the image
        is zero outside the box (``mode="grid-constant"``). Multiples of 90
        degrees are exact (``np.rot90`` about ``N // 2``).

    Returns
    -------
    ndarray, same shape and float dtype as ``images``
    """
    stack, single = _as_stack(images)
    a = np.radians(_per_image(angles, len(stack), 1, "angles"))
    h = stack.shape[-1] // 2
    out = np.empty_like(stack)
    for i, (img, ang) in enumerate(zip(stack, a)):
        c, s = np.cos(ang), np.sin(ang)
        c, s = (np.round(v) if abs(v - np.round(v)) < 1e-12 else v for v in (c, s))
        mat = np.array([[c, s], [-s, c]])  # acts on (row, col) = (y, x)
        offset = h - mat @ np.array([h, h], dtype=np.float64)
        ndimage.affine_transform(img, mat, offset=offset, output=out[i], order=order,
                                 mode="grid-constant", cval=0.0)  # fmt: skip
    return out[0] if single else out


def mirror_x(images: ArrayLike) -> NDArray:
    """Mirror in x about pixel ``N // 2``: ``out(x, y) = I(-x, y)``.

    Parameters
    ----------
    images : array_like, shape (N, N) or (n, N, N)
        Real images, ``[y, x]``.

    Returns
    -------
    ndarray, same shape and float dtype as ``images``
        Column ``N // 2`` stays in place. For even N column 0 (``x = -N/2``)
        has no partner inside the box and is kept (periodic convention, the
        same as negating kx in Fourier space).
    """
    stack, single = _as_stack(images)
    out = np.roll(stack[..., ::-1], 1 - stack.shape[-1] % 2, axis=-1).copy()
    return out[0] if single else out


def circular_mask(
    box: int, radius: Optional[float] = None, *, soft_edge: float = 0.0, dtype: type = np.float64
) -> NDArray:
    """Disc centred on pixel ``(N//2, N//2)``.

    Parameters
    ----------
    box : int
        Image size N in px.
    radius : float, optional
        Radius R in px; hard mask ``x**2 + y**2 <= R**2`` (inclusive, as Xmipp's
        ``BinaryCircularMask``). Default ``N // 2`` (Xmipp's ``Rmax = Xdim / 2``).
    soft_edge : float
        Width w in px of a raised-cosine edge: 1 for r <= R,
        ``(1 + cos(pi (r - R) / w)) / 2`` for R < r < R + w, 0 beyond. 0 gives
        the hard mask.
    dtype : type
        Output dtype (use ``bool`` for a hard boolean mask).

    Returns
    -------
    ndarray, shape (N, N)
    """
    radius = int(box) // 2 if radius is None else radius
    if int(box) < 1 or radius < 0 or soft_edge < 0:
        raise ValueError(f"need box >= 1, radius >= 0, soft_edge >= 0; got {box}, {radius}, "
                         f"{soft_edge}")  # fmt: skip
    c = _centred_coords(int(box))
    r2 = c[:, None] ** 2 + c[None, :] ** 2
    if soft_edge == 0:
        return (r2 <= radius**2).astype(dtype)
    t = np.clip((np.sqrt(r2) - radius) / soft_edge, 0.0, 1.0)
    return (0.5 * (1.0 + np.cos(np.pi * t))).astype(dtype)


def normalize(
    images: ArrayLike, mask: Optional[ArrayLike] = None, *, where: str = "inside"
) -> NDArray:
    """Zero mean, unit standard deviation from the pixels of a region.

    Parameters
    ----------
    images : array_like, shape (N, N) or (n, N, N)
        Real images.
    mask : array_like of bool, shape (N, N), optional
        Region mask; None uses the whole image.
    where : {"inside", "outside"}
        Take the statistics from the pixels where ``mask`` is True or False.

    Returns
    -------
    ndarray, same shape and float dtype as ``images``
        ``(I - mean) / std`` per image, statistics of the region (population std,
        ddof=0). A flat region (std 0) only has its mean removed.
    """
    stack, single = _as_stack(images)
    if where not in ("inside", "outside"):
        raise ValueError(f"where must be 'inside' or 'outside', got {where!r}")
    box = stack.shape[-1]
    region = np.ones((box, box), bool) if mask is None else np.asarray(mask, dtype=bool)
    if region.shape != (box, box):
        raise ValueError(f"mask must have shape {(box, box)}, got {region.shape}")
    if where == "outside":
        region = ~region
    if not region.any():
        raise ValueError(f"the region {where} the mask has no pixels")
    px = stack[:, region].astype(np.float64)
    mean, std = px.mean(axis=1), px.std(axis=1)
    std = np.where(std > 0, std, 1.0)
    out = ((stack - mean[:, None, None]) / std[:, None, None]).astype(stack.dtype)
    return out[0] if single else out


def normalize_background(images: ArrayLike, radius: Optional[float] = None) -> NDArray:
    """Xmipp's ``NewXmipp`` normalisation (no ramp): background mean 0, std 1.

    Parameters
    ----------
    images : array_like, shape (N, N) or (n, N, N)
        Real images.
    radius : float, optional
        Particle radius R in px; the background is ``x**2 + y**2 > R**2``.
        Default ``N // 2`` (the corners).

    Returns
    -------
    ndarray, same shape and float dtype as ``images``
    """
    box = np.shape(images)[-1]
    r = box // 2 if radius is None else float(radius)
    return normalize(images, circular_mask(box, r, dtype=bool), where="outside")


def low_pass(
    images: ArrayLike,
    resolution_a: float,
    pixel_size_a: float,
    *,
    edge_width: float = 0.02,
    edge: str = "centred",
) -> NDArray:
    """Low-pass filter at a resolution, with a raised-cosine edge.

    Parameters
    ----------
    images : array_like, shape (N, N) or (n, N, N)
        Real images.
    resolution_a : float
        Resolution in Angstrom; the cut-off is ``fc = pixel_size_a / resolution_a``
        cycles/px and must not exceed Nyquist (0.5).
    pixel_size_a : float
        Pixel size in Angstrom/px.
    edge_width : float
        Width w of the edge in cycles/px: the gain is 1 below ``fc - w/2``,
        ``(1 + cos(pi (f - fc + w/2) / w)) / 2`` across the edge (0.5 at ``fc``)
        and 0 above ``fc + w/2``.
    edge : {"centred", "above"}
        ``"centred"`` as above; ``"above"`` is Xmipp's raised cosine: gain 1 up
        to ``fc``, falling to 0 at ``fc + w``. With ``"above"`` a cut-off beyond
        Nyquist is allowed and leaves the image (nearly) unchanged, as in Xmipp
        (e.g. 3 Å at 3 Å/px); with ``"centred"`` it is an error.

    Returns
    -------
    ndarray, same shape and float dtype as ``images``
    """
    if pixel_size_a <= 0 or resolution_a <= 0 or edge_width < 0:
        raise ValueError("pixel_size_a and resolution_a must be > 0 and edge_width >= 0")
    if edge not in ("centred", "above"):
        raise ValueError(f"edge must be 'centred' or 'above', got {edge!r}")
    fc = pixel_size_a / resolution_a
    if fc > 0.5 and edge == "centred":
        raise ValueError(f"resolution {resolution_a} A is beyond Nyquist ({2 * pixel_size_a} A)")
    if edge == "above":
        fc += edge_width / 2
    stack, single = _as_stack(images)
    box = stack.shape[-1]
    f = np.hypot(sfft.fftfreq(box)[:, None], sfft.rfftfreq(box)[None, :])
    if edge_width == 0:
        gain = (f <= fc).astype(np.float64)
    else:
        t = np.clip((f - fc + edge_width / 2) / edge_width, 0.0, 1.0)
        gain = 0.5 * (1.0 + np.cos(np.pi * t))
    spec = sfft.rfft2(stack) * gain.astype(stack.dtype)
    out = sfft.irfft2(spec, s=(box, box)).astype(stack.dtype, copy=False)
    return out[0] if single else out
