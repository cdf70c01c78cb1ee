"""Session behaviour of the synthetic-particles helper: micrographs, a bad stretch,
batches over time (see :mod:`.protocol_synthetic_particles`)."""

import math
import os
import time

import numpy as np
import pwem.objects as emobj
from pyworkflow.object import Set

from xmipp_qc.core.simulate_particles import simulate_particles
from xmipp_qc.formats.mrc import write_stack
from xmipp_qc.protocols.synthetic_schedule import batchPlan, failOnceAfter, presentIds


def parseRange(text):
    """``"5-8"`` -> (5, 8); ``""`` -> None."""
    text = (text or "").strip()
    if not text:
        return None
    first, _, last = text.partition("-")
    return int(first), int(last or first)


class SyntheticSessionMixin:
    """Micrograph grouping, junk-rich bad micrographs and streaming batches (a mixin).

    The host (:class:`.XmippQcProtSyntheticParticles`) provides the form params
    (``particlesPerMicrograph``, ``badMicrographs``, ``badJunkFraction``,
    ``interval``, ``particlesPerBatch``, ``closeEmpty``, ``micDelay``,
    ``failAfter``, the simulation params), ``_acquisition``,
    ``_writeVolumes``, ``_writeTruth``, ``_volume``, ``_makeVolumes`` and
    ``_makeParticle``.
    """

    def _micId(self, i):
        """Micrograph id of particle index ``i`` (0-based), or None."""
        per = self.particlesPerMicrograph.get()
        return i // per + 1 if per > 0 else None

    def _plantBadStretch(self, blobs, out, kinds, skip=()):
        """Junk in the bad micrographs' particles (``out``: a StackWriter; ``kinds`` in
        place); the images at the indices ``skip`` (blank ones) are left as written."""
        bad = parseRange(self.badMicrographs.get())
        if bad is None or self.particlesPerMicrograph.get() <= 0:
            return
        idx = np.array([i for i in range(len(kinds)) if bad[0] <= self._micId(i) <= bad[1]])
        if not len(idx):
            return
        junk = simulate_particles(
            blobs, len(idx), box=self.boxSize.get(), snr=self.snr.get(),
            pixel_size_a=self.samplingRate.get(), max_shift_px=self.maxShift.get(),
            ctf=self.withCtf.get(), outlier_fraction=self.badJunkFraction.get(),
            outlier_kinds=("junk",), seed=np.random.default_rng([self.seed.get(), 99]))
        isJunk = junk.kinds == "junk"
        write = isJunk & ~np.isin(idx, list(skip))
        out.write(idx[write], junk.images[write])
        kinds[idx[isJunk]] = "junk"

    def _streamOutputs(self, blobs, sim, stack):
        """Maps first, then the particles (and micrographs, ``micDelay`` batches later)
        in batches over time; on continue the items already output are skipped."""
        volumes = self._writeVolumes(blobs)
        self._writeTruth(sim, len(volumes))
        self._defineOutputs(outputVolume=self._volume(volumes[self.truePosition.get() - 1]))
        if len(volumes) > 1:
            self._defineOutputs(outputVolumes=self._makeVolumes(volumes))
        n, perMic = 0 if self.closeEmpty else len(sim.kinds), self.particlesPerMicrograph.get()
        per = self.particlesPerBatch.get()
        per = math.ceil(per / perMic) * perMic if perMic > 0 else per
        batches = [range(start, min(n, start + per)) for start in range(0, n, per)]
        batches = batches or [[], []]  # open and empty for one interval, then closed
        delay = self.micDelay.get() if perMic > 0 else 0
        added = 0
        for step, (b, m) in enumerate(batchPlan(len(batches), delay)):
            if step and (added or not n):
                time.sleep(self.interval.get())
            added = 0
            if b is not None:
                added += self._appendParticles(sim, stack, batches[b], b == len(batches) - 1)
            if m is not None and perMic > 0:
                added += self._appendMicrographs(batches[m], Set.STREAM_CLOSED if
                                                 m == len(batches) - 1 else Set.STREAM_OPEN)
            failOnceAfter(self, step)

    def _appendParticles(self, sim, stack, indices, last):
        """Append the particles of ``indices`` (0-based) not output yet; how many."""
        parts = self._openSet(emobj.SetOfParticles, "particles.sqlite", sim)
        present = presentIds(parts)
        new = [i for i in indices if i + 1 not in present]
        for i in new:
            parts.append(self._makeParticle(sim, stack, i))
        self._updateOutputSet("outputParticles", parts,
                              Set.STREAM_CLOSED if last else Set.STREAM_OPEN)
        with open(self._getExtraPath("arrivals.txt"), "a") as fh:  # for benchmarks
            fh.write(f"{time.time():.3f} {indices[-1] + 1 if len(indices) else 0}\n")
        return len(new)

    def _appendMicrographs(self, indices, state):
        mics = self._openSet(emobj.SetOfMicrographs, "micrographs.sqlite")
        fn = self._getExtraPath("micrograph.mrc")
        if not os.path.exists(fn):
            write_stack(fn, np.zeros((1, 16, 16), np.float32), self.samplingRate.get())
        present = presentIds(mics)
        new = [m for m in sorted({self._micId(i) for i in indices}) if m not in present]
        for micId in new:
            mic = emobj.Micrograph(location=fn)
            mic.setObjId(micId)
            mic.setMicName(f"mic_{micId:05d}.mrc")
            mics.append(mic)
        self._updateOutputSet("outputMicrographs", mics, state)
        return len(new)

    def _openSet(self, setClass, baseName, sim=None):
        fn = self._getPath(baseName)
        outSet = setClass(filename=fn)
        if os.path.exists(fn) and os.path.getsize(fn) > 0:
            outSet.loadAllProperties()
            outSet.enableAppend()
            return outSet
        self._acquisition(outSet)
        if sim is not None:
            outSet.setHasCTF(sim.defocus_u is not None)
            if self.withAlignment:
                outSet.setAlignmentProj()
        outSet.setStreamState(Set.STREAM_OPEN)
        return outSet
