"""The first lines of ``xmipp-qc compare-reprojections``: is the CTF applied and why, and
the pixel sizes of maps and images (with where each came from) when they differ."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xmipp_qc.cli import main
from xmipp_qc.core import simulate as sim
from xmipp_qc.core.run_notes import ctf_choice, pixel_size_notes
from xmipp_qc.formats.mrc import write_stack, write_volume
from xmipp_qc.formats.relion_particles import read_particles
from xmipp_qc.tests.test_cli_compare_reprojections import _write_star

BOX, N, PX = 32, 40, 3.0


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("notes")
    blobs = sim.phantom_blobs(BOX, seed=3)
    ps = sim.simulate_particles(blobs, N, box=BOX, snr=2.0, pixel_size_a=PX, ctf=True, seed=4)
    write_stack(str(root / "stack.mrcs"), ps.images, PX)
    vol = sim.blobs_volume(blobs, BOX)
    write_volume(str(root / "map.mrc"), vol, PX)
    write_volume(str(root / "halfpx.mrc"), vol, PX / 2)  # a wrong header: 1.5 Å/px
    _write_star(root / "ctf.star", ps, ctf=True, box=BOX)
    _write_star(root / "plain.star", ps, ctf=False, box=BOX)
    return root


def _run(root, tmp, star, vol, *extra):
    out = tmp / f"o{len(list(tmp.iterdir()))}"
    code = main(["compare-reprojections", "--images", str(root / star), "--volume",
                 str(root / vol), "--out", str(out), "--no-refine", *extra])
    assert code == 0
    return out


def _lines(capsys):
    return [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]


def test_ctf_applied_by_default_and_said_first(files, tmp_path, capsys):
    out = _run(files, tmp_path, "ctf.star", "map.mrc")
    lines = _lines(capsys)
    assert lines[0] == ("CTF applied to every reprojection: the images carry one "
                        "(rlnDefocusU/V/Angle columns in the STAR); --no-ctf to ignore it.")
    assert not any("Pixel sizes differ" in ln for ln in lines)  # same sampling: no word
    assert json.loads((out / "ranking.json").read_text())["options"]["use_ctf"] is True


def test_no_ctf_says_what_is_lost(files, tmp_path, capsys):
    out = _run(files, tmp_path, "ctf.star", "map.mrc", "--no-ctf")
    assert _lines(capsys)[0] == ("CTF not applied (--no-ctf) although the images carry one "
                                 "(rlnDefocusU/V/Angle columns in the STAR): scores are lower than "
                                 "with it.")
    assert json.loads((out / "ranking.json").read_text())["options"]["use_ctf"] is False


def test_star_without_ctf_runs_without_it(files, tmp_path, capsys):
    out = _run(files, tmp_path, "plain.star", "map.mrc")
    assert _lines(capsys)[0] == ("CTF not applied: the images carry none (no "
                                 "rlnDefocusU/V/Angle columns in the STAR); scores compare "
                                 "them with CTF-free reprojections.")
    assert json.loads((out / "ranking.json").read_text())["options"]["use_ctf"] is False


def test_no_ctf_and_use_ctf_together_is_an_error(files, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["compare-reprojections", "--images", str(files / "ctf.star"), "--volume",
              str(files / "map.mrc"), "--out", str(tmp_path / "o"), "--no-ctf", "--use-ctf"])
    assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_map_header_pixel_size_that_differs_is_named(files, tmp_path, capsys):
    """A map header of 1.5 Å/px for 3 Å/px images: both values and their sources,
    before any image is processed; the scores show what the wrong header costs."""
    wrong = _run(files, tmp_path, "ctf.star", "halfpx.mrc")
    lines = _lines(capsys)
    note = "xmipp-qc: warning: " + (  # a warning: shown even with --quiet
        "Pixel sizes differ: map 'halfpx.mrc' 1.5 Å/px (MRC header), images 3 Å/px (STAR "
        "rlnImagePixelSize); the map is resampled to 3 Å/px. If the map's value is wrong, "
        "every score is: give the right one with --volume-pixel-size (or --pixel-size for "
        "the images).")
    assert lines[1] == note, lines[:3]
    first_work = next(i for i, ln in enumerate(lines) if "chunks of up to" in ln)
    assert first_work > 1
    fixed = _run(files, tmp_path, "ctf.star", "halfpx.mrc", "--volume-pixel-size", "3")
    assert not any("Pixel sizes differ" in ln for ln in _lines(capsys))
    cost = {k: np.median(read_particles(str(o / "vol1_particles.star")).block.numbers(
        "xmippQcCost")) for k, o in (("wrong", wrong), ("fixed", fixed))}
    assert cost["fixed"] > cost["wrong"] + 0.2, cost
    _run(files, tmp_path, "ctf.star", "map.mrc", "--volume-pixel-size", "6")
    assert any("map 'map.mrc' 6 Å/px (--volume-pixel-size), images 3 Å/px (STAR "
               "rlnImagePixelSize); the map is resampled to 6 Å/px" in ln
               for ln in _lines(capsys))


def test_ctf_choice_every_case():
    kw = {"source": "its CTF", "switch_off": "Ignore CTF = Yes"}
    assert [ctf_choice(w, a, **kw).applied for w, a in
            ((True, True), (True, False), (False, True), (False, False))] == [
        True, False, False, False]
    assert ctf_choice(False, False, **kw).note == (
        "CTF not applied (Ignore CTF = Yes; the images carry none).")


def test_pixel_size_notes_only_for_maps_that_differ():
    images = [(3.54, "STAR rlnImagePixelSize")]
    maps = [("1", 1.77, "MRC header"), ("2", 3.5401, "MRC header")]
    (line,) = pixel_size_notes(images, maps, 3.54, hint="fix it")
    assert line.startswith("Pixel sizes differ: map 1 1.77 Å/px (MRC header), images 3.54 "
                           "Å/px (STAR rlnImagePixelSize); the map is resampled to 3.54 Å/px.")
    assert pixel_size_notes(images, maps[1:], 3.54, hint="fix it") == []
