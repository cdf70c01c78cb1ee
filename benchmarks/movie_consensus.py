"""Benchmark of the movie alignment consensus (issue #3).

(a) core throughput: ``compare_trajectories`` on 40-frame movies (movies/s).
(b) the Scipion protocol end to end in a headless project on N movies, with
    inputs either closed before launch ("static", the condition of the Xmipp
    reference figures) or arriving in streaming. The inputs come from
    :func:`make_inputs` (ONE function, reused to time the Xmipp original on the
    same workload): two XmippQcProtSyntheticMovies runs sharing one tiny movie
    stack, so the benchmark measures the consensus, not the generator.

Printed per configuration (medians over ``--repeats``): wall time from launch
to finish, time per movie, the protocol's own work per movie (sum of its
"Consensus check" log lines: reading new inputs, comparing, saving, writing the
outputs), peak RSS of the protocol process, time to the first accepted output
and when the inputs closed (both from launch), and the ratio to the Xmipp
original (31 s / 200, 183 s / 500, 652 s / 1,000 movies, static, 4 threads on
this machine; 2,000 extrapolated with its measured N^1.8 growth).

Usage::

    .venv/bin/python benchmarks/movie_consensus.py [--sizes 500 1000 2000] [--repeats 3]
"""

import argparse
import os
import re
import statistics
import time

import headless_scipion  # noqa: F401  (first: a private headless Scipion)
import psutil  # noqa: E402
from pyworkflow.project import Manager  # noqa: E402
from pyworkflow.protocol import getProtocolFromDb  # noqa: E402

from xmipp_qc.core.simulate import simulate_trajectory_pair  # noqa: E402
from xmipp_qc.core.trajectories import compare_trajectories  # noqa: E402
from xmipp_qc.protocols import (  # noqa: E402
    XmippQcProtConsensusMovieAlignment,
    XmippQcProtSyntheticMovies,
)
from xmipp_qc.protocols.protocol_synthetic_movies import RUN_SECONDARY  # noqa: E402

KINDS = "agree,agree,agree,offset,agree,noise,scaled,flat,mirrored,agree"
XMIPP_REFERENCE_S = {200: 31.0, 500: 183.0, 1000: 652.0}


def xmippReference(n):
    """Xmipp original wall time (s), measured; extrapolated as N^1.8 beyond 1,000."""
    return XMIPP_REFERENCE_S.get(n, 652.0 * (n / 1000.0) ** 1.8)


