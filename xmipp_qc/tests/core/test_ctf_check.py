"""The CTF consistency check: planted CTF errors per micrograph are caught, correct ones not."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import t as student

from xmipp_qc.core import simulate as sim
from xmipp_qc.core.chunk_result import ChunkResult
from xmipp_qc.core.ctf import apply_ctf, ctf_image
from xmipp_qc.core.ctf_check import (
    ALTERNATIVES,
    DEFOCUS_SCALES,
    GIVEN,
    check_micrographs,
    ctf_correlations,
)
from xmipp_qc.core.micrograph_table import micrograph_table
from xmipp_qc.core.pipeline import CompareOptions, MapModel, process_chunk
from xmipp_qc.core.simulate_blobs import Blobs

PX = 2.5
ACQ = {"voltage_kv": 300.0, "cs_mm": 2.7, "amplitude_contrast": 0.1}
PER_MIC = 30
SNR = 0.05  # CTF-filtered signal / noise variance over the box: cost ~0.2, as the real set
#: micrograph -> planted error of the GIVEN metadata (the images carry the true CTF)
PLANTED = ("correct", "defocus x2", "correct", "defocus x0.5", "astigmatism +90",
           "correct", "phase flipped")


def _given(true: np.ndarray, error: str) -> np.ndarray:
    """The metadata a user would hand over for a micrograph whose true CTF is ``true``."""
    g = true.copy()
    if error == "defocus x2":
        g[:2] *= 2.0
    elif error == "defocus x0.5":
        g[:2] *= 0.5
    elif error == "astigmatism +90":
        g[2] += 90.0
    return g


def _micrographs(box: int, dtype, seed: int = 3):
    """Particles of len(PLANTED) micrographs: one CTF per micrograph, astigmatism 3000 Å.

    A map of 40 small blobs (sigma 1.2 px), so that the images hold signal past the
    CTF's first zeros, as a protein's do; SNR :data:`SNR` over the box.
    """
    rng = np.random.default_rng(seed)
    base = sim.phantom_blobs(box, seed=11, n_blobs=40)
    blobs = Blobs(base.centers, np.full(len(base.sigmas), 1.2), base.amplitudes)
    n = PER_MIC * len(PLANTED)
    angles = sim.random_angles(n, rng)
    shifts = rng.uniform(-1.5, 1.5, size=(n, 2))
    mic = np.repeat(np.arange(len(PLANTED)), PER_MIC)
    true = np.empty((n, 3))
    given = np.empty((n, 3))
    phase = np.zeros(n)
    for m, error in enumerate(PLANTED):
        mean = rng.uniform(10000, 20000)
        t = np.array([mean + 1500.0, mean - 1500.0, rng.uniform(0, 180)])
        true[mic == m] = t
        given[mic == m] = _given(t, error)
    clean = sim.project_blobs(blobs, angles, shifts, box=box)
    ctf = ctf_image(box, PX, true[:, 0], true[:, 1], true[:, 2], rfft=True, **ACQ)
    flipped = np.array([PLANTED[m] == "phase flipped" for m in mic])
    ctf[flipped] *= -1.0  # the images' contrast is the opposite of the metadata's
    clean = apply_ctf(clean, ctf)
    noise = rng.normal(0.0, np.sqrt(clean.var(axis=(1, 2)).mean() / SNR), size=clean.shape)
    images = (clean + noise).astype(dtype)
    volume = sim.blobs_volume(blobs, box)
    return images, angles, shifts, given, mic, volume, phase


@pytest.fixture(scope="module", params=[(64, np.float32), (63, np.float64)],
            ids=["even-float32", "odd-float64"])
def checked(request):
    box, dtype = request.param
    images, angles, shifts, given, mic, volume, _ = _micrographs(box, dtype)
    model = MapModel(volume, CompareOptions(pixel_size_a=PX, use_ctf=True, refine=False))
    result = process_chunk(model, images, ids=np.arange(len(images)), angles=angles,
                           shifts=shifts, defocus=given, acquisition=ACQ, keep_images=False)
    return result, mic, check_micrographs(mic, result.ctf_corr)


def test_alternatives_span_a_quarter_to_four_times_the_defocus():
    assert DEFOCUS_SCALES[GIVEN] == 1.0
    assert DEFOCUS_SCALES.min() <= 0.25 and DEFOCUS_SCALES.max() >= 4.0
    assert ALTERNATIVES[-3:] == ("astigmatism +90 deg", "phase flipped", "no CTF")
    assert len(ALTERNATIVES) == len(DEFOCUS_SCALES) + 3


def test_given_column_tracks_the_cost(checked):
    """Band-limited (the refinement's band), so close to but not equal to cost."""
    result, _, _ = checked
    assert result.ctf_corr.dtype == np.float32
    assert result.ctf_corr.shape == (len(result.ids), len(ALTERNATIVES))
    cost = result.summary.scores["cost"]
    assert np.corrcoef(result.ctf_corr[:, GIVEN], cost)[0, 1] > 0.9
    flipped = ALTERNATIVES.index("phase flipped")
    np.testing.assert_allclose(result.ctf_corr[:, flipped], -result.ctf_corr[:, GIVEN])


@pytest.mark.parametrize("box", [48, 49])
def test_known_answer_noise_free_images(box):
    """An image that IS the CTF-filtered reprojection: 1 for the given CTF, -1 flipped,
    less for every other alternative; the same with the full band or a narrow one."""
    from xmipp_qc.core.projection import FourierProjector

    base = sim.phantom_blobs(box, seed=2, n_blobs=20)
    blobs = Blobs(base.centers * 0.6, np.full(len(base.sigmas), 1.2), base.amplitudes)
    angles = sim.random_angles(4, 5)
    spectra = FourierProjector(sim.blobs_volume(blobs, box), pad=2).project_fourier(angles)
    d = np.array([[15000.0, 13000.0, 20.0]] * 4)
    c = ctf_image(box, PX, d[:, 0], d[:, 1], d[:, 2], rfft=True, **ACQ)
    images = np.fft.fftshift(np.fft.irfft2(spectra * c, s=(box, box)), axes=(-2, -1))
    for band in (None, 0.3):
        r = ctf_correlations(images, spectra, d, ACQ, pixel_size_a=PX, mask_radius=box,
                             max_freq=band)
        assert np.all(r[:, GIVEN] > 0.999), r[:, GIVEN]
        np.testing.assert_allclose(r[:, ALTERNATIVES.index("phase flipped")], -r[:, GIVEN])
        others = np.delete(r, [GIVEN], axis=1)
        assert np.all(others < r[:, GIVEN:GIVEN + 1] - 0.02)


def test_planted_errors_are_suspect_and_correct_ones_not(checked):
    _, _, check = checked
    assert list(check.mic_ids) == list(range(len(PLANTED)))
    assert list(check.n_used) == [PER_MIC] * len(PLANTED)
    assert check.decided.all()
    expected = np.array([e != "correct" for e in PLANTED])
    np.testing.assert_array_equal(check.suspect, expected)
    names = check.best_names()
    # the given metadata is x2 the truth: the best scale undoes it (and vice versa)
    assert 0.4 <= check.best_scale[PLANTED.index("defocus x2")] <= 0.63
    assert 1.6 <= check.best_scale[PLANTED.index("defocus x0.5")] <= 2.5
    assert names[PLANTED.index("astigmatism +90")] == "astigmatism +90 deg"
    assert names[PLANTED.index("phase flipped")] == "phase flipped"
    for m, e in enumerate(PLANTED):
        if e == "correct":
            assert 0.79 <= check.best_scale[m] <= 1.26, (m, check.best_scale[m])
            assert check.gain_low[m] < 0.05 * check.mean_corr[m].max()
        else:
            assert check.gain_low[m] > 0.05 * check.mean_corr[m].max()


def test_known_answer_aggregation():
    """Gain, Student-t interval, parabolic peak and the verdict on made-up correlations."""
    rng = np.random.default_rng(0)
    k = len(ALTERNATIVES)
    t = np.log2(DEFOCUS_SCALES)
    curve = 0.3 - 0.02 * (t - np.log2(0.3)) ** 2  # peak exactly at x0.3
    a = np.tile(np.concatenate([curve, [0.1, -0.2, 0.15]]), (25, 1))
    noise = rng.normal(0, 0.01, size=25)
    a[:, GIVEN] += noise  # the paired difference carries the noise
    b = np.full((12, k), 0.2)
    b[:, GIVEN] = 0.25  # the given CTF is the best: gain 0, interval 0
    c = a[:5].copy()  # too few particles for a verdict
    junk = np.full((40, k), 0.02)  # junk: every correlation near 0, a tiny sure "gain"
    junk[:, GIVEN] = 0.015 + rng.normal(0, 1e-4, size=40)
    mic = np.r_[np.full(25, 4), np.full(12, 9), np.full(5, 2), np.full(40, 7), [-1]]
    corr = np.concatenate([a, b, c, junk, np.full((1, k), 0.9)])
    check = check_micrographs(mic, corr, min_particles=10)
    assert list(check.mic_ids) == [4, 9, 2, 7] and list(check.n_used) == [25, 12, 5, 40]
    assert check.gain_low[3] > 0.004 and not check.suspect[3]  # below MIN_GAIN
    diff = a[:, int(np.argmax(a.mean(0)))] - a[:, GIVEN]
    half = student.ppf(0.975, 24) * diff.std(ddof=1) / 5.0
    assert check.gain[0] == pytest.approx(diff.mean())
    assert check.gain_low[0] == pytest.approx(diff.mean() - half)
    assert check.best_scale[0] == pytest.approx(0.3, rel=1e-9)
    assert check.best_scale[1] == 1.0 and check.gain[1] == 0.0 and check.gain_low[1] == 0.0
    assert list(check.decided) == [True, True, False, True]
    assert list(check.suspect) == [True, False, False, False]
    nan_row = corr.copy()
    nan_row[0, 3] = np.nan  # a failed image is left out
    assert check_micrographs(mic, nan_row, min_particles=10).n_used[0] == 24


def test_micrograph_table_columns(checked):
    result, mic, check = checked
    cost = result.summary.scores["cost"]
    flags = np.zeros(len(mic), dtype=bool)
    flags[:4] = True
    table = micrograph_table(mic, flags, cost, result.ctf_corr)
    assert list(table["particles"]) == [PER_MIC] * len(PLANTED)
    assert list(table["flagged"][:2]) == [4, 0]
    assert table["median_cost"][3] == pytest.approx(np.median(cost[mic == 3]))
    np.testing.assert_array_equal(table["ctf_suspect"], check.suspect.astype(int))
    assert table["ctf_best"][PLANTED.index("phase flipped")] == "phase_flipped"
    assert "ctf_suspect" not in micrograph_table(mic, flags, cost)


def test_ctf_corr_round_trips_and_is_absent_without_ctf(checked, tmp_path):
    result, _, _ = checked
    result.save(str(tmp_path / "c.npz"), with_images=False)
    back = ChunkResult.load(str(tmp_path / "c.npz"))
    np.testing.assert_array_equal(back.ctf_corr, result.ctf_corr)
    images, angles, shifts, given, _, volume, _ = _micrographs(32, np.float32)
    model = MapModel(volume, CompareOptions(pixel_size_a=PX, use_ctf=False, refine=False))
    plain = process_chunk(model, images[:8], ids=np.arange(8), angles=angles[:8],
                          shifts=shifts[:8], keep_images=False)
    assert plain.ctf_corr is None


def test_refined_alignment_and_failed_images():
    """With refinement the check runs at the refined pose; a failed image gets NaN."""
    images, angles, shifts, given, _, volume, _ = _micrographs(40, np.float32)
    images, angles, shifts, given = images[:40], angles[:40], shifts[:40], given[:40]
    images[5] = np.nan
    model = MapModel(volume, CompareOptions(pixel_size_a=PX, use_ctf=True, refine=True))
    r = process_chunk(model, images, ids=np.arange(40), angles=angles, shifts=shifts,
                      defocus=given, acquisition=ACQ, keep_images=False)
    assert np.isnan(r.ctf_corr[5]).all()
    ok = np.arange(40) != 5
    assert np.isfinite(r.ctf_corr[ok]).all()
    assert np.corrcoef(r.ctf_corr[ok, GIVEN], r.summary.scores["cost"][ok])[0, 1] > 0.9


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="do not match"):
        ctf_correlations(np.zeros((2, 8, 8)), np.zeros((2, 8, 4), complex), np.zeros((2, 3)),
                         ACQ, pixel_size_a=1.0)
    with pytest.raises(ValueError, match="must be"):
        check_micrographs([0, 0], np.zeros((2, 3)))
    with pytest.raises(ValueError, match="unknown acquisition"):
        ctf_correlations(np.zeros((1, 8, 8)), np.zeros((1, 8, 5), complex), np.zeros((1, 3)),
                         {"kv": 300.0}, pixel_size_a=1.0)
