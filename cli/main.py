"""The ``pile-index`` command: assembles one argparse sub-command group per module.

Each module in ``COMMAND_MODULES`` has ``register(subparsers)``, which adds its commands and sets
``func(args) -> int`` on each. Errors of the ``PileIndexError`` family print one line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from pile_index.errors import PileIndexError

COMMAND_MODULES = [
    "cli.ingest_cmds",
    "cli.store_cmds",
    "cli.order_cmds",
    "cli.ngram_cmds",
    "cli.dataset_cmds",
    "cli.demo_cmds",
    "cli.score_cmds",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pile-index",
        description="Exact dataset and provenance service for the Pythia suite.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except PileIndexError as e:
        print(f"pile-index {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
