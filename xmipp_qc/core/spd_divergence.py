"""Jensen-Bregman LogDet divergence of residual covariances, and their centroid.

Each image's residual covariance is a small SPD matrix (9 x 9, float32, from
:mod:`xmipp_qc.core.residuals`); the set's centroid and every image's
divergence from it give ``resCovDivergence``. Both work through the stack in
blocks of :data:`BLOCK` matrices in float64, so their working memory does not
grow with the number of images (the stack itself is the caller's, float32:
324 bytes per image).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: Matrices per block: the float64 temporaries are a few times BLOCK x d x d.
BLOCK = 4096


def _pair(a: NDArray, b: NDArray) -> NDArray[np.float64]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    _, ld_m = np.linalg.slogdet(0.5 * (a + b))
    _, ld_a = np.linalg.slogdet(a)
    _, ld_b = np.linalg.slogdet(b)
    return ld_m - 0.5 * (ld_a + ld_b)


def jbld(x: ArrayLike, y: ArrayLike) -> NDArray[np.float64]:
    """Jensen-Bregman LogDet divergence of SPD matrices (Cherian et al., TPAMI 2013).

    ``J(X, Y) = log det((X + Y) / 2) - (log det X + log det Y) / 2`` >= 0, zero
    iff ``X = Y``; computed with ``slogdet`` in float64.

    Parameters
    ----------
    x, y : array_like, shape (..., d, d)
        Symmetric positive definite matrices (broadcast against each other).
        A stack ``x`` of shape (K, d, d) against one ``y`` (d, d) is done in
        blocks of :data:`BLOCK`.

    Returns
    -------
    ndarray, shape (...)
    """
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim == 3 and y.ndim == 2 and len(x) > BLOCK:
        return np.concatenate([_pair(x[i:i + BLOCK], y) for i in range(0, len(x), BLOCK)])
    return _pair(x, y)


def jbld_centroid(covariances: ArrayLike, n_iter: int = 100, tol: float = 1e-10) -> NDArray:
    """JBLD centroid of SPD matrices by the fixed point of Cherian et al. (2013, eq. 25).

    ``C <- [mean_k ((R_k + C) / 2)^-1]^-1``, started from the arithmetic mean
    (Xmipp starts from the identity and stops after 10 iterations). The mean
    over ``k`` is summed block by block (:data:`BLOCK` matrices) in float64.

    Parameters
    ----------
    covariances : array_like, shape (K, d, d)
        SPD matrices, K >= 1 (float32 or float64; not copied whole).
    n_iter : int
        Maximum number of iterations.
    tol : float
        Stop when the relative Frobenius change is below ``tol``.

    Returns
    -------
    ndarray, shape (d, d), float64
    """
    r = np.asarray(covariances)
    if r.ndim != 3 or len(r) == 0 or r.shape[1] != r.shape[2]:
        raise ValueError(f"covariances must be a non-empty (K, d, d) stack, got {r.shape}")
    c = r.mean(axis=0, dtype=np.float64)
    for _ in range(n_iter):
        total = np.zeros_like(c)
        for i in range(0, len(r), BLOCK):
            block = r[i:i + BLOCK].astype(np.float64)
            total += np.linalg.inv(0.5 * (block + c)).sum(axis=0)
        new = np.linalg.inv(total / len(r))
        new = 0.5 * (new + new.T)
        done = np.linalg.norm(new - c) <= tol * np.linalg.norm(c)
        c = new
        if done:
            break
    return c
