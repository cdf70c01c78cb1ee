"""The CTF check of ``xmipp-qc compare-reprojections`` on the real β-gal particles.

``particles_ctffind.star`` carries the practice project's CTFFIND defoci, about
3.4x too high; ``particles.star`` RELION's refined ones (data/README.md). With
the given poses (``--use-ctf --symmetry d2 --no-refine``; rows whose pose
belongs to another particle fail on their shift and are left out), every
micrograph is suspect with the first, best near x0.3, and none with the second.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from xmipp_qc.cli import main
from xmipp_qc.formats.star import read_star
from xmipp_qc.tests.shared_data import SHARED_DATA, missing_shared_data

BETAGAL = SHARED_DATA / "betagal-real"
MOVIES = [f"MotionCorr/job002/Movies/20170629_000{k}_frameImage.mrc" for k in range(21, 26)]
#: median cost per movie, issue 20's table (CTFFIND CTF, RELION CTF)
MEDIAN_COST = {"particles_ctffind": [0.185, 0.174, 0.185, 0.206, 0.183],
               "particles": [0.274, 0.277, 0.286, 0.300, 0.280]}


def _run(star: str, out, *extra: str) -> int:
    return main(["compare-reprojections", "--images", str(BETAGAL / f"{star}.star"),
                 "--volume", str(BETAGAL / "betagal_map.mrc"), "--out", str(out),
                 "--use-ctf", "--symmetry", "d2", "--no-refine", *extra])


def _defocus_ratio() -> np.ndarray:
    """Per movie: RELION's mean defocus over CTFFIND's (the scale that undoes the error)."""
    from xmipp_qc.formats.relion_particles import read_particles

    relion, ctffind = (read_particles(str(BETAGAL / f"{s}.star"))
                       for s in ("particles", "particles_ctffind"))
    mic = np.array(relion.block.text("rlnMicrographName"))
    return np.array([relion.defocus[mic == m, :2].mean() / ctffind.defocus[mic == m, :2].mean()
                     for m in MOVIES])


def _table(out) -> dict:
    block = read_star(str(out / "vol1_micrographs.star"))["micrographs"]
    return {c: block.text(c) for c in block.columns}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    if not BETAGAL.is_dir():
        missing_shared_data(BETAGAL)
    root = tmp_path_factory.mktemp("ctfcheck")
    logs = {}
    for star in MEDIAN_COST:
        handler = _Lines()
        logging.getLogger("xmipp_qc").addHandler(handler)
        try:
            assert _run(star, root / star) == 0
        finally:
            logging.getLogger("xmipp_qc").removeHandler(handler)
        logs[star] = handler.lines
    return root, logs


class _Lines(logging.Handler):
    """Collects the INFO lines of a run."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_ctffind_defoci_make_every_micrograph_suspect(runs):
    root, logs = runs
    t = _table(root / "particles_ctffind")
    assert t["rlnMicrographName"] == MOVIES
    assert [int(v) for v in t["xmippQcParticles"]] == [242, 228, 229, 221, 237]
    assert [int(v) for v in t["xmippQcCtfSuspect"]] == [1] * 5
    scale = np.array(t["xmippQcDefocusScale"], dtype=float)
    truth = _defocus_ratio()  # RELION's defocus / CTFFIND's: 0.24 to 0.34
    assert np.all(np.abs(np.log(scale / truth)) < np.log(1.25)), (scale, truth)
    gain = np.array(t["xmippQcCtfGain"], dtype=float)
    low = np.array(t["xmippQcCtfGainLow"], dtype=float)
    assert np.all(gain > 0.05) and np.all(low > 0.05)
    assert all(b.startswith("defocus_x0.") for b in t["xmippQcCtfBest"])
    np.testing.assert_allclose(np.array(t["xmippQcMedianCost"], dtype=float),
                               MEDIAN_COST["particles_ctffind"], atol=0.002)
    line = next(x for x in logs["particles_ctffind"] if "CTF check" in x)
    assert "suspect CTF in 5 of 5 micrographs" in line
    assert all(m in line for m in MOVIES)
    ranking = json.loads((root / "particles_ctffind" / "ranking.json").read_text())
    assert [s[0] for s in ranking["maps"][0]["ctf_suspect"]] == MOVIES


def test_relion_defoci_make_no_micrograph_suspect(runs):
    root, logs = runs
    t = _table(root / "particles")
    assert t["rlnMicrographName"] == MOVIES
    assert [int(v) for v in t["xmippQcCtfSuspect"]] == [0] * 5
    assert [int(v) for v in t["xmippQcCtfDecided"]] == [1] * 5
    scored = np.array(t["xmippQcCtfParticles"], dtype=int)  # the failed rows left out
    assert np.all(scored > 100) and scored.sum() == 1157 - 539
    scale = np.array(t["xmippQcDefocusScale"], dtype=float)
    assert np.all((scale > 0.85) & (scale < 1.15)), scale
    np.testing.assert_allclose(np.array(t["xmippQcMedianCost"], dtype=float),
                               MEDIAN_COST["particles"], atol=0.002)
    flagged = np.array(t["xmippQcFlagged"], dtype=int)
    rate = np.array(t["xmippQcOutlierRate"], dtype=float)
    np.testing.assert_allclose(rate, flagged / np.array(t["xmippQcParticles"], dtype=int),
                               atol=1e-6)
    line = next(x for x in logs["particles"] if "CTF check" in x)
    assert "no micrograph of 5 has a suspect CTF" in line


def test_no_ctf_check_leaves_the_ctf_columns_out(tmp_path):
    if not BETAGAL.is_dir():
        missing_shared_data(BETAGAL)
    assert _run("particles_ctffind", tmp_path / "out", "--no-ctf-check") == 0
    t = _table(tmp_path / "out")
    assert list(t) == ["rlnMicrographName", "xmippQcParticles", "xmippQcFlagged",
                       "xmippQcOutlierRate", "xmippQcMedianCost"]
    np.testing.assert_allclose(np.array(t["xmippQcMedianCost"], dtype=float),
                               MEDIAN_COST["particles_ctffind"], atol=0.002)


def test_without_micrograph_names_the_run_says_so(tmp_path):
    """A STAR without rlnMicrographName: no micrograph table, one line saying why."""
    if not BETAGAL.is_dir():
        missing_shared_data(BETAGAL)
    from xmipp_qc.formats.star import read_star, write_star

    blocks = read_star(str(BETAGAL / "particles.star"))
    part = blocks["particles"]
    j = part.columns.index("rlnMicrographName")
    part.columns.pop(j)
    for row in part.rows:
        row.pop(j)
    write_star(str(tmp_path / "nomics.star"), blocks)
    (tmp_path / "particles").symlink_to(BETAGAL / "particles")
    handler = _Lines()
    logging.getLogger("xmipp_qc").addHandler(handler)
    try:
        assert main(["compare-reprojections", "--images", str(tmp_path / "nomics.star"),
                     "--volume", str(BETAGAL / "betagal_map.mrc"), "--out",
                     str(tmp_path / "out"), "--use-ctf", "--symmetry", "d2",
                     "--no-refine"]) == 0
    finally:
        logging.getLogger("xmipp_qc").removeHandler(handler)
    assert not (tmp_path / "out" / "vol1_micrographs.star").exists()
    assert any("no rlnMicrographName; no micrograph table" in x for x in handler.lines)
