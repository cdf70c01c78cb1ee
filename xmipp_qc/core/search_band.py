"""Default band limit of the orientation searches (matching and local refinement).

Both searches compare images and reprojections on the Fourier band
``0 < |k| <= max_freq`` (cycles/px). Xmipp uses 0.25 cycles/px (half Nyquist)
at every box size. That band holds the angular information of a large box,
but at a small box it keeps too few Fourier rings: at ``N = 24`` it is 6 rings,
and the rings beyond it are where a small rotation changes the image most (the
change of a projection under a rotation grows with the frequency). Measured on
the 70S ribosome rescaled to 24 px at SNR 1 (issue #15): refinement started 3°
off ended at a median 2.2° with 0.25 cycles/px and 1.3° with the full band;
matching put 23 % of CTF-affected images within 7.5° with 0.25 and 100 % with
the wider band.

So the default band keeps at least :data:`MIN_RINGS` rings, up to Nyquist:
0.5 cycles/px for ``N <= 32``, ``16 / N`` between, 0.25 from ``N = 64``.
"""

from __future__ import annotations

__all__ = ["MIN_COARSE_RINGS", "MIN_RINGS", "default_band"]

MIN_RINGS = 16
"""Fourier rings the default search band keeps at least (up to Nyquist)."""

MIN_COARSE_RINGS = 8
"""Fourier rings the coarse level of the matching keeps at least."""


def default_band(box: int) -> float:
    """Return the default search band of a box, ``min(0.5, max(0.25, MIN_RINGS / N))``.

    Parameters
    ----------
    box : int
        Image size N in px.

    Returns
    -------
    float
        Band limit in cycles/px, in [0.25, 0.5].
    """
    if box < 1:
        raise ValueError(f"box must be a positive number of px, got {box}")
    return min(0.5, max(0.25, MIN_RINGS / box))
