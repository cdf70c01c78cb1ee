"""The working grid of compare reprojections: one sampling for images and maps.

Images and maps come with their own box and pixel size; they are compared on a
common grid (:func:`common_sampling`): the coarser of the inputs and, with
downsampling on, at least 3 Å/px (Xmipp's ``NEW_SAMPLING_RATE``). Inputs are
brought to it exactly by Fourier cropping/padding
(:mod:`xmipp_qc.core.resample`, no aliasing, unlike Xmipp's B-spline resize)
and a centred fit to the working box (:func:`to_working_grid`). Shifts are
converted between input and working pixels with :func:`shifts_to_work` and
:func:`shifts_to_input` (the same physical shift). Conventions of
:mod:`xmipp_qc.core`: origin at ``N // 2``, which maps onto ``M // 2``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["common_sampling", "shifts_to_input", "shifts_to_work", "to_working_grid"]


def common_sampling(image_box: int, image_pixel_a: float, volume_box: int,
                    volume_pixel_a: float, *, downsample: bool = True,
                    target_a: float = 3.0) -> tuple[int, float]:
    """Working box and sampling shared by the images and the map.

    The sampling is the coarser of the two inputs and, with ``downsample``, at
    least ``target_a``. The images are Fourier cropped to an integer box, so
    the working pixel size is exactly ``image_pixel_a * image_box / work_box``
    (never finer than the requested sampling); the map is then brought to it
    (:func:`xmipp_qc.core.resample`) and cut or padded to ``work_box``.

    Parameters
    ----------
    image_box, volume_box : int
        Box sizes in px.
    image_pixel_a, volume_pixel_a : float
        Pixel sizes in Å/px.
    downsample : bool
        Enforce at least ``target_a`` Å/px.
    target_a : float
        Coarsest sampling needed, Å/px (Xmipp: 3 Å).

    Returns
    -------
    work_box : int
        Box of the images at the working sampling (px).
    work_pixel_a : float
        Working pixel size in Å/px.
    """
    for name, v in (("image_pixel_a", image_pixel_a), ("volume_pixel_a", volume_pixel_a),
                    ("target_a", target_a)):
        if not (np.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be positive, got {v}")
    if int(image_box) != image_box or image_box < 2 or int(volume_box) != volume_box:
        raise ValueError(f"boxes must be integers >= 2, got {image_box}, {volume_box}")
    wanted = max(image_pixel_a, volume_pixel_a, target_a if downsample else 0.0)
    if wanted <= image_pixel_a:
        return int(image_box), float(image_pixel_a)
    work_box = int(np.floor(image_box * image_pixel_a / wanted + 1e-9))
    if work_box < 2:
        raise ValueError(f"a {image_box} px box at {image_pixel_a} Å/px has < 2 px at {wanted} Å")
    return work_box, float(image_pixel_a * image_box / work_box)


def to_working_grid(data: ArrayLike, pixel_a: float, work_box: int, work_pixel_a: float, *,
                    ndim: int) -> tuple[NDArray[np.float32], float]:
    """Bring images or a map to the working grid of :func:`common_sampling`.

    Fourier cropping/padding (:func:`xmipp_qc.core.resample.fourier_resize`,
    values preserved, origin ``N // 2`` -> ``M // 2``) to the box ``M`` nearest
    to the working sampling, then centred zero-padding or cropping to
    ``work_box`` (origin kept at ``work_box // 2``).

    Parameters
    ----------
    data : array_like, shape (n, N, N) or (N, N, N)
        Image stack (``ndim=2``) or volume (``ndim=3``).
    pixel_a : float
        Its pixel size in Å/px.
    work_box : int
        Working box (px).
    work_pixel_a : float
        Working pixel size in Å/px.
    ndim : {2, 3}
        Images or volume (a stack of N images of N x N is ambiguous otherwise).

    Returns
    -------
    data : ndarray of float32, shape (n, work_box, work_box) or (work_box,) * 3
    pixel_a : float
        Exact pixel size after the Fourier resize, ``pixel_a * N / M``: equal
        to ``work_pixel_a`` when ``N * pixel_a / work_pixel_a`` is an integer
        (always for the images that defined the working grid), else within
        half a pixel of the box; use it to convert this input's shifts.
    """
    from xmipp_qc.core.resample import fourier_resize, resized_box

    arr = np.asarray(data)
    n = arr.shape[-1]
    m, exact = resized_box(n, pixel_a, work_pixel_a)
    if abs(exact - work_pixel_a) <= 1e-9 * work_pixel_a:
        exact = float(work_pixel_a)
    out = arr if m == n else fourier_resize(arr, m, ndim=ndim)
    if m != work_box:
        lo = min(m, work_box)
        src = slice(m // 2 - lo // 2, m // 2 - lo // 2 + lo)
        dst = slice(work_box // 2 - lo // 2, work_box // 2 - lo // 2 + lo)
        fitted = np.zeros(out.shape[:-ndim] + (work_box,) * ndim, dtype=np.float32)
        fitted[(Ellipsis,) + (dst,) * ndim] = out[(Ellipsis,) + (src,) * ndim]
        out = fitted
    return np.asarray(out, dtype=np.float32), float(exact)


def shifts_to_input(shifts: ArrayLike, work_pixel_a: float,
                    input_pixel_a: float) -> NDArray[np.float64]:
    """Shifts (px) at the working sampling -> px of the input images (same physical shift)."""
    return np.asarray(shifts, dtype=np.float64) * (work_pixel_a / input_pixel_a)


def shifts_to_work(shifts: ArrayLike, work_pixel_a: float,
                   input_pixel_a: float) -> NDArray[np.float64]:
    """Shifts (px) of the input images -> px at the working sampling."""
    return np.asarray(shifts, dtype=np.float64) * (input_pixel_a / work_pixel_a)
