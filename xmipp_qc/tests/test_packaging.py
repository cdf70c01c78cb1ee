"""The package as Scipion plugins look: metadata, icon, protocol status, citations."""

from __future__ import annotations

import re
import struct
from importlib.metadata import metadata
from pathlib import Path

import pytest
import pyworkflow as pw
from pyworkflow import Config

Config.setDomain("pwem")

import xmipp_qc  # noqa: E402
from xmipp_qc.core.symmetry import VALID_SYMMETRY_FORMS, parse_symmetry  # noqa: E402
from xmipp_qc.protocols import (  # noqa: E402
    XmippQcProtCompareReprojections,
    XmippQcProtConsensusMovieAlignment,
)

PUBLIC = (XmippQcProtCompareReprojections, XmippQcProtConsensusMovieAlignment)


def test_metadata_has_what_the_scipion_plugin_manager_reads():
    m = metadata("scipion-em-xmipp-qc")
    assert m["Version"] == xmipp_qc.__version__
    keywords = {k.strip() for k in ",".join(m.get_all("Keywords")).split(",")}
    assert {"scipion", "cryoem", "scipion-3.0"} <= keywords
    assert m["License-Expression"] == "GPL-3.0-or-later"
    classifiers = m.get_all("Classifier")
    assert "Development Status :: 4 - Beta" in classifiers
    assert "Topic :: Scientific/Engineering :: Bio-Informatics" in classifiers
    urls = dict(u.split(", ", 1) for u in m.get_all("Project-URL"))
    assert urls["Homepage"] == xmipp_qc.Plugin._url
    assert set(urls) >= {"Issues", "Changelog"}


def test_plugin_icon_is_a_small_png_found_by_the_protocol_form():
    Config.getDomain().getProtocols()  # registers each protocol with its plugin package
    path = Path(XmippQcProtCompareReprojections.getPluginLogoPath())
    assert path.name == xmipp_qc._logo and path.parent == Path(xmipp_qc.__file__).parent
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", head[16:24]) == (64, 64)


def test_plugin_defines_no_unused_variables():
    plugin = xmipp_qc.Plugin
    plugin._vars = {}
    plugin._defineVariables()
    assert plugin._vars == {}


def test_public_protocols_have_status_and_citations_in_the_bibtex():
    from pyworkflow.utils import parseBibTex

    import xmipp_qc.bibtex

    keys = set(parseBibTex(xmipp_qc.bibtex.__doc__))
    cited = set(xmipp_qc._references)
    for cls in PUBLIC:
        assert cls._devStatus == pw.BETA
        prot = cls()
        assert prot._citations() and set(prot._citations()) <= keys, cls
        cited |= set(prot._citations())
    assert "Kabsch1976" in XmippQcProtConsensusMovieAlignment()._citations()
    assert keys == cited, f"never cited: {keys - cited}"


def _help(cls, name):
    from pyworkflow.protocol import Form

    prot = cls()
    form = Form(prot)
    prot._defineParams(form)
    return form.getParam(name).help.get()


def test_symmetry_help_lists_exactly_what_the_core_accepts():
    text = _help(XmippQcProtCompareReprojections, "symmetryGroup")
    assert VALID_SYMMETRY_FORMS in text and "i5" not in text
    listed = [item.split()[0] for item in VALID_SYMMETRY_FORMS.split(";")[0].split(",")]
    assert len(listed) == 25
    for name in listed:
        parse_symmetry(re.sub(r"^([cds])n", r"\g<1>4", name))  # every listed form, n = 4
    for bad in ("i5", "i5h", "c0", "s3", "x2"):
        with pytest.raises(ValueError):
            parse_symmetry(bad)
