"""Scipion project tests of XmippQcProtCompareReprojections: particle inputs.

Synthetic data with known truth come from the hidden helper protocol
XmippQcProtSyntheticParticles (planted outliers, true angles and shifts in
``extra/truth.json``). Ranking, extraction and the other input types are in
test_protocol_compare_reprojections_sets.py.
"""

import json
import os

import numpy as np
import pytest
from pyworkflow import Config

Config.setDomain("pwem")

from pwem.constants import ALIGN_PROJ  # noqa: E402
from pyworkflow.tests import BaseTest, setupTestProject  # noqa: E402

from xmipp_qc import compare_run  # noqa: E402
from xmipp_qc.convert import imagesToArrays  # noqa: E402
from xmipp_qc.core.geometry import euler_to_matrix  # noqa: E402
from xmipp_qc.protocols import (  # noqa: E402
    XmippQcProtCompareReprojections,
    XmippQcProtSyntheticParticles,
)
from xmipp_qc.protocols.compare_reprojections_results import readOutputsJson  # noqa: E402

pytestmark = pytest.mark.scipion


def angularError(a, b):
    """Rotation angle (degrees) between orientations a and b, (n, 3) each."""
    r = np.einsum("nij,nkj->nik", euler_to_matrix(a), euler_to_matrix(b))
    return np.degrees(np.arccos(np.clip((np.trace(r, axis1=1, axis2=2) - 1) / 2, -1, 1)))


class CompareBase(BaseTest):
    """Helpers shared by the compare-reprojections project tests (no tests here)."""

    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)

    def synthetic(self, **kwargs):
        prot = self.newProtocol(XmippQcProtSyntheticParticles, **kwargs)
        self.launchProtocol(prot)
        with open(prot._getExtraPath("truth.json")) as fh:
            prot.truth = json.load(fh)
        return prot

    def compare(self, images, volumes, **kwargs):
        kwargs.setdefault("doRanking", False)
        kwargs.setdefault("chunkSize", 40)
        kwargs.setdefault("numberOfThreads", 1)
        prot = self.newProtocol(XmippQcProtCompareReprojections, inputSet2D=images,
                                inputSet3D=volumes, **kwargs)
        self.launchProtocol(prot)
        return prot

    @staticmethod
    def outputs(prot):
        """``{volumeId: output set}`` as listed in extra/outputs.json."""
        names = readOutputsJson(prot._getExtraPath())
        return {vid: getattr(prot, name) for vid, name in names.items()}

    @staticmethod
    def scores(outSet, attr="_qc_outlierScore"):
        """``(ids, values)`` of a float attribute, NaN where unset."""
        ids, values = [], []
        for item in outSet:
            ids.append(item.getObjId())
            v = getattr(item, attr).get()
            values.append(np.nan if v is None else v)
        return np.array(ids), np.array(values, dtype=float)

    def assertOutliersOnTop(self, outSet, truth, slack=2):
        ids, score = self.scores(outSet)
        planted = set(truth["outlierIds"])
        top = ids[np.argsort(-np.nan_to_num(score, nan=-np.inf))][:len(planted) + slack]
        self.assertGreaterEqual(len(planted & set(top.tolist())), int(0.8 * len(planted)),
                                f"planted {sorted(planted)}, top {sorted(top.tolist())}")

    def assertAlignmentNearTruth(self, outSet, truth, maxAngle=4.0, maxShift=0.6):
        d = imagesToArrays(outSet, ALIGN_PROJ)
        good = np.array([i not in truth["outlierIds"] for i in d["ids"]])
        rows = d["ids"] - 1
        err = angularError(d["angles"][good], np.array(truth["trueAngles"])[rows[good]])
        shiftErr = np.linalg.norm(d["shifts"][good] - np.array(truth["trueShifts"])[rows[good]],
                                  axis=1)
        self.assertLess(np.median(err), maxAngle, f"median angular error {np.median(err):.2f}")
        self.assertLess(np.median(shiftErr), maxShift,
                        f"median shift error {np.median(shiftErr):.2f} px")
        return err, shiftErr


