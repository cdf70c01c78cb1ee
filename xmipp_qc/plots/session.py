"""Session figure of compare reprojections: outlier rates over a collection.

A pure function of arrays (no pyplot state, no display, no pyworkflow):
:func:`plot_session` draws the flagged fraction of each micrograph, in order
of acquisition, and of consecutive windows of particles, with the bad-micrograph
threshold. Save it with ``fig.savefig(path)``.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

__all__ = ["plot_session"]

_MIC_COLOR, _BAD_COLOR, _WINDOW_COLOR = "tab:blue", "tab:red", "tab:green"


def plot_session(mic_rates: ArrayLike, mic_counts: ArrayLike, window_centres: ArrayLike,
                 window_rates: ArrayLike, *, threshold: float, min_particles: int = 1,
                 map_name: str = "map", bad: Optional[ArrayLike] = None,
                 window: int = 0, n_particles: Optional[int] = None) -> Figure:
    """Outlier rate per micrograph and per window of particles, in acquisition order.

    Parameters
    ----------
    mic_rates, mic_counts : array_like, shape (m,)
        Flagged fraction and particle count of each micrograph, in order of
        acquisition (:func:`xmipp_qc.core.session.micrograph_rates`); may be
        empty when the particles carry no micrograph.
    window_centres, window_rates : array_like, shape (w,)
        From :func:`xmipp_qc.core.session.window_rates` (particle number, 1-based).
    threshold : float
        Rate at or above which a micrograph is called bad (dashed line).
    min_particles : int
        Micrographs with fewer particles are drawn hollow (not decided).
    map_name : str
        Named in the title.
    bad : array_like of bool, shape (m,), optional
        Micrographs called bad (red); default rate >= threshold and enough particles.
    window : int
        Particles per window, for the legend.
    n_particles : int, optional
        Particles in all; when fewer than one window, the legend says so (the
        single point is then the rate of the whole set).

    Returns
    -------
    matplotlib.figure.Figure
    """
    rates = np.asarray(mic_rates, dtype=np.float64)
    counts = np.asarray(mic_counts, dtype=np.int64)
    enough = counts >= min_particles
    bad = (rates >= threshold) & enough if bad is None else np.asarray(bad, dtype=bool)
    fig = Figure(figsize=(8.0, 6.0), layout="constrained")
    top, bottom = fig.subplots(2, 1)
    order = np.arange(1, len(rates) + 1)
    groups = ((enough & ~bad, {"color": _MIC_COLOR}, "micrograph"),
              (bad, {"color": _BAD_COLOR}, f"bad micrograph ({int(bad.sum())})"),
              (~enough, {"facecolor": "none", "edgecolor": "grey"},
               f"fewer than {min_particles} particles (not decided)"))
    for sel, style, label in groups:
        if sel.any():
            top.bar(order[sel], 100 * rates[sel], width=0.8, label=label, **style)
    top.axhline(100 * threshold, color="k", ls="--", lw=1,
                label=f"bad-micrograph threshold {100 * threshold:.0f}%")
    top.set_xlabel("micrograph (order of acquisition)")
    top.set_ylabel("flagged particles (%)")
    top.set_ylim(0, 105)
    top.set_title(f"{map_name}: outlier rate per micrograph ({len(rates)} micrographs)"
                  if len(rates) else f"{map_name}: particles carry no micrograph")
    top.legend(loc="upper right", fontsize="small")
    centres = np.asarray(window_centres, dtype=np.float64)
    wr = np.asarray(window_rates, dtype=np.float64)
    bottom.plot(centres, 100 * wr, "o-", color=_WINDOW_COLOR, ms=3,
                label=_window_label(window, n_particles))
    bottom.axhline(100 * threshold, color="k", ls="--", lw=1,
                   label=f"bad-micrograph threshold {100 * threshold:.0f}%")
    bottom.set_xlabel("particle number (order of arrival)")
    bottom.set_ylabel("flagged particles (%)")
    bottom.set_ylim(0, 105)
    if n_particles:
        bottom.set_xlim(0, n_particles + 1)
        if len(centres) == 1:  # one window holds the whole set: show its extent
            bottom.hlines(100 * wr, 1, n_particles, color=_WINDOW_COLOR, lw=1.5)
    else:
        bottom.set_xlim(left=0)
    bottom.set_title(f"{map_name}: outlier rate over the session")
    bottom.legend(loc="upper right", fontsize="small")
    return fig


def _window_label(window: int, n_particles: Optional[int]) -> str:
    """Legend of the window curve: its size, or that the set is shorter than one window."""
    if not window:
        return "window"
    if n_particles is not None and n_particles < window:
        return f"all {n_particles} particles (fewer than one window of {window})"
    return f"windows of {window} particles"
