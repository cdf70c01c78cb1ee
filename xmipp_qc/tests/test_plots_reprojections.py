"""Pure plotting functions of compare reprojections (xmipp_qc.plots.reprojections)."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from xmipp_qc.plots.reprojections import (
    OUTLIER_COLOR,
    plot_outlier_histogram,
    plot_ranking,
    plot_report,
    plot_score_histograms,
    plot_worst_images,
    worst_indices,
)


def _bar_heights(ax, color_index):
    """Total height of the histogram bars of one stacked series."""
    containers = ax.containers
    return np.array([p.get_height() for p in containers[color_index]])


def test_worst_indices_orders_and_skips_nan():
    s = np.array([0.1, np.nan, 5.0, 3.0, 5.0, -1.0])
    np.testing.assert_array_equal(worst_indices(s, 3), [2, 4, 3])
    assert worst_indices(s, 0).size == 0
    assert len(worst_indices(s, 100)) == 5


def test_histogram_counts_threshold_and_failed():
    rng = np.random.default_rng(0)
    s = np.concatenate([rng.normal(size=97), [4.0, 6.0], [np.nan]])
    fig = plot_outlier_histogram(s, 3.5, bins=20)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    kept, flagged = _bar_heights(ax, 0), _bar_heights(ax, 1)
    assert kept.sum() == 97
    assert flagged.sum() == 2
    lines = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert len(lines) == 1 and np.allclose(lines[0].get_xdata(), 3.5)
    assert ax.get_title() == "2 of 100 images flagged, 1 failed"
    assert "threshold 3.5: 2 beyond" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_histogram_clips_far_values_and_says_how_many():
    rng = np.random.default_rng(1)
    s = np.concatenate([rng.normal(size=200), [40.0, 80.0, 300.0]])
    ax = plot_outlier_histogram(s, 3.5, bins=30).axes[0]
    lo, hi = ax.get_xlim()
    assert hi < 15  # the bulk keeps its shape: the far values do not set the axis
    kept, flagged = _bar_heights(ax, 0), _bar_heights(ax, 1)
    assert kept.sum() == 200 and flagged.sum() == 3 and flagged[-1] == 3  # in the last bin
    assert "3 beyond the axis, drawn at its edge" in ax.get_title()
    assert any(t.get_text().endswith("3 beyond") for t in ax.texts)


def test_score_histograms_threshold_only_on_the_outlier_score():
    rng = np.random.default_rng(2)
    scores = {"outlierScore": np.r_[rng.normal(size=40), 9.0],
              "zScoreGray": np.r_[rng.normal(size=40), -9.0]}
    fig = plot_score_histograms(scores, 3.5, map_name="map 2: b.mrc")
    a, b = fig.axes
    assert a.get_title().startswith("outlierScore of map 2: b.mrc\n1 of 41 images flagged")
    assert [ln.get_xdata()[0] for ln in a.get_lines()] == [3.5]
    assert len(b.get_lines()) == 0 and "(σ)" in b.get_xlabel()
    assert _bar_heights(b, 1)[0] == 1  # the flagged image is the low one, drawn red


def test_histogram_uses_given_flags():
    s = np.arange(10.0)
    flags = np.zeros(10, dtype=bool)
    flags[[0, 1]] = True  # e.g. flagged for another reason than the score
    ax = plot_outlier_histogram(s, 100.0, is_outlier=flags, bins=10).axes[0]
    kept, flagged = _bar_heights(ax, 0), _bar_heights(ax, 1)
    assert kept.sum() == 8 and flagged.sum() == 2
    assert ax.get_xlim()[1] >= 100.0  # threshold inside the view


@pytest.mark.parametrize("k", [1, 3])
def test_worst_images_grid_shows_the_given_arrays(k):
    rng = np.random.default_rng(k)
    a, p, r = (rng.normal(size=(k, 9, 9)) for _ in range(3))
    fig = plot_worst_images(a, p, r, labels=[f"id {i}" for i in range(k)])
    assert len(fig.axes) == 3 * k
    for i in range(k):
        for j, stack in enumerate((a, p, r)):
            ax = fig.axes[3 * i + j]
            np.testing.assert_array_equal(ax.images[0].get_array(), stack[i])
        assert fig.axes[3 * i].get_ylabel() == f"id {i}"
    lo, hi = fig.axes[2].images[0].get_clim()
    assert lo == pytest.approx(-hi) and hi == pytest.approx(np.abs(r[0]).max())
    with pytest.raises(ValueError, match="same length"):
        plot_worst_images(a, p[:0], r)


def test_report_has_histogram_and_rows(tmp_path):
    s = np.r_[np.zeros(50), 9.0]
    imgs = np.ones((2, 8, 8))
    fig = plot_report(s, 3.5, imgs, imgs, imgs, labels=["a", "b"], title="map 1")
    assert len(fig.axes) == 1 + 2 * 3
    assert fig.axes[0].get_title().startswith("1 of 51")
    fig.savefig(tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 1000


def test_ranking_bars_follow_the_table():
    table = {"score": "imedValue", "higher_is_better": False,
             "maps": [{"map": "good", "mean": 1.0}, {"map": "bad", "mean": 3.0},
                      {"map": "worse", "mean": 4.5}],
             "best": "good", "runner_up": "bad", "difference": 2.0, "ci_low": 1.5,
             "ci_high": 2.5, "confidence": 0.95, "n_images": 120}
    ax = plot_ranking(table, names={"good": "map 1: good.mrc"}).axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert heights == [1.0, 3.0, 4.5]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["map 1: good.mrc", "map bad",
                                                           "map worse"]
    assert len(ax.collections) == 0  # no per-map interval in this table: no error bars
    assert "lower is better" in ax.get_ylabel()
    assert ax.patches[0].get_facecolor() != ax.patches[1].get_facecolor()
    assert ax.patches[0].get_facecolor() != to_rgba(OUTLIER_COLOR)  # red means flagged
    assert ax.patches[0].get_label() == "best map"
    assert "CI 1.5 to 2.5" in ax.get_title() and "120 images" in ax.get_title()
    for m, (lo, hi) in zip(table["maps"], [(0.8, 1.2), (2.5, 3.5), (4.0, 5.0)]):
        m.update(ci_low=lo, ci_high=hi)
    ax = plot_ranking(table).axes[0]
    (bars,) = ax.collections
    np.testing.assert_allclose([seg[:, 1] for seg in bars.get_segments()],
                               [[0.8, 1.2], [2.5, 3.5], [4.0, 5.0]])