class TestCompareReprojectionsParticles(CompareBase):
    def test_given_assignment_flags_planted_outliers_and_refines(self):
        syn = self.synthetic(nImages=80, boxSize=32, snr=1.0, outlierFraction=0.05,
                             outlierKinds="junk,wrong_conformation", seed=1)
        prot = self.compare(syn.outputParticles, syn.outputVolume, numberOfThreads=2)
        (vid, out), = self.outputs(prot).items()
        self.assertEqual(vid, syn.outputVolume.getObjId())
        self.assertEqual(sorted(out.getIdSet()), list(range(1, 81)))
        self.assertTrue(out.hasAlignmentProj())
        self.assertOutliersOnTop(out, syn.truth, slack=0)
        ids, flagged = self.scores(out, "_qc_isOutlier")
        flaggedIds, planted = set(ids[flagged.astype(bool)]), set(syn.truth["outlierIds"])
        self.assertGreaterEqual(len(flaggedIds & planted), 6, (flaggedIds, planted))
        self.assertLessEqual(len(flaggedIds - planted), 2, (flaggedIds, planted))
        self.assertAlignmentNearTruth(out, syn.truth)
        _, kept = self.scores(out, "_qc_moveKept")  # refinement's evidence test (issue 19)
        self.assertTrue(set(np.unique(kept)) <= {0.0, 1.0}, np.unique(kept))
        _, cost = self.scores(out, "_xmipp_cost")
        good = np.array([i not in syn.truth["outlierIds"] for i in ids])
        self.assertGreater(np.median(cost[good]), np.median(cost[~good]) + 0.1)
        first = out.getFirstItem()
        self.assertTrue(first._xmipp_imageRef.get().endswith("reprojections_00000.mrcs"))
        self.assertTrue(first._xmipp_image.get().startswith("1@"))  # Xmipp's image name
        self.assertFalse(hasattr(first, "_xmipp_imageResidual"))
        self.assertEqual(prot._warnings(), [])
        with open(prot.getStdoutLog()) as fh:
            log = fh.read()
        self.assertIn("BLAS threads per chunk thread: [1, 1]", log)  # no oversubscription
        self.assertTrue(prot.modeSerial())  # locally: the serial executor, no step sleeps
        self.assertIn("Serial execution", log)
        self.assertIn("using the <pyworkflow.protocol.executor.StepExecutor", log)

    def test_ctf_and_blank_images_are_kept_and_flagged(self):
        syn = self.synthetic(nImages=60, boxSize=32, snr=2.0, withCtf=True, outlierFraction=0.05,
                             outlierKinds="junk", blankImages="3,5", seed=2)
        prot = self.compare(syn.outputParticles, syn.outputVolume, ignoreCTF=False,
                            doEvaluateResiduals=True)
        (_, out), = self.outputs(prot).items()
        self.assertSetSize(out, 60)
        for i in (3, 5):
            item = out[i]
            self.assertTrue(item._qc_isOutlier.get())
            self.assertEqual(item._qc_reason.get(), "constant_image")
            self.assertIsNone(item._qc_reasonValue.get())
            self.assertIsNone(item._qc_outlierScore.get())
            given = syn.outputParticles[i].getTransform().getMatrix()
            np.testing.assert_allclose(item.getTransform().getMatrix(), given, atol=1e-6)
        reasons = {item.getObjId(): item._qc_reason.get() for item in out}
        flagged = {item.getObjId() for item in out if item._qc_isOutlier.get()}
        self.assertEqual({i for i, r in reasons.items() if r}, flagged)  # every flag says why
        self.assertEqual({i for i, r in reasons.items()
                          if r == "outlier_score_above_threshold"}, flagged - {3, 5})
        self.assertOutliersOnTop(out, syn.truth)
        self.assertAlignmentNearTruth(out, syn.truth)
        residual = out[1]._xmipp_imageResidual.get()
        self.assertTrue(residual.endswith("residuals_00000.mrcs"))
        import mrcfile  # every file through formats/mrc.py: stacks have a stack header

        vid = syn.outputVolume.getObjId()
        for fn, stack in ((residual.split("@")[-1], True),
                          (prot._getExtraPath("images_work.mrcs"), True),
                          (syn._getExtraPath("images.mrcs"), True),
                          (prot._getExtraPath(f"volume_{vid}.mrc"), False)):
            with mrcfile.open(fn) as mrc:
                self.assertEqual((mrc.is_image_stack(), mrc.is_volume()), (stack, not stack), fn)

    def test_ctf_is_used_by_default_and_said_first(self):
        syn = self.synthetic(nImages=60, boxSize=32, snr=2.0, withCtf=True, seed=4)
        costs, notes = {}, {
            "default": "CTF applied to every reprojection: the images carry one (CTF model "
                       "on the images); Ignore CTF = Yes to ignore it.",
            True: "CTF not applied (Ignore CTF = Yes) although the images carry one (CTF "
                  "model on the images): scores are lower than with it."}
        for ignore in ("default", True):
            kw = {} if ignore == "default" else {"ignoreCTF": ignore}
            prot = self.compare(syn.outputParticles, syn.outputVolume, chunkSize=60, **kw)
            (_, out), = self.outputs(prot).items()
            costs[ignore] = np.median(self.scores(out, "_xmipp_cost")[1])
            self.assertEqual(prot.summary()[0], notes[ignore])
            with open(prot.getStdoutLog()) as fh:
                log = fh.read()
            self.assertIn(notes[ignore], log)
            self.assertLess(log.index(notes[ignore]), log.index("downSampleStep"))
            self.assertEqual(compare_run.read_run(prot._getExtraPath())["options"].use_ctf,
                             ignore == "default")
        self.assertGreater(costs["default"], costs[True] + 0.1, costs)

    def test_mismatched_sampling_volume_finer_than_images(self):
        # map at 1.5 A/px box 64, images at 3 A/px box 32: the map is Fourier cropped
        syn = self.synthetic(nImages=60, boxSize=32, snr=1.0, outlierFraction=0.05,
                             outlierKinds="junk", volBoxSize=64, volSamplingRate=1.5, seed=5)
        prot = self.compare(syn.outputParticles, syn.outputVolume)
        (_, out), = self.outputs(prot).items()
        self.assertSetSize(out, 60)
        self.assertOutliersOnTop(out, syn.truth)
        self.assertAlignmentNearTruth(out, syn.truth)
        vid = syn.outputVolume.getObjId()
        name = os.path.basename(syn.outputVolume.getFileName())
        self.assertEqual(prot.summary()[:2], [
            "CTF not applied: the images carry none (no CTF model on the images); scores "
            "compare them with CTF-free reprojections.",
            f"Pixel sizes differ: map {vid} ({name}) 1.5 Å/px (its sampling rate in Scipion), "
            "images 3 Å/px (sampling rate of the images); the map is resampled to 3 Å/px. If "
            "the map's value is wrong, every score is: check the map's sampling rate where it "
            "was imported (Import volumes: Sampling rate)."])

    def test_mismatched_sampling_images_finer_than_volume(self):
        # images at 1.5 A/px box 64, map at 3 A/px box 32: images cropped to 3 A/px,
        # shifts reported back in input (1.5 A) pixels
        syn = self.synthetic(nImages=60, boxSize=64, samplingRate=1.5, maxShift=4.0, snr=1.0,
                             outlierFraction=0.05, outlierKinds="junk", volBoxSize=32,
                             volSamplingRate=3.0, seed=6)
        prot = self.compare(syn.outputParticles, syn.outputVolume)
        (_, out), = self.outputs(prot).items()
        self.assertOutliersOnTop(out, syn.truth)
        _, shiftErr = self.assertAlignmentNearTruth(out, syn.truth, maxShift=1.0)
        ids, sx = self.scores(out, "_xmipp_continuousX")
        reported = np.array(syn.truth["trueShifts"])[ids - 1, 0]
        self.assertGreater(np.corrcoef(sx, reported)[0, 1], 0.95)

    def test_without_assignment_falls_back_to_matching(self):
        syn = self.synthetic(nImages=60, boxSize=32, snr=2.0, withAlignment=False,
                             outlierFraction=0.05, outlierKinds="junk", seed=7)
        prot = self.compare(syn.outputParticles, syn.outputVolume, useAssignment=True)
        self.assertEqual(len(prot._warnings()), 1)
        first = prot._summary()
        self.assertTrue(first[0].startswith("CTF not applied: the images carry none"), first)
        self.assertIn("projection matching", first[1])
        (_, out), = self.outputs(prot).items()
        self.assertSetSize(out, 60)
        ids, matched = self.scores(out, "_qc_matched")
        self.assertTrue(matched.all())
        self.assertOutliersOnTop(out, syn.truth)
        self.assertAlignmentNearTruth(out, syn.truth, maxAngle=5.0, maxShift=1.0)


