"""Options shared by several commands (not a command itself)."""

from __future__ import annotations

import argparse


def add_cluster_argument(parser: argparse.ArgumentParser) -> None:
    """``--cluster``: where the command's heavy work runs (overrides ``[compute] cluster``)."""
    parser.add_argument(
        "--cluster",
        metavar="SPEC",
        help='where heavy work runs: "none", "local[:N]" (a Dask LocalCluster of N worker processes) '
        "or a scheduler address such as tcp://host:8786 (default: [compute] cluster)",
    )
