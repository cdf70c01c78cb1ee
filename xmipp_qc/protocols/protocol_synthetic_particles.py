"""Test helper: synthetic particles, averages or 2D classes, and candidate maps, with known truth.

Images come from :func:`xmipp_qc.core.simulate.simulate_particles` (exact blob
projections, optional CTF, planted outliers); the maps from
:func:`xmipp_qc.core.simulate.blobs_volume`, optionally at another pixel size
and box than the images (the blobs are rescaled, so the physical map is the
same). Candidate maps are the true map plus decoys; ``extra/truth.json`` holds
the planted outliers, the true alignment (px of the images) and which candidate
is the true map. Hidden from the GUI: it exists for tests, benchmarks and demos.

Streaming (``interval`` > 0, particles only): the maps are output first, then
the particles arrive in batches every ``interval`` seconds (the set stays open
until the last one; ``extra/arrivals.txt`` lists the time of each batch and its
last id). Particles can be grouped by micrograph
(``particlesPerMicrograph``: consecutive ids share a micrograph, whose id is
their ``_micId`` and coordinate micId, and ``outputMicrographs`` grows with
them; a static run outputs them all at once), and a stretch of bad micrographs
(``badMicrographs``, e.g. ``5-8``) can be made junk-rich (``badJunkFraction``
of their particles are junk). With a CTF, the micrographs of
``wrongCtfMicrographs`` (e.g. ``3-4``) report a defocus ``wrongCtfScale`` times
the one their images were made with (a failed CTF estimation). With
micrographs, a static run outputs ``outputMicrographs`` too. In streaming, the
micrographs can follow their particles some batches later, the particle set can
close empty, and the run can fail after some batches and be continued
(:mod:`.synthetic_schedule`).
"""

import json
from dataclasses import replace

import numpy as np
import pwem.objects as emobj
import pyworkflow.protocol.params as params
from pwem.protocols import EMProtocol
from pyworkflow.object import Pointer, Set

from xmipp_qc.convert import xmippToTransform
from xmipp_qc.core.simulate_blobs import Blobs, blobs_volume, phantom_blobs
from xmipp_qc.core.simulate_particles import OUTLIER_KINDS, simulate_particles
from xmipp_qc.formats.mrc import StackWriter, write_volume
from xmipp_qc.protocols.synthetic_schedule import defineScheduleParams
from xmipp_qc.protocols.synthetic_session import SyntheticSessionMixin, parseRange

KIND_PARTICLES, KIND_AVERAGES, KIND_CLASSES2D = 0, 1, 2
DECOYS = ("mirrored", "other", "deformed")
BLOCK = 1000  # images simulated at once (bounds the memory of large sets)


def _parseList(text):
    return [t.strip() for t in (text or "").split(",") if t.strip()]


