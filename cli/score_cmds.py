"""``pile-index score``: loss, rank, entropy and memorization of training rows at GPT-NeoX checkpoints.

    pile-index score PREFIX --preset pythia --model EleutherAI/pythia-70m-deduped \\
        --revision step1000 step2000 --steps 0:10 --slots 0:1024 --out scores.parquet

Rows come from the training order (raw store + index maps, or ``--preshuffled``); step s, slot j is sample
s * batch_size + j. Work is saved in parts under ``OUT.parts/``: rerunning the same command resumes.
"""

from __future__ import annotations

import argparse
import json
import logging

import numpy as np
import pyarrow.parquet as pq

from cli.order_options import add_order_options, corpus_from_args
from cli.output import add_json_flag, emit
from pile_index.errors import ConfigError
from pile_index.scorer import ScoreOptions, score_to_parquet

log = logging.getLogger(__name__)


def parse_range(text: str, what: str, default_stop: int | None = None) -> tuple[int, int]:
    """``A:B`` (half-open), ``A:`` (to ``default_stop``) or ``A`` (just A) -> (A, B)."""
    try:
        if ":" in text:
            a, b = text.split(":", 1)
            start = int(a) if a else 0
            if b:
                stop = int(b)
            elif default_stop is not None:
                stop = default_stop
            else:
                raise ConfigError(f"--{what} {text!r}: give an end, A:B")
        else:
            start = int(text)
            stop = start + 1
    except ValueError as e:
        raise ConfigError(f"--{what} {text!r}: expected A:B with integers (half-open), or A") from e
    if start < 0 or stop <= start:
        raise ConfigError(f"--{what} {text!r}: expected 0 <= A < B")
    return start, stop


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="loss, rank, entropy and memorization of training rows at checkpoints",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("prefix", nargs="+", metavar="PREFIX", help="token store prefix (one or several parts)")
    add_order_options(p)
    g = p.add_argument_group("model")
    g.add_argument("--model", required=True,
                   help="a local folder (config.json + weights), a hub cache repo folder, or a hub id such as "
                        "EleutherAI/pythia-70m-deduped (resolved offline through the hub cache first); a value "
                        "starting with . / ~, with more than one /, or whose parent folder exists is a local path")
    g.add_argument("--revision", nargs="+", action="extend", metavar="R",
                   help="revisions to score (stepN, main, a commit sha; with a local folder: sub-folders); "
                        "repeatable; default: main, or the folder itself")
    g.add_argument("--offline", action="store_true", help="never download (HF_HUB_OFFLINE=1 does the same)")
    g.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    g.add_argument("--dtype", choices=["float32", "bfloat16", "float16"],
                   help="compute dtype; default float32 on CPU, bfloat16 on CUDA")
    g.add_argument("--batch-size-rows", type=int, help="rows per forward pass (default: sized to memory)")
    r = p.add_argument_group("rows and output")
    r.add_argument("--steps", required=True, help="training steps A:B (half-open) or one step A")
    r.add_argument("--slots", help="slots A:B within each step (default: all, 0:batch-size)")
    r.add_argument("--per-token", action="store_true",
                   help="add list columns token_nll, token_rank, token_entropy (seq_length values per row)")
    r.add_argument("--no-memorization-score", action="store_true",
                   help="skip greedy decoding (memorization_score null; memorized is always computed)")
    r.add_argument("--ban-eod", action="store_true",
                   help="forbid token 0 while decoding for memorization_score, as Biderman et al.'s code did")
    r.add_argument("--chunk-rows", type=int, default=1024, help="rows per resumable part (default 1,024)")
    r.add_argument("--out", required=True, help="output Parquet file; parts go to OUT.parts/")
    add_json_flag(p)
    p.set_defaults(func=cmd_score)


def cmd_score(args: argparse.Namespace) -> int:
    if not args.out.endswith(".parquet"):
        raise ConfigError(f"--out {args.out!r}: expected a .parquet file name")
    with corpus_from_args(args) as corpus:
        return _score(args, corpus.order)


def _score(args: argparse.Namespace, order) -> int:
    bs = order.batch_size
    s0, s1 = parse_range(args.steps, "steps")
    j0, j1 = parse_range(args.slots, "slots", bs) if args.slots else (0, bs)
    if j1 > bs:
        raise ConfigError(f"--slots {args.slots}: a step has slots 0..{bs - 1:,} (batch size {bs:,})")
    order.sample_index(s1 - 1, j1 - 1)  # range check of the last row (QueryError names the limit)
    steps = np.repeat(np.arange(s0, s1, dtype=np.int64), j1 - j0)
    slots = np.tile(np.arange(j0, j1, dtype=np.int64), s1 - s0)
    sample_index = order.sample_index(steps, slots)
    cfg = getattr(order, "cfg", None)
    job = {
        "store": order.store.fingerprint(),
        "order": {k: getattr(cfg, k) for k in ("seed", "seq_length", "num_samples", "name", "batch_size")}
        if cfg is not None else None,
        "preshuffled": bool(order.preshuffled),
    }
    options = ScoreOptions(per_token=args.per_token, memorization_score=not args.no_memorization_score,
                           ban_eod=args.ban_eod, batch_size=args.batch_size_rows)
    revisions = args.revision or [None]
    out = score_to_parquet(args.out, model=args.model, revisions=revisions, steps=steps, slots=slots,
                           sample_index=sample_index, read_rows=order.rows, options=options, device=args.device,
                           dtype=args.dtype, chunk_rows=args.chunk_rows, job=job, allow_download=not args.offline,
                           progress=not args.json)
    meta = json.loads(pq.read_schema(out).metadata[b"pile_index.score"])
    checkpoints = [{k: c[k] for k in ("revision", "commit_sha", "weights_sha256", "duplicate_of")}
                   for c in meta["checkpoints"]]
    emit({"out": str(out), "rows": int(len(sample_index)), "revisions": revisions,
          "steps": [s0, s1], "slots": [j0, j1], "checkpoints": checkpoints}, args.json)
    return 0
