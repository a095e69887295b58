"""The training-order options every order-using command shares, generated from the fields of
:class:`~pile_index.order.OrderOptions` (one flag per field: ``seq_length`` -> ``--seq-length``).

``--preset pythia`` or ``--seed S --seq-length L --num-samples N [--name NAME]``, plus ``--batch-size``,
``--train-steps`` (explicit options override the preset's fields) and ``--preshuffled``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import fields

from pile_index import Corpus
from pile_index.format import TokenStore
from pile_index.order import MAX_EPOCHS, Order, OrderConfig, OrderOptions, open_order

_TYPES = {"int | None": int, "str | None": str}


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


def open_order_from_args(args: argparse.Namespace, prefixes: str | Sequence[str], build: bool = False,
                         progress: bool = False, max_epochs: int | None = MAX_EPOCHS) -> Order:
    """Open PREFIX (one or several parts) in the training order the options name."""
    opts = order_options_from_args(args)
    store = TokenStore(prefixes)
    return open_order(store, opts.config(len(store)), preshuffled=opts.preshuffled, build=build,
                      progress=progress, max_epochs=max_epochs)


def corpus_from_args(args: argparse.Namespace, prefixes: str | Sequence[str]) -> Corpus:
    """A :class:`Corpus` over PREFIX (one or several parts) whose order the options name; the options are
    read when the order is first used (a preshuffled store's row count stands in for --num-samples)."""
    opts = order_options_from_args(args)
    return Corpus.open(prefixes, order=opts.spec(), preshuffled=opts.preshuffled)
