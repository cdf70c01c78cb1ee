"""Scipion project tests of XmippQcProtCompareReprojections: sets of maps (ranking,
extraction), 3D classes, averages and 2D classes."""

import glob
import os

import numpy as np
import pytest
from pyworkflow import Config

Config.setDomain("pwem")

from xmipp_qc.protocols.compare_reprojections_results import readRanking  # noqa: E402
from xmipp_qc.protocols.protocol_compare_reprojections import (  # noqa: E402
    EXTRACT_BOTH,
    EXTRACT_VOLUME,
)
from xmipp_qc.protocols.protocol_synthetic_particles import (  # noqa: E402
    KIND_AVERAGES,
    KIND_CLASSES2D,
)
from xmipp_qc.tests.test_protocol_compare_reprojections import CompareBase  # noqa: E402

pytestmark = pytest.mark.scipion


class TestCompareReprojectionsSets(CompareBase):
    def test_set_of_volumes_ranks_the_true_map_first(self):
        syn = self.synthetic(nImages=60, boxSize=32, snr=1.0, outlierFraction=0.05,
                             outlierKinds="junk", decoys="mirrored,deformed", truePosition=2,
                             seed=21)
        prot = self.compare(syn.outputParticles, syn.outputVolumes, doRanking=True,
                            extractOption=EXTRACT_VOLUME, numberOfThreads=2, chunkSize=30)
        outs = self.outputs(prot)
        self.assertEqual(sorted(outs), [1, 2, 3])
        for out in outs.values():
            self.assertSetSize(out, 60)
        self.assertOutliersOnTop(outs[2], syn.truth)
        table = readRanking(prot._getExtraPath())
        self.assertEqual(table["best"], 2)
        self.assertEqual([m["map"] for m in table["maps"]][0], 2)
        self.assertTrue(table["significant"])
        self.assertGreater(table["ci_low"], 0)
        self.assertEqual(os.path.basename(prot.bestVolume.getFileName()), "map_02.mrc")
        self.assertFalse(hasattr(prot, "particles_bestVol"))
        self.assertTrue(any("Ranking by mean cost" in line for line in prot._summary()))
        self.assertTrue(os.path.exists(prot._getExtraPath("ranking.png")))
        self.assertTrue(os.path.exists(prot._getExtraPath("outliers_vol2.png")))

    def test_classes3d_extract_best_volume_and_its_particles(self):
        syn = self.synthetic(nImages=60, boxSize=32, snr=1.0, decoys="other", truePosition=1,
                             seed=22)
        prot = self.compare(syn.outputParticles, syn.outputClasses3D, doRanking=True,
                            extractOption=EXTRACT_BOTH)
        self.assertEqual(sorted(self.outputs(prot)), [1, 2])
        self.assertEqual(readRanking(prot._getExtraPath())["best"], 1)
        bestClass = syn.outputClasses3D[1]
        self.assertSetSize(prot.particles_bestVol, bestClass.getSize())
        self.assertEqual(sorted(prot.particles_bestVol.getIdSet()),
                         list(range(1, 61, 2)))
        self.assertEqual(os.path.basename(prot.bestVolume.getFileName()), "map_01.mrc")

    def test_averages_are_matched(self):
        syn = self.synthetic(imageKind=KIND_AVERAGES, nImages=60, boxSize=32, snr=3.0,
                             outlierFraction=0.05, outlierKinds="junk", seed=23)
        # two chunks matched concurrently: the gallery is built once, under a lock
        prot = self.compare(syn.outputAverages, syn.outputVolume, numberOfThreads=3,
                            chunkSize=30)
        (_, out), = self.outputs(prot).items()
        self.assertEqual(out.getClassName(), "SetOfAverages")
        self.assertEqual(sorted(out.getIdSet()), list(range(1, 61)))
        self.assertOutliersOnTop(out, syn.truth)
        self.assertAlignmentNearTruth(out, syn.truth, maxAngle=5.0, maxShift=1.0)

    def test_classes2d_keep_classes_and_members(self):
        syn = self.synthetic(imageKind=KIND_CLASSES2D, nImages=30, boxSize=32, snr=3.0,
                             outlierFraction=0.1, outlierKinds="junk", particlesPerClass=2,
                             seed=24)
        prot = self.compare(syn.outputClasses2D, syn.outputVolume)
        (_, out), = self.outputs(prot).items()
        self.assertEqual(out.getClassName(), "SetOfClasses2D")
        self.assertEqual({c.getObjId(): c.getSize() for c in out}, {k: 2 for k in range(1, 31)})
        ids, score = self.scores(out)
        top = set(ids[np.argsort(-np.nan_to_num(score, nan=-np.inf))][:5].tolist())
        self.assertGreaterEqual(len(top & set(syn.truth["outlierIds"])), 2)
        rep = out[1].getRepresentative()
        self.assertTrue(rep.hasTransform())
        self.assertIsNotNone(out[1]._xmipp_cost.get())

    def test_continue_reuses_the_saved_chunks(self):
        syn = self.synthetic(nImages=40, boxSize=24, snr=2.0, decoys="mirrored", seed=25)
        prot = self.compare(syn.outputParticles, syn.outputVolumes, chunkSize=20)
        self.assertIsNone(readRanking(prot._getExtraPath()))
        chunks = sorted(glob.glob(prot._getExtraPath("vol*", "chunk_*.npz")))
        self.assertEqual(len(chunks), 4)
        stamps = [os.stat(fn).st_mtime_ns for fn in chunks]
        prot.doRanking.set(True)
        prot.extractOption.set(EXTRACT_VOLUME)
        self.launchProtocol(prot)  # continue: only the new ranking step runs
        self.assertEqual([os.stat(fn).st_mtime_ns for fn in chunks], stamps)
        steps = [s.funcName.get() for s in prot.loadSteps()]
        self.assertEqual(steps.count("produceResiduals"), 2)  # one per map, chunks inside
        self.assertEqual(steps[-1], "computeRankingVolumes")
        self.assertEqual(readRanking(prot._getExtraPath())["best"], 1)
        self.assertEqual(os.path.basename(prot.bestVolume.getFileName()), "map_01.mrc")
        # a map's step interrupted after some chunks: a rerun makes only the missing one
        os.remove(chunks[1])
        volId = int(os.path.basename(os.path.dirname(chunks[1]))[len("vol"):])
        prot.produceResiduals(volId, 2)
        self.assertTrue(os.path.exists(chunks[1]))
        kept = [0, 2, 3]
        self.assertEqual([os.stat(chunks[i]).st_mtime_ns for i in kept],
                         [stamps[i] for i in kept])
        self.assertEqual(glob.glob(prot._getExtraPath("vol*", "*.part")), [])
