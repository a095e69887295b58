"""The training-order options every order-using command shares, generated from the fields of
:class:`~pile_index.order.OrderOptions` (one flag per field: ``seq_length`` -> ``--seq-length``).

``--preset pythia`` or ``--seed S --seq-length L --num-samples N [--name NAME]``, plus ``--batch-size``,
``--train-steps`` (explicit options override the preset's fields) and ``--preshuffled``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from typing import Any

from pile_index import Corpus
from pile_index.order import OrderConfig, OrderOptions
from pile_index.settings import SETTINGS

from .output import add_json_flag

_TYPES = {"int | None": int, "str | None": str}

PREFIX_HELP = "PREFIX of PREFIX.bin/.idx (several = one store, e.g. shards in order)"


def flag_of(name: str) -> str:
    """The CLI flag of a field or parameter: ``seq_length`` -> ``--seq-length``."""
    return "--" + name.replace("_", "-")


def add_order_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("training order")
    for f in fields(OrderOptions):
        meta = f.metadata
        if f.type == "bool":
            g.add_argument(flag_of(f.name), action="store_true", help=meta["help"])
        else:
            g.add_argument(flag_of(f.name), type=_TYPES[f.type], choices=meta.get("choices"), help=meta["help"])


def order_options_from_args(args: argparse.Namespace) -> OrderOptions:
    """The :class:`OrderOptions` the flags name."""
    return OrderOptions(**{f.name: getattr(args, f.name, f.default) for f in fields(OrderOptions)})


def order_argv(opts: OrderOptions) -> list[str]:
    """The flags that give ``opts`` back (the inverse of :func:`order_options_from_args`), in field order."""
    argv: list[str] = []
    for f in fields(OrderOptions):
        v = getattr(opts, f.name)
        if v is True:
            argv.append(flag_of(f.name))
        elif v is not None and v is not False:
            argv += [flag_of(f.name), str(v)]
    return argv


def order_config_from_args(args: argparse.Namespace, n_items: int | None = None) -> OrderConfig:
    """The :class:`OrderConfig` the options name. A preshuffled store only needs --seq-length (or a preset):
    its row count stands in for --num-samples when ``n_items`` is given."""
    return order_options_from_args(args).config(n_items)


@contextmanager
def order_command(sub: argparse._SubParsersAction, name: str, func: Callable[[argparse.Namespace], int], help: str,
                  prefix_help: str = PREFIX_HELP, **kwargs: Any) -> Iterator[argparse.ArgumentParser]:
    """The sub-command ``name`` of a command that reads a store in training order: PREFIX (one or several
    parts), the ``with`` block's own options, then the order options and ``--json``; ``func`` runs it."""
    p = sub.add_parser(name, help=help, **kwargs)
    p.add_argument("prefix", nargs="+", help=prefix_help)
    yield p
    add_order_options(p)
    add_json_flag(p)
    p.set_defaults(func=func)


def corpus_from_args(args: argparse.Namespace, prefixes: str | Sequence[str] | None = None, *, order: bool = True,
                     **limits: int | float | None) -> Corpus:
    """A :class:`Corpus` over PREFIX (``prefixes``, default the command's ``prefix``) whose order the options
    name (read when the order is first used; a preshuffled store's row count stands in for --num-samples;
    ``order=False``: none), with the tokenizer of ``--tokenizer`` (else PREFIX.tokenizer.json) and the limits
    of the command's setting flags (``--max-occurrences`` is max_occurrences) and ``limits`` (None: no bound)."""
    opts = order_options_from_args(args)
    given = {s.name: getattr(args, s.name) for s in SETTINGS if getattr(args, s.name, None) is not None}
    return Corpus.open(args.prefix if prefixes is None else prefixes, order=opts.spec() if order else None,
                       tokenizer=getattr(args, "tokenizer", None) or None, preshuffled=opts.preshuffled,
                       limits={**given, **limits})
