"""Benchmark of the compare-reprojections protocol end to end (issue #6).

Two workloads, each in a headless Scipion project, inputs made by the hidden
XmippQcProtSyntheticParticles helper (not timed):

* ``particles``: 10,000 particles of box 128 at 1.5 Å/px with their angles
  (``useAssignment``), downsampled to 3 Å/px (box 64) by Fourier cropping,
  one map, 2 threads, chunks of 256;
* ``averages``: 200 class averages of box 64 at 3 Å/px without angles
  (projection matching, 5° c1 gallery), one map.

* ``streaming`` (``--rates``): particles of box 128 at 1.5 Å/px WITHOUT angles
  (projection matching, 5° c1 gallery) after downsampling to box 64, arriving
  in the open output of the synthetic helper at a set rate (one batch per
  second) for ``--stream-seconds``; the compare protocol (2 chunk threads,
  chunks of 256, burn-in 1,000) runs on it in streaming. Printed per rate: the
  lag between a particle's arrival (the batch time the helper logs in
  ``extra/arrivals.txt``) and its appearance in the output sqlite (polled every
  0.25 s): median and 95th percentile, over all particles and over the last
  quarter; the time from the first arrival to the first output; the rate of
  output after the first output; and whether the protocol keeps up: over the
  particles that arrive after the first output (the burn-in backlog cleared or
  not), the lag grows by less than 0.1 s per second of session and its median
  is under 30 s ("n/a" when fewer than 100 such particles). The target is
  150,000 particles per hour (41.7/s) with matching and first outputs within a
  minute. The load average is printed: on a shared machine the figures scale
  with it.
  Measured 2026-12-03 on the 2 shared cores at load 8-10 (not quiet; the core
  alone ran 30-33 images/s per thread there against 52/s at load 1.4):
  30/s keeps up (lag median 2.8 s, p95 29.8 s, first output 37.5 s after the
  first particle, burn-in included); 42/s does not (31 particles/s output, lag
  median 36.6 s and growing 0.24 s/s, first output 51 s); 20/s keeps up.

Printed: per batch workload the wall time from launch to finish and the peak RSS of
the protocol process, then per step kind (convertStep, downSampleStep,
produceResiduals, evaluateResiduals, createOutputStep) the summed step time
(from the protocol's own step start/end times, ``prot.loadSteps()``), the
number of steps, throughput (images/s) and the peak RSS sampled while steps of
that kind ran. Medians over ``--repeats``. The reference is Xmipp's C++ on this
machine (D2's measurements): ``xmipp_angular_continuous_assign2`` 1,000
images of box 64 in 69 s plus ``xmipp_image_residuals`` 20 s (11 images/s),
and ``xmipp_angular_projection_matching`` 200 images of box 64 in 77 s
(2.6 images/s); the Xmipp figure of a workload is those rates applied to it
(10,000 particles: 890 s; 200 averages: 77 + 18 = 95 s).

Queue mode (``--workloads queue``, needs the local Slurm of
``scripts/services/slurm.sh``: source it and call ``slurm_start`` first): the
same particles (``--queue-particles``, default 2,000) compared locally and with
the queue per step (one Slurm job per chunk, ``numberOfThreads - 1 = 2`` in
flight) for each chunk size of ``--queue-chunks``. Printed per chunk count:
local and queue wall time, Slurm jobs created, the worker's own seconds per
chunk (from its log) and the overhead per job (chunk step time minus the
worker's time: sbatch, scheduling, Python start-up, pyworkflow's 3 s status
polls). A projection onto N nodes follows from those figures: with J jobs in
flight, ``wall ~ fixed + ceil(chunks / J) * (chunk + overhead)``.

Command-line mode (``--workloads cli``): ``xmipp-qc compare-reprojections`` on
``--cli-particles`` (default 2,000) synthetic particles of box 64 at 3 Å/px in
a STAR file, against 2 maps, angles found by projection matching
(``--no-assignment``), with ``--threads 1`` and ``--threads 2``: wall time and
images/s (image-map pairs per second), side by side in one run.

Usage::

    .venv/bin/python benchmarks/compare_reprojections.py [--workloads particles averages]
        [--repeats 3] [--particles 10000]
    .venv/bin/python benchmarks/compare_reprojections.py --workloads streaming \
        --rates 30 42 60 [--stream-seconds 90]
    .venv/bin/python benchmarks/compare_reprojections.py --workloads queue \
        [--queue-chunks 1000 500 250 125] [--queue-particles 2000]
    .venv/bin/python benchmarks/compare_reprojections.py --workloads cli [--cli-particles 2000]
"""

