"""Scores against fixed burn-in statistics (xmipp_qc.core.reference_statistics)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xmipp_qc.core.outliers import MATCHED_OUTLIER_COMPONENTS, set_statistics
from xmipp_qc.core.reference_statistics import reference_statistics, score_with_reference
from xmipp_qc.core.residuals import ChunkSummary, summarize_chunk
from xmipp_qc.tests.core.test_outliers import _synthetic


def _summary(n=240, seed=0, broken=0):
    img, proj, bad = _synthetic(n=n, seed=seed)
    img[:broken] = np.nan
    rng = np.random.default_rng(seed + 100)
    extra = {"zInit": rng.normal(size=n), "corrGain": rng.gamma(2.0, size=n),
             "angleChange": rng.gamma(1.5, size=n), "grayInit": rng.normal(2.0, 0.2, n),
             "grayInitSE": rng.uniform(0.05, 0.1, n)}
    return summarize_chunk(img, proj, extra=extra), bad


@pytest.mark.parametrize("components", [None, MATCHED_OUTLIER_COMPONENTS])
def test_own_reference_equals_set_statistics(components):
    summary, _ = _summary(broken=3)
    ref = json.loads(json.dumps(reference_statistics(summary, components=components)))
    got = score_with_reference(summary, ref)
    want = set_statistics(summary, components=components)
    assert set(got.scores) == set(want.scores)
    for k, v in want.scores.items():
        np.testing.assert_allclose(got.scores[k], v, rtol=1e-9, atol=1e-9, err_msg=k)
    np.testing.assert_array_equal(got.is_outlier, want.is_outlier)
    np.testing.assert_array_equal(got.reasons, want.reasons)
    assert ref["n_images"] == 240 and ref["n_valid"] == 237


def test_later_images_scored_independently_of_each_other():
    summary, bad = _summary(n=480, seed=3)
    first = _take(summary, slice(0, 200))
    ref = reference_statistics(first)
    rest = _take(summary, slice(200, 480))
    whole = score_with_reference(rest, ref)
    one = score_with_reference(_take(rest, slice(0, 1)), ref)
    # an image's score depends on the reference and itself alone
    assert one.scores["outlierScore"][0] == pytest.approx(whole.scores["outlierScore"][0])
    split = ChunkSummary.concatenate([_take(rest, slice(0, 100)), _take(rest, slice(100, 280))])
    np.testing.assert_allclose(score_with_reference(split, ref).scores["outlierScore"],
                               whole.scores["outlierScore"])
    # the planted outliers are still found with the burn-in's scale
    flagged = whole.is_outlier
    assert flagged[bad[200:]].mean() > 0.5 and flagged[~bad[200:]].mean() < 0.05


def test_reference_needs_three_valid_images():
    summary, _ = _summary(n=4, broken=2)
    with pytest.raises(ValueError, match="at least 3 valid"):
        reference_statistics(summary)


def _take(s, sl):
    return ChunkSummary({k: v[sl] for k, v in s.scores.items()}, s.covariances[sl],
                        s.reasons[sl])
