"""Compare-reprojections pipeline (xmipp_qc.core.pipeline): known answers on phantoms."""

from __future__ import annotations

import numpy as np
import pytest

from xmipp_qc.core import simulate as sim
from xmipp_qc.core.pipeline import (
    ChunkResult,
    CompareOptions,
    MapModel,
    common_sampling,
    finalize,
    process_chunk,
    rank,
    shifts_to_input,
    shifts_to_work,
    to_working_grid,
)

ACQ = {"voltage_kv": 300.0, "cs_mm": 2.7, "amplitude_contrast": 0.1}


def _defocus(ps):
    return np.stack([ps.defocus_u, ps.defocus_v, ps.defocus_angle], axis=1)


def _run(model, ps, chunk=64, angles=True, keep_images=False, **kw):
    out = []
    for a in range(0, len(ps.images), chunk):
        sl = slice(a, a + chunk)
        out.append(process_chunk(
            model, ps.images[sl], ids=np.arange(len(ps.images))[sl] + 100,
            angles=ps.angles[sl] if angles else None, shifts=ps.shifts[sl] if angles else None,
            defocus=_defocus(ps)[sl] if ps.defocus_u is not None else None,
            acquisition=ACQ, keep_images=keep_images, **kw))
    return out


@pytest.mark.parametrize(
    "args, kw, expected",
    [
        ((200, 1.0, 200, 1.0), {}, (66, 200 / 66)),  # 3.0303 Å >= 3 Å, exact for the images
        ((100, 1.5, 100, 1.5), {}, (50, 3.0)),
        ((101, 1.5, 128, 1.5), {}, (50, 1.5 * 101 / 50)),
        ((64, 4.0, 128, 2.0), {}, (64, 4.0)),  # images coarser than 3 Å: kept
        ((100, 1.0, 50, 2.0), {"downsample": False}, (50, 2.0)),  # the map is coarser
        ((100, 1.0, 100, 1.0), {"downsample": False}, (100, 1.0)),
        ((90, 2.0, 90, 2.0), {"target_a": 6.0}, (30, 6.0)),
    ],
)
def test_common_sampling_known_answers(args, kw, expected):
    box, px = common_sampling(*args, **kw)
    assert box == expected[0]
    assert px == pytest.approx(expected[1], rel=1e-12)
    assert px >= max(args[1], args[3], kw.get("target_a", 3.0) if kw.get("downsample", 1) else 0)
    assert box * px == pytest.approx(args[0] * args[1], rel=1e-12)  # same physical box


def test_common_sampling_rejects_bad_input():
    with pytest.raises(ValueError, match="image_pixel_a"):
        common_sampling(64, 0.0, 64, 1.0)
    with pytest.raises(ValueError, match="boxes"):
        common_sampling(64.5, 1.0, 64, 1.0)
    with pytest.raises(ValueError, match="< 2 px"):
        common_sampling(4, 1.0, 4, 1.0, target_a=3.0)


def _gauss(box, sigma, center=(0.0, 0.0, 0.0), ndim=2):
    g = np.arange(box) - box // 2
    axes = np.meshgrid(*([g] * ndim), indexing="ij")  # (z,) y, x
    r2 = sum((a - c) ** 2 for a, c in zip(axes[::-1], center))
    return np.exp(-r2 / (2 * sigma**2))


