"""Compare reprojections: chunked orchestration of the numeric core (no new math).

Per chunk of images (:func:`process_chunk`): projection matching when no angles
are given (:mod:`xmipp_qc.core.matching`), local refinement
(:mod:`xmipp_qc.core.refine`), reprojection with the image's CTF
(:mod:`xmipp_qc.core.projection`, :mod:`xmipp_qc.core.ctf`) and per-image
residual summaries (:func:`xmipp_qc.core.residuals.summarize_chunk`). Over the
whole set (:func:`finalize`): set statistics and outlier flags from the
summaries alone (:func:`xmipp_qc.core.outliers.set_statistics`), so memory is
bounded by the chunk size. Over several maps (:func:`rank`): the paired ranking
of :func:`xmipp_qc.core.ranking.rank_maps`, always oriented higher-is-better.

Conventions of :mod:`xmipp_qc.core`: images ``(n, N, N)`` indexed ``[y, x]``,
volumes ``[z, y, x]``, origin at ``N // 2``; Xmipp ZYZ Euler angles in degrees;
Xmipp shifts in px at the WORKING sampling, an image with shift ``s`` being
``I(r) = P(r + s)``. The working grid (:func:`common_sampling`,
:func:`to_working_grid`, :func:`shifts_to_input`, :func:`shifts_to_work`) is
in :mod:`xmipp_qc.core.working_grid`, re-exported here.

Set scores and map ranking (:func:`finalize`, :func:`rank`) are in
:mod:`xmipp_qc.core.compare_results`, and a chunk's results and their file
(:class:`ChunkResult`) in :mod:`xmipp_qc.core.chunk_result`, both re-exported here.

Frames. Scores are computed in the frame of the experimental image (the
reprojection is moved, never the noisy image). The stored images are in the
aligned frame: ``aligned(r) = I(r - s)`` (exact Fourier shift), the
reprojection centred at ``N // 2`` and the residual
``aligned - (a P + b)`` inside the disc mask, ``a, b`` being the gray fit of
the summary.

Failed images (non-finite, empty or constant; or given non-finite or absurd
angles and shifts, :func:`xmipp_qc.core.input_checks.image_input_reasons`)
are never dropped: they keep
their given alignment (NaN when it had to be found by matching), get NaN
scores and a reason in ``summary.reasons``, and are excluded from every set
statistic.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from numpy.typing import ArrayLike, NDArray

from xmipp_qc.core.chunk_result import ChunkResult
from xmipp_qc.core.compare_results import SCORE_DIRECTIONS, finalize, rank  # noqa: F401
from xmipp_qc.core.ctf import ctf_image
from xmipp_qc.core.input_checks import image_input_reasons, map_problem
from xmipp_qc.core.projection import FourierProjector
from xmipp_qc.core.residuals import summarize_chunk
from xmipp_qc.core.transform import circular_mask, low_pass
from xmipp_qc.core.working_grid import (  # noqa: F401  (part of the pipeline API)
    common_sampling,
    shifts_to_input,
    shifts_to_work,
    to_working_grid,
)

__all__ = [
    "SCORE_DIRECTIONS",
    "ChunkResult",
    "CompareOptions",
    "MapModel",
    "common_sampling",
    "finalize",
    "process_chunk",
    "rank",
    "shifts_to_input",
    "shifts_to_work",
    "to_working_grid",
]

_DEFAULT_WIDTH = 0.02  # cycles/px: Xmipp's raised-cosine edge

#: Default radius of projection matching's shift search, as a fraction of the
#: box (Xmipp's 5D search uses 0.1; see ``CompareOptions.match_shift_px``).
MATCH_SHIFT_FRACTION = 0.2


@dataclass(frozen=True)
class CompareOptions:
    """Options of a compare-reprojections run (Xmipp protocol names in brackets).

    Attributes
    ----------
    pixel_size_a : float
        Working sampling in Å/px (after :func:`common_sampling`).
    angular_step : float
        Gallery step of projection matching, degrees [angularSampling].
    symmetry : str
        Xmipp point group of the map [symmetryGroup].
    use_ctf : bool
        Apply each image's CTF to its reprojection in matching, refinement and
        scoring [not ignoreCTF].
    optimize_gray : bool
        Store the gray-fitted reprojection ``a P + b`` instead of ``P``
        [optimizeGray]. Scores always use the least-squares gray fit (Xmipp's
        ungrayed ``P - I`` residual is a defect), so they do not change.
    refine : bool
        Locally refine angles and shifts (continuous_assign2).
    max_shift_px : float or None
        Bound of the refinement's shift change in px; default ``0.05 N``.
    match_shift_px : float or None
        Radius of projection matching's shift search in px; default
        :data:`MATCH_SHIFT_FRACTION` ``* N``. Real picks are often off-centre
        by more than 10% of the box (on the RELION β-gal tutorial particles,
        a fifth of the particles RELION refined lie 6-13 px from the centre of
        their 64 px box), and a particle outside the range is matched to a
        wrong orientation.
    max_angle_deg : float or None
        Bound of the refinement's rotation (geodesic), degrees; default 5.
    resolution_a : float or None
        [resol] Low-pass the comparison (images, reprojections, residuals) at
        this resolution in Å (raised cosine); also the band of the refinement.
    sigma : float or None
        [sigma] Width of the raised-cosine edge of that low-pass, in Fourier
        pixels (1 Fourier px = 1/N cycles/px); default 0.02 cycles/px
        (Xmipp's), i.e. ``0.02 N`` Fourier px. Ignored without ``resolution_a``.
    mask_radius : float or None
        Radius of the comparison disc in px; default ``N // 2``.
    interpolation : {"linear", "cubic"}
        Interpolation of the Fourier projectors (pad 2).
    ctf_check : bool
        With ``use_ctf``: correlate each image at its final alignment with
        reprojections under alternative CTFs (:mod:`xmipp_qc.core.ctf_check`),
        in the refinement's band (:attr:`MapModel.search_freq`), carried as
        ``ChunkResult.ctf_corr``.
    """

    pixel_size_a: float
    angular_step: float = 5.0
    symmetry: str = "c1"
    use_ctf: bool = False
    optimize_gray: bool = False
    refine: bool = True
    max_shift_px: float | None = None
    match_shift_px: float | None = None
    max_angle_deg: float | None = None
    resolution_a: float | None = None
    sigma: float | None = None
    mask_radius: float | None = None
    interpolation: str = "linear"
    ctf_check: bool = True

    def __post_init__(self) -> None:
        """Validate the options (ValueError with the offending value)."""
        if not np.isfinite(self.pixel_size_a) or self.pixel_size_a <= 0:
            raise ValueError(f"pixel_size_a must be positive, got {self.pixel_size_a}")
        if not self.angular_step > 0:
            raise ValueError(f"angular_step must be positive, got {self.angular_step}")
        for name in ("max_shift_px", "match_shift_px", "max_angle_deg", "resolution_a", "sigma",
                     "mask_radius"):
            v = getattr(self, name)
            if v is not None and not (np.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be >= 0 or None, got {v}")
        if self.resolution_a is not None and self.resolution_a <= 0:
            raise ValueError(f"resolution_a must be positive, got {self.resolution_a}")
        if self.sigma is not None and self.sigma <= 0:
            raise ValueError(f"sigma must be positive, got {self.sigma}")


class MapModel:
    """One candidate map, prepared once per process.

    The reprojector, the local refiner and the matching gallery are built on
    first use (each holds a padded spectrum of the map: with refinement on and
    given angles only the refiner's is built).

    Parameters
    ----------
    volume : ndarray of shape (N, N, N)
        Map ``[z, y, x]`` at the working sampling, origin ``N // 2``.
    options : CompareOptions
        Run options.
    """

    def __init__(self, volume: ArrayLike, options: CompareOptions) -> None:
        problem = map_problem(volume)
        if problem:
            raise ValueError(problem)
        vol = np.asarray(volume, dtype=np.float32)
        self.volume = vol
        self.options = options
        self.box = vol.shape[0]
        self._projector = None
        self._refiner = None
        self._gallery = None
        self._band = None
        self._band_lock = threading.Lock()

    @property
    def projector(self) -> FourierProjector:
        """Reprojector (pad 2, ``options.interpolation``), built lazily."""
        if self._projector is None:
            self._projector = FourierProjector(self.volume, pad=2,
                                               interpolation=self.options.interpolation)
        return self._projector

    @property
    def search_freq(self) -> float:
        """Band of the refinement and of the CTF check, cycles/px.

        ``pixel / resolution_a`` (at most 0.5), else
        :func:`~xmipp_qc.core.search_band.default_band` of the box.
        """
        from xmipp_qc.core.search_band import default_band

        o = self.options
        if o.resolution_a is not None:
            return min(0.5, o.pixel_size_a / o.resolution_a)
        return default_band(self.box)

    @property
    def band_projector(self) -> FourierProjector:
        """Projector limited to :attr:`search_freq`.

        The refiner's when it is built, else one of its own (pad 2), built once
        on first use (thread-safe; not used by :func:`process_chunk` without
        refinement, which reuses the reprojections' spectra).
        """
        band = getattr(self._refiner, "_band", None)
        if band is not None:
            return band
        with self._band_lock:
            if self._band is None:
                self._band = FourierProjector(self.volume, pad=2, max_freq=self.search_freq,
                                              interpolation=self.options.interpolation)
            return self._band

    @property
    def refiner(self):
        """Local refiner (:class:`xmipp_qc.core.refine.LocalRefiner`), built lazily."""
        if self._refiner is None:
            from xmipp_qc.core.refine import LocalRefiner

            o = self.options
            kw: dict[str, Any] = {"max_shift_px": o.max_shift_px,
                                  "interpolation": o.interpolation}
            if o.max_angle_deg is not None:
                kw["max_angle_deg"] = o.max_angle_deg
            if o.resolution_a is not None:
                kw["search_freq"] = self.search_freq
            self._refiner = LocalRefiner(self.volume, **kw)
        return self._refiner

    @property
    def gallery(self):
        """Matching gallery (:class:`xmipp_qc.core.matching.Gallery`), built lazily."""
        if self._gallery is None:
            from xmipp_qc.core.matching import Gallery

            o = self.options
            self._gallery = Gallery.build(self.projector, angular_step=o.angular_step,
                                          symmetry=o.symmetry, mask_radius=o.mask_radius)
        return self._gallery


def _usable(images: NDArray) -> NDArray[np.bool_]:
    """Images that matching and refinement can take: finite and not constant."""
    flat = images.reshape(len(images), -1)
    finite = np.isfinite(flat).all(axis=1)
    return finite & (np.ptp(np.where(finite[:, None], flat, 0.0), axis=1) > 0)


def _ctf(model: MapModel, n: int, defocus, acquisition) -> NDArray | None:
    """Per-image CTF (n, N, N//2+1) at the working sampling, or None without use_ctf."""
    if not model.options.use_ctf:
        return None
    d = None if defocus is None else np.asarray(defocus, dtype=np.float64)
    if d is None or d.shape != (n, 3):
        raise ValueError(f"use_ctf needs defocus of shape ({n}, 3) (U, V in Å, angle in deg)")
    acq = dict(acquisition or {})
    unknown = set(acq) - {"voltage_kv", "cs_mm", "amplitude_contrast", "phase_shift_deg"}
    if unknown:
        raise ValueError(f"unknown acquisition keys {sorted(unknown)}")
    d = np.where(np.isfinite(d), d, 0.0)  # a failed image's CTF is never used for its score
    return ctf_image(model.box, model.options.pixel_size_a, d[:, 0], d[:, 1], d[:, 2],
                     rfft=True, **acq).astype(np.float32)


def _check_inputs(model: MapModel, images: ArrayLike, ids, angles, shifts) -> tuple:
    x = np.asarray(images, dtype=np.float32)
    n = len(x)
    if x.ndim != 3 or x.shape[1:] != (model.box, model.box):
        raise ValueError(f"images must be (n, {model.box}, {model.box}), got {x.shape}")
    i = np.asarray(ids, dtype=np.int64).reshape(-1)
    if i.shape != (n,):
        raise ValueError(f"ids must have {n} entries, got {i.shape}")
    a = None if angles is None else np.asarray(angles, dtype=np.float64)
    if a is not None and a.shape != (n, 3):
        raise ValueError(f"angles must be ({n}, 3), got {a.shape}")
    s = np.zeros((n, 2)) if shifts is None else np.asarray(shifts, dtype=np.float64)
    if s.shape != (n, 2):
        raise ValueError(f"shifts must be ({n}, 2), got {s.shape}")
    return x, i, a, s.copy()


def _match(model: MapModel, x: NDArray, ok: NDArray, ctf) -> tuple:
    """Angles, shifts, corr and margin by projection matching (NaN for failed images)."""
    from xmipp_qc.core.matching import match_images

    n = len(x)
    ang, sh = np.full((n, 3), np.nan), np.full((n, 2), np.nan)
    corr, margin = np.full(n, np.nan), np.full(n, np.nan)
    o = model.options
    radius = MATCH_SHIFT_FRACTION * model.box if o.match_shift_px is None else o.match_shift_px
    if ok.any():
        res = match_images(x[ok], model.gallery, mask_radius=o.mask_radius,
                           max_shift_px=min(radius, 0.49 * model.box),
                           ctf=None if ctf is None else ctf[ok])
        ang[ok], sh[ok], corr[ok], margin[ok] = res.angles, res.shifts, res.corr, res.margin
    return ang, sh, corr, margin


def _reproject(model: MapModel, x: NDArray, ok: NDArray, ang: NDArray, sh: NDArray,
               ctf, keep_spectra: bool = False) -> tuple:
    """Refine (if asked) the usable images; return angles, shifts, shifted P, extra, spectra.

    With ``keep_spectra`` and no refinement, ``spectra`` are the CTF-free
    reprojections (else None). The extra scores are :meth:`xmipp_qc.core.refine.RefineResult.scores`
    (NaN for images that were not refined), which the outlier score uses. The
    spectra (``rfft2(ifftshift(P(r + s)))``, zero for unusable images) spare the
    CTF check a second projection.
    """
    n = len(x)
    extra: dict[str, NDArray] = {}
    good = ok & np.isfinite(ang).all(axis=1) & np.isfinite(sh).all(axis=1)
    proj = np.zeros_like(x)
    if not good.any():
        return ang, sh, proj, extra, None
    c = None if ctf is None else ctf[good]
    if model.options.refine:
        r = model.refiner.refine(x[good], ang[good], sh[good], ctf=c, gray=False,
                                 mask_radius=model.options.mask_radius)
        ang[good], sh[good], proj[good] = r.angles, r.shifts, r.projections
        for k, v in r.scores().items():
            extra[k] = np.full(n, np.nan)
            extra[k][good] = v
    elif keep_spectra:
        spectra = np.zeros((n, model.box, model.box // 2 + 1), dtype=np.complex64)
        spectra[good] = model.projector.project_fourier(ang[good], shifts=sh[good])
        filtered = spectra[good] if c is None else spectra[good] * c
        proj[good] = np.fft.fftshift(np.fft.irfft2(filtered, s=x.shape[-2:]), axes=(-2, -1))
        return ang, sh, proj, extra, spectra
    else:
        proj[good] = model.projector.project(ang[good], shifts=sh[good], ctf=c)
    return ang, sh, proj, extra, None


def _filter(model: MapModel, stack: NDArray, ok: NDArray) -> NDArray:
    """Low-pass of the comparison (resolution_a, sigma) on the usable images."""
    o = model.options
    if o.resolution_a is None:
        return stack
    width = _DEFAULT_WIDTH if o.sigma is None else o.sigma / model.box
    out = stack.astype(np.float64, copy=True)
    if ok.any():
        out[ok] = low_pass(stack[ok], o.resolution_a, o.pixel_size_a, edge_width=width,
                           edge="above")
    return out


def _shift_back(images: NDArray, shifts: NDArray) -> NDArray[np.float32]:
    """``out(r) = in(r - s)`` (:func:`xmipp_qc.core.transform.shift_images`); NaN -> 0."""
    from xmipp_qc.core.transform import shift_images

    s = np.where(np.isfinite(shifts), shifts, 0.0)
    return np.asarray(shift_images(np.nan_to_num(images), s), dtype=np.float32)


def process_chunk(model: MapModel, images: ArrayLike, *, ids: ArrayLike,
                  angles: ArrayLike | None = None, shifts: ArrayLike | None = None,
                  defocus: ArrayLike | None = None,
                  acquisition: Mapping[str, float] | None = None,
                  keep_images: bool = True) -> ChunkResult:
    """Align (match and/or refine), reproject and summarise one chunk of images.

    Parameters
    ----------
    model : MapModel
        The map and the options.
    images : array_like, shape (n, N, N)
        Images at the working sampling, ``[y, x]``, origin ``N // 2``.
    ids : array_like of int, shape (n,)
        Caller's item ids (kept in order).
    angles : array_like, shape (n, 3), optional
        Given Xmipp angles (degrees); None to find them by projection matching.
    shifts : array_like, shape (n, 2), optional
        Given Xmipp shifts (px, working sampling); default 0. Ignored when matching.
    defocus : array_like, shape (n, 3), optional
        ``defocusU, defocusV`` (Å) and ``defocusAngle`` (degrees) of each image;
        needed with ``options.use_ctf``.
    acquisition : mapping, optional
        ``voltage_kv``, ``cs_mm``, ``amplitude_contrast`` (and
        ``phase_shift_deg``) for :func:`~xmipp_qc.core.ctf.ctf_image`.
    keep_images : bool
        Return the reprojection, residual and aligned stacks (float32).

    Returns
    -------
    ChunkResult
        Its summary carries the scores of
        :func:`~xmipp_qc.core.residuals.summarize_chunk`, the refinement's
        (:meth:`~xmipp_qc.core.refine.RefineResult.scores`) and ``offCentre``:
        the distance of the particle's centre from the box centre at the final
        alignment, px of the working sampling.
    """
    x, i, a, s = _check_inputs(model, images, ids, angles, shifts)
    given = image_input_reasons(x, a, None if a is None or shifts is None else s)
    n, ok = len(x), _usable(x) & (given == "")
    ctf = _ctf(model, n, defocus, acquisition)
    matched = np.zeros(n, dtype=bool)
    corr, margin = np.full(n, np.nan), np.full(n, np.nan)
    if a is None:
        a, s, corr, margin = _match(model, x, ok, ctf)
        matched[:] = ok
    o = model.options
    check = ctf is not None and o.ctf_check
    ang, sh, proj, extra, spectra = _reproject(model, x, ok, a.copy(), s, ctf, check)
    extra["offCentre"] = np.hypot(sh[:, 0], sh[:, 1])  # px; NaN where not aligned
    xf = _filter(model, x, ok)
    summary = summarize_chunk(xf, _filter(model, proj, ok),
                              mask_radius=o.mask_radius, pixel_size_a=o.pixel_size_a,
                              extra=extra, reasons=given)
    ctf_corr = None
    if check:
        from xmipp_qc.core.ctf_check import chunk_correlations

        ctf_corr = chunk_correlations(model, xf, summary.valid, ang, sh, defocus, acquisition,
                                      spectra)
    result = ChunkResult(i, ang, sh, matched, corr, margin, summary, ctf_corr=ctf_corr)
    if not keep_images:
        return result
    return _with_images(model, result, x, ok, proj)


def _with_images(model: MapModel, r: ChunkResult, x: NDArray, ok: NDArray,
                 proj: NDArray) -> ChunkResult:
    """Add the aligned-frame images (module docstring) to a chunk result.

    ``proj`` is the scored model ``P(r + s)``; ``P(r) = proj(r - s)`` exactly.
    """
    o = model.options
    good = ok & np.isfinite(r.angles).all(axis=1)
    centred = _shift_back(proj, r.shifts)
    aligned = _shift_back(x, r.shifts)
    a = np.nan_to_num(r.summary.scores["grayA"])[:, None, None]
    b = np.nan_to_num(r.summary.scores["grayB"])[:, None, None]
    m = circular_mask(model.box, o.mask_radius, dtype=bool)
    residuals = ((_filter(model, aligned, good) - a * _filter(model, centred, good) - b) * m)
    reproj = a * centred + b if o.optimize_gray else centred
    return ChunkResult(r.ids, r.angles, r.shifts, r.matched, r.match_corr, r.match_margin,
                       r.summary, reproj.astype(np.float32), residuals.astype(np.float32),
                       aligned, ctf_corr=r.ctf_corr)