import argparse
import glob
import json
import math
import os
import re
import statistics
import sys
import threading
import time
from collections import defaultdict

import headless_scipion  # noqa: F401  (first: a private headless Scipion)
import numpy as np  # noqa: E402
import psutil  # noqa: E402
from pyworkflow.project import Manager  # noqa: E402

from xmipp_qc.protocols import (  # noqa: E402
    XmippQcProtCompareReprojections,
    XmippQcProtSyntheticParticles,
)
from xmipp_qc.protocols.protocol_synthetic_particles import KIND_AVERAGES  # noqa: E402

XMIPP_REFINE_RATE = 1000.0 / (69.0 + 20.0)  # images/s, continuous_assign2 + image_residuals
XMIPP_MATCH_RATE = 200.0 / 77.0  # images/s, angular_projection_matching
STEP_KINDS = ("convertStep", "downSampleStep", "produceResiduals", "evaluateResiduals",
              "createOutputStep")


def xmippReference(workload, n):
    """Xmipp's seconds for the workload at the measured C++ rates."""
    seconds = n / XMIPP_REFINE_RATE
    return seconds + (n / XMIPP_MATCH_RATE if workload == "averages" else 0.0)


def makeInputs(project, workload, n, seed):
    if workload == "particles":
        params = {"nImages": n, "boxSize": 128, "samplingRate": 1.5, "snr": 0.5,
                  "maxShift": 4.0, "outlierFraction": 0.01,
                  "outlierKinds": "junk,wrong_conformation"}
    else:
        params = {"imageKind": KIND_AVERAGES, "nImages": n, "boxSize": 64,
                  "samplingRate": 3.0, "snr": 3.0, "maxShift": 2.0, "outlierFraction": 0.02,
                  "outlierKinds": "junk"}
    prot = project.newProtocol(XmippQcProtSyntheticParticles, seed=seed, **params)
    project.launchProtocol(prot, wait=True)
    if not prot.isFinished():
        raise RuntimeError(f"input generation failed: {prot.getErrorMessage()}")
    images = prot.outputParticles if workload == "particles" else prot.outputAverages
    return images, prot.outputVolume


def _protocolPid(prot):
    """Pid of the python process running ``prot`` (not its shell wrapper)."""
    runDir = os.path.abspath(prot.getWorkingDir())
    for child in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(child.cmdline())
            if "pw_protocol_run.py" in cmd and runDir in cmd and "python" in child.name():
                return child.pid
        except psutil.Error:
            continue
    return None


class RssSampler(threading.Thread):
    """Samples (time, RSS MB) of the protocol process every ``period`` s."""

    def __init__(self, prot, period=0.1):
        super().__init__(daemon=True)
        self.prot, self.period, self.samples, self.done = prot, period, [], False
        self.hwm = 0.0

    def run(self):
        pid = None
        while not self.done:
            pid = pid or _protocolPid(self.prot)
            if pid:
                try:
                    with open(f"/proc/{pid}/status") as fh:
                        text = fh.read()
                    rss = int(re.search(r"VmRSS:\s+(\d+)", text).group(1)) / 1024.0
                    self.hwm = max(self.hwm, int(re.search(r"VmHWM:\s+(\d+)", text)
                                                 .group(1)) / 1024.0)
                    self.samples.append((time.time(), rss))
                except (OSError, AttributeError):
                    pass
            time.sleep(self.period)


