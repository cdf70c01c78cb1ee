"""Consensus figures (xmipp_qc.plots.trajectories): data drawn, labels, PNG output."""

from __future__ import annotations

import math
import sys

import matplotlib
import numpy as np
import pytest
from matplotlib.figure import Figure

from xmipp_qc.core.simulate import TRAJECTORY_KINDS, simulate_trajectory_pair
from xmipp_qc.core.trajectories import ConsensusParams, compare_trajectories, match_frames
from xmipp_qc.plots.trajectories import (
    REF_COLOR,
    SEC_COLOR,
    plot_accumulated_motion,
    plot_corr_vs_rmse,
    plot_metric_histograms,
    plot_trajectory_pair,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _results(n_seeds=3):
    rows = []
    for kind in TRAJECTORY_KINDS:
        for seed in range(n_seeds):
            p = simulate_trajectory_pair(kind, seed=seed)
            res = compare_trajectories(p.frames_ref, p.ref, p.frames_sec, p.sec)
            rows.append({"name": f"{kind}_{seed}", **res.as_dict()})
    return rows


def _save_png(fig: Figure, path) -> bytes:
    fig.savefig(path, dpi=60)
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    return data


def _lines_by_color(ax, color):
    rgba = matplotlib.colors.to_rgba(color)
    return [ln for ln in ax.get_lines() if matplotlib.colors.to_rgba(ln.get_color()) == rgba]


def test_module_needs_no_pyworkflow():
    import xmipp_qc.plots.trajectories as mod

    source = open(mod.__file__).read()
    assert "pyworkflow" not in source.replace("must not import pyworkflow", "")
    assert "matplotlib.pyplot" not in source


@pytest.mark.parametrize("n_frames", [7, 20, 40, 41])
def test_trajectory_pair_draws_superposed_runs(tmp_path, n_frames):
    pair = simulate_trajectory_pair("offset", seed=1, n_frames=n_frames, offset_px=(30, -20))
    res = compare_trajectories(pair.frames_ref, pair.ref, pair.frames_sec, pair.sec,
                               pixel_size_a=0.73)
    fig = plot_trajectory_pair(pair.frames_ref, pair.ref, pair.sec, metrics=res.as_dict(),
                               pixel_size_a=0.73, name="mic_0001")
    ax = fig.axes[0]
    ref_line = _lines_by_color(ax, REF_COLOR)[0]
    sec_line = _lines_by_color(ax, SEC_COLOR)[0]
    np.testing.assert_allclose(ref_line.get_xydata(), pair.ref, atol=1e-12)
    # the secondary is moved onto the reference: the 30/-20 px offset is gone
    sec_xy = sec_line.get_xydata()
    np.testing.assert_allclose(sec_xy.mean(0), pair.ref.mean(0), atol=1e-9)
    assert np.sqrt(np.mean(np.sum((sec_xy - pair.ref) ** 2, 1))) == pytest.approx(res.rmse_px)
    # frame labels every ceil(F/10) frames, starting at frame 1
    step = math.ceil(n_frames / 10)
    labels = [t.get_text() for t in ax.texts]
    assert labels == [str(f) for f in range(1, n_frames + 1, step)]
    # first frame marked by a big marker at frame 1 of each run
    first = [ln for ln in ax.get_lines() if ln.get_marker() == "o"]
    assert len(first) == 2 and all(ln.get_markersize() >= 8 for ln in first)
    np.testing.assert_allclose(first[0].get_xydata()[0], pair.ref[0])
    # metrics in the title, px axes with Angstrom twins
    title = fig.get_suptitle()
    assert "mic_0001 (accepted)" in title and f"RMSE {res.rmse_px:.2f} px" in title
    assert ax.get_xlabel() == "x shift (px)" and ax.get_ylabel() == "y shift (px)"
    top, right = ax.child_axes  # Angstrom twins, top (x) and right (y)
    assert top.get_xlabel() == "x shift (Å)" and right.get_ylabel() == "y shift (Å)"
    _save_png(fig, tmp_path / "pair.png")  # drawing sets the twins' limits
    np.testing.assert_allclose(top.get_xlim(), np.multiply(ax.get_xlim(), 0.73))
    np.testing.assert_allclose(right.get_ylim(), np.multiply(ax.get_ylim(), 0.73))


def test_trajectory_pair_without_pixel_size_and_with_rotation(tmp_path):
    pair = simulate_trajectory_pair("rotated", seed=2, angle_deg=20.0)
    res = compare_trajectories(pair.frames_ref, pair.ref, pair.frames_sec, pair.sec,
                               params=ConsensusParams(allow_rotation=True))
    fig = plot_trajectory_pair(pair.frames_ref, pair.ref, pair.sec, metrics=res.as_dict(),
                               allow_rotation=True)
    ax = fig.axes[0]
    assert len(fig.axes) == 1 and ax.child_axes == []
    assert "discarded: rotation" in fig.get_suptitle()
    sec_xy = _lines_by_color(ax, SEC_COLOR)[0].get_xydata()
    assert np.sqrt(np.mean(np.sum((sec_xy - pair.ref) ** 2, 1))) < 0.15  # rotated back
    _save_png(fig, tmp_path / "rot.png")


def test_trajectory_pair_on_common_frames_only():
    pair = simulate_trajectory_pair("missing_frames", seed=3, n_missing=4)
    i_ref, i_sec = match_frames(pair.frames_ref, pair.frames_sec)
    fig = plot_trajectory_pair(pair.frames_ref[i_ref], pair.ref[i_ref], pair.sec[i_sec])
    ax = fig.axes[0]
    assert _lines_by_color(ax, REF_COLOR)[0].get_xydata().shape == (36, 2)
    assert ax.texts[0].get_text() == "3"


def test_corr_vs_rmse_scatter_and_thresholds(tmp_path):
    rows = _results()
    fig = plot_corr_vs_rmse(rows, min_corr=0.75, max_rmse_px=1.0)
    ax = fig.axes[0]
    compared = [r for r in rows if r["reason"] not in ("missing", "invalid")]
    offsets = np.concatenate([c.get_offsets() for c in ax.collections])
    assert offsets.shape == (len(compared), 2)
    expected = np.array([[r["corr"], r["rmse_px"]] for r in compared])
    assert sorted(map(tuple, offsets.round(9))) == sorted(map(tuple, expected.round(9)))
    accepted = ax.collections[0].get_offsets()
    assert len(accepted) == sum(r["accepted"] for r in compared) == 9  # 3 kinds x 3 seeds
    lines = ax.get_lines()
    assert [ln.get_xdata()[0] for ln in lines if ln.get_xdata()[0] == ln.get_xdata()[1]] == [0.75]
    assert [ln.get_ydata()[0] for ln in lines if ln.get_ydata()[0] == ln.get_ydata()[1]] == [1.0]
    _save_png(fig, tmp_path / "scatter.png")


def test_corr_vs_rmse_without_thresholds():
    fig = plot_corr_vs_rmse(_results(1), min_corr=-1, max_rmse_px=None)
    assert fig.axes[0].get_lines() == []


def test_histograms_count_every_compared_movie(tmp_path):
    rows = _results()
    n = sum(r["reason"] not in ("missing", "invalid") for r in rows)
    fig = plot_metric_histograms(rows, ("corr", "rmse_px", "scale"), bins=10)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_xlabel() for ax in visible] == [
        "min correlation over active axes", "RMSE after superposition (px)",
        "scale (secondary / reference path length)"]
    for ax in visible:
        # stacked bars: first layer accepted movies, second layer discarded ones
        heights = [p.get_height() for p in ax.patches]
        assert len(heights) == 20
        assert sum(heights[:10]) == 9 and sum(heights) == n
    _save_png(fig, tmp_path / "hist.png")


