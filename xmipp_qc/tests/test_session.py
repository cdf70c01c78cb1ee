"""Session monitoring: per-micrograph and per-window outlier rates, and their figure."""

import numpy as np
import pytest

from xmipp_qc.core.session import bad_micrographs, micrograph_rates, window_rates
from xmipp_qc.plots.session import plot_session


def test_micrograph_rates_in_arrival_order():
    mics = np.array([7, 7, 7, 3, 3, -1, 9, 9, 9, 9])
    flags = np.array([0, 1, 0, 1, 1, 1, 0, 0, 0, 1], bool)
    r = micrograph_rates(mics, flags)
    assert r.mic_ids.tolist() == [7, 3, 9]
    assert r.counts.tolist() == [3, 2, 4] and r.flagged.tolist() == [1, 2, 1]
    assert r.first.tolist() == [0, 3, 6]
    np.testing.assert_allclose(r.rates, [1 / 3, 1.0, 0.25])
    assert bad_micrographs(r, max_rate=0.5, min_particles=2).tolist() == [3]
    assert bad_micrographs(r, max_rate=0.5, min_particles=3).tolist() == []
    assert bad_micrographs(r, max_rate=0.2, min_particles=1,
                           complete=[True, False, True]).tolist() == [7, 9]
    with pytest.raises(ValueError):
        micrograph_rates([1, 2], [True])


def test_window_rates():
    centres, rates = window_rates([1, 0, 0, 1, 1, 1, 0], 3)
    np.testing.assert_allclose(centres, [2.0, 5.0, 7.0])
    np.testing.assert_allclose(rates, [1 / 3, 1.0, 0.0])
    with pytest.raises(ValueError):
        window_rates([1], 0)


def test_plot_session_labels(tmp_path):
    fig = plot_session([0.1, 0.9, 0.5], [20, 20, 2], [5.5, 15.5], [0.2, 0.6],
                       threshold=0.5, min_particles=10, map_name="reprojections_vol1",
                       window=10)
    top, bottom = fig.axes
    assert "reprojections_vol1" in top.get_title() and "3 micrographs" in top.get_title()
    assert top.get_ylabel() == "flagged particles (%)"
    labels = [t.get_text() for t in top.get_legend().get_texts()]
    assert "bad micrograph (1)" in labels and "bad-micrograph threshold 50%" in labels
    heights = [p.get_height() for p in top.patches]  # kept, bad, undecided
    assert heights == pytest.approx([10.0, 90.0, 50.0])
    assert "fewer than 10 particles (not decided)" in labels
    assert "particle number" in bottom.get_xlabel()
    assert [t.get_text() for t in bottom.get_legend().get_texts()][0] == "windows of 10 particles"
    short = plot_session([0.5], [6], [3.5], [0.5], threshold=0.5, window=500, n_particles=6)
    label = short.axes[1].get_legend().get_texts()[0].get_text()
    assert label == "all 6 particles (fewer than one window of 500)"
    assert short.axes[1].get_xlim() == (0, 7)
    fig.savefig(tmp_path / "session.png", dpi=60)
    assert (tmp_path / "session.png").stat().st_size > 1000