def runCompare(project, images, volume, workload, chunkSize=256, queue=None):
    prot = project.newProtocol(XmippQcProtCompareReprojections, inputSet2D=images,
                               inputSet3D=volume, doRanking=False, numberOfThreads=3,
                               chunkSize=chunkSize)
    if queue:  # [partition, {"QUEUE_FOR_JOBS": "Y", ...}]
        prot._useQueue.set(True)
        prot._queueParams.set(json.dumps(queue))
    wall, sampler = launchSampled(project, prot, workload)
    return {"wall": wall, "peak_mb": sampler.hwm, "steps": stepTable(prot, sampler.samples),
            "prot": prot}


def launchSampled(project, prot, what, poll=0.2):
    """Launch ``prot``, sample its memory until it ends: ``(wall s, RssSampler)``."""
    sampler = RssSampler(prot)
    t0 = time.time()
    project.launchProtocol(prot, wait=False)
    sampler.start()
    seenActive = False
    while True:
        project._updateProtocol(prot)
        seenActive = seenActive or prot.isActive()
        if seenActive and (prot.isFinished() or prot.isFailed()):
            break
        time.sleep(poll)
    wall = time.time() - t0
    sampler.done = True
    sampler.join()
    if prot.isFailed():
        raise RuntimeError(f"{what}: compare failed: {prot.getErrorMessage()}")
    return wall, sampler


def chunkTimes(prot):
    """Per chunk step: (step seconds, the worker's own seconds from its log)."""
    from xmipp_qc import compare_run

    extra = prot._getExtraPath()
    (volId,) = compare_run.read_run(extra)["maps"]
    rows = []
    for step in prot.loadSteps():
        if step.funcName.get() != "chunkJobStep":
            continue
        chunk = json.loads(step.argsStr.get())[1]
        stepSec = (step.endTime.datetime() - step.initTime.datetime()).total_seconds()
        with open(compare_run.path(extra, "log", volId, chunk)) as fh:
            worker = float(re.findall(r"images in ([\d.]+) s", fh.read())[-1])
        rows.append((stepSec, worker))
    return rows


def queueMode(project, args):
    """Local vs queue-per-step wall time as the chunk count grows, overhead per job."""
    partition = os.environ.get("XMIPP_QC_SLURM_PARTITION")
    if not partition:
        sys.exit("queue mode needs the local Slurm: source scripts/services/slurm.sh; "
                 "slurm_start (sets XMIPP_QC_SLURM_PARTITION and SLURM_CONF)")
    n = args.queue_particles
    images, volume = makeInputs(project, "particles", n, seed=0)
    queue = [partition, {"JOB_CPUS": "1", "QUEUE_FOR_JOBS": "Y"}]
    print(f"\nqueue per step: {n} particles (box 128 -> 64), 2 Slurm jobs in flight "
          f"(1 CPU each), medians of {args.repeats} runs")
    print(f"{'chunks':>7}{'size':>6}{'waves':>6}{'local s':>9}{'queue s':>9}{'jobs':>6}"
          f"{'chunk s':>9}{'step overhead s':>17}")
    figures = []
    for size in args.queue_chunks:
        local, queued, rows = [], [], []
        for _ in range(args.repeats):
            local.append(runCompare(project, images, volume, "local", size)["wall"])
            r = runCompare(project, images, volume, "queue", size, queue)
            queued.append(r["wall"])
            rows += chunkTimes(r["prot"])
        jobs = len(rows) // args.repeats
        waves = math.ceil(jobs / 2)
        chunkSec = statistics.median(w for _, w in rows)
        overhead = statistics.median(s - w for s, w in rows)
        qWall = statistics.median(queued)
        figures.append((waves, qWall, size, chunkSec))
        print(f"{jobs:>7}{size:>6}{waves:>6}{statistics.median(local):>9.1f}{qWall:>9.1f}"
              f"{jobs:>6}{chunkSec:>9.2f}{overhead:>17.2f}")
    projectNodes(n, figures)