def test_accumulated_motion_over_acquisition_order(tmp_path):
    rows = _results(2)
    fig = plot_accumulated_motion(rows)
    ax = fig.axes[0]
    total = next(ln for ln in ax.get_lines() if ln.get_label() == "total (reference)")
    keep = [k for k, r in enumerate(rows) if r["reason"] not in ("missing", "invalid")]
    np.testing.assert_array_equal(total.get_xdata(), np.add(keep, 1))  # movie ids, 1-based
    np.testing.assert_allclose(total.get_ydata(), [rows[k]["total_ref_px"] for k in keep])
    early = next(ln for ln in ax.get_lines() if ln.get_label() == "early (reference)")
    late = next(ln for ln in ax.get_lines() if ln.get_label() == "late (reference)")
    np.testing.assert_allclose(early.get_ydata() + late.get_ydata(), total.get_ydata())
    crosses = next(ln for ln in ax.get_lines() if ln.get_label() == "discarded")
    assert len(crosses.get_xdata()) == sum(not rows[k]["accepted"] for k in keep)
    assert ax.get_ylabel() == "accumulated motion (px)" and ax.get_xlabel() == "movie id"
    _save_png(fig, tmp_path / "motion.png")


def test_no_pyplot_figures_created():
    plot_corr_vs_rmse(_results(1))
    pyplot = sys.modules.get("matplotlib.pyplot")
    assert pyplot is None or pyplot.get_fignums() == []


def _decided(rmse, accepted, reasons=None):
    reasons = reasons or ["accepted" if a else "high_rmse" for a in accepted]
    return [{"id": k + 1, "corr": 0.9, "rmse_px": r, "accepted": a, "reason": why,
             "total_ref_px": 10.0 + r, "early_ref_px": 4.0, "late_ref_px": 6.0 + r,
             "total_sec_px": 10.0} for k, (r, a, why) in enumerate(zip(rmse, accepted, reasons))]


def test_corr_vs_rmse_counts_add_up_and_far_points_are_marked():
    rmse = [0.1, 0.2, 0.15, 0.3, 0.25, 0.2, 40.0, 0.0]
    accepted = [True] * 5 + [False, False, False]
    rows = _decided(rmse, accepted, ["accepted"] * 5 + ["high_rmse", "high_rmse", "missing"])
    ax = plot_corr_vs_rmse(rows, min_corr=0.75, max_rmse_px=1.0).axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "accepted (5)" in labels and "discarded (2)" in labels  # + 1 missing = 8 decided
    assert "7 of 8 movies compared; not plotted (no metrics): 1 missing" in ax.get_title()
    top = ax.get_ylim()[1]
    assert top < 40.0  # the far movie does not set the scale ...
    far = [ln for ln in ax.get_lines() if ln.get_marker() == "^" and len(ln.get_xdata())]
    assert len(far) == 1 and far[0].get_ydata()[0] < top  # ... it is marked at the edge
    assert any("(1), at the top edge" in lab for lab in labels)


def test_accumulated_motion_by_movie_id_with_far_values_marked():
    rows = _decided([0.1, 0.2, 0.1, 0.3, 90.0], [True] * 4 + [False])
    rows[2]["id"] = 7  # ids, not positions, on the axis
    ax = plot_accumulated_motion(rows).axes[0]
    total = next(ln for ln in ax.get_lines() if ln.get_label() == "total (reference)")
    assert list(total.get_xdata()) == [1, 2, 7, 4, 5]
    assert ax.get_ylim()[1] < 90.0
    assert any(ln.get_marker() == "^" and len(ln.get_xdata()) for ln in ax.get_lines())
