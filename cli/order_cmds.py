"""``pile-index order build|stats|verify``, ``sample``, ``batch`` and ``doc-steps``: the training order.

All take the shared order options (``cli/order_options.py``); see ``pile_index/order/index_maps.py`` and
``pile_index/order/training.py`` for the algorithm and the exact semantics.
"""

from __future__ import annotations

import argparse
import logging
import time

from pile_index.atomic import save_npy
from pile_index.errors import ConfigError, QueryError
from pile_index.order import (MAX_EPOCHS, TrainingOrder, build_plan, describe_batch, describe_sample,
                              index_map_paths, verify_orders)
from pile_index.settings import default
from pile_index.sql import documents_for, tokenizer_for

from .order_options import add_order_options, open_order_from_args
from .output import add_json_flag, emit

log = logging.getLogger(__name__)

PREFIX_HELP = "PREFIX of PREFIX.bin/.idx (several = one store, e.g. shards in order)"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("order", help="build, inspect and verify a GPT-NeoX training order")
    osub = p.add_subparsers(dest="order_command", metavar="ORDER_COMMAND", required=True)

    b = osub.add_parser("build", help="build (or reuse) the index maps and their inverse files beside PREFIX")
    b.add_argument("prefix", nargs="+", help=PREFIX_HELP)
    b.add_argument("--max-epochs", type=int, default=MAX_EPOCHS,
                   help=f"refuse to build an order of more epochs than this (default {MAX_EPOCHS}); the epochs "
                        "and bytes are computed before anything is written")
    add_order_options(b)
    add_json_flag(b)
    b.set_defaults(func=cmd_order_build)

    s = osub.add_parser("stats", help="epochs first, then samples, documents seen 0/1/2+ times, first repeated "
                                      "document")
    s.add_argument("prefix", nargs="+", help=PREFIX_HELP)
    add_order_options(s)
    add_json_flag(s)
    s.set_defaults(func=cmd_order_stats)

    v = osub.add_parser("verify", help="compare a preshuffled store with raw + index maps over a row range")
    v.add_argument("prefix", nargs="+", help="PREFIX of the raw store (documents)")
    v.add_argument("--against", nargs="+", required=True, metavar="PRESHUFFLED_PREFIX",
                   help="the preshuffled store (item k = sample k)")
    v.add_argument("--start", type=int, default=0, help="first sample index to compare (default 0)")
    v.add_argument("--stop", type=int, default=None,
                   help="sample index to stop before (default: the trained rows, train_steps x batch size)")
    add_order_options(v)
    add_json_flag(v)
    v.set_defaults(func=cmd_order_verify)

    p = sub.add_parser("sample", help="one training row: tokens, source document spans, text")
    p.add_argument("prefix", nargs="+", help=PREFIX_HELP)
    p.add_argument("--step", type=int, required=True, help="training step (0-based)")
    p.add_argument("--slot", type=int, required=True, help="row within the step (0..batch size - 1)")
    p.add_argument("--tokenizer", help="tokenizer.json or hub id for `text` (default: PREFIX.tokenizer.json if present)")
    add_order_options(p)
    add_json_flag(p)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("batch", help="rows of steps S..S2 as one .npy (rows, seq_length + 1); prints which "
                                     "steps are trained")
    p.add_argument("prefix", nargs="+", help=PREFIX_HELP)
    p.add_argument("--step", type=int, required=True, help="first step")
    p.add_argument("--to", type=int, default=None, help="last step, inclusive (default: --step)")
    p.add_argument("--out", required=True, help="output .npy file (written atomically)")
    add_order_options(p)
    add_json_flag(p)
    p.set_defaults(func=cmd_batch)

    p = sub.add_parser("doc-steps", help="every trained (step, slot) holding tokens of a document")
    p.add_argument("prefix", nargs="+", help=PREFIX_HELP)
    p.add_argument("doc_id", type=int, help="document (item) index in the raw store")
    p.add_argument("--max-occurrences", type=int, default=default("max_occurrences"),
                   help=f"refuse documents in more rows (default {default('max_occurrences'):,}, the setting "
                        "max_occurrences)")
    add_order_options(p)
    add_json_flag(p)
    p.set_defaults(func=cmd_doc_steps)


def _raw(order, what: str) -> TrainingOrder:
    if not isinstance(order, TrainingOrder):
        raise ConfigError(f"{what} needs a raw store (documents + index maps); drop --preshuffled")
    return order


def cmd_order_build(args: argparse.Namespace) -> int:
    if args.preshuffled:
        raise ConfigError("order build makes index maps for a raw store; a preshuffled store needs none (drop --preshuffled)")
    t0 = time.perf_counter()
    order = _raw(open_order_from_args(args, args.prefix, build=True, progress=not args.json,
                                      max_epochs=args.max_epochs), "order build")
    maps = order.maps
    files = {k: str(v) for k, v in index_map_paths(order.store.prefix, order.cfg).items()}
    files.update({k: str(v) for k, v in order.inverse_paths().items()})
    emit({
        "epochs": maps.epochs,
        "bytes": build_plan(order.store.sizes, order.cfg)["bytes"],
        "tokens_per_epoch": maps.tokens_per_epoch,
        "documents": order.n_docs,
        "samples_total": maps.n_samples_total,
        "samples_usable": order.num_samples,
        "train_steps": order.train_steps,
        "trained_samples": order.trained_samples,
        "files": files,
        "seconds": round(time.perf_counter() - t0, 3),
    }, args.json)
    return 0


def cmd_order_stats(args: argparse.Namespace) -> int:
    order = _raw(open_order_from_args(args, args.prefix), "order stats")
    emit(order.stats(), args.json)
    return 0


def cmd_order_verify(args: argparse.Namespace) -> int:
    if args.preshuffled:
        raise ConfigError("order verify takes the raw store as PREFIX and the preshuffled one as --against; "
                          "drop --preshuffled")
    raw = _raw(open_order_from_args(args, args.prefix), "order verify")
    args.preshuffled = True
    pre = open_order_from_args(args, args.against)
    stop = args.stop if args.stop is not None else min(raw.trained_samples, pre.num_samples)
    result = verify_orders(raw, pre, args.start, stop, progress=not args.json)
    emit(result, args.json)
    return 0 if result["equal"] else 1


def cmd_sample(args: argparse.Namespace) -> int:
    order = open_order_from_args(args, args.prefix)
    tok = tokenizer_for(order.store, args.tokenizer)
    docs = None if order.preshuffled else documents_for(order.store)
    emit(describe_sample(order, args.step, args.slot, tokenizer=tok, documents=docs), args.json)
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    order = open_order_from_args(args, args.prefix)
    if not str(args.out).endswith(".npy"):
        raise QueryError(f"--out {args.out}: expected a .npy file name")
    rows, record = describe_batch(order, args.step, args.to)
    save_npy(args.out, rows)
    emit({"out": str(args.out), "shape": list(rows.shape), "dtype": str(rows.dtype), **record}, args.json)
    return 0


def cmd_doc_steps(args: argparse.Namespace) -> int:
    order = _raw(open_order_from_args(args, args.prefix), "doc-steps")
    emit(order.doc_steps(args.doc_id, max_occurrences=args.max_occurrences), args.json)
    return 0