def projectNodes(n, figures, total=1_000_000, size=5000, cores=32):
    """Wall of the chunk waves fitted as ``a + b * waves``; projected onto N nodes.

    ``b`` is the wall time of one wave of jobs (the worker's chunk plus the
    overhead of one job as seen on the wall: sbatch, start-up, pyworkflow's
    status polls at 3, 9, 18, 30 s... and its 3 s step-scheduling sleep).
    """
    waves = [f[0] for f in figures]
    walls = [f[1] for f in figures]
    if len(set(waves)) < 2:
        return
    b, a = np.polyfit(waves, walls, 1)
    perImage = statistics.median(f[3] / f[2] for f in figures)
    chunk = statistics.median(f[3] for f in figures)
    perJob = b - chunk
    print(f"\nfit: queue wall = {a:.1f} s + {b:.1f} s per wave of jobs; the worker's chunk "
          f"takes {chunk:.1f} s of it, so each job costs about {perJob:.1f} s more on the "
          f"wall; {perImage * 1e3:.2f} ms per image per CPU")
    chunks = math.ceil(total / size)
    print(f"projection: {total:,} particles in chunks of {size} ({chunks} Slurm jobs, "
          f"{size * perImage:.0f} s each), nodes of {cores} CPUs, 1 CPU per job, "
          f"numberOfThreads = jobs in flight + 1; the steps before and after the chunks "
          f"(convert, downsample, scores, outputs) run on the submit host and grow with "
          f"the particles ({a:.0f} s here for {n})")
    print(f"{'nodes':>6}{'in flight':>10}{'waves':>7}{'chunk wall h':>14}")
    for nodes in (1, 4, 16, 64):
        inFlight = nodes * cores
        w = math.ceil(chunks / inFlight)
        print(f"{nodes:>6}{inFlight:>10}{w:>7}{w * (size * perImage + perJob) / 3600:>14.2f}")


def cliMode(args):
    """The command line with --threads 1 and 2 on the same files, alternately."""
    import tempfile

    from xmipp_qc.cli import main as cliMain
    from xmipp_qc.core import simulate as sim
    from xmipp_qc.formats.mrc import write_stack, write_volume

    n, box, px = args.cli_particles, 64, 3.0
    root = tempfile.mkdtemp(prefix="xmipp-qc-bench-cli-")
    blobs = sim.phantom_blobs(box, seed=1)
    ps = sim.simulate_particles(blobs, n, box=box, snr=1.0, pixel_size_a=px, seed=2)
    write_stack(os.path.join(root, "stack.mrcs"), ps.images, px)
    for name, b in (("true", blobs), ("other", sim.phantom_blobs(box, seed=3))):
        write_volume(os.path.join(root, f"{name}.mrc"), sim.blobs_volume(b, box), px)
    rows = [f"{i + 1:06d}@stack.mrcs {px} 10000" for i in range(n)]
    with open(os.path.join(root, "particles.star"), "w") as fh:
        fh.write("\n".join(["data_particles", "loop_", "_rlnImageName #1",
                            "_rlnDetectorPixelSize #2", "_rlnMagnification #3", *rows]) + "\n")
    walls = {1: [], 2: []}
    for _ in range(args.repeats):
        for threads in (1, 2):
            t0 = time.time()
            cliMain(["compare-reprojections", "--images", os.path.join(root, "particles.star"),
                     "--volume", os.path.join(root, "true.mrc"), "--volume",
                     os.path.join(root, "other.mrc"), "--out", os.path.join(root, "out"),
                     "--no-assignment", "--threads", str(threads), "--quiet"])
            walls[threads].append(time.time() - t0)
    print(f"\ncommand line: {n} particles x 2 maps, projection matching, medians of "
          f"{args.repeats} runs")
    print(f"{'threads':>8}{'wall s':>9}{'pairs/s':>9}{'speed-up':>10}")
    one = statistics.median(walls[1])
    for threads, w in walls.items():
        m = statistics.median(w)
        print(f"{threads:>8}{m:>9.1f}{2 * n / m:>9.1f}{one / m:>10.2f}")


