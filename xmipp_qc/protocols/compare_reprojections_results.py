"""What *compare reprojections* saves in its extra folder, and how it is read back.

The protocol writes these files in its ``extra/`` folder, one per finished step,
so that "continue" reuses them; its viewer, the demo and the tests read them, so
the names and formats live here, in one place:

``input.npz``              ids, given alignment (input px), defocus, sampling;
``locations.json``         image locations of the input items;
``images_work.mrcs``       the images at the working sampling (downSampleStep);
``volume_<vid>.mrc``       each candidate map at the working sampling;
``vol<vid>/chunk_<k>.npz`` one :class:`~xmipp_qc.core.chunk_result.ChunkResult` per
                           (map, chunk), with its image stacks beside it;
``vol<vid>/scores.npz``    per-image set statistics of one map
                           (:func:`xmipp_qc.core.pipeline.finalize`);
``outputs.json``           ``{volumeId: outputName}`` of the candidate maps;
``ranking.json``           the ranking table of the maps (computeRankingVolumes);
                           while streaming, the running one (``running``: true);
``*.png``                  key plots;

and in streaming runs (:mod:`.compare_reprojections_streaming`):

``stream/input_<k>.npz``   ids, given alignment, defocus, micIds of chunk k, in
                           order of arrival, with ``stream/images_<k>.mrcs``;
``vol<vid>/reference.json`` the burn-in statistics of the map;
``vol<vid>/scores_<k>.npz`` final scores of chunk k (``scores.npz`` at the end
                           joins them, with ``chunk`` and ``index`` per image);
``session_vol<vid>.json``  outlier rates per micrograph and per window
                           (``session_vol<vid>.png``, :mod:`xmipp_qc.plots.session`);

and, when the particles have micrographs (:mod:`.compare_reprojections_ctf`):

``micrographs_vol<vid>.json`` the per-micrograph table (counts, median cost, CTF
                           check with each alternative's mean correlation),
                           also as ``micrographs_vol<vid>.star``;
``ctf_verdicts_vol<vid>.json`` the frozen CTF verdict of each decided micrograph;

and how one image's saved scores become the attributes of its output item.
"""

import math
import os

import numpy as np
import pwem.objects as emobj

from xmipp_qc.convert import xmippToTransform
from xmipp_qc.formats.json_files import read_json

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
             "angleChange": "angleChange", "shiftChange": "shiftChange",
             "angleSE": "angleSE", "anglePinned": "anglePinned", "moveKept": "moveKept",
             "resLowPower": "resLowPower", "offCentre": "offCentre"}
#: Prefix of the scores holding each component's part of the outlier score
#: (:func:`xmipp_qc.core.reference_statistics.part_name`), stored as ``_qc_`` + key.
PART_PREFIX = "outlierPart"


def outputName(volId):
    """Name of the output of candidate map ``volId`` (Xmipp's)."""
    return f"{OUTPUT_PREFIX}{volId}"


def readOutputsJson(extraPath):
    """``{volumeId (int): outputName}`` written by the protocol, {} if absent."""
    names = read_json(os.path.join(extraPath, "outputs.json"), default={})
    return {int(k): v for k, v in names.items()}


def readScores(extraPath, volId):
    """Saved set statistics of one map (:func:`xmipp_qc.core.pipeline.finalize`)."""
    with np.load(os.path.join(extraPath, f"vol{volId}", "scores.npz")) as z:
        return {k: z[k] for k in z.files}


def readRanking(extraPath):
    """The saved ranking table (dict) or None."""
    return read_json(os.path.join(extraPath, "ranking.json"))


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