def make_inputs(project, nMovies, nFrames=40, streaming=False, batches=10, interval=2.0,
                seed=0, wait=True):
    """Launch the reference and secondary synthetic runs of the same movies.

    Static: both closed when this returns. Streaming: both launched in the
    background, ``nMovies / batches`` movies every ``interval`` s; returns once
    both output sets exist (a consumer can point at them).
    """
    common = {"nMovies": nMovies, "nFrames": nFrames, "kinds": KINDS, "seed": seed,
              "sharedStack": True, "boxSize": 8}
    if streaming:
        common.update(interval=interval, moviesPerInterval=max(1, nMovies // batches))
    ref = project.newProtocol(XmippQcProtSyntheticMovies, **common)
    sec = project.newProtocol(XmippQcProtSyntheticMovies, alignmentRun=RUN_SECONDARY, **common)
    for prot in (ref, sec):
        project.launchProtocol(prot, wait=not streaming)
    if streaming:
        for prot in (ref, sec):
            _waitFor(project, prot, lambda p: p.hasAttribute("outputMovies"))
    return ref, sec


def _refreshed(project, prot):
    """``prot`` updated from its run.db, or reloaded from it when pyworkflow's poll
    marked a run that ended between two of its reads as failed ("not found running")."""
    project._updateProtocol(prot)
    if prot.isFailed() and "not found running" in (prot.getErrorMessage() or ""):
        prot = getProtocolFromDb(project.path, prot.getDbPath(), prot.getObjId())
    return prot


def _waitFor(project, prot, condition, timeout=3600, poll=0.3):
    deadline = time.time() + timeout
    while time.time() < deadline:
        prot = _refreshed(project, prot)
        if condition(prot) or prot.isFailed():
            return prot
        time.sleep(poll)
    raise TimeoutError(f"{prot.getRunName()} did not reach the condition")


def _protocolPid(prot):
    """Pid of the python process that runs ``prot`` (a child of this script)."""
    runDir = os.path.abspath(prot.getWorkingDir())
    for child in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if "pw_protocol_run.py" in cmd and runDir in cmd and "python" in child.name():
            return child.pid
    return None


def _peakRss(pid):
    """Peak resident memory (MB) of a live process, from /proc (VmHWM)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            return int(re.search(r"VmHWM:\s+(\d+)", fh.read()).group(1)) / 1024.0
    except (OSError, AttributeError):
        return 0.0


def run_consensus(project, ref, sec, protocolClass=XmippQcProtConsensusMovieAlignment,
                  **params):
    """Launch the consensus on the two inputs and measure it until it finishes."""
    prot = project.newProtocol(protocolClass, inputMovies1=ref.outputMovies,
                               inputMovies2=sec.outputMovies, **params)
    t0 = time.time()
    project.launchProtocol(prot, wait=False)
    firstOutput = inputsClosed = None
    peak, pid = 0.0, None
    while True:
        prot = _refreshed(project, prot)
        pid = pid or _protocolPid(prot)
        if pid:
            peak = max(peak, _peakRss(pid))
        if firstOutput is None and os.path.exists(prot._getPath("movies.sqlite")):
            firstOutput = time.time() - t0
        if inputsClosed is None:
            ref, sec = (p if not p.isActive() else _refreshed(project, p) for p in (ref, sec))
            if ref.isFinished() and sec.isFinished():
                inputsClosed = time.time() - t0
        if not prot.isActive():
            break
        time.sleep(0.2)
    wall = time.time() - t0
    if prot.isFailed():
        raise RuntimeError(f"consensus failed: {prot.getErrorMessage()}")
    return {"wall": wall, "first": firstOutput, "closed": inputsClosed, "peak_mb": peak,
            "own": _ownWork(prot), "n_out": prot.outputMovies.getSize()
            + prot.outputMoviesDiscarded.getSize()}


def _ownWork(prot):
    """Seconds the protocol spent in its consensus checks (from its log)."""
    with open(prot.getStdoutLog()) as fh:
        return sum(float(x) for x in re.findall(r"Consensus check: .* in ([\d.]+) s", fh.read()))


def core_throughput(nMovies=2000, nFrames=40, repeats=5):
    """Median movies/s of compare_trajectories on a mix of kinds."""
    pairs = [simulate_trajectory_pair(k, n_frames=nFrames, seed=i)
             for i, k in enumerate(KINDS.split(",") * (nMovies // 10))]
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for p in pairs:
            compare_trajectories(p.frames_ref, p.ref, p.frames_sec, p.sec, pixel_size_a=1.0,
                                 dose_per_frame=1.0)
        rates.append(len(pairs) / (time.perf_counter() - start))
    return statistics.median(rates)


def _median(rows, key):
    values = [r[key] for r in rows if r[key] is not None]
    return statistics.median(values) if values else float("nan")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 1000, 2000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modes", nargs="+", default=["static", "streaming"])
    args = parser.parse_args()

    print(f"(a) core: compare_trajectories, 40 frames: {core_throughput():,.0f} movies/s "
          f"(median of 5)", flush=True)
    project = Manager().createProject("bench_movie_consensus")
    os.chdir(project.path)
    header = (f"{'mode':<10}{'N':>6}{'wall s':>9}{'ms/movie':>10}{'own ms/mv':>11}"
              f"{'peak MB':>9}{'1st out s':>11}{'in closed s':>13}{'xmipp s':>9}{'speedup':>9}")
    print("(b) protocol end to end, medians of", args.repeats, "runs; streaming: inputs "
          "arrive in 10 batches 2 s apart (wall is bounded by the arrival)\n" + header,
          flush=True)
    walls = {}
    for mode in args.modes:
        for n in args.sizes:
            rows = []
            for rep in range(args.repeats):
                ref, sec = make_inputs(project, n, streaming=mode == "streaming", seed=rep)
                rows.append(run_consensus(project, ref, sec))
                assert rows[-1]["n_out"] == n, rows[-1]
            wall = _median(rows, "wall")
            walls[mode, n] = wall
            own = statistics.median(r["own"] / n for r in rows)
            xmipp = (f"{xmippReference(n):>9.0f}{xmippReference(n) / wall:>9.1f}x"
                     if mode == "static" else f"{'-':>9}{'-':>10}")
            print(f"{mode:<10}{n:>6}{wall:>9.1f}{1000 * wall / n:>10.2f}{1000 * own:>11.2f}"
                  f"{_median(rows, 'peak_mb'):>9.0f}{_median(rows, 'first'):>11.1f}"
                  f"{_median(rows, 'closed'):>13.1f}{xmipp}", flush=True)
    for mode in args.modes:
        if (mode, 1000) in walls and (mode, 2000) in walls:
            print(f"{mode}: wall(2000) / wall(1000) = "
                  f"{walls[mode, 2000] / walls[mode, 1000]:.2f} (target <= 2.2)")


if __name__ == "__main__":
    main()
