"""The demo of ``xmipp-qc demo`` / ``make demo``: both protocols on synthetic data.

:func:`run_demo` runs in the calling process: it prepares a private Scipion
home below the output folder and starts this module in a child Python, because
pyworkflow reads its environment once, when first imported. The child creates a
real Scipion project, runs the protocols through Scipion's own launcher (one
subprocess per protocol, real sqlite) and prints the results and where they are.
"""

import json
import os
import subprocess
import sys

from xmipp_qc.headless import prepare_environment

PROJECT = "xmipp_qc_demo"
#: Movie kinds of the demo, one per movie (see core.simulate_motion).
MOVIE_KINDS = ("agree,offset,agree,scaled,mirrored,swapped,rotated,flat,noise,"
               "missing_frames,sentinel,agree")
#: Micrographs of the demo's particles, and the stretch of bad ones (mostly junk).
PARTICLES_PER_MIC, BAD_MICROGRAPHS = 10, "19-22"


def run_demo(out: str, seed: int = 0) -> int:
    """Run the demo in a child process with its own Scipion home under ``out``."""
    os.makedirs(out, exist_ok=True)
    env = dict(os.environ)
    for key in ("SCIPION_HOME", "SCIPION_USER_DATA", "SCIPION_HOSTS"):
        env.pop(key, None)
    prepare_environment(os.path.join(out, "scipion"), env)
    print(f"Scipion home for the demo: {env['SCIPION_HOME']}", flush=True)
    return subprocess.call([sys.executable, "-m", "xmipp_qc.demo", out, str(seed)], env=env)


def _newProject():
    from pyworkflow.project import Manager

    manager = Manager()
    if manager.hasProject(PROJECT):
        manager.deleteProject(PROJECT)
    project = manager.createProject(PROJECT)
    os.chdir(project.getPath())
    return project


def _new(project, cls, objLabel, **kwargs):
    """``project.newProtocol`` with a run label (its objLabel keyword is overwritten)."""
    prot = project.newProtocol(cls, **kwargs)
    prot.setObjLabel(objLabel)
    return prot


def _launch(project, prot, label):
    print(f"  running {label} ...", flush=True)
    project.launchProtocol(prot, wait=True)
    if not prot.isFinished():
        log = os.path.join(project.getPath(), prot.getLogPaths()[1])
        raise RuntimeError(f"{label} did not finish ({prot.getStatusMessage()}); see {log}")
    return prot


def _where(project, prot):
    return os.path.join(project.getPath(), prot._getExtraPath())


def demoCompareReprojections(project, seed):
    from xmipp_qc.protocols import XmippQcProtCompareReprojections, XmippQcProtSyntheticParticles
    from xmipp_qc.protocols.compare_reprojections_results import readOutputsJson
    from xmipp_qc.protocols.compare_reprojections_session import readSession

    print("\n== Compare reprojections: 300 particles on 30 micrographs (3% planted outliers "
          "of each of 6 kinds, and a bad stretch: micrographs 19-22 mostly junk) against 3 "
          "candidate maps ==", flush=True)
    syn = _new(project,
        XmippQcProtSyntheticParticles, objLabel="synthetic particles and maps",
        nImages=300, boxSize=64, samplingRate=3.0, snr=0.5, maxShift=3.0, withCtf=True,
        outlierFraction=0.03, seed=seed, decoys="mirrored,deformed", truePosition=2,
        outlierKinds="junk,wrong_conformation,misassigned_angles,mirrored_hand,"
                     "missing_domain,large_shift",
        particlesPerMicrograph=PARTICLES_PER_MIC, badMicrographs=BAD_MICROGRAPHS)
    _launch(project, syn, "synthetic particles and maps")
    prot = _new(project,
        XmippQcProtCompareReprojections, objLabel="compare reprojections",
        inputSet2D=syn.outputParticles, inputSet3D=syn.outputVolumes, doRanking=True,
        doExtraction=True, extractOption=1, numberOfThreads=2)
    _launch(project, prot, "compare reprojections")
    with open(os.path.join(project.getPath(), syn._getExtraPath("truth.json"))) as fh:
        truth = json.load(fh)
    for line in prot.summary():
        print("  " + line)
    outputs = readOutputsJson(os.path.join(project.getPath(), prot._getExtraPath()))
    best = getattr(prot, outputs[int(truth["trueVolumeId"])])
    _printWorst(best, truth)
    session = readSession(os.path.join(project.getPath(), prot._getExtraPath()),
                          int(truth["trueVolumeId"]))
    print(f"  micrographs mostly flagged against the true map: {session['bad_mics']} "
          f"(planted bad stretch: {BAD_MICROGRAPHS})")
    print(f"  plots and per-image stacks: {_where(project, prot)}")
    return prot


