"""Scipion project tests of the "Save images of" choice (all / flagged / none).

The same synthetic particles (odd box, CTF) are compared three times; the
scores must not change, ``flagged`` must give images to exactly the flagged
and worst items (the images of the ``all`` run), ``none`` to no item.
"""

import glob
import os

import numpy as np
import pytest

from xmipp_qc.convert import readImages
from xmipp_qc.core.saved_images import rows_to_save
from xmipp_qc.protocols.compare_reprojections_results import (
    ScoreRows,
    imageLocation,
    readScores,
)
from xmipp_qc.tests.test_protocol_compare_reprojections import CompareBase

pytestmark = pytest.mark.scipion

ALL, FLAGGED, NONE = 0, 1, 2


class TestCompareReprojectionsSavedImages(CompareBase):
    def _run(self, choice, syn):
        return self.compare(syn.outputParticles, syn.outputVolume, ignoreCTF=False,
                            doEvaluateResiduals=True, outputStacks=choice, keepWorst=8,
                            numberOfThreads=2, chunkSize=25)

    @staticmethod
    def _items(prot):
        (out,) = CompareBase.outputs(prot).values()
        return {item.getObjId(): item.clone() for item in out}

    def test_flagged_and_none_keep_the_scores_and_save_the_right_images(self):
        syn = self.synthetic(nImages=70, boxSize=33, snr=1.0, withCtf=True,
                             outlierFraction=0.05, outlierKinds="junk", seed=5)
        runs = {c: self._run(c, syn) for c in (ALL, FLAGGED, NONE)}
        items = {c: self._items(p) for c, p in runs.items()}
        ids = sorted(items[ALL])
        self.assertEqual(ids, list(range(1, 71)))
        for c in (FLAGGED, NONE):
            self.assertEqual(sorted(items[c]), ids)
            for attr in ("_qc_outlierScore", "_xmipp_cost", "_qc_isOutlier"):
                np.testing.assert_array_equal([getattr(items[c][i], attr).get() for i in ids],
                                              [getattr(items[ALL][i], attr).get() for i in ids])
        # flagged: images for the flagged items and the 8 worst of each score, no others
        extra = runs[FLAGGED]._getExtraPath()
        (vid,) = CompareBase.outputs(runs[FLAGGED]).keys()
        scores = readScores(extra, vid)
        expected = set(scores["ids"][rows_to_save(scores, "flagged", n_worst=8)].tolist())
        self.assertGreaterEqual(len(expected), max(8, int(scores["isOutlier"].sum()) + 1))
        self.assertLess(len(expected), 40)
        withImages = {i for i in ids if imageLocation(items[FLAGGED][i]._xmipp_image)}
        self.assertEqual(withImages, expected)
        for i in sorted(expected)[:6]:
            for attr in ("_xmipp_image", "_xmipp_imageRef", "_xmipp_imageResidual"):
                self.assertIn("saved_", getattr(items[FLAGGED][i], attr).get())
                got = readImages([imageLocation(getattr(items[FLAGGED][i], attr))])[0]
                ref = readImages([imageLocation(getattr(items[ALL][i], attr))])[0]
                np.testing.assert_allclose(got, ref, atol=1e-5 * np.abs(ref).max())
        self.assertFalse(glob.glob(os.path.join(extra, f"vol{vid}", "aligned_*.mrcs")))
        # none: no image pointer, no stack, the report still drawn (recomputed images)
        extraNone = runs[NONE]._getExtraPath()
        self.assertFalse(any(imageLocation(items[NONE][i]._xmipp_image) for i in ids))
        self.assertFalse(glob.glob(os.path.join(extraNone, f"vol{vid}", "*.mrcs")))
        self.assertGreater(os.path.getsize(os.path.join(extraNone, f"report_vol{vid}.png")),
                           5000)


def test_score_rows_are_built_on_demand():
    scores = {"ids": np.array([7, 3, 5]), "cost": np.array([0.1, 0.2, 0.3]),
              "angles": np.arange(9.0).reshape(3, 3), "shifts": np.zeros((3, 2))}
    rows = ScoreRows(scores, np.ones((3, 2)), lambda i: None if i == 1 else (str, i + 1))
    assert list(rows) == [7, 3, 5] and len(rows) == 3 and 5 in rows and 4 not in rows
    assert rows[5]["cost"] == 0.3 and rows[5]["index"] == 3
    np.testing.assert_array_equal(rows[3]["angles"], [3, 4, 5])
    assert rows[3]["stack"] is None and rows.get(4) is None
    with pytest.raises(KeyError):
        rows[4]  # noqa: B018
