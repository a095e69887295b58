"""The ``pile-index`` command: assembles one argparse sub-command group per module.

Each module in ``COMMAND_MODULES`` has ``register(subparsers)``, which adds its commands and sets
``func(args) -> int`` on each. Errors of the ``PileIndexError`` family print one line and exit 2; a field
the core names in backticks (`train_steps`) prints as the command's flag (``--train-steps``). Every
``type=int`` / ``type=float`` option parses strictly (ASCII digits; finite).

Output channels: answers go to stdout; log lines and progress bars share stderr, log lines printed above a
running bar (``tqdm.write``). ``-q/--quiet`` silences both but warnings and errors. A closed stdout
(``pile-index ... --json | head``) ends the command quietly with status 141, as a SIGPIPE would.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import math
import os
import re
import sys

from pile_index.errors import PileIndexError
from pile_index.progress import set_progress

COMMAND_MODULES = [
    "cli.ingest_cmds",
    "cli.store_cmds",
    "cli.order_cmds",
    "cli.ngram_cmds",
    "cli.dataset_cmds",
    "cli.demo_cmds",
    "cli.score_cmds",
    "cli.verify_cmds",
    "cli.export_cmds",
    "cli.fetch_cmds",
]

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a tool whose reader went away


def ascii_int(text: str) -> int:
    """An integer option: ASCII digits with an optional leading '-' (``int()`` would also take ``1_000``,
    ``+1``, `` 1`` and Arabic-Indic or full-width digits)."""
    if not re.fullmatch(r"-?[0-9]{1,40}", text):
        raise argparse.ArgumentTypeError(f"expected an integer in ASCII digits, got {text!r}")
    return int(text)


def ascii_float(text: str) -> float:
    """A number option: ASCII decimal or exponent notation, finite (``float()`` would also take ``1_0``,
    `` 1``, ``nan``, ``inf`` and non-ASCII digits)."""
    if not re.fullmatch(r"-?([0-9]{1,40}(\.[0-9]{0,40})?|\.[0-9]{1,40})([eE][-+]?[0-9]{1,3})?", text):
        raise argparse.ArgumentTypeError(f"expected a number like 3, 0.5 or 1e-3, got {text!r}")
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


STRICT_TYPES = {int: ascii_int, float: ascii_float}

FIELD_FLAGS = {"indices_file": "--indices"}
"""Core field names whose flag is not the one of the same ``dest`` (``indices_file`` is ``--indices``)."""

_FIELD = re.compile(r"`([a-z][a-z0-9_]*)`")


def _add_field_flags(parser: argparse.ArgumentParser) -> None:
    """Each command records its flags by field name (``dest``), so that an error naming a field in backticks
    (the core's `train_steps`) prints as the command's flag (``--train-steps``)."""
    flags = {a.dest: next((o for o in a.option_strings if o.startswith("--")), a.option_strings[0])
             for a in parser._actions if a.option_strings and a.dest != "help"}
    flags.update({k: v for k, v in FIELD_FLAGS.items() if v in parser._option_string_actions})
    parser.set_defaults(_field_flags=flags)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _add_field_flags(child)


def field_message(message: str, flags: dict[str, str]) -> str:
    """``message`` with each `field` the command has a flag for written as that flag."""
    return _FIELD.sub(lambda m: flags.get(m.group(1), m.group(0)), message)


def _strict(parser: argparse.ArgumentParser) -> None:
    """Every ``type=int`` / ``type=float`` option of every command parses strictly (one rule, set here)."""
    for action in parser._actions:
        if action.type in STRICT_TYPES:
            action.type = STRICT_TYPES[action.type]
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _strict(child)


def _add_global_flags(parser: argparse.ArgumentParser, top: bool) -> None:
    """``-v`` and ``-q`` on the top parser and on every sub-command, so they may come before or after it.
    Below the top, the default is SUPPRESS so that a sub-command does not reset a flag given before it."""
    default = {} if top else {"default": argparse.SUPPRESS}
    for flags, help_ in ((("-v", "--verbose"), "log debug messages"),
                         (("-q", "--quiet"), "no progress bars and no INFO log lines (warnings and errors still print)")):
        free = [f for f in flags if f not in parser._option_string_actions]
        if flags[-1] in free:
            parser.add_argument(*free, action="store_true", help=help_, **default)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _add_global_flags(child, top=False)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pile-index",
        description="Exact dataset and provenance service for the Pythia suite.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    _add_global_flags(parser, top=True)
    _strict(parser)
    _add_field_flags(parser)
    return parser


class BarAwareHandler(logging.StreamHandler):
    """Writes log records to stderr through ``tqdm.write``, which clears a running bar, prints the line and
    redraws the bar: one channel, no line cut through by a bar. It writes to the ``sys.stderr`` of the moment.
    (A StreamHandler on stderr, so tqdm's own ``logging_redirect_tqdm`` recognises and stands in for it.)"""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging's contract: a failing handler reports through handleError, never raises
            self.handleError(record)


def configure_output(verbose: bool, quiet: bool) -> None:
    """The log level and the one stderr handler for the whole process; progress bars off with ``quiet``."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, BarAwareHandler):  # main() called again in one process: one handler, not two
            root.removeHandler(h)
    handler = BarAwareHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    set_progress(not quiet)


def _quiet_stdout() -> None:
    """After EPIPE: point stdout at /dev/null so the interpreter's final flush cannot raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout has no file descriptor (captured in tests): nothing left to flush
        pass


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_output(args.verbose, args.quiet)
    try:
        rc = int(args.func(args) or 0)
        sys.stdout.flush()  # inside the try: a reader that went away shows up here, not at exit
        return rc
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_BROKEN_PIPE
    except PileIndexError as e:
        message = re.sub(r"\s*\n\s*", " ", str(e).strip())  # one line, even when it quotes DuckDB's multi-line text
        message = field_message(message, getattr(args, "_field_flags", {}))
        print(f"pile-index {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
