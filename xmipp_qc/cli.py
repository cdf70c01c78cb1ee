"""The ``xmipp-qc`` command: the plugin's jobs on plain STAR/MRC/log files.

Each sub-command lives in its own module under :mod:`xmipp_qc.commands` and
exposes ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.
Messages (progress, warnings, errors, the closing summary) go to stderr through
:mod:`logging` (logger ``xmipp_qc``); ``--quiet`` and ``--verbose`` of every
sub-command set their level. A run imports neither Scipion nor a GUI toolkit.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from typing import Optional, Sequence

from xmipp_qc import __version__
from xmipp_qc.native_threads import limit_blas_threads

#: Sub-command modules, in the order ``--help`` lists them.
COMMANDS = ("demo", "movie_consensus", "compare_reprojections")


# --- logging: one parent parser for every sub-command, one setup function --------------


def logging_options() -> argparse.ArgumentParser:
    """Parent parser with ``--quiet`` / ``--verbose`` (shared by every sub-command)."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("messages (to stderr)")
    level = group.add_mutually_exclusive_group()
    level.add_argument("-q", "--quiet", dest="log_level", action="store_const",
                       const=logging.WARNING, default=logging.INFO,
                       help="Print only warnings and errors.")
    level.add_argument("-v", "--verbose", dest="log_level", action="store_const",
                       const=logging.DEBUG, help="Also print progress details.")
    return parent


class _Formatter(logging.Formatter):
    """``message`` for information, ``xmipp-qc: warning: message`` above it."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"xmipp-qc: {record.levelname.lower()}: {text}"
        return text


def setup_logging(level: int = logging.INFO) -> logging.Logger:
    """Send the ``xmipp_qc`` logger to the current stderr at ``level`` (idempotent)."""
    logger = logging.getLogger("xmipp_qc")
    for handler in [h for h in logger.handlers if getattr(h, "_xmipp_qc_cli", False)]:
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._xmipp_qc_cli = True
    handler.setFormatter(_Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return logger


# --- parser and entry point -------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xmipp-qc",
        description="Cryo-EM quality control: reprojection residuals and "
        "movie-alignment consensus.",
    )
    parser.add_argument("--version", action="version", version=f"xmipp-qc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    parent = logging_options()
    for name in COMMANDS:
        module = importlib.import_module(f"xmipp_qc.commands.{name}")
        cmd = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP,
                             parents=[parent], epilog=getattr(module, "EPILOG", None),
                             formatter_class=argparse.RawDescriptionHelpFormatter)
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
    setup_logging(args.log_level)
    limit_blas_threads()
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # one line on stderr, never a traceback
        return report_error(args.command, exc)


if __name__ == "__main__":
    sys.exit(main())
