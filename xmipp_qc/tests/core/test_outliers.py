"""Pass 2 of the residual analysis (xmipp_qc.core.outliers): known answers and AUC bars."""

from __future__ import annotations

import numpy as np
import pytest

from xmipp_qc.core import spd_divergence
from xmipp_qc.core.outliers import robust_z, set_statistics
from xmipp_qc.core.ranking import roc_auc
from xmipp_qc.core.residuals import ChunkSummary, summarize_chunk
from xmipp_qc.core.spd_divergence import jbld, jbld_centroid


def test_jbld_known_answers():
    d = 9
    eye = np.eye(d)
    assert jbld(eye, eye) == pytest.approx(0.0, abs=1e-12)
    s2 = 4.0
    want = d * (np.log((1 + s2) / 2) - 0.5 * np.log(s2))
    assert jbld(s2 * eye, eye) == pytest.approx(want)
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, d, d))
    a = a @ np.transpose(a, (0, 2, 1)) + eye
    b = a[::-1]
    np.testing.assert_allclose(jbld(a, b), jbld(b, a))
    assert np.all(jbld(a, b)[[0, 1, 3, 4]] > 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blocks_give_the_same_divergence_and_centroid(monkeypatch, dtype):
    """A stack longer than a block (K = 10 blocks of 7 + 3) gives what one block gives."""
    rng = np.random.default_rng(5)
    g = rng.normal(size=(73, 9, 12))
    covs = (g @ g.transpose(0, 2, 1) / 12 + 0.1 * np.eye(9)).astype(dtype)
    whole_c, whole_j = jbld_centroid(covs), jbld(covs, np.eye(9))
    monkeypatch.setattr(spd_divergence, "BLOCK", 7)
    np.testing.assert_allclose(jbld_centroid(covs), whole_c, rtol=1e-10)
    np.testing.assert_allclose(jbld(covs, np.eye(9)), whole_j, rtol=1e-12)
    assert jbld(covs, whole_c).shape == (73,)


def test_jbld_centroid_fixed_points():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(4, 4))
    a = a @ a.T + np.eye(4)
    np.testing.assert_allclose(jbld_centroid(np.stack([a, a, a])), a, rtol=1e-10)
    # {X, X^-1} for diagonal X: the JBLD centroid is the identity (scalar check of eq. 25)
    x = np.diag([4.0, 0.5, 2.0])
    c = jbld_centroid(np.stack([x, np.linalg.inv(x)]))
    np.testing.assert_allclose(c, np.eye(3), atol=1e-8)
    # and it minimises the summed divergence (better than the arithmetic mean)
    stack = np.stack([x, np.linalg.inv(x)])
    assert jbld(stack, c).sum() < jbld(stack, stack.mean(axis=0)).sum()
    with pytest.raises(ValueError):
        jbld_centroid(np.zeros((0, 3, 3)))


def test_robust_z_known_answer_and_validity():
    x = np.array([1.0, 2.0, 3.0, 4.0, 100.0, np.nan])
    z = robust_z(x)
    # median 3, MAD 1 -> scale 1.4826
    np.testing.assert_allclose(z[:5], (x[:5] - 3.0) / 1.4826)
    assert np.isnan(z[5])
    z2 = robust_z(x, valid=[True, True, True, False, False, True])
    assert z2[1] == 0.0  # median of {1, 2, 3}
    np.testing.assert_allclose(robust_z([5.0, 5.0, 5.0]), 0.0)


def _synthetic(n: int = 240, box: int = 32, seed: int = 0):
    """Blob reprojections; outliers are images of a shifted blob (the map explains less)."""
    rng = np.random.default_rng(seed)
    c = np.arange(box) - box // 2
    proj = np.zeros((n, box, box))
    for k in range(n):
        x0, y0 = rng.uniform(-4, 4, 2)
        proj[k] = np.exp(-((c[None] - x0) ** 2 + (c[:, None] - y0) ** 2) / 18.0)
        proj[k] += 0.6 * np.exp(-((c[None] - 6) ** 2 + (c[:, None] + 4) ** 2) / 8.0)
    truth = proj.copy()
    bad = np.zeros(n, bool)
    bad[::20] = True
    truth[bad] = np.roll(proj[bad], 5, axis=2)
    noise = np.sqrt(truth.var(axis=(1, 2)).mean() / 0.1)
    return 2.0 * truth + noise * rng.standard_normal(truth.shape), proj, bad


