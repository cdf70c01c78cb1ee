"""The real-particle panel (issue 19): compare reprojections on real β-gal particles.

Runs ``xmipp-qc compare-reprojections --no-assignment --use-ctf --symmetry d2``
on half of a real set (``shared/data/betagal-real``, see
:mod:`xmipp_qc.tests.real_particles`) and checks it against RELION's own
decisions: projection matching finds RELION's pose, the outlier score finds
RELION's junk better than any score it is built from, and the images it flags
at the default threshold are mostly junk. The synthetic panels are
``tests/core/test_alignment_panel.py`` and ``tests/core/test_outliers.py``.
"""

import numpy as np
import pytest

from xmipp_qc.core.outliers import MATCHED_OUTLIER_COMPONENTS
from xmipp_qc.core.reference_statistics import part_name
from xmipp_qc.tests.real_particles import (
    BETAGAL,
    flag_quality,
    pose_agreement,
    run_panel,
    score_aucs,
)
from xmipp_qc.tests.shared_data import missing_shared_data


@pytest.fixture(scope="module")
def matched(tmp_path_factory):
    if not (BETAGAL / "particles.star").exists():
        missing_shared_data(BETAGAL)
    out = tmp_path_factory.mktemp("betagal") / "matched"
    run = run_panel(out, options=("--no-assignment", "--use-ctf"))
    aucs = score_aucs(run)
    print(f"\nreal β-gal half, {run.n} images: {pose_agreement(run)}, {flag_quality(run)}")
    for name, a in sorted(aucs.items(), key=lambda kv: -kv[1]["agreed"]):
        print(f"  {name:16s} agreed {a['agreed']:.3f} refined {a['refined']:.3f} "
              f"2D good {a['good2d']:.3f}")
    return run, aucs


def test_matching_finds_relions_pose(matched):
    run, _ = matched
    agree = pose_agreement(run)
    assert agree["n"] == 611
    assert agree["within10"] >= 0.90  # was 0.774 with a 0.1 N shift search
    assert agree["median"] < 3.0


def test_outlier_score_finds_junk_better_than_its_components(matched):
    run, aucs = matched
    combined = aucs["outlierScore"]["agreed"]
    assert combined >= 0.90  # was 0.788
    for name in MATCHED_OUTLIER_COMPONENTS:
        assert combined > aucs[name]["agreed"], name
    # and better than every single score column the run writes
    assert combined > max(a["agreed"] for k, a in aucs.items() if k != "outlierScore")
    # it also ranks by each of RELION's labels alone better than chance
    assert aucs["outlierScore"]["refined"] > 0.8 and aucs["outlierScore"]["good2d"] > 0.65


def test_flagged_images_are_mostly_junk(matched):
    run, _ = matched
    q = flag_quality(run)
    assert 40 <= q["flagged"] <= 250  # was 113, of which 66.7% junk (agreed)
    assert q["precision"] >= 0.9  # junk share of the flagged agreed images (base 0.40)
    assert q["recall"] >= 0.12
    assert q["not_refined_worst10"] >= 0.85


def test_outlier_parts_explain_the_score(matched):
    run, _ = matched
    parts = np.column_stack([run.columns[part_name(k)] for k in MATCHED_OUTLIER_COMPONENTS])
    ok = np.isfinite(run.columns["outlierScore"])
    offset = parts[ok].sum(axis=1) - run.columns["outlierScore"][ok]
    np.testing.assert_allclose(offset, offset[0], atol=2e-3)  # one constant of the set
    flagged = run.columns["isOutlier"].astype(bool) & ok
    # every flagged image has at least one clearly bad part
    assert (parts[flagged].max(axis=1) > 0.5).all()