class TestCompareReprojectionsValidation(CompareBase):
    def test_validation_messages(self):
        syn = self.synthetic(nImages=10, boxSize=16, decoys="mirrored")
        single = self.newProtocol(XmippQcProtCompareReprojections,
                                  inputSet2D=syn.outputParticles, inputSet3D=syn.outputVolume)
        self.assertTrue(any("several maps" in e for e in single._validate()))
        single.doRanking.set(False)
        self.assertEqual(single._validate(), [])
        single.symmetryGroup.set("x7")
        self.assertTrue(any("symmetry group 'x7'" in e for e in single._validate()))
        for sym in ("c1", "C7", "d6", "i2", "O", "t", "c2v"):
            single.symmetryGroup.set(sym)
            self.assertEqual(single._validate(), [], sym)
        vols = self.newProtocol(XmippQcProtCompareReprojections,
                                inputSet2D=syn.outputParticles, inputSet3D=syn.outputVolumes)
        self.assertTrue(any("3D classes" in e for e in vols._validate()))
        vols.extractOption.set(1)
        self.assertEqual(vols._validate(), [])
        classes = self.newProtocol(XmippQcProtCompareReprojections,
                                   inputSet2D=syn.outputParticles,
                                   inputSet3D=syn.outputClasses3D)
        self.assertEqual(classes._validate(), [])