def test_set_statistics_flags_outliers_and_ignores_invalid():
    img, proj, bad = _synthetic()
    s = summarize_chunk(img, proj)
    st = set_statistics(s)
    assert roc_auc(st.scores["outlierScore"], bad) > 0.97
    assert st.is_outlier[~bad].mean() < 0.03 and st.is_outlier[bad].mean() > 0.5
    # signed and absolute Xmipp-style z-scores
    np.testing.assert_allclose(st.scores["zScoreResVar"], np.abs(st.scores["zResStd"]))
    z = st.scores["zResMean"]
    assert z.mean() == pytest.approx(0.0, abs=1e-9) and z.std() == pytest.approx(1.0)
    assert st.centroid.shape == (9, 9)
    # three broken images: flagged with their reason, NaN scores, others unchanged
    broken = img.copy()
    broken[:3] = np.array([np.nan, 0.0, 7.0])[:, None, None]
    img2 = np.concatenate([img, broken[:3]])
    proj2 = np.concatenate([proj, proj[:3]])
    s2 = ChunkSummary.concatenate([summarize_chunk(img2[:100], proj2[:100]),
                                   summarize_chunk(img2[100:], proj2[100:])])
    st2 = set_statistics(s2)
    assert st2.is_outlier[-3:].all() and np.isnan(st2.scores["outlierScore"][-3:]).all()
    assert list(st2.reasons[-3:]) == ["non_finite_image", "constant_image", "constant_image"]
    for k, v in st.scores.items():
        np.testing.assert_allclose(st2.scores[k][:-3], v, rtol=1e-5, atol=1e-8, err_msg=k)


def test_set_statistics_needs_three_valid_images():
    img, proj, _ = _synthetic(n=4)
    img[1:] = np.nan
    with pytest.raises(ValueError, match="at least 3 valid"):
        set_statistics(summarize_chunk(img, proj))


# --- accuracy bars on simulated particles (box 64, 500 images, 4% of each kind) ---------

_BOX, _N = 64, 500
_SIGNS = {  # orientation of each individual score for its AUC: +1 when high means outlier
    "cost": -1, "corrIdx": -1, "corrMask": -1, "corrWeight": -1, "imedValue": +1,
    "grayA": -1, "resStd": +1, "zScoreResMean": +1, "zScoreResVar": +1, "zScoreResCov": +1,
    "zScoreGray": -1, "zScoreGrayInit": -1, "corrInit": -1, "corrGain": +1,
    "angleChange": +1, "shiftChange": +1, "outlierScore": +1,
}


def _scored_set(snr: float):
    from xmipp_qc.core.projection import FourierProjector
    from xmipp_qc.core.refine import LocalRefiner
    from xmipp_qc.core.similarity import masked_correlation
    from xmipp_qc.core.simulate import (
        OUTLIER_KINDS,
        blobs_volume,
        phantom_blobs,
        simulate_particles,
    )

    blobs = phantom_blobs(_BOX, seed=0)
    vol = blobs_volume(blobs, _BOX)
    ps = simulate_particles(blobs, _N, box=_BOX, snr=snr, max_shift_px=2.0,
                            outlier_fraction=0.04, seed=3)
    assert sorted(set(ps.kinds) - {""}) == sorted(OUTLIER_KINDS)
    refiner = LocalRefiner(vol)
    parts = []
    for s in range(0, _N, 250):  # two passes: chunk summaries, then set statistics
        sl = slice(s, s + 250)
        res = refiner.refine(ps.images[sl], ps.angles[sl], ps.shifts[sl])
        parts.append(summarize_chunk(ps.images[sl], res.projections, extra=res.scores()))
    summary = ChunkSummary.concatenate(parts)
    st = set_statistics(summary)
    scores = {**summary.scores, **st.scores}
    given = FourierProjector(vol).project(ps.angles, shifts=ps.shifts)
    scores["plainCorrGiven"] = masked_correlation(ps.images, given)
    return ps.kinds, scores, st


