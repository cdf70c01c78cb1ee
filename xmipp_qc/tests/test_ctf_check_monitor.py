"""CtfCheckMonitor without a project: a verdict, once made, never changes.

The monitor is fed as a streaming run feeds it (the particles output so far,
chunk by chunk); the chunks' correlations are given directly instead of being
read from chunk results. A micrograph decided suspect on its first 20
particles stays suspect when 20 more that say otherwise arrive; one still short
of 20 particles is undecided, then decided once it has them.
"""

import json
import types

import numpy as np

from xmipp_qc.core.ctf_check import ALTERNATIVES, GIVEN, MIN_PARTICLES
from xmipp_qc.protocols.compare_reprojections_ctf import CtfCheckMonitor, readMicrographTable

K = len(ALTERNATIVES)


class _Param:
    def __init__(self, value):
        self.value = value

    def get(self):
        return self.value


def _prot(folder):
    """The few protocol members the monitor uses (no micrographs given: no output)."""
    return types.SimpleNamespace(_getExtraPath=lambda *names: str(folder.joinpath(*names)),
                                 ignoreCTF=_Param(False), inputMicrographs=_Param(None))


def _chunk(n, given, best, rng):
    """Correlations of n particles: the given CTF at ``given``, defocus x0.5 at ``best``."""
    corr = np.full((n, K), 0.1, dtype=np.float32)
    corr[:, GIVEN] = given + rng.normal(0, 0.005, n)
    corr[:, GIVEN - 3] = best + rng.normal(0, 0.005, n)  # x0.5
    return corr


def _book(monitor, chunks, rng):
    """A stream book with ``chunks`` = [(mic ids, given, best)] output so far."""
    book = types.SimpleNamespace(flags={1: {}}, micIds={}, closed=False)
    start = 0
    for k, (mics, given, best) in enumerate(chunks):
        ids = np.arange(start, start + len(mics))
        start += len(mics)
        corr = _chunk(len(mics), given, best, rng)
        monitor._corr[(1, k)] = (ids, corr)
        book.flags[1][k] = (ids, np.zeros(len(ids), bool), corr[:, GIVEN].astype(float))
        book.micIds[k] = np.asarray(mics, np.int64)
    return book


def test_a_verdict_once_made_never_changes(tmp_path):
    rng = np.random.default_rng(0)
    monitor = CtfCheckMonitor(_prot(tmp_path))
    assert MIN_PARTICLES == 20
    first = [([1] * 20 + [2] * 12, 0.2, 0.4)]  # mic 1 decided (suspect), mic 2 not yet
    monitor.streamUpdate(_book(monitor, first, rng), [1], final=False)
    table = readMicrographTable(str(tmp_path), 1)
    assert table["mic_ids"] == [1, 2]
    assert table["ctf_suspect"] == [1, 0] and table["ctf_decided"] == [1, 0]
    with open(tmp_path / "ctf_verdicts_vol1.json") as fh:
        made = json.load(fh)
    assert list(made) == ["1"] and made["1"]["ctf_suspect"] == 1
    # 20 more particles of mic 1 where the given CTF is best, 8 more of mic 2 (also fine)
    later = first + [([1] * 20 + [2] * 8, 0.6, 0.2)]
    monitor.streamUpdate(_book(monitor, later, rng), [1], final=True)
    table = readMicrographTable(str(tmp_path), 1)
    assert table["particles"] == [40, 20]
    assert table["ctf_suspect"][0] == 1, "mic 1 keeps the verdict of its first 20 particles"
    assert table["defocus_scale"][0] == made["1"]["defocus_scale"]
    assert table["ctf_decided"] == [1, 1]
    with open(tmp_path / "ctf_verdicts_vol1.json") as fh:
        final = json.load(fh)
    assert final["1"] == made["1"] and sorted(final) == ["1", "2"]
    star = (tmp_path / "micrographs_vol1.star").read_text()
    assert '"micrograph 1" 40 0 ' in star and '"micrograph 2" 20 0 ' in star
