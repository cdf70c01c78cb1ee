"""Result of the local refinement (:class:`xmipp_qc.core.refine.LocalRefiner`).

Conventions of :mod:`xmipp_qc.core`: Xmipp ZYZ Euler angles in degrees, Xmipp
shifts in px (``I(r) = P(r + s)``), images ``(n, N, N)`` indexed ``[y, x]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["RefineResult"]


@dataclass(frozen=True)
class RefineResult:
    """Output of :meth:`LocalRefiner.refine` for ``n`` images of box ``N``.

    Attributes
    ----------
    angles : ndarray, shape (n, 3), float64
        Refined Xmipp Euler angles (degrees).
    shifts : ndarray, shape (n, 2), float64
        Refined Xmipp shifts (px).
    gray_a, gray_b : ndarray, shape (n,)
        Least-squares gray model ``I ~ a P + b`` in the mask (1 and 0 when the
        refinement was run with ``gray=False``).
    projections : ndarray, shape (n, N, N), float32
        The reprojections ``P(r + s)`` at the refined angles and shifts (with
        the CTF), in the frame of the input image, full band.
    residuals : ndarray, shape (n, N, N), float32
        ``images - (gray_a * projections + gray_b)`` (not masked).
    corr_initial, corr_final : ndarray, shape (n,)
        Band-limited correlation at the input parameters and after refinement
        (higher is better).
    gray_initial, gray_initial_se : ndarray, shape (n,)
        Band-limited least-squares scale ``a`` of ``I ~ a P`` at the input
        parameters and its standard error under white noise (the evidence that
        the map explains the image as given, in units of the noise).
    angle_change_deg : ndarray, shape (n,)
        Geodesic angle between the input and refined orientations (degrees).
    shift_change_px : ndarray, shape (n,)
        Length of the shift change (px).
    angle_se_deg : ndarray, shape (n,)
        Largest standard error of the orientation about any axis (degrees)
        near the refined angles, from the Gauss-Newton fit and its residual;
        inf when the image does not correlate positively with the map or does
        not change with an angle; NaN when the angles were not refined.
    pinned : ndarray of bool, shape (n,)
        False where ``angle_se_deg > max_se_deg`` (default: the bound on the
        angular change, 5 deg): the correlation is too flat
        to pin the orientation, and the image kept its input angles and shift
        (its ``angle_change_deg`` is 0).
    move_statistic : ndarray, shape (n,)
        F statistic of the correlation gain of the refined orientation over
        the input one (:mod:`xmipp_qc.core.move_evidence`; 0 where the move
        did not improve the fit).
    move_kept : ndarray of bool, shape (n,)
        True where the move passed the evidence test (and the orientation is
        pinned) and the refined angles were kept; False where the image kept
        its input angles, with the shift solved at them (``angle_change_deg``
        is 0).
    corr_fit, angle_fit_change_deg : ndarray, shape (n,)
        Band correlation and geodesic angular change (degrees) of the best fit,
        whether or not the evidence test kept it (``corr_final`` and
        ``angle_change_deg`` where it did; the input's where the orientation is
        not pinned).
    """

    angles: NDArray[np.float64]
    shifts: NDArray[np.float64]
    gray_a: NDArray[np.float64]
    gray_b: NDArray[np.float64]
    projections: NDArray[np.float32]
    residuals: NDArray[np.float32]
    corr_initial: NDArray[np.float64]
    corr_final: NDArray[np.float64]
    gray_initial: NDArray[np.float64]
    gray_initial_se: NDArray[np.float64]
    angle_change_deg: NDArray[np.float64]
    shift_change_px: NDArray[np.float64]
    angle_se_deg: NDArray[np.float64]
    pinned: NDArray[np.bool_]
    move_statistic: NDArray[np.float64]
    move_kept: NDArray[np.bool_]
    corr_fit: NDArray[np.float64]
    angle_fit_change_deg: NDArray[np.float64]

    def scores(self) -> dict[str, NDArray[np.float64]]:
        """Per-image refinement scores for :func:`xmipp_qc.core.residuals.summarize_chunk`.

        Returns
        -------
        dict of str to ndarray of shape (n,)
            ``corrInit``, ``corrFinal`` (band-limited correlations at the input
            and output parameters, higher is better), ``corrGain`` and
            ``angleChange`` (degrees): the correlation gain and the angular
            move of the best fit, whether or not it was kept (``moveKept``;
            a large gain means the input parameters were wrong, and as
            scores they must not depend on the decision), ``shiftChange``
            (px, output), ``grayInit`` and ``grayInitSE``,
            ``angleSE`` (degrees), ``anglePinned`` (1 or 0) and ``moveKept``
            (1 where the refined angles passed the evidence test and were kept,
            else 0: the input angles were kept).
        """
        return {
            "corrInit": self.corr_initial, "corrFinal": self.corr_final,
            "corrGain": self.corr_fit - self.corr_initial,
            "angleChange": self.angle_fit_change_deg, "shiftChange": self.shift_change_px,
            "grayInit": self.gray_initial, "grayInitSE": self.gray_initial_se,
            "angleSE": self.angle_se_deg, "anglePinned": self.pinned.astype(np.float64),
            "moveKept": self.move_kept.astype(np.float64),
        }
