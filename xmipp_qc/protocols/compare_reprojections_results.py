"""What *compare reprojections* saves in its extra folder, and how to read it back.

The protocol writes these files; its viewer, the demo and the tests read them, so
the names and formats live here, in one place:

``outputs.json``          ``{volumeId: outputName}`` of the candidate maps;
``vol<id>/scores.npz``    per-image set statistics of one map
                          (:func:`xmipp_qc.core.pipeline.finalize`);
``ranking.json``          the ranking table of the maps.
"""

import json
import os

import numpy as np

OUTPUT_PREFIX = "reprojections_vol"
#: Xmipp attribute <- finalize key (scores of xmipp_qc.core.pipeline.finalize).
XMIPP_SCORES = {"cost": "cost", "corrIdx": "corrIdx", "corrMask": "corrMask",
                "corrWeight": "corrWeight", "imedValue": "imedValue",
                "continuousA": "grayA", "continuousB": "grayB",
                "zScoreResMean": "zScoreResMean", "zScoreResVar": "zScoreResVar",
                "zScoreResCov": "zScoreResCov"}
#: New attributes (prefix _qc_) <- finalize key.
QC_SCORES = {"outlierScore": "outlierScore", "zResMean": "zResMean", "zResStd": "zResStd",
             "zScoreGray": "zScoreGray", "resCovDivergence": "resCovDivergence",
             "matchCorr": "match_corr", "matchMargin": "match_margin",
             "angleChange": "angleChange", "shiftChange": "shiftChange"}


def outputName(volId):
    """Name of the output of candidate map ``volId`` (Xmipp's)."""
    return f"{OUTPUT_PREFIX}{volId}"


def readOutputsJson(extraPath):
    """``{volumeId (int): outputName}`` written by the protocol, {} if absent."""
    fn = os.path.join(extraPath, "outputs.json")
    if not os.path.exists(fn):
        return {}
    with open(fn) as fh:
        return {int(k): v for k, v in json.load(fh).items()}


def readScores(extraPath, volId):
    """Saved set statistics of one map (:func:`xmipp_qc.core.pipeline.finalize`)."""
    with np.load(os.path.join(extraPath, f"vol{volId}", "scores.npz")) as z:
        return {k: z[k] for k in z.files}


def readRanking(extraPath):
    """The saved ranking table (dict) or None."""
    fn = os.path.join(extraPath, "ranking.json")
    if not os.path.exists(fn):
        return None
    with open(fn) as fh:
        return json.load(fh)


def rankingLines(table):
    """Summary lines of a ranking table (higher is better, with the lead's interval)."""
    lines = [f"Ranking by mean {table['score']} (higher is better):"]
    for m in table["maps"]:
        lines.append(f"  {m['rank']}. map {m['map']}: mean {m['mean']:.4f}, median "
                     f"{m['median']:.4f}, best for {100 * m['fraction_best']:.0f}% of images")
    lines.append(f"Lead of map {table['best']} over map {table['runner_up']}: "
                 f"{table['difference']:.4f} ({100 * table['confidence']:.0f}% CI "
                 f"{table['ci_low']:.4f} to {table['ci_high']:.4f})"
                 + ("" if table["significant"] else ", not significant"))
    return lines


def jsonDefault(v):
    """``json.dump`` default for numpy scalars and arrays."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(f"not JSON serialisable: {type(v)}")
