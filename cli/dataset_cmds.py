"""``pile-index dataset build|show`` and ``pile-index replay``: memorization / influence datasets."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from pile_index.datasets import (DatasetConfig, DatasetQuery, ReplayConfig, SelectionConfig, Strategy, build_dataset,
                                 parse_revisions, pythia_schedule, replay_training)
from pile_index import Corpus
from pile_index.errors import ConfigError, PileIndexError

from .order_options import add_order_options, corpus_from_args
from .output import add_json_flag, emit

log = logging.getLogger(__name__)


SELECTION_COUNTS = (
    ("--rows", 64, "rows (uniform, ngram) or rows per source (stratified)"),
    ("--cohort-steps", 1000, "steps per cohort"),
    ("--batches-per-cohort", 2, "R: batches drawn per cohort"),
    ("--rows-per-batch", 4, "S: rows drawn per drawn batch"),
    ("--control-rows", 16, "never-trained rows added as the control group"),
)
"""The integer options of the row choice (``SelectionConfig``): flag, default, help."""

JOB_COUNTS = (
    ("--seed-rows", 0, "seed of the row choice"),
    ("--chunk-rows", 64, "rows per scoring part (unit of resume and of Ray tasks)"),
    ("--batch-rows", 8, "rows per forward pass"),
)
"""The integer options of the scoring job: flag, default, help."""


def _add_counts(p: argparse.ArgumentParser, options: tuple[tuple[str, int, str], ...]) -> None:
    for flag, value, text in options:
        p.add_argument(flag, type=int, default=value, help=text)


def register(sub: argparse._SubParsersAction) -> None:
    ds = sub.add_parser("dataset", help="training rows x checkpoints x losses as Parquet, summaries and plots")
    dsub = ds.add_subparsers(dest="dataset_command", metavar="SUBCOMMAND", required=True)

    p = dsub.add_parser("build", help="pick rows, score them at every checkpoint, write OUT/ (resumable)")
    p.add_argument("prefix", nargs="+", help="PREFIX of the token store (several = one store)")
    add_order_options(p)
    p.add_argument("--model", required=True, help="hub id (EleutherAI/pythia-70m-deduped), hub-cache repo folder, "
                   "or a folder with one sub-folder per revision; every revision is found before any is scored")
    p.add_argument("--revisions", default="pythia", help="'pythia' (154 checkpoints), 'pythia:MAX_STEP', or step0,step1000,...")
    p.add_argument("--select", choices=[s.value for s in Strategy], default="uniform", help="row choice rule")
    _add_counts(p, SELECTION_COUNTS)
    p.add_argument("--indices", help="explicit sample indices (.npy or one per line) for --select indices")
    p.add_argument("--ngram-text", help="--select ngram: rows holding this text (store tokenizer)")
    p.add_argument("--ngram-tokens", help="--select ngram: rows holding these comma-separated token ids")
    p.add_argument("--tokenizer", help="tokenizer for --ngram-text (default: PREFIX.tokenizer.json)")
    _add_counts(p, JOB_COUNTS)
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--no-memorization-score", action="store_true", help="skip greedy decoding (memorized is still computed)")
    p.add_argument("--ban-eod", action="store_true", help="forbid token 0 during greedy decoding (Biderman et al.'s quirk)")
    p.add_argument("--offline", action="store_true", help="never download checkpoints")
    p.add_argument("--duplicates", action="store_true",
                   help="add num_duplicates to rows.parquet: trained rows holding the row's tokens [32:64) whole "
                   "(needs the store's n-gram index: pile-index ngram build)")
    p.add_argument("--ray", metavar="local|auto|ADDRESS", help="fan scoring out on Ray ('local' starts one here)")
    p.add_argument("--ray-cpus", type=int, help="CPUs of a local Ray instance")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--restart", action="store_true",
                   help="delete the parts an earlier build left in OUT/parts/ and start over (default: resume)")
    add_json_flag(p)
    p.set_defaults(func=cmd_build, build_parser=p)

    p = dsub.add_parser("show", help="query a built dataset: one sample, one checkpoint, or the summaries")
    p.add_argument("dir", help="dataset folder (OUT of dataset build)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--sample", type=int, help="sample index: its metrics at every checkpoint")
    g.add_argument("--revision", help="checkpoint: means over the rows, by group and cohort")
    g.add_argument("--summary", action="store_true", help="the treatment-effect table and checkpoint records")
    add_json_flag(p)
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("replay", help="train a small GPT-NeoX on the training order; save checkpoints on Pythia's schedule")
    p.add_argument("prefix", nargs="+", help="PREFIX of the token store")
    add_order_options(p)
    p.add_argument("--steps", type=int, required=True, help="training steps to replay")
    p.add_argument("--vocab-size", type=int, help="model vocabulary (default: the store's largest token id + 1)")
    p.add_argument("--hidden-size", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed-model", type=int, default=0, help="seed of the initialisation")
    p.add_argument("--out", required=True, help="folder for step*/ checkpoints (and a hub-cache layout under hub/)")
    add_json_flag(p)
    p.set_defaults(func=cmd_replay)


def _ngram_rows(args, corpus: Corpus):
    """For --select ngram: the trained rows that hold the whole n-gram (from the store's n-gram index)."""
    if args.select != "ngram":
        return None
    if not (args.ngram_text or args.ngram_tokens):
        raise ConfigError("--select ngram needs --ngram-text or --ngram-tokens")
    from pile_index.ngram import occurrence_rows

    def rows():
        pattern = corpus.query(args.ngram_tokens, args.ngram_text)
        pairs = occurrence_rows(corpus.ngram, corpus.order, pattern)
        return pairs["sample_index"][pairs["in_row"] & pairs["trained"]]

    return rows


def cmd_build(args: argparse.Namespace) -> int:
    # the n-gram of --select ngram is as long as given (no max_tokens_per_query / max_text_chars)
    with corpus_from_args(args, max_tokens_per_query=None, max_text_chars=None) as corpus:
        return _build(args, corpus)


def _build(args: argparse.Namespace, corpus: Corpus) -> int:
    order = corpus.order
    sel = SelectionConfig(
        strategy=Strategy(args.select), rows=args.rows, cohort_steps=args.cohort_steps,
        batches_per_cohort=args.batches_per_cohort, rows_per_batch=args.rows_per_batch,
        control_rows=args.control_rows, seed=args.seed_rows, indices_file=args.indices,
    )
    cfg = DatasetConfig(
        model=args.model, revisions=parse_revisions(args.revisions), selection=sel, chunk_rows=args.chunk_rows,
        batch_rows=args.batch_rows, device=args.device, memorization_score=not args.no_memorization_score,
        ban_eod=args.ban_eod, allow_download=not args.offline, duplicates=args.duplicates,
    )
    try:
        res = build_dataset(order, corpus.documents, cfg, args.out, ray_address=args.ray,
                            ray_num_cpus=args.ray_cpus, progress=not args.json, ngram_rows=_ngram_rows(args, corpus),
                            restart=args.restart)
    except PileIndexError as e:
        step = getattr(e, "next_step", None)
        if step is None:
            raise
        command = _command_line(args, restart=step == "restart")
        raise type(e)(f"{e}; {step} with: {command}") from e
    emit(res, args.json)
    return 0


def _command_line(args: argparse.Namespace, restart: bool) -> str:
    """The ``dataset build`` command that ``args`` came from (options at their defaults left out), with or
    without ``--restart``: the one command an error names to go on."""
    words = ["pile-index", "dataset", "build"]
    for action in args.build_parser._actions:
        if isinstance(action, argparse._HelpAction) or action.dest == "restart":
            continue
        value = getattr(args, action.dest, None)
        if not action.option_strings:  # positional
            words += [str(v) for v in (value if isinstance(value, list) else [value])]
        elif value is None or value is False or value == action.default:
            continue
        elif value is True:
            words.append(action.option_strings[-1])
        else:
            words += [action.option_strings[-1], *(str(v) for v in (value if isinstance(value, list) else [value]))]
    if restart:
        words.append("--restart")
    return shlex.join(words)


def cmd_show(args: argparse.Namespace) -> int:
    q = DatasetQuery(Path(args.dir))
    if args.sample is not None:
        emit(q.sample(args.sample), args.json)
    elif args.revision is not None:
        emit(q.checkpoint(args.revision), args.json)
    else:
        emit(q.summary(), args.json)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    with corpus_from_args(args) as corpus:
        return _replay(args, corpus)


def _replay(args: argparse.Namespace, corpus: Corpus) -> int:
    from pile_index.format import token_stats

    order = corpus.order
    vocab = args.vocab_size or int(token_stats(order.store)["max_token"] or 0) + 1
    cfg = ReplayConfig(
        steps=args.steps, checkpoint_steps=pythia_schedule(args.steps), lr=args.lr, seed=args.seed_model,
        hidden_size=args.hidden_size, num_layers=args.layers, num_heads=args.heads,
    )
    losses: list[float] = []

    def progress(step: int, loss: float) -> None:
        losses.append(loss)
        if not args.json:
            print(f"\rreplay step {step + 1}/{args.steps} loss {loss:.3f}", end="", file=sys.stderr)

    saved = replay_training(order.batch, vocab, order.seq_length, cfg, args.out, progress=progress)
    if not args.json:
        print(file=sys.stderr)
    emit({"out": args.out, "revisions": sorted(saved, key=lambda r: int(r[4:])), "first_loss": losses[0],
          "last_loss": losses[-1]}, args.json)
    return 0