class ScoreRows:
    """The saved scores of one map as rows, ``{input id: row}``, each row built when asked.

    A mapping of input id to the dict :func:`decorateItem` takes (every 1-D
    score, ``angles``, ``shifts`` in input px, ``stack(name)`` and ``index``
    of the image's saved images, or ``stack`` None when they were not saved).
    Only the id index is kept, so a million images cost a few arrays, not a
    million dicts.

    Parameters
    ----------
    scores : dict of str to ndarray
        :func:`readScores` of one map (or of one streaming chunk).
    shifts : ndarray, shape (n, 2)
        The refined shifts in px of the INPUT images.
    location : callable
        ``location(position) -> (stack(name) -> path, 1-based index)`` or None.
    """

    def __init__(self, scores, shifts, location):
        self._scores = {k: v for k, v in scores.items() if v.ndim == 1}
        self._angles, self._shifts, self._location = scores["angles"], shifts, location
        ids = np.asarray(scores["ids"], dtype=np.int64)
        self._order = np.argsort(ids, kind="stable")
        self._ids = ids[self._order]

    def _position(self, itemId):
        i = int(np.searchsorted(self._ids, int(itemId)))
        return int(self._order[i]) if i < len(self._ids) and self._ids[i] == itemId else None

    def get(self, itemId, default=None):
        """The row of input id ``itemId`` (``default`` when it has none)."""
        i = self._position(itemId)
        if i is None:
            return default
        row = {k: v[i] for k, v in self._scores.items()}
        where = self._location(i)
        row.update(angles=self._angles[i], shifts=self._shifts[i],
                   stack=None if where is None else where[0],
                   index=None if where is None else where[1])
        return row

    def __getitem__(self, itemId):
        row = self.get(itemId)
        if row is None:
            raise KeyError(itemId)
        return row

    def __contains__(self, itemId):
        return self._position(itemId) is not None

    def __iter__(self):
        return iter(self._ids[np.argsort(self._order, kind="stable")].tolist())

    def __len__(self):
        return len(self._ids)


def decorateItem(item, row, withResiduals=False):
    """Attach the saved scores of one image to its output item (Xmipp and ``_qc_``
    attributes, image pointers into the chunk stacks, the refined alignment)."""
    if row is None:  # not in the working set: cannot happen for enabled items
        item._appendItem = False
        return
    for attr, key in XMIPP_SCORES.items():
        if key in row:
            setattr(item, f"_xmipp_{attr}", emobj.Float(_float(row[key])))
    item._xmipp_continuousX = emobj.Float(_float(row["shifts"][0]))
    item._xmipp_continuousY = emobj.Float(_float(row["shifts"][1]))
    for attr, key in QC_SCORES.items():
        if key in row:
            setattr(item, f"_qc_{attr}", emobj.Float(_float(row[key])))
    for key in row:
        if key.startswith(PART_PREFIX):
            setattr(item, f"_qc_{key}", emobj.Float(_float(row[key])))
    item._qc_isOutlier = emobj.Boolean(bool(row["isOutlier"]))
    item._qc_matched = emobj.Boolean(bool(row["matched"]))
    item._qc_reason = emobj.String(str(row["reason"]))  # category of core.reasons.REASONS
    item._qc_reasonValue = emobj.Float(_float(row.get("reasonValue", np.nan)))
    _setImagePointers(item, row, withResiduals)
    if np.all(np.isfinite(row["angles"])) and np.all(np.isfinite(row["shifts"])):
        item.setTransform(xmippToTransform(row["angles"], row["shifts"]))
    elif not item.hasTransform():
        item.setTransform(emobj.Transform(matrix=np.eye(4)))


def _setImagePointers(item, row, withResiduals):
    """Image names as Xmipp stores them: String ``"<index>@<stack>"`` attributes, which
    Scipion's table viewer opens per row (an extra Image attribute shows its stack's
    first image in every row there)."""
    names = {"_xmipp_image": "aligned", "_xmipp_imageRef": "reprojections"}
    if withResiduals:
        names.update(_xmipp_imageResidual="residuals", _xmipp_imageCovariance="covariances")
    for attr, stack in names.items():  # "" where not saved (every item has the columns)
        path = None if row["stack"] is None else row["stack"](stack)
        setattr(item, attr, emobj.String("" if path is None else f"{row['index']}@{path}"))


def imageLocation(value):
    """``(index, path)`` of an image attribute: an ``"<index>@<path>"`` String or an Image."""
    if value is None:
        return None
    if hasattr(value, "getLocation"):
        return value.getLocation()
    text = value.get() if hasattr(value, "get") else value
    if not text:
        return None
    index, sep, path = str(text).partition("@")
    return (int(index), path) if sep else (0, str(text))


def decorateClass(cls, row, withResiduals=False):
    """Decorate a 2D class: its representative, and the class with the same attributes."""
    rep = cls.getRepresentative()
    decorateItem(rep, row, withResiduals)
    for attr in [a for a in vars(rep) if a.startswith(("_xmipp_", "_qc_"))]:
        setattr(cls, attr, getattr(rep, attr))
    cls.setRepresentative(rep)


def _float(v):
    v = float(v)
    return v if math.isfinite(v) else None
