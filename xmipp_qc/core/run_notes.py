"""What a compare-reprojections run says in its first lines: CTF, and pixel sizes that differ.

Two silent choices change every score of a run: whether each image's CTF is
applied to its reprojection (real β-gal particles of ``shared/data``: median
cost 0.285 with it, 0.217 without), and the resampling of a map whose pixel
size differs from the images' (the same particles against their map with a
header of 1.77 instead of 3.54 Å/px: median cost 0.052, without another symptom).
The command line and the protocol decide and word both here, once, and print
the lines before any image is processed (stderr of ``xmipp-qc``; the protocol's
log and summary). Each front end passes its own words for where a
value came from (``STAR rlnImagePixelSize``, ``MRC header``, an option or a
form field) and for how to change it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

__all__ = ["PIXEL_RTOL", "CtfChoice", "ctf_choice", "pixel_size_notes"]

#: Pixel sizes (Å/px) closer than this relative difference are the same.
PIXEL_RTOL = 1e-3


@dataclass(frozen=True)
class CtfChoice:
    """Whether the CTF is applied to the reprojections, and the sentence saying why."""

    applied: bool
    note: str


def ctf_choice(wanted: bool, available: bool, *, source: str, switch_off: str) -> CtfChoice:
    """Apply the CTF whenever the images carry one, unless switched off.

    Parameters
    ----------
    wanted : bool
        The user did not switch the CTF off (the default).
    available : bool
        Every image carries CTF parameters.
    source : str
        Where the CTF parameters are (or would be), e.g. ``"rlnDefocusU/V/Angle in
        the STAR"``.
    switch_off : str
        How a user switches it off, e.g. ``"--no-ctf"`` or ``"Ignore CTF = Yes"``.

    Returns
    -------
    CtfChoice
        ``applied = wanted and available``, and one sentence starting with
        ``"CTF applied"`` or ``"CTF not applied"`` that gives the reason.
    """
    if wanted and available:
        return CtfChoice(True, f"CTF applied to every reprojection: the images carry one "
                               f"({source}); {switch_off} to ignore it.")
    if wanted:
        return CtfChoice(False, f"CTF not applied: the images carry none (no {source}); "
                                "scores compare them with CTF-free reprojections.")
    if available:
        return CtfChoice(False, f"CTF not applied ({switch_off}) although the images carry "
                                f"one ({source}): scores are lower than with it.")
    return CtfChoice(False, f"CTF not applied ({switch_off}; the images carry none).")


def pixel_size_notes(images: Sequence[tuple[float, str]], maps: Sequence[tuple[str, float, str]],
                     work_pixel_a: float, *, hint: str) -> list[str]:
    """One line per map whose pixel size differs from the images', else nothing.

    Parameters
    ----------
    images : sequence of (pixel_a, source)
        Every distinct pixel size of the images (Å/px) and where it came from.
    maps : sequence of (name, pixel_a, source)
        Each map: how the user knows it, its pixel size (Å/px), where it came from.
    work_pixel_a : float
        The run's working pixel size (Å/px), to which everything is resampled.
    hint : str
        How to correct a wrong map pixel size in this front end.

    Returns
    -------
    list of str
        E.g. ``"Pixel sizes differ: map 'b.mrc' 1.77 Å/px (MRC header), images 3.54
        Å/px (STAR rlnImagePixelSize); the map is resampled to 3.54 Å/px. If the map's
        value is wrong, every score is: <hint>."``
    """
    def same(a: float, b: float) -> bool:
        return math.isclose(a, b, rel_tol=PIXEL_RTOL)

    shown = ", ".join(f"{p:g} Å/px ({src})" for p, src in images)
    lines = []
    for name, px, src in maps:
        if any(same(px, p) for p, _ in images):
            continue
        lines.append(f"Pixel sizes differ: map {name} {px:g} Å/px ({src}), images {shown}; "
                     f"the map is resampled to {work_pixel_a:g} Å/px. If the map's value is "
                     f"wrong, every score is: {hint}.")
    return lines
