"""The training-order options every order-using command shares.

``--preset pythia`` or ``--seed S --seq-length L --num-samples N [--name NAME]``, plus ``--batch-size``,
``--train-steps`` (explicit options override the preset's fields) and ``--preshuffled``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from pile_index import Corpus
from pile_index.format import TokenStore
from pile_index.order import MAX_EPOCHS, PRESETS, Order, OrderConfig, open_order, order_config


def add_order_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("training order")
    g.add_argument("--preset", choices=sorted(PRESETS), help="named order: pythia = seed 1234, seq-length 2048, "
                   "num-samples 147,164,160, name train_0, batch 1024, 143,000 steps")
    g.add_argument("--seed", type=int, help="GPT-NeoX seed of the order")
    g.add_argument("--seq-length", type=int, help="sequence length L (rows have L + 1 tokens)")
    g.add_argument("--num-samples", type=int, help="num_samples GPT-NeoX was asked for (in the cache file names)")
    g.add_argument("--name", help="dataset name in the cache file names (default train_0)")
    g.add_argument("--batch-size", type=int, help="rows per step (default 1024)")
    g.add_argument("--train-steps", type=int, help="steps counted as trained (default num_samples // batch size)")
    g.add_argument("--preshuffled", action="store_true",
                   help="PREFIX is a preshuffled store (item k = sample k) instead of raw documents + index maps")


def order_config_from_args(args: argparse.Namespace, n_items: int | None = None) -> OrderConfig:
    """The :class:`OrderConfig` the options name. A preshuffled store only needs --seq-length (or a preset):
    its row count stands in for --num-samples when ``n_items`` is given."""
    return order_config(args.preset, seed=args.seed, seq_length=args.seq_length, num_samples=args.num_samples,
                        name=args.name, batch_size=args.batch_size, train_steps=args.train_steps,
                        preshuffled_items=n_items if getattr(args, "preshuffled", False) else None)


def open_order_from_args(args: argparse.Namespace, prefixes: str | Sequence[str], build: bool = False,
                         progress: bool = False, max_epochs: int | None = MAX_EPOCHS) -> Order:
    """Open PREFIX (one or several parts) in the training order the options name."""
    store = TokenStore(prefixes)
    cfg = order_config_from_args(args, n_items=len(store))
    return open_order(store, cfg, preshuffled=bool(getattr(args, "preshuffled", False)), build=build,
                      progress=progress, max_epochs=max_epochs)


def corpus_from_args(args: argparse.Namespace, prefixes: str | Sequence[str]) -> Corpus:
    """A :class:`Corpus` over PREFIX (one or several parts) whose order the options name; the options are
    read when the order is first used (a preshuffled store's row count stands in for --num-samples)."""
    return Corpus.open(prefixes, order=lambda store: order_config_from_args(args, n_items=len(store)),
                       preshuffled=bool(getattr(args, "preshuffled", False)))
