"""``xmipp-qc demo``: run the plugin's protocols on synthetic data in a Scipion project."""

from __future__ import annotations

import argparse
import os

NAME = "demo"
HELP = "Run the protocols on a synthetic dataset through a real Scipion project."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        default="xmipp-qc-demo",
        metavar="DIR",
        help="Folder for the Scipion home, user data and project (default: %(default)s).",
    )
    parser.add_argument("--seed", type=int, default=0, metavar="N",
                        help="Random seed of the synthetic data (default %(default)s).")


def run(args: argparse.Namespace) -> int:
    from xmipp_qc.demo import run_demo

    return run_demo(os.path.abspath(args.out), seed=args.seed)
