"""The ``xmipp-qc`` command: the plugin's jobs on plain STAR/MRC/log files.

Each sub-command lives in its own module under :mod:`xmipp_qc.commands` and
exposes ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from typing import Optional, Sequence

from xmipp_qc import __version__
from xmipp_qc.native_threads import limit_blas_threads

#: Sub-command modules, in the order ``--help`` lists them.
COMMANDS = ("demo", "movie_consensus", "compare_reprojections")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xmipp-qc",
        description="Cryo-EM quality control: reprojection residuals and "
        "movie-alignment consensus.",
    )
    parser.add_argument("--version", action="version", version=f"xmipp-qc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        module = importlib.import_module(f"xmipp_qc.commands.{name}")
        cmd = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(run=module.run)
    return parser


#: Exit code of a run stopped by bad input or a failed write (argparse uses 2 for usage).
EXIT_BAD_INPUT = 2


def report_error(command: str, exc: BaseException) -> int:
    """Print one line ``xmipp-qc COMMAND: error: MESSAGE`` on stderr; return the exit code.

    The message of a :class:`ValueError` or :class:`OSError` names the culprit
    (file, row, option); anything else is a bug, reported by its type and
    message without a traceback (``XMIPP_QC_TRACEBACK=1`` prints it).
    """
    if isinstance(exc, OSError) and exc.filename:
        text = f"{exc.filename}: {exc.strerror or exc}"
    elif isinstance(exc, (ValueError, OSError)):
        text = str(exc)
    else:
        text = f"internal error ({type(exc).__name__}: {exc}); please report it"
    if os.environ.get("XMIPP_QC_TRACEBACK"):
        traceback.print_exception(exc)
    print(f"xmipp-qc {command}: error: {text}", file=sys.stderr)
    return EXIT_BAD_INPUT


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    limit_blas_threads()
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # one line on stderr, never a traceback
        return report_error(args.command, exc)


if __name__ == "__main__":
    sys.exit(main())
