"""``xmipp-qc`` help texts and messages: metavars, units, defaults, stderr, --quiet/--verbose."""

from __future__ import annotations

import argparse
import re

import pytest

from xmipp_qc.cli import build_parser, main


def _subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


@pytest.mark.parametrize("command", ["demo", "movie-consensus", "compare-reprojections"])
def test_every_option_has_metavar_help_and_default(command):
    sub = _subparsers()[command]
    for action in sub._actions:
        if isinstance(action, argparse._HelpAction) or not action.option_strings:
            continue
        name = action.option_strings[-1]
        assert action.help, name
        if action.nargs == 0:  # a flag
            continue
        assert action.metavar, f"{command} {name} has no metavar"
        if action.default is not None:
            text = sub._get_formatter()._expand_help(action)
            assert re.search(rf"default\b[^)]*{re.escape(str(action.default))}", text), \
                f"{command} {name}: {text}"
    options = {o for a in sub._actions for o in a.option_strings}
    assert {"-q", "--quiet", "-v", "--verbose"} <= options


def test_relion_equivalents_and_units_are_documented():
    help_text = _subparsers()["compare-reprojections"].format_help()
    for relion in ("--i)", "--ref)", "--sym)", "--ctf)", "--offset_range)"):
        assert relion in help_text, relion
    movie = _subparsers()["movie-consensus"].format_help()
    for unit in ("Å/px", "e/Å²", "px", "degrees", "kV", "mm"):
        assert unit in movie, unit


def _csv(path, slope):
    rows = [f"{f + 1},{f * 1.0},{f * slope}" for f in range(12)]
    path.write_text("\n".join(rows) + "\n")


@pytest.fixture()
def movies(tmp_path):
    for run, slope in (("ref", 0.5), ("sec", 0.5)):
        (tmp_path / run).mkdir()
        _csv(tmp_path / run / "m1.csv", slope)
    return tmp_path


def _run(root, *extra):
    return main(["movie-consensus", "--reference", str(root / "ref" / "*.csv"), "--secondary",
                 str(root / "sec" / "*.csv"), "--out", str(root / "out"), *extra])


def test_messages_go_to_stderr_at_the_chosen_level(movies, capsys):
    assert _run(movies) == 0
    out, err = capsys.readouterr()
    assert out == "" and "1 movies: 1 accepted" in err and "m1: accepted" not in err
    assert _run(movies, "--verbose") == 0
    out, err = capsys.readouterr()
    assert out == "" and "m1: accepted (accepted)" in err and "1 movies" in err
    assert _run(movies, "--quiet", "--pixel-size", "1.0") == 0
    assert capsys.readouterr() == ("", "")


def test_errors_and_warnings_are_shown_when_quiet(movies, capsys):
    code = main(["movie-consensus", "--reference", str(movies / "none*.csv"), "--secondary",
                 str(movies / "none*.csv"), "--out", str(movies / "o"), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith("xmipp-qc movie-consensus: error: no file matches")
    assert _run(movies, "--quiet") == 0  # no pixel size: the STARs lack optics, said once
    err = capsys.readouterr().err
    assert err.count("xmipp-qc: warning:") == 1 and "--pixel-size" in err


def test_a_bad_micrograph_name_template_is_an_error(movies, capsys):
    assert _run(movies, "--micrograph-name", "{movie}.mrc") == 2
    assert "only {folder} and {name}" in capsys.readouterr().err
    assert not (movies / "out").exists()
