"""The protocol half of ``benchmarks/scale.py``: the tiled particles in a Scipion project.

The particles of each size are written as a Scipion sqlite (CTF, projection
alignment, one linked stack per 500 particles) and imported with pwem's "import
particles" from a Scipion sqlite; the map with "import volumes" (not timed).
Then ``XmippQcProtCompareReprojections`` (3 threads = 2 chunk threads, CTF
used, no ranking, default chunk size) is launched and its process's VmHWM
sampled (:class:`compare_reprojections.RssSampler`).
"""

import os
import time

import headless_scipion  # noqa: F401  (first: a private headless Scipion)
from compare_reprojections import launchSampled, stepTable  # noqa: E402
from scale import AMP, CS, PER_STACK, PIXEL, VOLTAGE, diskBytes, log  # noqa: E402

STEPS = ("convertStep", "downSampleStep", "produceResiduals", "evaluateResiduals",
         "createOutputStep")


def writeSqlite(root, n, ps):
    """``particles_<n>.sqlite``: a SetOfParticles tiling the tile's metadata."""
    import pwem.objects as emobj

    from xmipp_qc.convert import xmippToTransform

    path = os.path.join(root, f"particles_{n}.sqlite")
    parts = emobj.SetOfParticles(filename=path)
    parts.setSamplingRate(PIXEL)
    parts.setAlignmentProj()
    parts.setHasCTF(True)
    acq = parts.getAcquisition()
    acq.setVoltage(VOLTAGE)
    acq.setSphericalAberration(CS)
    acq.setAmplitudeContrast(AMP)
    t = len(ps.angles)
    transforms = [xmippToTransform(ps.angles[j], ps.shifts[j]) for j in range(t)]
    for i in range(n):
        j = i % t
        p = emobj.Particle(location=(j + 1, os.path.join(root, "stacks",
                                                         f"mic_{i // PER_STACK:05d}.mrcs")))
        p.setObjId(i + 1)
        ctf = emobj.CTFModel()
        ctf.setStandardDefocus(float(ps.defocus_u[j]), float(ps.defocus_v[j]),
                               float(ps.defocus_angle[j]))
        p.setCTF(ctf)
        p.setTransform(transforms[j].clone())
        p.setAcquisition(acq)
        parts.append(p)
    parts.write()
    parts.close()
    return path


def importInputs(project, root, n, ps):
    from pwem.protocols import ProtImportParticles, ProtImportVolumes

    sqlite = writeSqlite(root, n, ps)
    imp = project.newProtocol(ProtImportParticles, objLabel=f"tiled {n}",
                              importFrom=ProtImportParticles.IMPORT_FROM_SCIPION,
                              sqliteFile=sqlite, samplingRate=PIXEL, voltage=VOLTAGE,
                              sphericalAberration=CS, amplitudeContrast=AMP)
    project.launchProtocol(imp, wait=True)
    if not imp.isFinished():
        raise RuntimeError(f"import of {n} particles failed: {imp.getErrorMessage()}")
    vol = project.newProtocol(ProtImportVolumes, filesPath=os.path.join(root, "map.mrc"),
                              samplingRate=PIXEL)
    project.launchProtocol(vol, wait=True)
    return imp.outputParticles, vol.outputVolume


def runProtocol(project, images, volume, outputStacks):
    from xmipp_qc.protocols import XmippQcProtCompareReprojections

    kw = {} if outputStacks is None else {"outputStacks": outputStacks}
    prot = project.newProtocol(XmippQcProtCompareReprojections, inputSet2D=images,
                               inputSet3D=volume, doRanking=False, numberOfThreads=3,
                               ignoreCTF=False, **kw)
    wall, sampler = launchSampled(project, prot, "scale", poll=0.5)
    return {"wall": wall, "peak_mb": sampler.hwm, "steps": stepTable(prot, sampler.samples),
            "disk_gb": diskBytes(prot.getWorkingDir()) / 1e9, "prot": prot}


def protocolRows(root, stars, ps, args, report):
    from pyworkflow.project import Manager

    project = Manager().createProject(f"bench_scale_{os.getpid()}")
    os.chdir(project.path)
    rows = []
    for n in stars:
        t0 = time.time()
        images, volume = importInputs(project, root, n, ps)
        log(f"protocol {n}: inputs imported in {time.time() - t0:.0f} s")
        r = runProtocol(project, images, volume, args.output_stacks)
        rows.append((n, r))
        log(f"protocol {n}: wall {r['wall']:.1f} s, peak {r['peak_mb']:.0f} MB, "
            f"disk {r['disk_gb']:.2f} GB")
        log(f"{'step':<20}{'steps':>6}{'seconds':>10}{'images/s':>10}{'peak MB':>9}"
            f"{'start MB':>10}")
        for kind in STEPS:
            c = r["steps"].get(kind)
            if c:
                rate = n / c["seconds"] if c["seconds"] > 0 else float("nan")
                log(f"{kind:<20}{c['count']:>6}{c['seconds']:>10.1f}{rate:>10.1f}"
                    f"{c['peak_mb']:>9.0f}{c['start_mb']:>10.0f}")
        project.deleteProtocol(r.pop("prot"))  # its extra/ folder: disk for the next size
    report("protocol, numberOfThreads 3 (2 chunk threads), CTF, default chunk size, "
           f"output stacks {args.output_stacks or 'default'}", rows)