class XmippQcProtSyntheticParticles(SyntheticSessionMixin, EMProtocol):
    """Writes simulated 2D images and candidate 3D maps with known truth."""

    _label = "synthetic particles and maps (test helper)"
    _possibleOutputs = {"outputParticles": emobj.SetOfParticles,
                        "outputAverages": emobj.SetOfAverages,
                        "outputClasses2D": emobj.SetOfClasses2D,
                        "outputVolume": emobj.Volume,
                        "outputVolumes": emobj.SetOfVolumes,
                        "outputClasses3D": emobj.SetOfClasses3D,
                        "outputMicrographs": emobj.SetOfMicrographs}

    @classmethod
    def isDisabled(cls):
        return True

    # --------------------------- DEFINE param functions ----------------------
    def _defineParams(self, form):
        form.addSection(label="Images")
        form.addParam("imageKind", params.EnumParam, default=KIND_PARTICLES,
                      choices=["particles", "averages", "classes 2D"], label="2D output",
                      help="Classes 2D: the simulated images are the representatives; "
                           "each class holds particlesPerClass particles.")
        form.addParam("nImages", params.IntParam, default=60, validators=[params.Positive],
                      label="Number of images")
        form.addParam("boxSize", params.IntParam, default=32, label="Image box (px)")
        form.addParam("samplingRate", params.FloatParam, default=3.0,
                      label="Image pixel size (Å/px)")
        form.addParam("snr", params.FloatParam, default=1.0, label="SNR")
        form.addParam("maxShift", params.FloatParam, default=2.0, label="Max shift (px)")
        form.addParam("withCtf", params.BooleanParam, default=False, label="Apply CTF")
        form.addParam("withAlignment", params.BooleanParam, default=True,
                      label="Projection alignment",
                      help="Particles only: attach the reported angles and shifts.")
        form.addParam("outlierFraction", params.FloatParam, default=0.0,
                      label="Outlier fraction per kind")
        form.addParam("outlierKinds", params.StringParam, default="junk,wrong_conformation",
                      label="Outlier kinds", help=", ".join(OUTLIER_KINDS))
        form.addParam("particlesPerClass", params.IntParam, default=2,
                      label="Particles per 2D class")
        form.addParam("seed", params.IntParam, default=0, label="Random seed")
        form.addParam("blankImages", params.StringParam, default="",
                      label="Blank images", help="Comma-separated ids whose image is all "
                                                 "zeros (images that cannot be scored).")
        form.addSection(label="Maps")
        form.addParam("volBoxSize", params.IntParam, default=0,
                      label="Map box (px)", help="0 = the image box.")
        form.addParam("volSamplingRate", params.FloatParam, default=0.0,
                      label="Map pixel size (Å/px)", help="0 = the image pixel size.")
        form.addParam("decoys", params.StringParam, default="",
                      label="Decoy maps", help=f"Comma-separated: {', '.join(DECOYS)}; "
                                               "with decoys, outputVolumes and "
                                               "outputClasses3D are produced.")
        form.addParam("truePosition", params.IntParam, default=1,
                      label="Position of the true map", help="1-based, among the candidates.")
        form.addSection(label="Session")
        form.addParam("particlesPerMicrograph", params.IntParam, default=0,
                      label="Particles per micrograph", help="0 = no micrographs.")
        form.addParam("badMicrographs", params.StringParam, default="",
                      label="Bad micrographs", help="Range of micrograph numbers, e.g. 5-8, "
                                                    "whose particles are junk-rich.")
        form.addParam("badJunkFraction", params.FloatParam, default=0.8,
                      label="Junk fraction in bad micrographs")
        form.addParam("wrongCtfMicrographs", params.StringParam, default="",
                      label="Wrong-CTF micrographs",
                      help="Range of micrograph numbers, e.g. 3-4, whose particles report "
                           "a defocus 'wrongCtfScale' times the true one (needs the CTF).")
        form.addParam("wrongCtfScale", params.FloatParam, default=2.0,
                      label="Wrong-CTF defocus factor")
        form.addParam("interval", params.FloatParam, default=0.0, label="Interval (s)",
                      help="Seconds between batches of particles; 0 = static.")
        form.addParam("particlesPerBatch", params.IntParam, default=100,
                      label="Particles per batch",
                      help="Rounded up to whole micrographs.")
        form.addParam("closeEmpty", params.BooleanParam, default=False,
                      label="Close without particles",
                      help="Streaming: output the maps, then close the particles (and "
                           "micrographs) without any item.")
        defineScheduleParams(form)

    # --------------------------- INSERT steps functions ----------------------
    def _insertAllSteps(self):
        self._insertFunctionStep(self.createOutputStep, needsGPU=False)

    # --------------------------- STEPS functions -----------------------------
    def createOutputStep(self):
        blobs = phantom_blobs(self.boxSize.get(), seed=self.seed.get())
        stack = self._getExtraPath("images.mrcs")
        sim = self._simulate(blobs, stack)
        kind = self.imageKind.get()
        if self.interval.get() > 0:
            self._streamOutputs(blobs, sim, stack)
            return
        images = (self._makeParticles(sim, stack) if kind == KIND_PARTICLES
                  else self._makeAverages(stack, len(sim.kinds)))
        self._defineOutputs(**{"outputParticles" if kind == KIND_PARTICLES
                               else "outputAverages": images})
        if kind == KIND_PARTICLES and self.particlesPerMicrograph.get() > 0:
            self._appendMicrographs(range(len(sim.kinds)), Set.STREAM_CLOSED)
        if kind == KIND_CLASSES2D:
            self._defineOutputs(outputClasses2D=self._makeClasses2D(stack, images))
        volumes = self._writeVolumes(blobs)
        self._defineOutputs(outputVolume=self._volume(volumes[self.truePosition.get() - 1]))
        if len(volumes) > 1:
            self._defineOutputs(outputVolumes=self._makeVolumes(volumes))
            if kind == KIND_PARTICLES:
                self._defineOutputs(outputClasses3D=self._makeClasses3D(volumes))
        self._writeTruth(sim, len(volumes))

    # --------------------------- UTILS functions -----------------------------
    def _simulate(self, blobs, stack):
        """Simulate in blocks of BLOCK images (block b > 0 seeded (seed, b)) into an
        MRC stack; returns the metadata of all images (images=None)."""
        n, box = self.nImages.get(), self.boxSize.get()
        blank = [int(i) - 1 for i in _parseList(self.blankImages.get())]
        parts = []
        with StackWriter(stack, n, box, self.samplingRate.get()) as out:
            for b, start in enumerate(range(0, n, BLOCK)):
                sim = simulate_particles(
                    blobs, min(BLOCK, n - start), box=box, snr=self.snr.get(),
                    pixel_size_a=self.samplingRate.get(), max_shift_px=self.maxShift.get(),
                    ctf=self.withCtf.get(), outlier_fraction=self.outlierFraction.get(),
                    outlier_kinds=tuple(_parseList(self.outlierKinds.get())),
                    seed=self.seed.get() if b == 0 else np.random.default_rng(
                        [self.seed.get(), b]))
                images = sim.images.copy()
                images[[i - start for i in blank if start <= i < start + len(images)]] = 0.0
                out.write(np.arange(start, start + len(images)), images)
                parts.append(replace(sim, images=None))
            join = {k: np.concatenate([getattr(p, k) for p in parts]) for k in
                    ("angles", "shifts", "true_angles", "true_shifts", "kinds")}
            # room for "junk" of the bad stretch (a set without outliers has dtype <U1)
            join["kinds"] = join["kinds"].astype(f"<U{max(map(len, OUTLIER_KINDS))}")
            self._plantBadStretch(blobs, out, join["kinds"], skip=blank)
        for k in ("defocus_u", "defocus_v", "defocus_angle"):
            join[k] = None if parts[0].defocus_u is None else np.concatenate(
                [getattr(p, k) for p in parts])
        return replace(parts[0], **join)

    def _volPixel(self):
        return self.volSamplingRate.get() or self.samplingRate.get()

    def _volBox(self):
        return self.volBoxSize.get() or self.boxSize.get()

    def _acquisition(self, imgSet):
        imgSet.setSamplingRate(self.samplingRate.get())
        acq = imgSet.getAcquisition()
        acq.setVoltage(300.0)
        acq.setSphericalAberration(2.7)
        acq.setAmplitudeContrast(0.1)
        acq.setMagnification(50000)

    def _makeParticles(self, sim, stack):
        parts = self._createSetOfParticles()
        self._acquisition(parts)
        parts.setHasCTF(sim.defocus_u is not None)
        if self.withAlignment:
            parts.setAlignmentProj()
        for i in range(len(sim.kinds)):
            parts.append(self._makeParticle(sim, stack, i))
        return parts

    def _makeParticle(self, sim, stack, i):
        p = emobj.Particle(location=(i + 1, stack))
        p.setObjId(i + 1)
        if self.withAlignment:
            p.setTransform(xmippToTransform(sim.angles[i], sim.shifts[i]))
        micId = self._micId(i)
        if sim.defocus_u is not None:
            wrong = parseRange(self.wrongCtfMicrographs.get())
            f = self.wrongCtfScale.get() if wrong and wrong[0] <= (micId or 0) <= wrong[1] else 1
            p.setCTF(emobj.CTFModel(defocusU=f * float(sim.defocus_u[i]),
                                    defocusV=f * float(sim.defocus_v[i]),
                                    defocusAngle=float(sim.defocus_angle[i])))
        if micId is not None:
            coord = emobj.Coordinate(x=0, y=0)
            coord.setMicId(micId)
            coord.setMicName(f"mic_{micId:05d}.mrc")
            p.setCoordinate(coord)
            p.setMicId(micId)
        return p

    def _makeAverages(self, stack, n):
        avgs = self._createSetOfAverages()
        self._acquisition(avgs)
        for i in range(n):
            a = emobj.Particle(location=(i + 1, stack))
            a.setObjId(i + 1)
            avgs.append(a)
        return avgs

    def _makeClasses2D(self, stack, averages):
        parts = self._createSetOfParticles("_members")
        self._acquisition(parts)
        n, per = averages.getSize(), self.particlesPerClass.get()
        for j in range(n * per):
            p = emobj.Particle(location=(j % n + 1, stack))
            p.setObjId(j + 1)
            p.setClassId(j % n + 1)
            parts.append(p)
        self._defineOutputs(outputParticles=parts)
        classes = self._createSetOfClasses2D(Pointer(self, extended="outputParticles"))
        for k in range(1, n + 1):
            cls = emobj.Class2D()
            cls.setObjId(k)
            cls.copyInfo(parts)
            cls.setRepresentative(emobj.Particle(location=(k, stack)))
            classes.append(cls)
            for p in parts.iterItems():
                if p.getClassId() == k:
                    cls.append(p.clone())
            classes.update(cls)
        return classes

    def _candidateBlobs(self, blobs):
        rng = np.random.default_rng([self.seed.get(), 7])
        decoys = []
        for name in _parseList(self.decoys.get()):
            if name == "mirrored":
                decoys.append(blobs.mirrored())
            elif name == "other":
                decoys.append(phantom_blobs(self.boxSize.get(), seed=rng))
            else:  # deformed: a third of the blobs moved by ~0.1 box
                moved = blobs.centers.copy()
                idx = rng.choice(len(moved), size=max(2, len(moved) // 3), replace=False)
                moved[idx] += rng.normal(size=(len(idx), 3)) * 0.1 * self.boxSize.get()
                decoys.append(Blobs(moved, blobs.sigmas, blobs.amplitudes))
        decoys.insert(self.truePosition.get() - 1, blobs)
        return decoys

    def _writeVolumes(self, blobs):
        scale = self.samplingRate.get() / self._volPixel()  # image px -> map px
        files = []
        for k, b in enumerate(self._candidateBlobs(blobs), start=1):
            scaled = Blobs(b.centers * scale, b.sigmas * scale, b.amplitudes)
            fn = self._getExtraPath(f"map_{k:02d}.mrc")
            write_volume(fn, blobs_volume(scaled, self._volBox(), np.float32), self._volPixel())
            files.append(fn)
        return files

    def _volume(self, fn, objId=None):
        vol = emobj.Volume(location=fn)
        vol.setSamplingRate(self._volPixel())
        if objId is not None:
            vol.setObjId(objId)
        return vol

    def _makeVolumes(self, files):
        vols = self._createSetOfVolumes()
        vols.setSamplingRate(self._volPixel())
        for k, fn in enumerate(files, start=1):
            vols.append(self._volume(fn, k))
        return vols

    def _makeClasses3D(self, files):
        parts = self.outputParticles
        classes = self._createSetOfClasses3D(Pointer(self, extended="outputParticles"))
        for k, fn in enumerate(files, start=1):
            cls = emobj.Class3D()
            cls.setObjId(k)
            cls.copyInfo(parts)
            cls.setRepresentative(self._volume(fn))
            classes.append(cls)
            for p in parts.iterItems():
                if (p.getObjId() - 1) % len(files) == k - 1:
                    cls.append(p.clone())
            classes.update(cls)
        return classes

    def _writeTruth(self, sim, nMaps):
        ids = np.arange(1, len(sim.kinds) + 1)
        truth = {
            "outlierIds": ids[sim.is_outlier].tolist(),
            "kinds": {int(i): str(k) for i, k in zip(ids, sim.kinds) if k},
            "trueAngles": sim.true_angles.tolist(), "trueShifts": sim.true_shifts.tolist(),
            "reportedAngles": sim.angles.tolist(), "reportedShifts": sim.shifts.tolist(),
            "trueVolumeId": self.truePosition.get(), "nMaps": nMaps,
            "imagePixelSize": self.samplingRate.get(), "volumePixelSize": self._volPixel(),
            "micIds": [self._micId(i) for i in range(len(sim.kinds))]
            if self.particlesPerMicrograph.get() > 0 else [],
            "badMicrographs": list(parseRange(self.badMicrographs.get()) or []),
            "wrongCtfMicrographs": list(parseRange(self.wrongCtfMicrographs.get()) or []),
        }
        with open(self._getExtraPath("truth.json"), "w") as fh:
            json.dump(truth, fh, indent=1)

    # --------------------------- INFO functions ------------------------------
    def _validate(self):
        errors = []
        bad = [k for k in _parseList(self.outlierKinds.get()) if k not in OUTLIER_KINDS]
        bad += [d for d in _parseList(self.decoys.get()) if d not in DECOYS]
        if bad:
            errors.append(f"Unknown outlier kinds or decoys: {', '.join(bad)}")
        if not 1 <= self.truePosition.get() <= len(_parseList(self.decoys.get())) + 1:
            errors.append("The true map position must be within the candidates.")
        if self.interval.get() > 0 and self.imageKind.get() != KIND_PARTICLES:
            errors.append("Only particles can arrive in streaming (interval > 0).")
        return errors

    def _summary(self):
        return [f"{self.nImages.get()} simulated images, box {self.boxSize.get()} at "
                f"{self.samplingRate.get()} Å/px, seed {self.seed.get()}"]