def stepTable(prot, samples):
    """Per step kind: summed seconds, count, peak RSS sampled while one ran, and the RSS
    when the first one started (what the earlier steps left)."""
    table = defaultdict(lambda: {"seconds": 0.0, "count": 0, "peak_mb": 0.0,
                                 "start_mb": float("nan")})
    for step in prot.loadSteps():
        name = step.funcName.get()
        if not step.initTime.hasValue() or not step.endTime.hasValue():
            continue
        t1, t2 = step.initTime.datetime().timestamp(), step.endTime.datetime().timestamp()
        row = table[name]
        row["seconds"] += t2 - t1
        row["count"] += 1
        inside = [rss for t, rss in samples if t1 <= t <= t2]
        row["peak_mb"] = max([row["peak_mb"], *inside])
        if row["count"] == 1 and inside:
            row["start_mb"] = inside[0]
    return dict(table)


def runStreaming(project, rate, seconds, seed=0):
    """One streaming run at ``rate`` particles/s: per-particle arrival and output times."""
    n = int(rate * seconds)
    src = project.newProtocol(XmippQcProtSyntheticParticles, nImages=n, boxSize=128,
                              samplingRate=1.5, snr=0.5, maxShift=2.0, withAlignment=False,
                              outlierFraction=0.01, outlierKinds="junk", seed=seed,
                              interval=1.0, particlesPerBatch=int(round(rate)))
    project.launchProtocol(src, wait=False)
    while not hasattr(src, "outputParticles"):
        time.sleep(0.2)
        project._updateProtocol(src)
    prot = project.newProtocol(XmippQcProtCompareReprojections, doRanking=False,
                               numberOfThreads=3, chunkSize=256, burnIn=1000)
    for param, name in ((prot.inputSet2D, "outputParticles"),
                        (prot.inputSet3D, "outputVolume")):
        param.set(src)
        param.setExtended(name)
    project.launchProtocol(prot, wait=False)
    seen = pollOutputTimes(project, prot)
    arrivals = np.loadtxt(src._getExtraPath("arrivals.txt"), ndmin=2)
    ids = np.arange(1, n + 1)
    arrived = arrivals[np.searchsorted(arrivals[:, 1], ids), 0]  # batch time of each id
    out = np.array([seen.get(int(i), np.nan) for i in ids])
    return {"rate": rate, "n": n, "arrived": arrived, "out": out, "load": os.getloadavg()[0]}


def pollOutputTimes(project, prot, period=0.25):
    """``{id: first time seen in the output sqlite}`` until the protocol ends."""
    from pwem.objects import SetOfParticles

    seen = {}
    while True:
        project._updateProtocol(prot)
        active = prot.isActive()
        for fn in glob.glob(os.path.join(prot.getWorkingDir(), "reprojections_vol*.sqlite")):
            try:
                out = SetOfParticles(filename=fn)
                now = time.time()
                for i in out.getUniqueValues("id"):
                    seen.setdefault(int(i), now)
                out.close()
            except Exception:  # noqa: BLE001  (being written: next poll)
                pass
        if not active:
            if prot.isFailed():
                raise RuntimeError(f"streaming compare failed: {prot.getErrorMessage()}")
            return seen
        time.sleep(period)


def keepsUp(arrived, lag, firstOut):
    """"yes"/"NO"/"n/a": does the lag stay bounded for the particles arriving after
    the first output?"""
    steady = arrived > firstOut
    if not np.isfinite(lag).all():
        return "NO (particles missing)"
    if steady.sum() < 100 or np.ptp(arrived[steady]) <= 0:
        return "n/a (session too short)"
    slope = np.polyfit(arrived[steady], lag[steady], 1)[0]
    ok = slope < 0.1 and np.median(lag[steady]) < 30.0
    return f"{'yes' if ok else 'NO'} (lag slope {slope:+.2f} s/s)"


def chunkRate(n=256, repeats=2):
    """Images/s of one thread on one chunk of matched box-64 images (the core alone)."""
    from xmipp_qc.core import pipeline
    from xmipp_qc.core.simulate import blobs_volume, phantom_blobs, simulate_particles
    from xmipp_qc.native_threads import limit_blas_threads

    limit_blas_threads()
    blobs = phantom_blobs(64, seed=0)
    sim = simulate_particles(blobs, n, box=64, snr=0.5, pixel_size_a=3.0, max_shift_px=2.0,
                             seed=1)
    model = pipeline.MapModel(blobs_volume(blobs, 64, np.float32),
                              pipeline.CompareOptions(pixel_size_a=3.0, resolution_a=None))
    model.gallery, model.refiner  # noqa: B018  (built once, not timed)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        pipeline.process_chunk(model, sim.images, ids=np.arange(n))
        times.append(time.perf_counter() - t0)
    return n / statistics.median(times)


