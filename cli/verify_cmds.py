"""``pile-index verify``: check a store and every file derived from it end to end (exit 1 on a mismatch)."""

from __future__ import annotations

import argparse

from pile_index.format import TokenStore
from pile_index.verify import VerifyReport, verify_corpus, verify_or_raise

from .order_options import add_order_options, order_config_from_args
from .output import add_json_flag, emit


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="check the store, n-gram index, documents table, token statistics and (with "
                       "order options) the index maps and inverse files against their digests; exit 1 on a mismatch")
    p.add_argument("prefix", nargs="+", help="PREFIX of PREFIX.bin/.idx (several = one store)")
    add_order_options(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json_flag(p)
    p.set_defaults(func=cmd_verify)


def _order_given(args: argparse.Namespace) -> bool:
    return any(getattr(args, k, None) is not None for k in ("preset", "seed", "seq_length", "num_samples"))


def _open(args: argparse.Namespace):
    store = TokenStore(args.prefix)
    cfg = order_config_from_args(args, n_items=len(store)) if _order_given(args) else None
    return store, cfg


def cmd_verify(args: argparse.Namespace) -> int:
    store, cfg = _open(args)
    rep = verify_corpus(store, cfg, preshuffled=bool(args.preshuffled), progress=not (args.no_progress or args.json))
    if args.json:
        emit(rep.as_dict(), True)
    else:
        _print(rep)
    return 0 if rep.ok else 1


def _print(rep: VerifyReport) -> None:
    """Every check that is not ok on its own line; the ok ones counted by kind."""
    ok: dict[str, int] = {}
    for c in rep.checks:
        if c.status == "ok":
            ok[c.check] = ok.get(c.check, 0) + 1
        else:
            print(f"{c.status}: {c.file}: {c.check}" + (f": {c.detail}" if c.detail else ""))
    if ok:
        print("ok: " + ", ".join(f"{n:,} {k}" for k, n in ok.items()))
    verdict = "verified" if rep.ok else f"{len(rep.problems):,} mismatch(es): the files named above are damaged"
    print(f"{rep.prefix}: {verdict}")


def verify_at_start(args: argparse.Namespace) -> None:
    """``serve --verify``: verify before serving; a mismatch is a FormatError (one line, exit 2)."""
    store, cfg = _open(args)
    verify_or_raise(store, cfg, preshuffled=bool(args.preshuffled), progress=True)
