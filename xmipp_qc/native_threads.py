"""One native (BLAS) thread per Python thread for the plugin's numeric work.

The numeric core runs many small matrix products. OpenBLAS, which numpy and
scipy bundle, gives each of them a pool of one thread per core by default,
whose idle threads spin. Scipion runs a protocol's steps in parallel threads
(``numberOfThreads``) and facilities run several jobs per machine, so those
pools oversubscribe the cores: two step threads projecting a gallery took 1.7
times as long with the default pools as with one BLAS thread each, with about
half of the CPU time spent spinning in the kernel.

The limit is set at run time with threadpoolctl: a protocol's process has
imported numpy long before the plugin's code runs, so ``OPENBLAS_NUM_THREADS``
would come too late. The numeric core itself (:mod:`xmipp_qc.core`) does not
import this module; protocols and commands call it once per process.
"""

from __future__ import annotations

from threadpoolctl import threadpool_info, threadpool_limits

__all__ = ["blas_threads", "limit_blas_threads"]


def limit_blas_threads(n: int = 1) -> None:
    """Give every BLAS library loaded in this process at most ``n`` threads, for good."""
    threadpool_limits(limits=int(n), user_api="blas")


def blas_threads() -> list[int]:
    """Thread counts of the BLAS libraries loaded in this process (one per library)."""
    return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]
