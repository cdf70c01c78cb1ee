"""The real-particle panel (issue 19): compare reprojections on real β-gal particles.

Runs ``xmipp-qc compare-reprojections`` on ``shared/data/betagal-real`` (half of
a real set; see its README) as a user would, and prints, against RELION's own
decisions (``labels.csv``): how often projection matching finds RELION's pose
(on the particles RELION refined; D2-aware geodesic distance), the ROC AUC of
every score column on the agreed labels (junk = neither refined nor in a good
2D class, good = both) and on each label alone, the flagged set at the default
threshold (count, precision and recall on the agreed junk) and the speed.
The synthetic panels are ``benchmarks/alignment.py --panel`` and the AUC tables
of ``xmipp_qc/tests/core/test_outliers.py``.

Usage::

    .venv/bin/python benchmarks/real_particles.py [--repeats 1] [--given] [-- extra options]

``--given`` also runs with RELION's poses (``--no-assignment`` off) and prints
how far the refinement moves them. ``--synthetic`` prints the synthetic panels
beside it: the outlier-score AUC per planted kind of simulated particles with
given angles (SNR 0.5 and 0.05, ``tests/core/test_outliers.py``) and with
angles found by matching (the components before and after issue 19).
"""

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xmipp_qc.core.geometry import rotation_distance  # noqa: E402
from xmipp_qc.tests.real_particles import (  # noqa: E402
    SYMMETRY,
    flag_quality,
    pose_agreement,
    run_panel,
    score_aucs,
)


def _matched(extra, repeats):
    runs = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as d:
            runs.append(run_panel(Path(d) / "out", options=("--no-assignment", *extra)))
    return runs


def _print_matched(runs):
    run = runs[0]
    secs = statistics.median(r.seconds for r in runs)
    agree = pose_agreement(run)
    print(f"\nMatching (--no-assignment), {run.n} images, -j 2: median wall {secs:.1f} s "
          f"({run.n / secs:.0f} images/s over {len(runs)} run(s))")
    print(f"  within 10 deg of RELION's pose: {agree['within10']:.1%} of {agree['n']} "
          f"refined particles (median {agree['median']:.2f} deg)")
    q = flag_quality(run)
    print(f"  flagged at the default threshold: {q['flagged']}, precision {q['precision']:.1%} "
          f"(base rate {q['base_rate']:.1%}), recall {q['recall']:.1%} of the agreed junk; "
          f"not refined among the 10% worst by outlier score: {q['not_refined_worst10']:.1%}")
    print(f"\n  {'ROC AUC':<16}{'agreed':>8}{'refined':>9}{'2D good':>9}")
    for name, a in sorted(score_aucs(run).items(), key=lambda kv: -kv[1]["agreed"]):
        print(f"  {name:<16}{a['agreed']:8.3f}{a['refined']:9.3f}{a['good2d']:9.3f}")


def _print_given(extra):
    with tempfile.TemporaryDirectory() as d:
        run = run_panel(Path(d) / "out", options=extra)
    sel = run.labels.refined
    moved = rotation_distance(run.columns["angles"][sel], run.given_angles[sel], SYMMETRY)
    pinned = run.columns.get("anglePinned")
    print(f"\nRefinement from RELION's poses ({sel.sum()} refined particles): "
          f"median move {np.median(moved):.2f} deg, p90 {np.percentile(moved, 90):.2f}, "
          f"unmoved {np.mean(moved < 1e-3):.1%}"
          + (f", pinned {np.nanmean(pinned[sel]):.1%}" if pinned is not None else ""))
    q = flag_quality(run)
    a = score_aucs(run)
    print(f"  outlier score AUC agreed {a['outlierScore']['agreed']:.3f}; flagged {q['flagged']} "
          f"precision {q['precision']:.1%} recall {q['recall']:.1%}")


def _print_synthetic():
    from xmipp_qc.core.outliers import MATCHED_OUTLIER_COMPONENTS
    from xmipp_qc.core.ranking import roc_auc
    from xmipp_qc.tests.core import test_outliers as t

    for snr in (0.5, 0.05):
        kinds, scores, _ = t._scored_set(snr)
        t._auc_table(kinds, {"outlierScore": scores["outlierScore"], "cost": scores["cost"]},
                     f"Synthetic particles, given angles, SNR {snr}: ROC AUC")
    kinds, results, finalize = t.matched_synthetic_set()
    bad = kinds != ""
    print("\nSynthetic particles, matched (SNR 0.3, box 48, 5% of each kind): outlier-score AUC")
    for label, comps in (("before issue 19", t._EARLIER_MATCHED),
                         ("now", MATCHED_OUTLIER_COMPONENTS)):
        out = finalize(results, components=comps)
        per = {k: roc_auc(out["outlierScore"][(kinds == "") | (kinds == k)],
                          kinds[(kinds == "") | (kinds == k)] == k) for k in t._MATCHED_KINDS}
        print(f"  {label:16s} all {roc_auc(out['outlierScore'], bad):.3f}  "
              + "  ".join(f"{k} {v:.3f}" for k, v in per.items())
              + f"  false flags {out['isOutlier'][~bad].mean():.1%}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--given", action="store_true", help="also run with the STAR's poses")
    p.add_argument("--synthetic", action="store_true", help="also print the synthetic panels")
    p.add_argument("extra", nargs="*", help="options passed to the command (after --)")
    a = p.parse_args(argv)
    _print_matched(_matched(tuple(a.extra), a.repeats))
    if a.given:
        _print_given(tuple(a.extra))
    if a.synthetic:
        _print_synthetic()


if __name__ == "__main__":
    main()
