"""``pile-index order build|stats|verify``, ``sample``, ``batch`` and ``doc-steps``: the training order.

All take the shared order options (``cli/order_options.py``) and ask one :class:`~pile_index.Corpus` one
question; see ``pile_index/order/index_maps.py`` and ``pile_index/order/training.py`` for the algorithm and
the exact semantics.
"""

from __future__ import annotations

import argparse
import logging

from pile_index.atomic import save_npy
from pile_index.errors import ConfigError, QueryError
from pile_index.order import MAX_EPOCHS
from pile_index.settings import default

from .order_options import corpus_from_args, order_command
from .output import emit, to_jsonable

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("order", help="build, inspect and verify a GPT-NeoX training order")
    osub = p.add_subparsers(dest="order_command", metavar="ORDER_COMMAND", required=True)

    with order_command(osub, "build", cmd_order_build,
                       "build (or reuse) the index maps and their inverse files beside PREFIX") as b:
        b.add_argument("--max-epochs", type=int, default=MAX_EPOCHS,
                       help=f"refuse to build an order of more epochs than this (default {MAX_EPOCHS}); the epochs "
                            "and bytes are computed before anything is written")

    with order_command(osub, "stats", cmd_order_stats, "epochs first, then samples, documents seen 0/1/2+ times, "
                                                       "first repeated document"):
        pass

    with order_command(osub, "verify", cmd_order_verify,
                       "compare a preshuffled store with raw + index maps over a row range",
                       prefix_help="PREFIX of the raw store (documents)") as v:
        v.add_argument("--against", nargs="+", required=True, metavar="PRESHUFFLED_PREFIX",
                       help="the preshuffled store (item k = sample k)")
        v.add_argument("--start", type=int, default=0, help="first sample index to compare (default 0)")
        v.add_argument("--stop", type=int, default=None,
                       help="sample index to stop before (default: the trained rows, train_steps x batch size)")

    with order_command(sub, "sample", cmd_sample, "one training row: tokens, source document spans, text") as p:
        p.add_argument("--step", type=int, required=True, help="training step (0-based)")
        p.add_argument("--slot", type=int, required=True, help="row within the step (0..batch size - 1)")
        p.add_argument("--tokenizer",
                       help="tokenizer.json or hub id for `text` (default: PREFIX.tokenizer.json if present)")

    with order_command(sub, "batch", cmd_batch, "rows of steps S..S2 as one .npy (rows, seq_length + 1); prints "
                                                "which steps are trained") as p:
        p.add_argument("--step", type=int, required=True, help="first step")
        p.add_argument("--to", type=int, default=None, help="last step, inclusive (default: --step)")
        p.add_argument("--out", required=True, help="output .npy file (written atomically)")

    with order_command(sub, "doc-steps", cmd_doc_steps, "every trained (step, slot) holding tokens of a document") as p:
        p.add_argument("doc_id", type=int, help="document (item) index in the raw store")
        p.add_argument("--max-occurrences", type=int, default=default("max_occurrences"),
                       help=f"refuse documents in more rows (default {default('max_occurrences'):,}, the setting "
                            "max_occurrences)")


def _raw_only(args: argparse.Namespace, what: str) -> None:
    if args.preshuffled:
        raise ConfigError(f"{what} needs a raw store (documents + index maps); drop --preshuffled")


def cmd_order_build(args: argparse.Namespace) -> int:
    with corpus_from_args(args) as corpus:
        emit(corpus.build_order(progress=not args.json, max_epochs=args.max_epochs), args.json)
    return 0


def cmd_order_stats(args: argparse.Namespace) -> int:
    _raw_only(args, "order stats")
    with corpus_from_args(args) as corpus:
        emit(corpus.order_stats(), args.json)
    return 0


def cmd_order_verify(args: argparse.Namespace) -> int:
    if args.preshuffled:
        raise ConfigError("order verify takes the raw store as PREFIX and the preshuffled one as --against; "
                          "drop --preshuffled")
    with corpus_from_args(args) as raw:
        args.preshuffled = True
        with corpus_from_args(args, args.against) as pre:
            result = raw.verify_order(pre, args.start, args.stop, progress=not args.json)
    emit(result, args.json)
    return 0 if result.equal else 1


def cmd_sample(args: argparse.Namespace) -> int:
    with corpus_from_args(args) as corpus:
        emit(corpus.sample(args.step, args.slot), args.json)
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    if not str(args.out).endswith(".npy"):
        raise QueryError(f"--out {args.out}: expected a .npy file name")
    with corpus_from_args(args, max_rows_per_request=None) as corpus:  # a file holds any number of rows
        rows, info = corpus.batch(args.step, args.to)
    save_npy(args.out, rows)
    emit({"out": str(args.out), "shape": list(rows.shape), "dtype": str(rows.dtype), **to_jsonable(info)}, args.json)
    return 0


def cmd_doc_steps(args: argparse.Namespace) -> int:
    _raw_only(args, "doc-steps")
    with corpus_from_args(args) as corpus:
        emit(corpus.doc_steps(args.doc_id), args.json)
    return 0
