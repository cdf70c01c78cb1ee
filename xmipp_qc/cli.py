"""The ``xmipp-qc`` command: the plugin's jobs on plain STAR/MRC/log files.

Each sub-command lives in its own module under :mod:`xmipp_qc.commands` and
exposes ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    limit_blas_threads()
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
