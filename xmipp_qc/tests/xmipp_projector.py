"""Xmipp's own Fourier projector (C++, through ``xmippLib``) as an independent reference.

``xmippLib.FourierProjector`` (installed with scipion-em) is the projector that
``xmipp_angular_project_library`` uses: zero padding, a radial cut-off and
nearest, linear or cubic B-spline interpolation (``degree`` 0, 1 or 3). The
tests compare :class:`xmipp_qc.core.projection.FourierProjector` with it and
``benchmarks/projection.py`` times it in the same run as ours.

xmippLib aborts the whole process (an uncatchable C++ ``terminate``: "FFT plan
cannot be created") when a second ``FourierProjector`` is built in a process,
so every projector runs in a child process of its own::

    python -m xmipp_qc.tests.xmipp_projector job.npz result.npz
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import numpy as np

__all__ = ["xmipp_projections"]


def xmipp_projections(
    volume: np.ndarray,
    angles: np.ndarray,
    *,
    pad: float,
    max_freq: float,
    degree: int,
    keep: int | None = None,
    repeats: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Project ``volume`` with Xmipp's C++ Fourier projector, in a child process.

    Parameters
    ----------
    volume : ndarray of shape (N, N, N)
        Map ``[z, y, x]`` (converted to float64, Xmipp's type).
    angles : ndarray of shape (n, 3)
        Xmipp Euler angles ``(rot, tilt, psi)`` in degrees.
    pad : float
        Xmipp's padding factor.
    max_freq : float
        Cut-off in cycles/px (0.5: full band).
    degree : {0, 1, 3}
        Nearest, linear or cubic B-spline interpolation.
    keep : int, optional
        Return only the first ``keep`` images (all by default).
    repeats : int
        Time ``repeats`` projections of all ``angles`` after the first pass.

    Returns
    -------
    images : ndarray of shape (keep, N, N), float64
        Projections, origin at ``N // 2``.
    times : ndarray of shape (repeats, 2)
        Wall and CPU seconds of each timed pass over all ``angles``.
    """
    with tempfile.TemporaryDirectory(prefix="xmipp-qc-xmipp-") as tmp:
        job, result = os.path.join(tmp, "job.npz"), os.path.join(tmp, "result.npz")
        n_keep = len(angles) if keep is None else int(keep)
        np.savez(job, volume=np.asarray(volume, dtype=np.float64), angles=angles,
                 settings=np.array([pad, max_freq, degree, n_keep, repeats], dtype=np.float64))
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
        done = subprocess.run([sys.executable, "-m", __name__, job, result], env=env,
                              capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            raise RuntimeError(f"xmippLib projector failed: {done.stderr[-2000:]}")
        with np.load(result) as out:
            return out["images"], out["times"]


def _run(job: str, result: str) -> None:
    """Child process: one xmippLib projector, the kept images and the timed passes."""
    import xmippLib

    with np.load(job) as data:
        volume, angles = data["volume"], data["angles"]
        pad, max_freq, degree, keep, repeats = data["settings"]
    image = xmippLib.Image()
    image.setData(np.ascontiguousarray(volume))
    projector = xmippLib.FourierProjector(image, float(pad), float(max_freq), int(degree))
    out = xmippLib.Image()
    out.setData(np.zeros(volume.shape[1:]))
    images = []
    for a in angles[: int(keep)]:
        projector.projectVolume(out, *map(float, a))
        images.append(out.getData().copy())
    times = []
    for _ in range(int(repeats)):
        wall, cpu = time.perf_counter(), time.process_time()
        for a in angles:
            projector.projectVolume(out, *map(float, a))
        times.append((time.perf_counter() - wall, time.process_time() - cpu))
    np.savez(result, images=np.array(images), times=np.array(times).reshape(-1, 2))


if __name__ == "__main__":
    _run(*sys.argv[1:3])
