"""What ``xmipp-qc compare-reprojections`` checks and loads before any image is processed.

The option values (:func:`check_options`), the particles' image stacks
(:func:`check_stacks`), the maps (:func:`load_maps`: read, checked, pixel size
in Å/px from ``--volume-pixel-size``, the MRC header or else the images') and
the run's working grid (:class:`Grid`: box in px and sampling in Å/px, decided
by :mod:`xmipp_qc.core.compare_policy`). Every problem is a ValueError naming the
option, or the file and STAR row.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["Grid", "check_options", "check_stacks", "load_maps", "run_notes"]


@dataclass(frozen=True)
class Grid:
    """Working box and sampling (:func:`xmipp_qc.core.pipeline.common_sampling`)."""

    box: int
    pixel_a: float

    @classmethod
    def of(cls, particles, map_pixels, downsample: bool) -> Grid:
        """The run's grid (:func:`xmipp_qc.core.compare_policy.working_grid`)."""
        from xmipp_qc.core.compare_policy import working_grid

        groups = zip(particles.box.tolist(), particles.pixel_size_a.tolist())
        return cls(*working_grid(list(groups), map_pixels, downsample=downsample))

    def cropped(self, box: int, pixel_a: float) -> int:
        """Box of an input of this box and pixel size after Fourier resizing."""
        from xmipp_qc.core.resample import resized_box

        return resized_box(box, pixel_a, self.pixel_a)[0]

    def exact_pixel(self, box: int, pixel_a: float) -> float:
        """Exact pixel size of that input on the working grid (converts its shifts)."""
        from xmipp_qc.core.compare_policy import exact_pixel

        return exact_pixel(box, pixel_a, self.pixel_a)

    def fit(self, data: np.ndarray, pixel_a: float, ndim: int) -> np.ndarray:
        """Images (ndim 2) or a map (ndim 3) on the working grid."""
        from xmipp_qc.core.pipeline import to_working_grid

        return to_working_grid(data, pixel_a, self.box, self.pixel_a, ndim=ndim)[0]


def check_options(args) -> None:
    """Every option value, before any work (ValueError listing the problems)."""
    from xmipp_qc.core import option_checks as check
    from xmipp_qc.core.compare_results import SCORE_DIRECTIONS

    problems = (check.at_least("--chunk-size", args.chunk_size, 1)
                + check.at_least("--threads", args.threads, 1)
                + check.at_least("--worst", args.worst, 0)
                + check.finite("--threshold", args.threshold)
                + check.choice("--rank-score", args.rank_score, SCORE_DIRECTIONS)
                + check.symmetry("--symmetry", args.symmetry)
                + check.positive("--angular-sampling", args.angular_sampling))
    for opt in ("max_shift", "search_shift", "max_angle", "mask_radius"):
        problems += check.in_range(f"--{opt.replace('_', '-')}", getattr(args, opt), 0,
                                   float("inf"), optional=True)
    for opt in ("resol", "sigma", "pixel_size", "volume_pixel_size"):
        problems += check.positive(f"--{opt.replace('_', '-')}", getattr(args, opt),
                                   optional=True)
    if problems:
        raise ValueError("; ".join(problems))


def check_stacks(particles) -> None:
    """Every stack readable, every row's item inside it, boxes as the STAR says."""
    from xmipp_qc.formats.mrc import stack_shape

    names = particles.block.text("rlnImageName")
    stacks = np.array(particles.stacks, dtype=object)
    for s in dict.fromkeys(particles.stacks):
        rows = np.flatnonzero(stacks == s)
        first = f"{particles.path} row {rows[0] + 1} ({names[rows[0]]})"
        if not os.path.exists(s):
            raise ValueError(f"{first}: image stack {s} does not exist")
        n, ny, nx = stack_shape(s)
        beyond = rows[particles.items[rows] >= n]
        if beyond.size:
            raise ValueError(f"{particles.path} row {beyond[0] + 1} ({names[beyond[0]]}): "
                             f"item {particles.items[beyond[0]] + 1} is beyond the {n} "
                             f"image(s) of {s}")
        wrong = rows[particles.box[rows] != nx]
        if wrong.size or ny != nx:
            raise ValueError(f"{first}: {s} holds {ny} x {nx} px images, the STAR says "
                             f"{particles.box[rows[0]]} px")


def load_maps(args, particles):
    """``([(path, map, pixel_a)], [where each pixel size came from])``, maps checked."""
    from xmipp_qc.core.input_checks import map_problem
    from xmipp_qc.formats.mrc import read_volume

    maps, sources = [], []
    for path in args.volume:
        vol, px = read_volume(path)
        problem = map_problem(vol)
        if problem:
            raise ValueError(f"{path}: {problem}")
        if args.volume_pixel_size:
            px, source = args.volume_pixel_size, "--volume-pixel-size"
        elif px is None:
            px, source = float(np.max(particles.pixel_size_a)), "none in the header: the images'"
            log.warning("%s has no pixel size; assuming the images' %g Å/px", path, px)
        else:
            source = "MRC header"
        maps.append((path, vol, float(px)))
        sources.append(source)
    return maps, sources


def _image_pixel_source(args, particles) -> str:
    """Where the images' pixel size came from (:mod:`xmipp_qc.formats.relion_particles`)."""
    if args.pixel_size:
        return "--pixel-size"
    blocks = [particles.block, particles.blocks.get("optics")]
    if any(b is not None and b.has("rlnImagePixelSize") for b in blocks):
        return "STAR rlnImagePixelSize"
    return "STAR rlnDetectorPixelSize/rlnMagnification"


def run_notes(args, particles, maps, sources, grid: Grid):
    """Decide the CTF and log the run's first lines (:mod:`xmipp_qc.core.run_notes`).

    Returns the :class:`~xmipp_qc.core.run_notes.CtfChoice` (applied whenever the STAR
    has CTF columns, unless ``--no-ctf``).
    """
    from xmipp_qc.core.run_notes import ctf_choice, pixel_size_notes

    ctf = ctf_choice(not args.no_ctf, particles.defocus is not None,
                     source="rlnDefocusU/V/Angle columns in the STAR", switch_off="--no-ctf")
    log.info("%s", ctf.note)
    where = _image_pixel_source(args, particles)
    images = [(p, where) for p in sorted(set(particles.pixel_size_a.tolist()))]
    named = [(f"'{os.path.basename(path)}'", px, src) for (path, _, px), src in zip(maps, sources)]
    for line in pixel_size_notes(images, named, grid.pixel_a, hint="give the right one with "
                                 "--volume-pixel-size (or --pixel-size for the images)"):
        log.warning("%s", line)
    return ctf

