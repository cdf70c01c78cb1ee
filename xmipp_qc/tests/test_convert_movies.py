"""Movie parts of xmipp_qc.convert: MovieAlignment <-> arrays, units, attributes (no project)."""

import numpy as np
import pwem.objects as emobj
import pytest

from xmipp_qc.convert import (
    arraysToMovieAlignment,
    movieAlignmentToArrays,
    movieDoseInfo,
    relativeBinning,
    setAlignmentAttributes,
    shiftPixelSize,
)


def _movie(alignment=None):
    movie = emobj.Movie(location="movie.mrcs")
    if alignment is not None:
        movie.setAlignment(alignment)
    return movie


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("first, n", [(1, 5), (3, 8)])
def test_round_trip_keeps_frames_shifts_and_roi(dtype, first, n):
    frames = np.arange(first, first + n)
    shifts = np.random.default_rng(n).normal(size=(n, 2)).astype(dtype)
    alignment = arraysToMovieAlignment(frames, shifts, roi=[10, 20, 100, 200])
    assert alignment.getRange() == (first, first + n - 1)
    assert list(alignment.getRoi()) == [10, 20, 100, 200]
    got_frames, got_shifts = movieAlignmentToArrays(_movie(alignment))
    assert got_frames.dtype == np.int64 and got_shifts.dtype == np.float64
    np.testing.assert_array_equal(got_frames, frames)
    np.testing.assert_allclose(got_shifts, shifts.astype(np.float64), rtol=0, atol=1e-6)


def test_round_trip_through_a_movie_set(tmp_path):
    frames, shifts = np.arange(2, 7), np.column_stack([np.arange(5.0), -np.arange(5.0) / 2])
    movies = emobj.SetOfMovies(filename=str(tmp_path / "movies.sqlite"))
    movies.setSamplingRate(1.5)
    movie = _movie(arraysToMovieAlignment(frames, shifts))
    movie.setObjId(7)
    movies.append(movie)
    movies.write()
    movies.close()
    reopened = emobj.SetOfMovies(filename=str(tmp_path / "movies.sqlite"))
    got_frames, got_shifts = movieAlignmentToArrays(reopened[7])
    np.testing.assert_array_equal(got_frames, frames)
    np.testing.assert_allclose(got_shifts, shifts)
    reopened.close()


def test_missing_or_empty_alignment_gives_empty_arrays():
    for movie in (_movie(), _movie(emobj.MovieAlignment())):
        frames, shifts = movieAlignmentToArrays(movie)
        assert frames.shape == (0,) and shifts.shape == (0, 2)


def test_unset_last_frame_numbers_shifts_from_first():
    alignment = emobj.MovieAlignment(first=4, last=0, xshifts=[0.0, 1.0, 2.0],
                                     yshifts=[0.0, 0.5, 1.0])
    frames, shifts = movieAlignmentToArrays(_movie(alignment))
    np.testing.assert_array_equal(frames, [4, 5, 6])
    np.testing.assert_allclose(shifts[:, 1], [0.0, 0.5, 1.0])


def test_bad_inputs_raise_value_error():
    with pytest.raises(ValueError, match="consecutive"):
        arraysToMovieAlignment([1, 3, 4], np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"\(3, 2\)"):
        arraysToMovieAlignment([1, 2, 3], np.zeros((2, 2)))
    uneven = emobj.MovieAlignment(first=1, last=2, xshifts=[0.0, 1.0], yshifts=[0.0])
    with pytest.raises(ValueError, match="y shifts"):
        movieAlignmentToArrays(_movie(uneven))


def test_binning_pixel_size_and_dose():
    ref, sec = emobj.SetOfMovies(), emobj.SetOfMovies()
    ref.setSamplingRate(0.8)
    sec.setSamplingRate(1.6)
    assert shiftPixelSize(ref) == 0.8
    assert relativeBinning(ref, sec) == pytest.approx(2.0)
    assert relativeBinning(sec, ref) == pytest.approx(0.5)
    assert movieDoseInfo(ref) == (None, 0.0)
    ref.getAcquisition().setDosePerFrame(1.25)
    ref.getAcquisition().setDoseInitial(3.0)
    assert movieDoseInfo(ref) == (1.25, 3.0)
    assert shiftPixelSize(emobj.SetOfMovies()) == 0.0
    with pytest.raises(ValueError, match="positive"):
        relativeBinning(ref, emobj.SetOfMovies())


def test_alignment_attributes_use_xmipp_names_and_units():
    record = {"reason": "scale", "message": "scale 0.80", "corr": 0.99, "corr_x": 0.99,
              "corr_y": 1.0, "rmse_px": 0.7, "max_error_px": 1.2, "rmse_a": 0.56,
              "max_error_a": 0.96, "scale": 0.8, "rotation_deg": 1.5, "total_ref_px": 20.0,
              "early_ref_px": 5.0, "late_ref_px": 15.0, "n_frames": 40, "plot": ""}
    mic = emobj.Micrograph()
    setAlignmentAttributes(mic, record)
    assert mic._alignment_corr.get() == 0.99
    assert mic._alignment_rmse_error.get() == 0.7
    assert mic._alignment_max_error.get() == 1.2
    assert mic._alignment_rmse_error_A.get() == 0.56
    assert mic._alignment_scale.get() == 0.8
    assert mic._alignment_rotation.get() == 1.5
    assert mic._alignment_accum_early.get() == 5.0
    assert mic._alignment_n_frames.get() == 40
    assert mic._alignment_reason.get() == "scale"
    assert mic.plotCart.getFileName() is None
