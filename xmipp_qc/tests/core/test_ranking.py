"""Map ranking (xmipp_qc.core.ranking): known answers on score matrices."""

from __future__ import annotations

import numpy as np
import pytest

from xmipp_qc.core.ranking import rank_maps, roc_auc


def test_rank_known_statistics():
    s = np.array([[0.5, 0.4, 0.1], [0.6, 0.7, 0.2], [0.9, 0.1, 0.3], [0.8, 0.8, 0.0]])
    r = rank_maps(s, n_boot=500, seed=1)
    np.testing.assert_array_equal(r.order, [0, 1, 2])
    np.testing.assert_allclose(r.mean, [0.7, 0.5, 0.15])
    np.testing.assert_allclose(r.median, [0.7, 0.55, 0.15])
    np.testing.assert_allclose(r.fraction_best, [0.625, 0.375, 0.0])  # last row is a tie
    assert (r.best, r.runner_up, r.n_images, r.n_excluded) == (0, 1, 4, 0)
    assert r.difference == pytest.approx(0.2)
    assert r.ci_low <= r.difference <= r.ci_high


def test_errors_are_ranked_lowest_first():
    # an L1 error: lower is better (Xmipp's ranking would pick map 1 here)
    err = np.array([[0.2, 0.9], [0.3, 0.8], [0.25, 0.95]])
    r = rank_maps(err, higher_is_better=False, n_boot=200)
    assert r.best == 0 and r.runner_up == 1
    np.testing.assert_allclose(r.mean, [-0.25, -2.65 / 3])
    assert r.difference == pytest.approx(1.9 / 3) and r.significant


def test_bootstrap_interval_seeded_and_calibrated():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(400, 1))
    better = np.hstack([base + 0.3 + 0.2 * rng.normal(size=(400, 1)), base])
    r1 = rank_maps(better, seed=7)
    r2 = rank_maps(better, seed=7)
    assert (r1.ci_low, r1.ci_high) == (r2.ci_low, r2.ci_high)
    assert r1.significant and 0.25 < r1.ci_low < 0.3 < r1.ci_high < 0.35
    # paired: the shared per-image variation (sd 1) cancels; the CI width is ~4 * 0.2/sqrt(400)
    assert r1.ci_high - r1.ci_low == pytest.approx(3.92 * 0.2 / 20, rel=0.2)
    noise = 0.2 * rng.normal(size=(400, 2))
    r3 = rank_maps(base + noise, seed=3)  # two equally good maps
    assert r3.ci_low < 0 < r3.ci_high and not r3.significant


def test_nan_rows_excluded_and_bad_input():
    s = np.array([[1.0, 0.0], [np.nan, 5.0], [2.0, 1.0], [3.0, 0.5]])
    r = rank_maps(s, n_boot=100)
    assert (r.n_images, r.n_excluded, r.best) == (3, 1, 0)
    np.testing.assert_allclose(r.mean, [2.0, 0.5])
    single = rank_maps(s[:, :1], n_boot=10)
    assert single.runner_up == -1 and single.difference == 0.0
    with pytest.raises(ValueError):
        rank_maps(np.zeros(5))
    with pytest.raises(ValueError):
        rank_maps(np.full((3, 2), np.nan))
    with pytest.raises(ValueError):
        rank_maps(s, confidence=1.5)


def test_roc_auc_known_values():
    y = np.array([0, 0, 1, 1], bool)
    assert roc_auc([0.1, 0.2, 0.8, 0.9], y) == 1.0
    assert roc_auc([0.9, 0.8, 0.2, 0.1], y) == 0.0
    assert roc_auc([1, 1, 1, 1], y) == 0.5
    assert roc_auc([0.1, 0.5, 0.4, 0.9], y) == 0.75
    assert roc_auc([np.nan, 0.2, 0.8, np.nan], y) == 0.625  # NaN ranks lowest, ties count 1/2
    with pytest.raises(ValueError):
        roc_auc([1, 2], [True, True])


def _lowpass_volume(vol: np.ndarray, resolution_a: float, pixel_size_a: float) -> np.ndarray:
    n = vol.shape[0]
    k = np.sqrt(sum(f**2 for f in np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n),
                                               np.fft.rfftfreq(n), indexing="ij")))
    spec = np.fft.rfftn(vol) * (k <= pixel_size_a / resolution_a)
    return np.fft.irfftn(spec, s=vol.shape)


@pytest.mark.parametrize("seed", range(10))
def test_true_map_ranks_first(seed):
    """True map vs one blob removed, low-passed to 30 A, and the mirrored hand."""
    from xmipp_qc.core.refine import LocalRefiner
    from xmipp_qc.core.similarity import masked_correlation
    from xmipp_qc.core.simulate import blobs_volume, phantom_blobs, simulate_particles

    box, n = 32, 80
    blobs = phantom_blobs(box, seed=seed)
    ps = simulate_particles(blobs, n, box=box, snr=0.1, pixel_size_a=3.0, max_shift_px=1.0,
                            seed=100 + seed)
    keep = np.ones(len(blobs.sigmas), bool)
    keep[np.argmax(blobs.masses)] = False
    true_vol = blobs_volume(blobs, box)
    maps = [true_vol, blobs_volume(blobs.subset(keep), box),
            _lowpass_volume(true_vol, 30.0, ps.pixel_size_a), blobs_volume(blobs.mirrored(), box)]
    scores = np.empty((n, len(maps)))
    for j, vol in enumerate(maps):
        res = LocalRefiner(vol, n_iter=3).refine(ps.images, ps.angles, ps.shifts)
        scores[:, j] = masked_correlation(ps.images, res.projections)
    r = rank_maps(scores, seed=seed)
    print(f"\nseed {seed}: mean {r.mean.round(3)} CI [{r.ci_low:.4f}, {r.ci_high:.4f}]")
    assert r.best == 0 and r.significant, (r.mean, r.ci_low, r.ci_high)
    assert r.fraction_best[0] == r.fraction_best.max()