def _auc_table(kinds, scores, title):
    from xmipp_qc.core.simulate import OUTLIER_KINDS

    good = kinds == ""
    table = {}
    head = " ".join(f"{k[:11]:>11s}" for k in OUTLIER_KINDS)
    print(f"\n{title}\n{'score':16s} {'all':>6s} {head}")
    for name, v in scores.items():
        sign = _SIGNS.get(name, -1)
        row = [roc_auc(sign * v, ~good)]
        for k in OUTLIER_KINDS:
            sel = good | (kinds == k)
            row.append(roc_auc(sign * v[sel], kinds[sel] == k))
        table[name] = row
        print(f"{name:16s} " + " ".join(f"{a:6.3f}".rjust(6 if i == 0 else 11)
                                         for i, a in enumerate(row)))
    return table


def _shown(scores):
    return {k: v for k, v in scores.items() if k in _SIGNS or k.startswith("plain")}


@pytest.fixture(scope="module")
def snr_05():
    return _scored_set(0.5)


@pytest.fixture(scope="module")
def snr_005():
    return _scored_set(0.05)


def test_outlier_auc_class_average_snr(snr_05):
    kinds, scores, st = snr_05
    table = _auc_table(kinds, _shown(scores), "ROC AUC, SNR 0.5 (class-average-like), box 64")
    assert table["outlierScore"][0] >= 0.98
    assert min(table["outlierScore"][1:]) >= 0.95
    good = kinds == ""
    assert st.is_outlier[good].mean() <= 0.02  # default threshold: few false flags


def test_outlier_auc_particle_snr(snr_005):
    kinds, scores, st = snr_005
    table = _auc_table(kinds, _shown(scores), "ROC AUC, SNR 0.05 (particle-like), box 64")
    combined = table["outlierScore"][0]
    assert combined >= 0.95
    assert combined > table["cost"][0] and combined > table["plainCorrGiven"][0]
    good = kinds == ""
    assert st.is_outlier[good].mean() <= 0.02
    assert st.is_outlier[~good].mean() >= 0.3


# --- location and scale of a score with a second population --------------------------

def test_half_sample_mode_known_answers():
    from xmipp_qc.core.outliers import half_sample_mode

    assert half_sample_mode([1.0, 2.0, 3.0]) == pytest.approx(2.0)
    assert half_sample_mode([0.0, 1.0, 2.0, 4.0, 50.0, 90.0, np.nan]) == pytest.approx(1.0)
    assert np.isnan(half_sample_mode([np.nan]))
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, 6000), rng.normal(4, 1.5, 4000)])
    assert half_sample_mode(x) == pytest.approx(0.0, abs=0.25)


def test_mode_location_scale_follows_the_low_population():
    from xmipp_qc.core.outliers import mode_location_scale, robust_location_scale

    rng = np.random.default_rng(1)
    for dtype in (np.float32, np.float64):
        one = rng.normal(2.0, 0.5, 5000).astype(dtype)
        loc, scale = mode_location_scale(one)
        assert loc == pytest.approx(2.0, abs=0.1) and scale == pytest.approx(0.5, rel=0.1)
        # 40% of a second, worse population: median and MAD move, mode and left sigma do not
        mixed = np.concatenate([one, rng.normal(4.0, 0.8, 3300).astype(dtype)])
        loc2, scale2 = mode_location_scale(mixed)
        med, mad = robust_location_scale(mixed)
        assert loc2 == pytest.approx(2.0, abs=0.15) and scale2 == pytest.approx(0.5, rel=0.15)
        assert med > 2.4 and mad > 0.9
    # few values or no spread: the robust estimate
    assert mode_location_scale([1.0, 2.0, 3.0]) == robust_location_scale([1.0, 2.0, 3.0])
    assert mode_location_scale(np.ones(20)) == robust_location_scale(np.ones(20))
    valid = np.arange(30) < 20
    assert mode_location_scale(np.r_[np.zeros(20), np.full(10, 9.0)], valid)[0] == 0.0


