"""Scipion project tests of the synthetic-particles helper protocol."""

import json

import mrcfile
import numpy as np
import pytest
from pyworkflow import Config

Config.setDomain("pwem")

from pwem.constants import ALIGN_PROJ  # noqa: E402
from pyworkflow.tests import BaseTest, setupTestProject  # noqa: E402

from xmipp_qc.convert import imagesToArrays, readImages, readVolume  # noqa: E402
from xmipp_qc.core.simulate import phantom_blobs, simulate_particles  # noqa: E402
from xmipp_qc.protocols.protocol_synthetic_particles import (  # noqa: E402
    KIND_CLASSES2D,
    XmippQcProtSyntheticParticles,
)

pytestmark = pytest.mark.scipion


class TestSyntheticParticles(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)

    def test_particles_carry_reported_alignment_ctf_and_truth(self):
        prot = self.newProtocol(XmippQcProtSyntheticParticles, nImages=20, boxSize=24,
                                withCtf=True, outlierFraction=0.1, outlierKinds="junk",
                                decoys="mirrored,other", truePosition=2, volBoxSize=48,
                                volSamplingRate=1.5, seed=3)
        self.launchProtocol(prot)
        sim = simulate_particles(phantom_blobs(24, seed=3), 20, box=24, snr=1.0,
                                 pixel_size_a=3.0, max_shift_px=2.0, ctf=True,
                                 outlier_fraction=0.1, outlier_kinds=("junk",), seed=3)
        parts = prot.outputParticles
        self.assertSetSize(parts, 20)
        self.assertTrue(parts.hasAlignmentProj())
        d = imagesToArrays(parts, ALIGN_PROJ)
        np.testing.assert_allclose(d["shifts"], sim.shifts, atol=1e-9)
        np.testing.assert_allclose(d["defocus"][:, 0], sim.defocus_u, rtol=1e-6)
        np.testing.assert_allclose(readImages(d["locations"]), sim.images, atol=1e-6)
        truth = json.load(open(prot._getExtraPath("truth.json")))
        self.assertEqual(truth["outlierIds"], (np.flatnonzero(sim.is_outlier) + 1).tolist())
        self.assertEqual(len(truth["outlierIds"]), 2)
        self.assertEqual(truth["trueVolumeId"], 2)
        self.assertSetSize(prot.outputVolumes, 3)
        self.assertEqual(prot.outputVolume.getSamplingRate(), 1.5)
        vol = readVolume(prot.outputVolume)
        self.assertEqual(vol.shape, (48, 48, 48))
        with mrcfile.open(prot._getExtraPath("map_02.mrc")) as mrc:
            np.testing.assert_array_equal(mrc.data, vol)
        classes = prot.outputClasses3D
        self.assertSetSize(classes, 3)
        self.assertEqual(sorted(c.getSize() for c in classes), [6, 7, 7])

    def test_classes2d_keep_members(self):
        prot = self.newProtocol(XmippQcProtSyntheticParticles, nImages=6, boxSize=16,
                                imageKind=KIND_CLASSES2D, particlesPerClass=3)
        self.launchProtocol(prot)
        self.assertSetSize(prot.outputAverages, 6)
        self.assertSetSize(prot.outputClasses2D, 6)
        sizes = {c.getObjId(): c.getSize() for c in prot.outputClasses2D}
        self.assertEqual(sizes, {k: 3 for k in range(1, 7)})
        self.assertTrue(prot.outputClasses2D.hasRepresentatives())
        self.assertSetSize(prot.outputParticles, 18)

    def test_static_micrographs_with_a_bad_stretch(self):
        """As the demo: 10 particles per micrograph, micrographs 3-4 mostly junk."""
        prot = self.newProtocol(XmippQcProtSyntheticParticles, nImages=60, boxSize=24,
                                particlesPerMicrograph=10, badMicrographs="3-4", seed=5)
        self.launchProtocol(prot)
        mics = prot.outputMicrographs
        self.assertSetSize(mics, 6)
        self.assertTrue(mics.isStreamClosed())
        self.assertEqual(sorted(m.getMicName() for m in mics),
                         [f"mic_{i:05d}.mrc" for i in range(1, 7)])
        micOf = {p.getObjId(): p.getMicId() for p in prot.outputParticles}
        self.assertEqual(micOf, {i: (i - 1) // 10 + 1 for i in range(1, 61)})
        kinds = {int(k): v for k, v in json.load(open(prot._getExtraPath("truth.json")))[
            "kinds"].items()}
        junk = [sum(kinds.get(i) == "junk" for i in range(10 * m + 1, 10 * m + 11))
                for m in range(6)]
        self.assertEqual(junk[0:2] + junk[4:], [0, 0, 0, 0])
        self.assertGreaterEqual(min(junk[2:4]), 5, junk)  # badJunkFraction 0.8 of 10