def _printWorst(particles, truth, n=12):
    rows = sorted(((p._qc_outlierScore.get(), p.getObjId(), bool(p._qc_isOutlier.get()))
                   for p in particles), reverse=True)
    kinds = {int(k): v for k, v in truth["kinds"].items()}
    print(f"  worst {n} images against the true map (outlier score, id, flagged, planted kind):")
    for score, objId, flagged in rows[:n]:
        print(f"    {score:8.2f}  id {objId:4d}  {'flagged' if flagged else '       '}  "
              f"{kinds.get(objId, '(good image)')}")
    flaggedIds = {objId for _, objId, flagged in rows if flagged}
    planted = set(truth["outlierIds"])
    print(f"  flagged {len(flaggedIds)} images: {len(flaggedIds & planted)} of the "
          f"{len(planted)} planted outliers, {len(flaggedIds - planted)} good images")


def demoMovieConsensus(project, seed):
    from xmipp_qc.protocols import XmippQcProtConsensusMovieAlignment, XmippQcProtSyntheticMovies

    print("\n== Movie alignment consensus: 12 movies aligned by two simulated runs ==",
          flush=True)
    common = {"nMovies": 12, "kinds": MOVIE_KINDS, "seed": seed, "nFrames": 30,
              "drift": 25.0, "withMicrographs": True}
    ref = _new(project, XmippQcProtSyntheticMovies, objLabel="reference alignment",
               alignmentRun=0, **common)
    sec = _new(project, XmippQcProtSyntheticMovies, objLabel="secondary alignment",
               alignmentRun=1, dropMovies="12", **common)
    _launch(project, ref, "reference motion correction (simulated)")
    _launch(project, sec, "secondary motion correction (simulated, movie 12 missing)")
    prot = _new(project, XmippQcProtConsensusMovieAlignment,
                objLabel="movie alignment consensus",
                inputMovies1=ref.outputMovies, inputMovies2=sec.outputMovies,
                trajectoryPlot=True)
    _launch(project, prot, "movie alignment consensus")
    kinds = MOVIE_KINDS.split(",")
    print("  movie  simulated disagreement   decision   reason            corr   RMSE px")
    for name, outSet in (("accepted", prot.outputMicrographs),
                         ("discarded", prot.outputMicrographsDiscarded)):
        for mic in outSet:
            i = mic.getObjId()
            print(f"  {i:5d}  {kinds[(i - 1) % len(kinds)]:22s}  {name:9s}  "
                  f"{mic._alignment_reason.get():16s} {mic._alignment_corr.get():6.3f}  "
                  f"{mic._alignment_rmse_error.get():7.2f}")
    for line in prot.summary():
        print("  " + line)
    print(f"  trajectory plots: {_where(project, prot)}")
    return prot


def main(argv):
    out, seed = os.path.abspath(argv[0]), int(argv[1]) if len(argv) > 1 else 0
    project = _newProject()
    print(f"Scipion project: {project.getPath()}", flush=True)
    demoMovieConsensus(project, seed)
    demoCompareReprojections(project, seed)
    print(f"\nDone. Open the project in Scipion to browse it: {project.getPath()}"
          f"\n(everything of the demo is below {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