@pytest.mark.parametrize("box, px, work_box, work_px, cropped",
                         [(64, 1.5, 32, 3.0, 32), (65, 1.5, 33, 65 * 1.5 / 33, 33),
                          (48, 2.0, 40, 3.0, 32), (30, 4.0, 36, 3.0, 40)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_to_working_grid_images_known_answer(box, px, work_box, work_px, cropped, dtype):
    # a Gaussian of 6 Å sigma centred at (4.5 Å, -3 Å): the same physical image on the new grid
    sig, c = 6.0, (4.5, -3.0)
    img = _gauss(box, sig / px, (c[0] / px, c[1] / px)).astype(dtype)
    out, exact = to_working_grid(np.stack([img, 2 * img]), px, work_box, work_px, ndim=2)
    assert out.shape == (2, work_box, work_box) and out.dtype == np.float32
    assert exact == pytest.approx(box * px / cropped, rel=1e-12)
    want = _gauss(work_box, sig / exact, (c[0] / exact, c[1] / exact))
    np.testing.assert_allclose(out[0], want, atol=2e-3)  # values preserved, origin N//2
    np.testing.assert_allclose(out[1], 2 * out[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("box", [32, 33])
def test_to_working_grid_volume(box):
    vol = _gauss(box, 2.5, (1.0, -2.0, 3.0), ndim=3)
    out, exact = to_working_grid(vol, 1.0, 24, 2.0, ndim=3)
    m = int(np.floor(box / 2 + 0.5))  # nearest box, halves up
    assert out.shape == (24, 24, 24) and exact == pytest.approx(box / m)
    want = _gauss(24, 2.5 / exact, (1.0 / exact, -2.0 / exact, 3.0 / exact), ndim=3)
    np.testing.assert_allclose(out, want, atol=3e-3)
    # a stack of N images of N x N is a stack with ndim=2, not a volume
    stack, _ = to_working_grid(vol, 1.0, 24, 2.0, ndim=2)
    assert stack.shape == (box, 24, 24)


def test_shift_conversion_round_trip():
    s = np.array([[1.5, -2.0], [0.0, 3.0]])
    up = shifts_to_input(s, work_pixel_a=3.0, input_pixel_a=1.5)
    np.testing.assert_allclose(up, 2 * s)
    np.testing.assert_allclose(shifts_to_work(up, 3.0, 1.5), s)


def test_options_validation():
    with pytest.raises(ValueError, match="pixel_size_a"):
        CompareOptions(pixel_size_a=-1.0)
    with pytest.raises(ValueError, match="sigma"):
        CompareOptions(pixel_size_a=3.0, resolution_a=10.0, sigma=0.0)
    with pytest.raises(ValueError, match="cubic"):
        MapModel(np.zeros((8, 8, 9)), CompareOptions(pixel_size_a=3.0))


@pytest.mark.parametrize("box", [32, 33])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_given_angles_noiseless_reprojections_match(box, dtype):
    blobs = sim.phantom_blobs(box, seed=2)
    ps = sim.simulate_particles(blobs, 12, box=box, snr=1e9, max_shift_px=2.0, seed=1,
                                dtype=dtype)
    model = MapModel(sim.blobs_volume(blobs, box), CompareOptions(3.0, refine=False))
    (r,) = _run(model, ps, keep_images=True)
    np.testing.assert_array_equal(r.ids, np.arange(12) + 100)
    np.testing.assert_allclose(r.shifts, ps.shifts)
    np.testing.assert_allclose(r.angles, ps.angles)
    assert not r.matched.any() and np.isnan(r.match_corr).all()
    assert r.summary.scores["cost"].min() > 0.995
    assert (r.summary.reasons == "").all()
    # aligned frame: the aligned image is the centred reprojection up to the gray fit
    a, b = r.summary.scores["grayA"], r.summary.scores["grayB"]
    model_img = a[:, None, None] * r.reprojections + b[:, None, None]
    mask = np.hypot(*np.meshgrid(np.arange(box) - box // 2, np.arange(box) - box // 2)) < box / 3
    err = np.abs(r.aligned - model_img)[:, mask].max() / np.abs(r.aligned).max()
    assert err < 0.03
    assert np.abs(r.residuals).max() < 0.03 * np.abs(r.aligned).max()
    assert r.reprojections.dtype == r.residuals.dtype == r.aligned.dtype == np.float32


def test_refinement_recovers_perturbed_alignment():
    box = 48
    blobs = sim.phantom_blobs(box, seed=4)
    ps = sim.simulate_particles(blobs, 60, box=box, snr=2.0, seed=5)
    rng = np.random.default_rng(0)
    start_s = ps.true_shifts + rng.uniform(-1.5, 1.5, size=(60, 2))
    start_a = ps.true_angles + rng.uniform(-2.0, 2.0, size=(60, 3))
    model = MapModel(sim.blobs_volume(blobs, box), CompareOptions(3.0))
    r = process_chunk(model, ps.images, ids=np.arange(60), angles=start_a, shifts=start_s,
                      keep_images=False)
    assert np.median(np.hypot(*(r.shifts - ps.true_shifts).T)) < 0.3
    assert np.median(np.hypot(*(start_s - ps.true_shifts).T)) > 0.8  # the test has teeth
    np.testing.assert_allclose(r.summary.scores["shiftChange"],
                               np.hypot(*(r.shifts - start_s).T), atol=1e-9)
    assert np.all(r.summary.scores["corrFinal"] >= r.summary.scores["corrInit"])
    fixed = process_chunk(MapModel(model.volume, CompareOptions(3.0, refine=False)), ps.images,
                          ids=np.arange(60), angles=start_a, shifts=start_s, keep_images=False)
    assert np.median(r.summary.scores["cost"]) > np.median(fixed.summary.scores["cost"]) + 0.02


def test_failed_images_flagged_not_dropped_nor_counted():
    box = 32
    blobs = sim.phantom_blobs(box, seed=0)
    ps = sim.simulate_particles(blobs, 40, box=box, snr=1.0, seed=0)
    imgs = ps.images.copy()
    imgs[3, 5, 5] = np.nan
    imgs[7] = 0.0
    imgs[11] = 2.5
    model = MapModel(sim.blobs_volume(blobs, box), CompareOptions(3.0))
    r = process_chunk(model, imgs, ids=np.arange(40), angles=ps.angles, shifts=ps.shifts)
    bad = np.array([3, 7, 11])
    assert list(r.summary.reasons[bad]) == ["non_finite_image", "constant_image",
                                            "constant_image"]
    assert np.count_nonzero(r.summary.reasons) == 3
    np.testing.assert_allclose(r.angles[bad], ps.angles[bad])  # given alignment kept
    f = finalize([r])
    assert len(f["ids"]) == 40 and f["isOutlier"][bad].all()
    assert np.isnan(f["outlierScore"][bad]).all() and np.isnan(f["cost"][bad]).all()
    # statistics of the valid images do not see the failed ones
    keep = np.setdiff1d(np.arange(40), bad)
    r_ok = process_chunk(model, imgs[keep], ids=keep, angles=ps.angles[keep],
                         shifts=ps.shifts[keep])
    np.testing.assert_allclose(finalize([r_ok])["outlierScore"], f["outlierScore"][keep],
                               atol=1e-9)
    assert np.isfinite(r.reprojections).all() and np.isfinite(r.residuals).all()
    # a chunk whose images all failed has no refinement scores: finalize still joins it
    r_bad = process_chunk(model, imgs[bad], ids=bad, angles=ps.angles[bad],
                          shifts=ps.shifts[bad])
    assert "angleChange" not in r_bad.summary.scores
    joined = finalize([r_ok, r_bad])
    assert np.isnan(joined["angleChange"][-3:]).all() and joined["isOutlier"][-3:].all()
    np.testing.assert_allclose(joined["outlierScore"][:-3], f["outlierScore"][keep], atol=1e-9)


def test_chunking_does_not_change_results_and_save_load(tmp_path):
    box = 32
    blobs = sim.phantom_blobs(box, seed=3)
    ps = sim.simulate_particles(blobs, 50, box=box, snr=0.5, max_shift_px=1.5, seed=2)
    model = MapModel(sim.blobs_volume(blobs, box), CompareOptions(3.0))
    one = finalize(_run(model, ps, chunk=50))
    parts = _run(model, ps, chunk=16, keep_images=True)
    for k, p in enumerate(parts):
        p.save(str(tmp_path / f"c{k}.npz"), with_images=k == 0)
    loaded = [ChunkResult.load(str(tmp_path / f"c{k}.npz")) for k in range(len(parts))]
    assert loaded[0].reprojections is None
    full = ChunkResult.load(str(tmp_path / "c0.npz"), with_images=True)
    np.testing.assert_array_equal(full.residuals, parts[0].residuals)
    assert ChunkResult.load(str(tmp_path / "c1.npz"), with_images=True).aligned is None
    many = finalize(loaded)
    assert list(many) == list(one)
    for k in ("ids", "angles", "shifts", "cost", "outlierScore", "zScoreResCov"):
        np.testing.assert_allclose(many[k], one[k], rtol=1e-5, atol=1e-6, err_msg=k)


@pytest.fixture(scope="module")
def planted():
    box = 40
    blobs = sim.phantom_blobs(box, seed=7)
    ps = sim.simulate_particles(
        blobs, 200, box=box, snr=0.5, max_shift_px=2.0, ctf=True, outlier_fraction=0.03,
        outlier_kinds=("junk", "mirrored_hand", "wrong_conformation"), seed=8)
    return blobs, ps


def test_planted_outliers_score_highest_with_ctf(planted):
    blobs, ps = planted
    box = ps.images.shape[-1]
    model = MapModel(sim.blobs_volume(blobs, box), CompareOptions(3.0, use_ctf=True))
    f = finalize(_run(model, ps))
    top = np.argsort(-f["outlierScore"])[: ps.is_outlier.sum()]
    assert ps.is_outlier[top].mean() >= 0.8
    no_ctf = finalize(_run(MapModel(model.volume, CompareOptions(3.0)), ps))
    good = ~ps.is_outlier
    assert np.median(f["cost"][good]) > np.median(no_ctf["cost"][good]) + 0.1
    with pytest.raises(ValueError, match="defocus"):
        process_chunk(model, ps.images[:4], ids=np.arange(4), angles=ps.angles[:4])


def test_ranking_puts_the_true_map_first_for_every_score(planted):
    blobs, ps = planted
    box = ps.images.shape[-1]
    opts = CompareOptions(3.0, use_ctf=True)
    maps = {7: blobs, 3: blobs.mirrored(), 5: sim.phantom_blobs(box, seed=99)}
    res = {k: finalize(_run(MapModel(sim.blobs_volume(b, box), opts), ps)) for k, b in maps.items()}
    for score in ("cost", "imedValue", "resStd"):
        table = rank(res, score=score, n_boot=200)
        assert table["best"] == 7, score
        assert [m["rank"] for m in table["maps"]] == [1, 2, 3]
        assert table["significant"] and table["ci_low"] > 0
        assert table["n_images"] == 200 and table["n_excluded"] == 0
    cost = rank(res, score="cost", n_boot=200)
    means = [m["mean"] for m in cost["maps"]]
    assert means == sorted(means, reverse=True)  # reported in the score's own units
    imed = rank(res, score="imedValue", n_boot=200)
    assert [m["mean"] for m in imed["maps"]] == sorted(m["mean"] for m in imed["maps"])
    with pytest.raises(ValueError, match="outlierScore"):
        rank(res, score="outlierScore")


def test_ranking_pairs_images_by_id(planted):
    _, ps = planted
    n = 20
    rng = np.random.default_rng(0)
    a = {"ids": np.arange(n), "cost": rng.uniform(0.5, 0.6, n)}
    b = {"ids": np.arange(n)[::-1], "cost": a["cost"][::-1] - 0.1}  # same images, reversed
    b["cost"][0] = np.nan  # image n-1 failed for map b
    t = rank({"a": a, "b": b}, n_boot=100)
    assert t["best"] == "a" and t["n_images"] == n - 1 and t["n_excluded"] == 1
    assert t["difference"] == pytest.approx(0.1, abs=1e-12)


def test_resolution_and_sigma_change_the_comparison(planted):
    blobs, ps = planted
    box = ps.images.shape[-1]
    vol = sim.blobs_volume(blobs, box)
    base = CompareOptions(3.0, use_ctf=True, refine=False)
    costs = {}
    for key, kw in {"full": {}, "lp": {"resolution_a": 15.0},
                    "lp_soft": {"resolution_a": 15.0, "sigma": 8.0}}.items():
        model = MapModel(vol, CompareOptions(**{**base.__dict__, **kw}))
        costs[key] = np.median(finalize(_run(model, ps))["cost"][~ps.is_outlier])
    # low-passing noisy images at 15 Å (0.2 cycles/px) raises their correlation
    assert costs["lp"] > costs["full"] + 0.05
    assert abs(costs["lp_soft"] - costs["lp"]) > 1e-3


def test_matching_path_finds_angles():
    box = 32
    blobs = sim.phantom_blobs(box, seed=11)
    ps = sim.simulate_particles(blobs, 16, box=box, snr=5.0, max_shift_px=1.5, seed=12)
    model = MapModel(sim.blobs_volume(blobs, box), CompareOptions(3.0, angular_step=10.0))
    imgs = ps.images.copy()
    imgs[2] = np.nan
    r = process_chunk(model, imgs, ids=np.arange(16), keep_images=False)
    ok = np.arange(16) != 2
    assert r.matched[ok].all() and not r.matched[2] and np.isnan(r.angles[2]).all()
    from xmipp_qc.core.geometry import euler_to_matrix

    e1, e2 = euler_to_matrix(r.angles[ok]), euler_to_matrix(ps.true_angles[ok])
    cos = (np.einsum("nij,nij->n", e1, e2) - 1) / 2
    err = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    assert np.median(err) < 3.0
    assert np.isfinite(r.match_corr[ok]).all() and r.summary.scores["cost"][ok].min() > 0.5


def test_optimize_gray_only_changes_the_stored_reprojection():
    box = 32
    blobs = sim.phantom_blobs(box, seed=6)
    ps = sim.simulate_particles(blobs, 10, box=box, snr=2.0, seed=6)
    images = 3.0 * ps.images + 7.0  # arbitrary intensity scale and offset
    vol = sim.blobs_volume(blobs, box)
    kw = {"ids": np.arange(10), "angles": ps.angles, "shifts": ps.shifts}
    plain = process_chunk(MapModel(vol, CompareOptions(3.0)), images, **kw)
    gray = process_chunk(MapModel(vol, CompareOptions(3.0, optimize_gray=True)), images, **kw)
    for k in ("cost", "resStd", "imedValue", "grayA"):
        np.testing.assert_allclose(gray.summary.scores[k], plain.summary.scores[k], rtol=1e-6)
    a, b = plain.summary.scores["grayA"], plain.summary.scores["grayB"]
    np.testing.assert_allclose(gray.reprojections, a[:, None, None] * plain.reprojections
                               + b[:, None, None], rtol=1e-5, atol=1e-4)
    assert np.all(b > 5.0)  # the fit found the offset of 7


def test_matching_and_refinement_honour_the_ctf():
    from xmipp_qc.core.geometry import euler_to_matrix

    box = 32
    blobs = sim.phantom_blobs(box, seed=11)
    ps = sim.simulate_particles(blobs, 24, box=box, snr=3.0, max_shift_px=1.0, seed=12,
                                ctf=True, defocus_range_a=(15000.0, 25000.0))
    vol = sim.blobs_volume(blobs, box)
    errors = {}
    for use_ctf in (False, True):
        model = MapModel(vol, CompareOptions(3.0, angular_step=10.0, use_ctf=use_ctf))
        r = process_chunk(model, ps.images, ids=np.arange(24), defocus=_defocus(ps),
                          acquisition=ACQ, keep_images=False)
        assert r.matched.all()
        cos = (np.einsum("nij,nij->n", euler_to_matrix(r.angles),
                         euler_to_matrix(ps.true_angles)) - 1) / 2
        errors[use_ctf] = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    assert np.median(errors[True]) < 3.0 and (errors[True] < 10).mean() >= 0.9
    assert np.median(errors[False]) > 10.0  # strong CTF: ignoring it loses the angles
