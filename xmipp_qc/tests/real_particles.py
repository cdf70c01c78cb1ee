"""The real-particle panel: compare reprojections on real β-gal particles against RELION's labels.

Used by the panel tests (``xmipp_qc/tests/test_real_particles.py``) and by
``benchmarks/real_particles.py`` (the table), so that both measure the same
thing. Nothing here is used by the package itself.

The data (``shared/data/betagal-real``, see its README) are 1,157 real
particles of the RELION β-gal tutorial movies (64 px at 3.54 Å/px) with
RELION's CTF, its poses where the pick is one of RELION's refined particles,
and two of RELION's decisions per particle (``labels.csv``):
``in_relion_refined_set`` (the particle reached RELION's final refinement) and
``class2d_good`` (it sits in a 2D class at <= 25 Å). *Junk* is neither,
*good* is both; the *agreed* subset is the union of the two, on which the two
labels do not contradict each other. Both are RELION's decisions, not ground
truth: an AUC of 1 is not expected.

The panel runs the ``xmipp-qc compare-reprojections`` command in-process, as a
user would, and reads its ``vol1_particles.star``.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from xmipp_qc.core.geometry import rotation_distance
from xmipp_qc.core.ranking import roc_auc
from xmipp_qc.formats.star import read_star
from xmipp_qc.tests.shared_data import SHARED_DATA

BETAGAL = SHARED_DATA / "betagal-real"
SYMMETRY = "d2"

#: Orientation of every score column for its AUC: +1 when a high value means
#: junk, -1 when a low value does. Columns not listed are not scores.
SCORE_SIGNS: dict[str, int] = {
    "outlierScore": +1,
    "matchCorr": -1, "matchMargin": -1,
    "cost": -1, "corrIdx": -1, "corrMask": -1, "corrWeight": -1,
    "corrInit": -1, "corrFinal": -1, "corrGain": +1,
    "angleChange": +1, "shiftChange": +1,
    "imedValue": +1, "resStd": +1,
    "zScoreGray": -1, "zScoreGrayInit": -1,
    "zScoreResCov": +1, "zScoreResVar": +1, "zScoreResMean": +1,
    "resLowPower": +1, "offCentre": +1,
}


@dataclass(frozen=True)
class Labels:
    """RELION's decisions on the panel's particles, in the STAR's row order.

    Attributes
    ----------
    refined, good2d : ndarray of bool, shape (n,)
        ``in_relion_refined_set`` and ``class2d_good``.
    """

    refined: NDArray[np.bool_]
    good2d: NDArray[np.bool_]

    @property
    def junk(self) -> NDArray[np.bool_]:
        return ~self.refined & ~self.good2d

    @property
    def good(self) -> NDArray[np.bool_]:
        return self.refined & self.good2d

    @property
    def agreed(self) -> NDArray[np.bool_]:
        return self.junk | self.good


def read_labels(image_names: list[str], path: Path = BETAGAL / "labels.csv") -> Labels:
    """The labels of ``image_names`` (``index@stack`` as in the STAR), in that order."""
    with open(path, newline="") as f:
        rows = {r["image"]: r for r in csv.DictReader(f)}
    missing = [n for n in image_names if n not in rows]
    if missing:
        raise ValueError(f"{path}: no label for {len(missing)} images, e.g. {missing[0]}")
    return Labels(refined=np.array([rows[n]["in_relion_refined_set"] == "1" for n in image_names]),
                  good2d=np.array([rows[n]["class2d_good"] == "1" for n in image_names]))


@dataclass
class PanelRun:
    """One run of the command on the panel's particles and what it scored.

    Attributes
    ----------
    columns : dict of str to ndarray, shape (n,)
        Every ``xmippQc*`` column of ``vol1_particles.star`` (prefix dropped)
        as float where it parses, the RELION angles as ``angles`` (n, 3, deg).
    given_angles : ndarray, shape (n, 3)
        The input STAR's angles (RELION's where ``labels.refined``).
    seconds : float
        Wall time of the command.
    """

    labels: Labels
    columns: dict[str, NDArray] = field(default_factory=dict)
    given_angles: NDArray | None = None
    seconds: float = float("nan")

    @property
    def n(self) -> int:
        return len(self.labels.refined)


def _table(path: Path):
    blocks = read_star(str(path))
    return blocks["particles"] if "particles" in blocks else next(iter(blocks.values()))


def _angles(block) -> NDArray[np.float64]:
    return np.column_stack([block.numbers(f"rlnAngle{k}")
                            for k in ("Rot", "Tilt", "Psi")])


def run_panel(out: Path, *, star: str = "particles.star", options: tuple = (),
              threads: int = 2) -> PanelRun:
    """Run ``xmipp-qc compare-reprojections`` on the panel and read its scores.

    Parameters
    ----------
    out : Path
        A new folder for the command's results.
    star : str
        The particle STAR of ``shared/data/betagal-real`` to use.
    options : tuple of str
        Options beyond ``--images``, ``--volume``, ``--out``, ``--symmetry d2``
        and ``-j`` (default: none, i.e. the command's defaults).
    """
    from xmipp_qc.cli import main

    argv = ["compare-reprojections", "--images", str(BETAGAL / star),
            "--volume", str(BETAGAL / "betagal_map.mrc"), "--out", str(out),
            "--symmetry", SYMMETRY, "-j", str(threads), "-q", *options]
    t0 = time.perf_counter()
    code = main(argv)
    seconds = time.perf_counter() - t0
    if code != 0:
        raise RuntimeError(f"xmipp-qc {' '.join(argv)} exited with {code}")
    given = _table(BETAGAL / star)
    result = _table(out / "vol1_particles.star")
    names = given.text("rlnImageName")
    run = PanelRun(labels=read_labels(names), given_angles=_angles(given), seconds=seconds)
    for label in result.columns:
        if label.startswith("xmippQc"):
            name = label[len("xmippQc"):]
            name = name[0].lower() + name[1:]
            try:
                run.columns[name] = result.numbers(label)
            except ValueError:
                run.columns[name] = np.asarray(result.text(label))
    run.columns["angles"] = _angles(result)
    return run


def pose_agreement(run: PanelRun) -> dict[str, float]:
    """Agreement of the final angles with RELION's, on the particles RELION refined.

    Returns
    -------
    dict
        ``within10``: share within 10° (geodesic, D2-aware); ``median``: the
        median distance (deg); ``n``: particles compared.
    """
    sel = run.labels.refined
    d = rotation_distance(run.columns["angles"][sel], run.given_angles[sel], SYMMETRY)
    return {"within10": float(np.mean(d <= 10.0)), "median": float(np.median(d)),
            "n": int(sel.sum())}


def score_aucs(run: PanelRun) -> dict[str, dict[str, float]]:
    """ROC AUC of every score column against each label (oriented: 1 = junk ranked worst).

    Returns
    -------
    dict of column -> {"agreed", "refined", "good2d"}
        ``agreed``: junk vs good on the agreed subset; ``refined``: not in
        RELION's refined set vs in it; ``good2d``: not in a good 2D class vs in
        one. Images the run could not score (NaN; they are flagged) rank as
        worst.
    """
    lab = run.labels
    out = {}
    for name, sign in SCORE_SIGNS.items():
        if name not in run.columns:
            continue
        v = sign * run.columns[name]
        finite = np.isfinite(v)
        v = np.where(finite, v, v[finite].max() + 1.0 if finite.any() else 0.0)
        out[name] = {"agreed": roc_auc(v[lab.agreed], lab.junk[lab.agreed]),
                     "refined": roc_auc(v, ~lab.refined),
                     "good2d": roc_auc(v, ~lab.good2d)}
    return out


def flag_quality(run: PanelRun) -> dict[str, float]:
    """The flagged set at the run's threshold, judged by the agreed labels.

    Returns
    -------
    dict
        ``flagged``: count; ``precision``: junk share of the flagged agreed
        images; ``recall``: share of the agreed junk that is flagged;
        ``base_rate``: junk share of the agreed images; ``not_refined_worst10``:
        share not in RELION's refined set among the 10% worst by outlier score.
    """
    lab = run.labels
    flag = run.columns["isOutlier"].astype(bool)
    fa = flag & lab.agreed
    worst = np.argsort(-np.nan_to_num(run.columns["outlierScore"], nan=-np.inf))
    worst = worst[: max(1, run.n // 10)]
    return {"flagged": int(flag.sum()),
            "precision": float(lab.junk[fa].mean()) if fa.any() else float("nan"),
            "recall": float(flag[lab.junk].mean()),
            "base_rate": float(lab.junk[lab.agreed].mean()),
            "not_refined_worst10": float(np.mean(~lab.refined[worst]))}
