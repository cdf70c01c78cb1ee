"""Known answers and properties of the trajectory consensus (xmipp_qc.core.trajectories)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from xmipp_qc.core.simulate import TRAJECTORY_KINDS, simulate_trajectory_pair
from xmipp_qc.core.trajectories import (
    REASONS,
    ConsensusParams,
    TrajectoryComparison,
    accumulated_motion,
    axis_correlations,
    best_rotation_deg,
    compare_trajectories,
    match_frames,
    missing_comparison,
    superpose,
)

ACCEPTED_KINDS = ("agree", "offset", "missing_frames")
EXPECTED_REASON = {
    "agree": {"accepted"},
    "offset": {"accepted"},
    "missing_frames": {"accepted"},
    "noise": {"low_correlation", "scale", "high_rmse"},
    "scaled": {"scale"},
    "mirrored": {"low_correlation", "high_rmse"},
    "swapped": {"low_correlation", "high_rmse"},
    "rotated": {"low_correlation", "high_rmse"},
    "flat": {"high_rmse"},
    "sentinel": {"invalid"},
}
METRICS = ("corr_x", "corr_y", "corr", "rmse_px", "max_error_px", "rmse_a", "max_error_a",
           "scale", "rotation_deg", "total_ref_px", "early_ref_px", "late_ref_px",
           "total_sec_px", "early_sec_px", "late_sec_px")


def _compare(pair, **kw):
    return compare_trajectories(pair.frames_ref, pair.ref, pair.frames_sec, pair.sec,
                                binning=pair.binning, **kw)


def _line(n=20, step=(1.0, 0.5)):
    frames = np.arange(1, n + 1)
    return frames, np.outer(np.arange(n, dtype=float), step)


def _assert_finite(res: TrajectoryComparison):
    vals = np.array([getattr(res, m) for m in METRICS])
    assert np.all(np.isfinite(vals)), res
    assert res.reason in REASONS


# --- known answers for every simulated kind -------------------------------------------------


@pytest.mark.parametrize("kind", TRAJECTORY_KINDS)
@pytest.mark.parametrize("seed", range(12))
def test_every_kind_decided_as_expected(kind, seed):
    res = _compare(simulate_trajectory_pair(kind, seed=seed))
    _assert_finite(res)
    assert res.reason in EXPECTED_REASON[kind], (kind, seed, res.message)
    assert res.accepted == (kind in ACCEPTED_KINDS)


@pytest.mark.parametrize("kind", ["mirrored", "swapped", "rotated"])
def test_geometric_disagreements_discarded_over_many_seeds(kind):
    # A disagreement can hide only when the trajectory is nearly symmetric under it
    # (mirrored: x barely moves; swapped: x ~ y); then it is small: < max_rmse_px.
    params = ConsensusParams()
    accepted = []
    for seed in range(200):
        pair = simulate_trajectory_pair(kind, seed=seed)
        res = _compare(pair)
        if res.accepted:
            accepted.append(res)
    assert len(accepted) <= 4  # measured: 1.7 % mirrored, 1.0 % swapped over 1000 seeds
    for res in accepted:
        assert res.rmse_px <= params.max_rmse_px


def test_rotated_ninety_is_caught_by_correlation_sign():
    pair = simulate_trajectory_pair("rotated", seed=3)
    res = _compare(pair)
    assert not res.accepted
    assert res.rotation_deg == pytest.approx(-90.0, abs=1.0)  # best fit undoes +90


def test_mirrored_gives_corr_minus_one_on_x():
    pair = simulate_trajectory_pair("mirrored", seed=0)
    assert np.ptp(pair.ref[:, 0]) > 3
    res = _compare(pair)
    assert res.reason == "low_correlation"
    assert res.corr_x < -0.99 and res.corr_y > 0.99
    assert res.message == "corrX -1.000 < 0.75"


def test_scaled_by_point_eight_is_scale():
    res = _compare(simulate_trajectory_pair("scaled", seed=1, scale=0.8))
    assert res.reason == "scale"
    assert res.scale == pytest.approx(0.8, abs=0.01)
    assert res.corr > 0.99  # correlation alone cannot see it


def test_flat_secondary_is_high_rmse_never_nan():
    pair = simulate_trajectory_pair("flat", seed=2)
    res = _compare(pair, params=ConsensusParams(max_rmse_px=None))
    assert res.reason == "high_rmse"
    assert "without motion" in res.message
    assert res.scale == 0.0 and res.corr == 1.0
    assert res.corr_x == 0.0 or res.corr_y == 0.0  # a moving axis vs a constant one
    _assert_finite(res)


def test_missing_frames_compared_on_common_frames():
    pair = simulate_trajectory_pair("missing_frames", seed=4, n_frames=40, n_missing=3)
    res = _compare(pair)
    assert res.n_frames == 37
    assert res.accepted and res.rmse_px < 0.15


def test_agree_metrics_known_size():
    res = _compare(simulate_trajectory_pair("agree", seed=5, jitter_px=0.05))
    # independent N(0, 0.05) per coordinate: Euclidean RMS ~ 0.05 * sqrt(2)
    assert res.rmse_px == pytest.approx(0.05 * math.sqrt(2), rel=0.35)
    assert res.corr > 0.999 and res.scale == pytest.approx(1.0, abs=0.01)
    assert res.rmse_a == -1.0 and res.max_error_a == -1.0


def test_offset_removed():
    pair = simulate_trajectory_pair("offset", seed=6, offset_px=(50.0, -30.0))
    res = _compare(pair)
    assert res.accepted and res.rmse_px < 0.15


# --- every reason code ----------------------------------------------------------------------


def test_reason_codes_are_the_contract_strings():
    assert REASONS[:6] == ("accepted", "low_correlation", "high_rmse", "scale", "invalid",
                           "missing")
    assert "rotation" in REASONS


def test_reason_high_rmse_from_max_rmse():
    frames, ref = _line()
    rng = np.random.default_rng(0)
    sec = ref + rng.normal(0, 0.5, ref.shape)
    res = compare_trajectories(frames, ref, frames, sec, params=ConsensusParams(max_rmse_px=0.2))
    assert res.reason == "high_rmse" and res.message.startswith("RMSE")
    loose = compare_trajectories(frames, ref, frames, sec, params=ConsensusParams(max_rmse_px=5))
    assert loose.accepted


def test_reason_rotation_with_allow_rotation():
    pair = simulate_trajectory_pair("rotated", seed=3, angle_deg=30.0)
    p = ConsensusParams(allow_rotation=True, max_rotation_deg=5.0)
    res = _compare(pair, params=p)
    assert res.reason == "rotation"
    assert res.rotation_deg == pytest.approx(-30.0, abs=0.5)
    assert res.rmse_px < 0.15  # after the rotation the paths coincide


def test_small_rotation_accepted_when_allowed_and_reduces_rmse():
    pair = simulate_trajectory_pair("rotated", seed=3, angle_deg=3.0)
    fixed = _compare(pair)
    free = _compare(pair, params=ConsensusParams(allow_rotation=True))
    assert free.accepted and free.rotation_deg == pytest.approx(-3.0, abs=0.3)
    assert free.rmse_px < fixed.rmse_px
    assert fixed.rotation_deg == pytest.approx(free.rotation_deg)  # reported in both modes


def test_rotation_never_a_reflection():
    # the curved path where Xmipp's 3x3 determinant fix keeps a reflection (corr 1, rmse 0)
    t = np.linspace(0, 1, 40)
    ref = np.column_stack([30 * t, 30 * t**2 + 5 * np.sin(6 * t)])
    mirrored = ref * [-1.0, 1.0]
    frames = np.arange(1, 41)
    res = compare_trajectories(frames, ref, frames, mirrored,
                               params=ConsensusParams(allow_rotation=True, max_rotation_deg=180))
    assert not res.accepted  # a proper rotation cannot undo a mirror
    assert res.rmse_px > 3.0 and res.reason == "high_rmse"  # corr alone (0.84) would pass


@pytest.mark.parametrize(
    "mutate, text",
    [
        (lambda s: s.__setitem__((3, 0), np.nan), "non-finite"),
        (lambda s: s.__setitem__((5, 1), np.inf), "non-finite"),
        (lambda s: s.__setitem__((7, 0), -9999.0), "sentinel"),
    ],
)
def test_reason_invalid_bad_values(mutate, text):
    frames, ref = _line()
    sec = ref.copy()
    mutate(sec)
    res = compare_trajectories(frames, ref, frames, sec)
    assert res.reason == "invalid" and not res.accepted
    assert text in res.message and res.message.startswith("secondary")
    _assert_finite(res)


def test_reason_invalid_too_few_common_frames_and_duplicates():
    frames, ref = _line(10)
    res = compare_trajectories(frames, ref, frames[8:] + 0, ref[8:])
    assert res.reason == "invalid" and res.n_frames == 2 and "common" in res.message
    dup = frames.copy()
    dup[1] = 1
    res = compare_trajectories(dup, ref, frames, ref)
    assert res.reason == "invalid" and "repeated" in res.message


def test_reason_missing():
    res = missing_comparison("reference")
    assert (res.reason, res.accepted, res.n_frames) == ("missing", False, 0)
    assert "reference" in res.message
    assert res.rmse_px == 0.0 and res.corr == 0.0
    _assert_finite(res)
    with pytest.raises(ValueError):
        missing_comparison("both")


def test_low_correlation_message_names_axis_and_threshold():
    frames, ref = _line(30, (1.0, 0.3))
    rng = np.random.default_rng(1)
    sec = ref.copy()
    sec[:, 1] = rng.permutation(ref[:, 1])  # y shuffled: same range, no correlation
    res = compare_trajectories(frames, ref, frames, sec)
    assert res.reason == "low_correlation"
    assert res.message.startswith("corrY") and res.message.endswith("< 0.75")
    assert res.corr == res.corr_y < 0.75


# --- flat movies and per-axis gating --------------------------------------------------------


def test_flat_movie_judged_by_rmse():
    frames = np.arange(1, 21)
    rng = np.random.default_rng(2)
    ref = rng.normal(0, 0.3, (20, 2))
    same = ref + rng.normal(0, 0.05, (20, 2))
    other = rng.normal(0, 1.5, (20, 2))
    p = ConsensusParams(max_rmse_px=None)
    ok = compare_trajectories(frames, ref, frames, same, params=p)
    bad = compare_trajectories(frames, ref, frames, other, params=p)
    assert ok.accepted and ok.corr == 1.0  # no axis active
    assert bad.reason == "high_rmse" and "x, y without motion" in bad.message


def test_one_flat_axis_is_excluded_from_correlation():
    # x drifts 19 px, y only jitters: corrY is low but y is not gated in
    frames = np.arange(1, 21)
    rng = np.random.default_rng(3)
    ref = np.column_stack([np.arange(20.0), rng.normal(0, 0.1, 20)])
    sec = ref + rng.normal(0, 0.05, ref.shape)
    sec[:, 1] = rng.normal(0, 0.1, 20)  # independent jitter on y
    res = compare_trajectories(frames, ref, frames, sec)
    assert res.corr_y < 0.75 and res.corr == res.corr_x > 0.99
    assert res.accepted


def test_xmipp_or_condition_bug_not_copied():
    # x drifts and disagrees while y is flat: Xmipp accepts this blindly
    frames = np.arange(1, 31)
    t = np.arange(30.0)
    ref = np.column_stack([t, np.zeros(30)])
    sec = np.column_stack([np.sin(t / 3) * 15, np.zeros(30)])
    res = compare_trajectories(frames, ref, frames, sec)
    assert res.reason == "low_correlation" and res.message.startswith("corrX")


def test_axis_correlation_conventions():
    a = np.arange(5.0) - 2.0
    one = np.ones(5) * 0.0
    np.testing.assert_allclose(axis_correlations(np.column_stack([a, a]),
                                                 np.column_stack([2 * a, -a])), [1.0, -1.0])
    # constant in both runs -> 1; constant in one run only -> 0; never NaN
    np.testing.assert_array_equal(axis_correlations(np.column_stack([one, a]),
                                                    np.column_stack([one, one])), [1.0, 0.0])


# --- properties -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["agree", "noise", "mirrored", "rotated", "scaled"])
def test_invariant_to_common_offset(kind):
    pair = simulate_trajectory_pair(kind, seed=7)
    a = _compare(pair)
    b = compare_trajectories(pair.frames_ref, pair.ref + [100.0, -40.0],
                             pair.frames_sec, pair.sec + [-3.0, 12.0])
    for m in ("corr_x", "corr_y", "rmse_px", "max_error_px", "scale", "rotation_deg",
              "total_ref_px", "total_sec_px"):
        assert getattr(b, m) == pytest.approx(getattr(a, m), abs=1e-9)
    assert a.reason == b.reason


@pytest.mark.parametrize("kind", ["agree", "noise", "scaled", "swapped"])
def test_invariant_to_binning(kind):
    pair = simulate_trajectory_pair(kind, seed=8)
    binned = simulate_trajectory_pair(kind, seed=8, binning=2.0)
    np.testing.assert_allclose(binned.sec * 2, pair.sec)
    a, b = _compare(pair), _compare(binned)
    for m in METRICS:
        assert getattr(b, m) == pytest.approx(getattr(a, m), rel=1e-9, abs=1e-9)
    assert a.reason == b.reason


@pytest.mark.parametrize("kind", ["agree", "noise", "mirrored", "swapped", "scaled", "flat"])
@pytest.mark.parametrize("rotation", [False, True])
def test_symmetric_under_swapping_runs(kind, rotation):
    pair = simulate_trajectory_pair(kind, seed=9)
    p = ConsensusParams(allow_rotation=rotation, max_rotation_deg=180)
    ab = compare_trajectories(pair.frames_ref, pair.ref, pair.frames_sec, pair.sec, params=p)
    ba = compare_trajectories(pair.frames_sec, pair.sec, pair.frames_ref, pair.ref, params=p)
    for m in ("rmse_px", "max_error_px"):
        assert getattr(ba, m) == pytest.approx(getattr(ab, m), abs=1e-9), m
    if not rotation:  # with a rotation the axes of ref or of sec are used: not symmetric
        for m in ("corr_x", "corr_y", "corr"):
            assert getattr(ba, m) == pytest.approx(getattr(ab, m), abs=1e-9), m
    assert ba.rotation_deg == pytest.approx(-ab.rotation_deg, abs=1e-9)
    if ab.scale > 0:
        assert ba.scale == pytest.approx(1.0 / ab.scale, rel=1e-9)
    assert ba.total_ref_px == pytest.approx(ab.total_sec_px)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_frames", [7, 8, 40, 41])
def test_dtype_and_frame_count(dtype, n_frames):
    pair = simulate_trajectory_pair("agree", seed=10, n_frames=n_frames)
    res = compare_trajectories(pair.frames_ref, pair.ref.astype(dtype),
                               pair.frames_sec, pair.sec.astype(dtype))
    assert res.n_frames == n_frames
    assert res.accepted and res.rmse_px < 0.2
    assert isinstance(res.rmse_px, float)


def test_frames_matched_by_number_not_index():
    pair = simulate_trajectory_pair("agree", seed=11, n_frames=20)
    order = np.random.default_rng(0).permutation(20)
    shuffled = compare_trajectories(pair.frames_ref, pair.ref,
                                    pair.frames_sec[order], pair.sec[order])
    plain = _compare(pair)
    assert shuffled.rmse_px == pytest.approx(plain.rmse_px)
    assert shuffled.total_sec_px == pytest.approx(plain.total_sec_px)


def test_pixel_size_gives_angstrom():
    pair = simulate_trajectory_pair("noise", seed=12)
    res = _compare(pair, pixel_size_a=0.73)
    assert res.rmse_a == pytest.approx(0.73 * res.rmse_px)
    assert res.max_error_a == pytest.approx(0.73 * res.max_error_px)
    assert res.max_error_px >= res.rmse_px


def test_as_dict_is_json_ready():
    d = _compare(simulate_trajectory_pair("flat", seed=0)).as_dict()
    text = json.dumps(d, allow_nan=False)
    assert json.loads(text)["reason"] == "high_rmse"
    assert set(d) >= {"accepted", "reason", "message", "n_frames", *METRICS}


def test_shape_errors_raise():
    frames, ref = _line()
    with pytest.raises(ValueError, match="shape"):
        compare_trajectories(frames, ref[:, :1], frames, ref)
    with pytest.raises(ValueError, match="shape"):
        compare_trajectories(frames[:-1], ref, frames, ref)
    with pytest.raises(ValueError, match="binning"):
        compare_trajectories(frames, ref, frames, ref, binning=0)
    with pytest.raises(ValueError, match="scale_tolerance"):
        ConsensusParams(scale_tolerance=1.0)


# --- superposition --------------------------------------------------------------------------


def _svd_kabsch_deg(ref_c, sec_c):
    h = sec_c.T @ ref_c
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    r = vt.T @ np.diag([1.0, d]) @ u.T
    assert np.linalg.det(r) == pytest.approx(1.0)
    return math.degrees(math.atan2(r[1, 0], r[0, 0]))


@pytest.mark.parametrize("seed", range(8))
def test_closed_form_rotation_equals_svd_kabsch_with_det_fix(seed):
    rng = np.random.default_rng(seed)
    ref = np.cumsum(rng.normal(0, 1, (30, 2)), axis=0)
    sec = np.cumsum(rng.normal(0, 1, (30, 2)), axis=0)  # unrelated: reflections tempt SVD
    ref_c, sec_c = ref - ref.mean(0), sec - sec.mean(0)
    assert best_rotation_deg(ref_c, sec_c) == pytest.approx(_svd_kabsch_deg(ref_c, sec_c),
                                                            abs=1e-7)


def test_superpose_translation_only_and_rotation():
    rng = np.random.default_rng(4)
    ref = np.cumsum(rng.normal(0, 1, (25, 2)), axis=0)
    ang = math.radians(20.0)
    rot = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
    sec = ref @ rot.T + [5.0, 7.0]  # rotated +20 deg and offset
    ref_c, sec_t, a = superpose(ref, sec)
    assert a == pytest.approx(-20.0)
    np.testing.assert_allclose(sec_t.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(sec_t, (ref - ref.mean(0)) @ rot.T, atol=1e-12)
    _, sec_r, _ = superpose(ref, sec, allow_rotation=True)
    np.testing.assert_allclose(sec_r, ref_c, atol=1e-10)


# --- accumulated motion ---------------------------------------------------------------------


def test_accumulated_motion_relion_rule():
    frames, shifts = _line(10, (3.0, 4.0))  # 5 px per step, 9 steps
    total, early, late = accumulated_motion(frames, shifts, dose_per_frame=1.0, early_dose=4.0)
    # steps ending at frames 2, 3, 4 (dose 2, 3, 4 e/A^2 <= 4) are early
    assert (total, early, late) == pytest.approx((45.0, 15.0, 30.0))
    total, early, late = accumulated_motion(frames, shifts, dose_per_frame=1.0,
                                            pre_exposure=1.0, early_dose=4.0)
    assert early == pytest.approx(10.0)
    assert accumulated_motion(frames, shifts) == pytest.approx((45.0, 0.0, 45.0))
    assert accumulated_motion(frames[:1], shifts[:1]) == (0.0, 0.0, 0.0)


def test_comparison_reports_accumulated_motion_in_reference_px():
    frames, ref = _line(10, (3.0, 4.0))
    res = compare_trajectories(frames, ref, frames, ref / 2, binning=2.0, dose_per_frame=2.0)
    assert res.total_ref_px == pytest.approx(45.0) and res.total_sec_px == pytest.approx(45.0)
    assert res.early_ref_px == pytest.approx(5.0)  # only the step ending at frame 2 (4 e/A^2)
    assert res.late_sec_px == pytest.approx(40.0)


def test_match_frames_by_number():
    i_ref, i_sec = match_frames([1, 2, 3, 4, 5], [5, 3, 9, 2])
    assert i_ref.tolist() == [1, 2, 4] and i_sec.tolist() == [3, 1, 0]
    same = match_frames(np.arange(1, 6), np.arange(1, 6))
    assert same[0].tolist() == same[1].tolist() == [0, 1, 2, 3, 4]