# --- matched images: the components of MATCHED_OUTLIER_COMPONENTS on synthetic particles --

#: The matched-mode components before issue 19 (real β-gal junk: AUC 0.788).
_EARLIER_MATCHED = {"zScoreGrayInit": -1, "zScoreGray": -1, "corrGain": +1,
                    "angleChange": +1, "zScoreResCov": +1}
_MATCHED_KINDS = ("wrong_conformation", "junk", "missing_domain", "mirrored_hand")


def matched_synthetic_set():
    """Simulated particles with planted kinds, matched and scored chunk by chunk."""
    from xmipp_qc.core.compare_results import finalize
    from xmipp_qc.core.pipeline import CompareOptions, MapModel, process_chunk
    from xmipp_qc.core.simulate import blobs_volume, phantom_blobs, simulate_particles

    box = 48
    blobs = phantom_blobs(box, seed=2)
    ps = simulate_particles(blobs, 240, box=box, snr=0.3, max_shift_px=3.0,
                            outlier_fraction=0.05, outlier_kinds=_MATCHED_KINDS, seed=7)
    model = MapModel(blobs_volume(blobs, box), CompareOptions(pixel_size_a=3.0))
    results = [process_chunk(model, ps.images[s:s + 120], ids=np.arange(s, s + 120),
                             keep_images=False) for s in (0, 120)]
    return ps.kinds, results, finalize


@pytest.fixture(scope="module")
def matched_set():
    return matched_synthetic_set()


def test_matched_outlier_score_on_synthetic_particles(matched_set):
    from xmipp_qc.core.outliers import MATCHED_OUTLIER_COMPONENTS

    kinds, results, finalize = matched_set
    bad = kinds != ""
    new = finalize(results, components=MATCHED_OUTLIER_COMPONENTS)
    old = finalize(results, components=_EARLIER_MATCHED)
    auc_new = roc_auc(new["outlierScore"], bad)
    auc_old = roc_auc(old["outlierScore"], bad)

    def per_kind(out):
        return {k: roc_auc(out["outlierScore"][(kinds == "") | (kinds == k)],
                           kinds[(kinds == "") | (kinds == k)] == k) for k in _MATCHED_KINDS}

    kind_new, kind_old = per_kind(new), per_kind(old)
    print(f"\nmatched synthetic particles: AUC {auc_old:.3f} (earlier components) -> "
          f"{auc_new:.3f}; per kind {kind_old} -> {kind_new}")
    assert auc_new >= auc_old - 0.01  # no loss on synthetic outliers
    for k in _MATCHED_KINDS:  # nor on any kind (a mirrored hand hides from matching in both)
        assert kind_new[k] >= kind_old[k] - 0.03, k
    assert kind_new["junk"] >= 0.95 and kind_new["missing_domain"] >= 0.95
    assert new["isOutlier"][~bad].mean() <= 0.03  # few false flags at the default threshold


def test_combined_location_scale_mode_only_on_large_sets():
    from xmipp_qc.core.outliers import (
        MODE_MIN_IMAGES,
        combined_location_scale,
        mode_location_scale,
        robust_location_scale,
    )

    rng = np.random.default_rng(3)
    good = rng.normal(0.0, 1.0, 600)
    unfloored = np.concatenate([good, rng.normal(3.0, 1.0, 400)])  # 40% junk
    floored = np.maximum(unfloored, -0.5)  # a floor piles good images onto -0.5
    loc, scale = combined_location_scale(floored, unfloored)
    assert [loc, scale] == mode_location_scale(unfloored)
    assert loc == pytest.approx(0.0, abs=0.2) and scale == pytest.approx(1.0, rel=0.15)
    # the floored values' own mode and spread would not describe the good images
    assert abs(mode_location_scale(floored)[1] - 1.0) > 0.3
    n = MODE_MIN_IMAGES - 1
    assert combined_location_scale(floored[:n], unfloored[:n]) == \
        robust_location_scale(floored[:n])