def reportStreaming(rows):
    print("\nstreaming: particles without angles (matched), box 128 -> 64, 2 chunk threads")
    print(f"{'rate/s':>7}{'n':>7}{'lag med':>9}{'lag p95':>9}{'last q med':>11}"
          f"{'last q p95':>11}{'first out':>10}{'out/s':>7}{'load':>6}  keeps up")
    for r in rows:
        lag = r["out"] - r["arrived"]
        last = lag[3 * (len(lag) // 4):]
        firstOut = np.nanmin(r["out"])
        after = r["out"] >= firstOut + 1e-6
        outRate = after.sum() / max(np.nanmax(r["out"]) - firstOut, 1e-6)
        print(f"{r['rate']:>7.0f}{r['n']:>7}{np.nanmedian(lag):>9.1f}"
              f"{np.nanpercentile(lag, 95):>9.1f}{np.nanmedian(last):>11.1f}"
              f"{np.nanpercentile(last, 95):>11.1f}{firstOut - r['arrived'].min():>10.1f}"
              f"{outRate:>7.1f}{r['load']:>6.1f}  {keepsUp(r['arrived'], lag, firstOut)}")
    rate = chunkRate()
    print(f"core alone, one thread, chunk of 256 matched box-64 images: {rate:.1f} images/s "
          f"(x2 chunk threads = {2 * rate:.0f}/s ceiling), load {os.getloadavg()[0]:.1f}")
    sys.stdout.flush()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=["particles", "averages"])
    parser.add_argument("--rates", nargs="+", type=float, default=[30.0, 42.0, 60.0])
    parser.add_argument("--stream-seconds", type=float, default=90.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--particles", type=int, default=10000)
    parser.add_argument("--averages", type=int, default=200)
    parser.add_argument("--queue-chunks", type=int, nargs="+", default=[1000, 500, 250, 125])
    parser.add_argument("--queue-particles", type=int, default=2000)
    parser.add_argument("--cli-particles", type=int, default=2000)
    args = parser.parse_args()
    project = Manager().createProject("bench_compare_reprojections")
    os.chdir(project.path)
    for workload in args.workloads:
        if workload == "streaming":
            reportStreaming([runStreaming(project, rate, args.stream_seconds)
                             for rate in args.rates])
            continue
        if workload == "queue":
            queueMode(project, args)
            continue
        if workload == "cli":
            cliMode(args)
            continue
        n = args.particles if workload == "particles" else args.averages
        rows = []
        for rep in range(args.repeats):
            images, volume = makeInputs(project, workload, n, seed=rep)
            rows.append(runCompare(project, images, volume, workload))
        report(workload, n, rows)


def report(workload, n, rows):
    wall = statistics.median(r["wall"] for r in rows)
    peak = statistics.median(r["peak_mb"] for r in rows)
    ref = xmippReference(workload, n)
    print(f"\n{workload}: {n} images, medians of {len(rows)} runs: wall {wall:.1f} s "
          f"({n / wall:.1f} images/s), peak RSS {peak:.0f} MB; Xmipp reference "
          f"{ref:.0f} s -> speed-up {ref / wall:.1f}x")
    print(f"{'step':<20}{'steps':>6}{'seconds':>10}{'images/s':>10}{'peak MB':>9}")
    for kind in STEP_KINDS:
        cells = [r["steps"][kind] for r in rows if kind in r["steps"]]
        if not cells:
            continue
        sec = statistics.median(c["seconds"] for c in cells)
        mb = statistics.median(c["peak_mb"] for c in cells)
        rate = f"{n / sec:10.1f}" if sec > 0 else f"{'-':>10}"
        print(f"{kind:<20}{cells[0]['count']:>6}{sec:>10.1f}{rate}{mb:>9.0f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
