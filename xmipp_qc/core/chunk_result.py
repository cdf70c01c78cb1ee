"""One chunk's results of compare reprojections, and their ``.npz`` file.

:class:`ChunkResult` is what :func:`xmipp_qc.core.pipeline.process_chunk`
returns for ``n`` images of box ``N``: the final alignment (Xmipp ZYZ Euler
angles in degrees, Xmipp shifts in px at the working sampling, ``I(r) = P(r + s)``),
the matching scores, the per-image summary
(:class:`xmipp_qc.core.residuals.ChunkSummary`) and, optionally, the images in
the aligned frame (see :mod:`xmipp_qc.core.pipeline`). :meth:`ChunkResult.save`
and :meth:`ChunkResult.load` are the one file format of a chunk's results
(one ``.npz``, no pickles), read back by the protocol, the CLI and the workers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from xmipp_qc.core.residuals import ChunkSummary

__all__ = ["ChunkResult"]


@dataclass(frozen=True)
class ChunkResult:
    """Everything one chunk produces (``n`` images of box ``N``).

    Attributes
    ----------
    ids : ndarray of int, shape (n,)
        Caller's item ids, in input order.
    angles, shifts : ndarray, shape (n, 3) and (n, 2), float64
        Final Xmipp angles (degrees) and shifts (px, working sampling).
    matched : ndarray of bool, shape (n,)
        Angles found by projection matching (else given).
    match_corr, match_margin : ndarray, shape (n,)
        Matching correlation and margin; NaN where not matched.
    summary : ChunkSummary
        Per-image scores, residual covariances and failure reasons; with
        refinement, :meth:`xmipp_qc.core.refine.RefineResult.scores` are among
        its scores (``angleChange`` in degrees, ``shiftChange`` in px, ...).
    reprojections, residuals, aligned : ndarray of float32, shape (n, N, N) or None
        Images in the aligned frame (:mod:`xmipp_qc.core.pipeline` docstring).
    ctf_corr : ndarray of float32, shape (n, K) or None
        With the CTF applied: the correlation of each image with its
        reprojection under every alternative CTF of the CTF check
        (:func:`xmipp_qc.core.ctf_check.ctf_correlations`, columns
        :data:`~xmipp_qc.core.ctf_check.ALTERNATIVES`); NaN for failed images.
    """

    ids: NDArray[np.int64]
    angles: NDArray[np.float64]
    shifts: NDArray[np.float64]
    matched: NDArray[np.bool_]
    match_corr: NDArray[np.float64]
    match_margin: NDArray[np.float64]
    summary: ChunkSummary
    reprojections: NDArray[np.float32] | None = field(default=None, repr=False)
    residuals: NDArray[np.float32] | None = field(default=None, repr=False)
    aligned: NDArray[np.float32] | None = field(default=None, repr=False)
    ctf_corr: NDArray[np.float32] | None = field(default=None, repr=False)

    _ARRAYS = ("ids", "angles", "shifts", "matched", "match_corr", "match_margin")
    _IMAGES = ("reprojections", "residuals", "aligned")

    def save(self, path: str, *, with_images: bool = True) -> None:
        """Write the chunk to one ``.npz`` file (images optional)."""
        data = {k: getattr(self, k) for k in self._ARRAYS}
        data.update({f"score_{k}": v for k, v in self.summary.scores.items()})
        data["covariances"] = self.summary.covariances
        data["reasons"] = np.asarray(self.summary.reasons, dtype=str)
        if self.ctf_corr is not None:
            data["ctf_corr"] = self.ctf_corr
        if with_images:
            data.update({k: getattr(self, k) for k in self._IMAGES if getattr(self, k) is not None})
        with open(path, "wb") as fh:
            np.savez(fh, **data)

    @classmethod
    def load(cls, path: str, *, with_images: bool = False) -> ChunkResult:
        """Read a chunk written by :meth:`save` (images only when asked and present)."""
        with np.load(path, allow_pickle=False) as z:
            scores = {k[len("score_"):]: z[k] for k in z.files if k.startswith("score_")}
            summary = ChunkSummary(scores=scores, covariances=z["covariances"],
                                   reasons=z["reasons"].astype(str))
            images = {k: (z[k] if with_images and k in z.files else None) for k in cls._IMAGES}
            ctf_corr = z["ctf_corr"] if "ctf_corr" in z.files else None
            return cls(**{k: z[k] for k in cls._ARRAYS}, summary=summary, **images,
                       ctf_corr=ctf_corr)
