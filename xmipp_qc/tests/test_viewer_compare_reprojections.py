"""Headless tests of the compare-reprojections viewer: tables, figures, subsets."""


import numpy as np
import pytest
from pyworkflow import Config

Config.setDomain("pwem")

from pyworkflow.tests import BaseTest, setupTestProject  # noqa: E402

from xmipp_qc.core.outliers import OUTLIER_THRESHOLD  # noqa: E402
from xmipp_qc.plots import reprojections as plots  # noqa: E402
from xmipp_qc.protocols import (  # noqa: E402
    XmippQcProtCompareReprojections,
    XmippQcProtSyntheticParticles,
)
from xmipp_qc.protocols.compare_reprojections_results import readScores  # noqa: E402
from xmipp_qc.tests.run_polling import wait_until_ended  # noqa: E402
from xmipp_qc.viewers.viewer_compare_reprojections import (  # noqa: E402
    HISTOGRAM_SCORES,
    KEEP_INLIERS,
    KEEP_OUTLIERS,
    XmippQcCompareReprojectionsViewer,
    rowPicture,
)

pytestmark = pytest.mark.scipion


def test_score_histograms_count_flagged_per_panel():
    rng = np.random.default_rng(0)
    scores = {"outlierScore": np.r_[rng.normal(size=50), [9.0, 8.0, np.nan]],
              "cost": np.r_[rng.uniform(0.5, 0.9, 50), [0.1, 0.2, np.nan]]}
    fig = plots.plot_score_histograms(scores, 3.5, names=["outlierScore", "cost", "absent"])
    axes = fig.get_axes()
    assert len(axes) == 2
    assert axes[0].get_title().startswith("outlierScore\n2 of 53 images flagged, 1 failed")
    assert axes[1].get_xlabel() == "cost: correlation with the reprojection"
    with pytest.raises(ValueError, match="no scores"):
        plots.plot_score_histograms(scores, 3.5, names=["absent"])


class TestCompareReprojectionsViewer(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        cls.syn = cls.newProtocol(XmippQcProtSyntheticParticles, nImages=60, boxSize=32,
                                  outlierFraction=0.05, outlierKinds="junk,wrong_conformation",
                                  decoys="other", seed=11)
        cls.launchProtocol(cls.syn)
        cls.prot = cls.newProtocol(XmippQcProtCompareReprojections,
                                   inputSet2D=cls.syn.outputParticles,
                                   inputSet3D=cls.syn.outputVolumes, extractOption=1,
                                   doEvaluateResiduals=True, chunkSize=30)
        cls.launchProtocol(cls.prot)

    def viewer(self):
        v = XmippQcCompareReprojectionsViewer(project=self.proj, protocol=self.prot)
        v.setProtocol(self.prot)
        return v

    def test_table_sorted_worst_first_with_image_columns(self):
        v = self.viewer()
        self.assertEqual(v.volumeIndex.get(), 0)
        view, = v._getVisualizeDict()["displayTable"]("displayTable")
        self.assertEqual((view.sortBy, view.descending), ("outlierScore", True))
        self.assertEqual(len(view.rows), 60)
        self.assertEqual(len({r["image"] for r in view.rows}), 60)  # one image per row
        self.assertEqual(len({r["reprojection"] for r in view.rows}), 60)
        a, b = (rowPicture(r) for r in view.rows[:2])
        self.assertEqual(a.shape, (64, 3 * 64 + 6, 3))
        self.assertGreater(np.abs(a.astype(int) - b.astype(int)).mean(), 1.0)

    def test_figures_are_drawn_from_saved_scores(self):
        v = self.viewer()
        plotter, = v._getVisualizeDict()["displayHistograms"]("displayHistograms")
        axes = plotter.getFigure().get_axes()
        self.assertEqual(len(axes), len(HISTOGRAM_SCORES))
        scores = readScores(self.prot._getExtraPath(), 1)
        n = int((scores["outlierScore"] > OUTLIER_THRESHOLD).sum())
        self.assertIn(f"\n{n} of 60 images flagged", axes[0].get_title())
        ranking, = v._getVisualizeDict()["displayRanking"]("displayRanking")
        bars = ranking.getFigure().get_axes()[0].patches
        self.assertEqual(len(bars), 2)
        self.assertGreater(bars[0].get_height(), bars[1].get_height())

    def _subsetIds(self, keep):
        subset = self.viewer().launchSubset(keep)
        wait_until_ended(self.proj, subset, timeout=60)
        self.assertTrue(subset.isFinished(), subset.getErrorMessage())
        out = next(iter(subset.iterOutputAttributes()))[1]
        return sorted(out.getIdSet())

    def test_subsets_of_kept_and_flagged_images(self):
        out = self.prot.reprojections_vol1
        flagged = sorted(i.getObjId() for i in out if i._qc_isOutlier.get())
        kept = sorted(set(range(1, 61)) - set(flagged))
        self.assertTrue(0 < len(flagged) < 20, flagged)
        self.assertEqual(self._subsetIds(KEEP_INLIERS), kept)
        self.assertEqual(self._subsetIds(KEEP_OUTLIERS), flagged)


def test_double_click_table_shows_our_columns_and_images():
    import pwem.objects as emobj
    from pwem.viewers.showj import ORDER, RENDER, VISIBLE
    from pwem.viewers.viewers_data import RegistryViewerConfig

    from xmipp_qc.viewers.table_config import showQcColumns

    showQcColumns()  # twice: nothing is appended again
    config = RegistryViewerConfig.getConfig(emobj.SetOfParticles)
    visible = config[VISIBLE].split()
    assert visible[:4] == ["id", "enabled", "_index", "_filename"]  # Scipion's first
    for column in ("_qc_outlierScore", "_xmipp_cost", "_xmipp_image", "_xmipp_imageRef"):
        assert visible.count(column) == 1 and column in config[ORDER].split()
    assert {"_xmipp_image", "_xmipp_imageRef"} <= set(config[RENDER].split())
    movies = RegistryViewerConfig.getConfig(emobj.SetOfMicrographs)[VISIBLE].split()
    assert "_alignment_reason" in movies and "_alignment_rmse_error" in movies
