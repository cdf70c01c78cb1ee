"""Reason categories (:mod:`xmipp_qc.core.reasons`): one table, split into category + value."""

import re
from pathlib import Path

import numpy as np
import pytest

from xmipp_qc.core import input_checks, outliers
from xmipp_qc.core import simulate as sim
from xmipp_qc.core.compare_results import finalize
from xmipp_qc.core.pipeline import CompareOptions, MapModel, process_chunk
from xmipp_qc.core.reasons import (
    FAILED,
    OUTLIER,
    REASONS,
    is_failure,
    reason,
    reason_lines,
    split_reasons,
)

README = Path(__file__).resolve().parents[3] / "README.md"


def test_reason_strings_split_into_category_and_value():
    r = [reason("given_shift_too_large", 50.3125), "", reason("constant_image"),
         reason(OUTLIER), reason("extreme_image_scale", 1e6)]
    cats, values = split_reasons(r)
    assert list(cats) == ["given_shift_too_large", "", "constant_image", OUTLIER,
                          "extreme_image_scale"]
    np.testing.assert_allclose(values, [50.3125, np.nan, np.nan, np.nan, 1e6])
    assert list(is_failure(cats)) == [True, False, True, False, True]
    with pytest.raises(KeyError, match="unknown reason category 'shift_bad'"):
        reason("shift_bad", 1.0)
    # a sentence from elsewhere (not ours) stays whole, no value
    cats, values = split_reasons(["bad: thing 3"])
    assert cats[0] == "bad: thing 3" and np.isnan(values[0])


def test_categories_are_identifiers_and_descriptions_match_constants():
    assert set(FAILED) | {OUTLIER} == set(REASONS)
    for k, text in REASONS.items():
        assert re.fullmatch(r"[a-z_]+", k) and len(text) > 20
    assert f"{input_checks.MAX_SHIFT_FRACTION:.0%}" in REASONS["given_shift_too_large"]
    assert f"{outliers.EXTREME_SCALE_FACTOR:.0f} times" in REASONS["extreme_image_scale"]
    assert f"{input_checks.MAX_ABS_VALUE:.0e}".replace("+", "") in REASONS[
        "image_values_too_large"]


def test_readme_lists_every_category():
    text = README.read_text()
    for k, desc in REASONS.items():
        row = re.search(rf"^\| `{k}` \| (.+) \|$", text, re.M)
        assert row, k
        assert row.group(1) == desc, k


def test_reason_lines_count_and_range():
    cats = np.array(["constant_image", "", "given_shift_too_large", "given_shift_too_large"])
    vals = np.array([np.nan, np.nan, 12.5, 40.0])
    assert reason_lines(cats, vals) == [
        f"2 x given_shift_too_large: {REASONS['given_shift_too_large']} (12.5 to 40)",
        f"1 x constant_image: {REASONS['constant_image']}"]


def test_finalize_writes_category_and_value_columns():
    """A far shift (13 px in a 32 px box) and a blank image, through the pipeline."""
    box = 32
    blobs = sim.phantom_blobs(box, seed=0)
    ps = sim.simulate_particles(blobs, 40, box=box, snr=1.0, seed=0)
    imgs, shifts = ps.images.copy(), ps.shifts.copy()
    imgs[7] = 0.0
    shifts[5] = (12.0, 5.0)
    model = MapModel(sim.blobs_volume(blobs, box), CompareOptions(3.0))
    out = finalize([process_chunk(model, imgs, ids=np.arange(40), angles=ps.angles,
                                  shifts=shifts)])
    assert out["reason"][5] == "given_shift_too_large"
    assert out["reasonValue"][5] == pytest.approx(13.0, abs=1e-4)
    assert out["reason"][7] == "constant_image" and np.isnan(out["reasonValue"][7])
    flagged = out["reason"] == OUTLIER
    assert (out["outlierScore"][flagged] > outliers.OUTLIER_THRESHOLD).all()
    assert set(out["reason"]) <= set(REASONS) | {""}
    assert np.isnan(out["reasonValue"][out["reason"] != "given_shift_too_large"]).all()
