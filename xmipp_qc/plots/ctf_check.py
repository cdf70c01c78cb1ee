"""CTF check figure of compare reprojections: correlation against defocus scale.

A pure function of arrays (no pyplot state, no display, no pyworkflow):
:func:`plot_ctf_check` draws, for each micrograph, the mean correlation of its
particles with their reprojections when the defocus of the CTF is scaled
(:mod:`xmipp_qc.core.ctf_check`), with the CTF as given at x1 and each curve's
peak marked. Suspect micrographs are drawn in warm colours and named first.
Save it with ``fig.savefig(path)``.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

__all__ = ["plot_ctf_check"]

_MAX_NAMED = 10  # micrographs named in the legend (suspect first); others grey
_SUSPECT_COLORS = ("tab:red", "tab:orange", "tab:purple", "tab:brown", "tab:pink")
_OK_COLORS = ("tab:blue", "tab:green", "tab:cyan", "tab:olive", "navy")


def _short(name: str) -> str:
    """Return a micrograph name without folders, at most 32 characters."""
    base = str(name).rsplit("/", 1)[-1]
    return base if len(base) <= 32 else "…" + base[-31:]


def plot_ctf_check(scales: ArrayLike, mean_corr: ArrayLike, names: Sequence[str], *,
                   suspect: ArrayLike, best_scale: ArrayLike, map_name: str = "the map",
                   no_ctf: Optional[ArrayLike] = None,
                   decided: Optional[ArrayLike] = None) -> Figure:
    """Mean correlation against defocus scale, one line per micrograph.

    Parameters
    ----------
    scales : array_like, shape (S,)
        Defocus scales (x the given defocus; 1 = the CTF as given).
    mean_corr : array_like, shape (m, S)
        Mean correlation of each micrograph's particles at each scale.
    names : sequence of str, length m
        Micrograph names (folders dropped in the legend).
    suspect : array_like of bool, shape (m,)
        Micrographs whose CTF is suspect (warm colours, named first).
    best_scale : array_like, shape (m,)
        Peak of each curve (marked with a dot).
    map_name : str
        Named in the title (e.g. ``"map 1: run_class001.mrc"``).
    no_ctf : array_like, shape (m,), optional
        Mean correlation without any CTF (the level is given in the legend of
        the named micrographs).
    decided : array_like of bool, shape (m,), optional
        Micrographs with a verdict; the others are drawn dashed ("too few particles").

    Returns
    -------
    matplotlib.figure.Figure
    """
    s = np.asarray(scales, dtype=np.float64)
    corr = np.asarray(mean_corr, dtype=np.float64).reshape(len(names), len(s))
    sus = np.asarray(suspect, dtype=bool).reshape(-1)
    best = np.asarray(best_scale, dtype=np.float64).reshape(-1)
    done = np.ones(len(names), bool) if decided is None else np.asarray(decided, bool)
    fig = Figure(figsize=(8.5, 5.5))  # fixed margins: a constrained layout doubles the cost
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.1, top=0.9)
    ax = fig.subplots()
    order = list(np.flatnonzero(sus)) + list(np.flatnonzero(~sus))
    named = set(order[:_MAX_NAMED])
    n_sus = n_ok = 0
    for i in [i for i in order if i not in named] + order[:_MAX_NAMED]:  # named on top
        if i in named:
            palette, k = (_SUSPECT_COLORS, n_sus) if sus[i] else (_OK_COLORS, n_ok)
            color = palette[k % len(palette)]
            n_sus, n_ok = n_sus + int(sus[i]), n_ok + int(not sus[i])
            label = f"{_short(names[i])}: {'SUSPECT, ' if sus[i] else ''}best x{best[i]:.2f}"
            if no_ctf is not None:
                label += f", no CTF {float(np.asarray(no_ctf)[i]):.3f}"
            if not done[i]:
                label += " (too few particles)"
        else:
            color, label = "0.75", None
        ax.plot(s, corr[i], color=color, lw=2.0 if sus[i] else 1.2,
                ls="-" if done[i] else "--", label=label, zorder=3 if i in named else 2)
        if np.isfinite(best[i]):
            ax.plot([best[i]], [np.interp(np.log(best[i]), np.log(s), corr[i])], "o",
                    color=color, ms=5, zorder=4)
    if len(names) > _MAX_NAMED:
        ax.plot([], [], color="0.75", label=f"{len(names) - _MAX_NAMED} other micrographs")
    ax.axvline(1.0, color="k", ls=":", lw=1.2, label="CTF as given (x1)")
    ax.set_xscale("log", base=2)
    ticks = [t for t in (0.25, 0.5, 1, 2, 4) if s.min() <= t <= s.max()]
    ax.set_xticks(ticks, [f"x{t:g}" for t in ticks])
    ax.set_xlabel("Defocus scale (x the given defocus, log scale; dot = best)")
    ax.set_ylabel("Mean correlation, particle vs reprojection")
    ax.set_title(f"CTF check per micrograph — {map_name}\n{int(sus.sum())} of "
                 f"{len(names)} micrographs with a suspect CTF")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return fig
