"""``pile-index ngram build|count|locate|steps|trace``, ``pile-index sql`` and ``pile-index attach``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from contextlib import ExitStack
from decimal import Decimal
from typing import Any


from ingest.attach import MIN_MATCH_FRACTION
from pile_index.errors import ConfigError
from pile_index.ngram import DEFAULT_SHARD_TOKENS, NgramIndex, build_index, default_memory
from pile_index.ngram.build import peak_rss_bytes
from pile_index.ngram.layout import DEFAULT_SAMPLE_EVERY, DEFAULT_SAMPLE_TOKENS
from pile_index.ngram.trace import DEFAULT_MIN_TOKENS, DEFAULT_OCCURRENCES
from pile_index.settings import default

from .order_options import add_order_options, corpus_from_args
from .output import add_json_flag, emit, first

log = logging.getLogger(__name__)


def _add_query(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--tokens", help="the n-gram as comma-separated token ids, e.g. 12092,13,309")
    g.add_argument("--text", help="the n-gram as text, encoded with the store's tokenizer")
    p.add_argument("--tokenizer", help="tokenizer.json or hub id for --text (default: PREFIX.tokenizer.json)")


def register(sub: argparse._SubParsersAction) -> None:
    ng = sub.add_parser("ngram", help="n-gram index: build, count, locate, training steps")
    nsub = ng.add_subparsers(dest="ngram_command", metavar="SUBCOMMAND", required=True)

    p = nsub.add_parser("build", help="build the suffix-array index of a store (PREFIX.ngram/)")
    p.add_argument("prefix", nargs="+", help="PREFIX of PREFIX.bin/.idx (several = one store)")
    p.add_argument("--memory", type=_bytes_arg, metavar="BYTES",
                   help="build budget in bytes (suffixes K, M, G, T: powers of 1024; default: a quarter of RAM, "
                   f"{default_memory():,} here); parts that fit are sorted in RAM, then merged on disk into one "
                   "shard per .bin (5-byte pointers, up to 2**40 - 1 tokens); peak RSS is about BYTES + 0.3 GB")
    p.add_argument("--sample-every", type=int, default=DEFAULT_SAMPLE_EVERY,
                   help=f"rows per in-RAM sample row (default {DEFAULT_SAMPLE_EVERY}; smaller: fewer disk reads per "
                   "cold query, more RAM)")
    p.add_argument("--sample-tokens", type=int, default=DEFAULT_SAMPLE_TOKENS,
                   help=f"tokens kept per sample row (default {DEFAULT_SAMPLE_TOKENS})")
    p.add_argument("--shard-tokens", type=int,
                   help="the old layout (format 2): shards of at most this many tokens, 4-byte pointers, each "
                   f"sorted in RAM at ~22 bytes/token (before issue 12 the default was {DEFAULT_SHARD_TOKENS:,})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--ray", metavar="local|auto|ADDRESS", help="build the shards as Ray tasks ('local' starts Ray here)")
    p.add_argument("--ray-cpus", type=int, help="CPUs of a local Ray instance")
    add_json_flag(p)
    p.set_defaults(func=cmd_build)

    p = nsub.add_parser("count", help="exact count of an n-gram inside documents (overlaps count); --file: many")
    p.add_argument("prefix", nargs="+", help="PREFIX of PREFIX.bin/.idx (several = one store)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--tokens", help="the n-gram as comma-separated token ids, e.g. 12092,13,309")
    g.add_argument("--text", help="the n-gram as text, encoded with the store's tokenizer")
    g.add_argument("--file", metavar="QUERIES", help="one query per line (comma-separated ids, or text); prints "
                   f"one JSON line per query, in order (at most {default('max_queries_per_request'):,} queries)")
    p.add_argument("--tokenizer", help="tokenizer.json or hub id for text (default: PREFIX.tokenizer.json)")
    add_json_flag(p)
    p.set_defaults(func=cmd_count)

    p = nsub.add_parser("trace", help="the passage's maximal spans that occur in the store, with counts, "
                        "occurrences and (with order options) first/last training step")
    p.add_argument("prefix", nargs="+", help="PREFIX of PREFIX.bin/.idx (several = one store)")
    _add_query(p)
    p.add_argument("--min-tokens", type=int, default=DEFAULT_MIN_TOKENS,
                   help=f"drop spans shorter than this (default {DEFAULT_MIN_TOKENS}, as OLMoTrace)")
    p.add_argument("--max-count", type=int, help="drop spans occurring more often than this (default: keep all)")
    p.add_argument("--occurrences", type=int, default=DEFAULT_OCCURRENCES,
                   help=f"occurrences listed per span (default {DEFAULT_OCCURRENCES}, at most {default('max_locate_page'):,})")
    add_order_options(p)
    p.add_argument("--max-occurrences", type=int, default=default("max_occurrences"),
                   help=f"spans with more occurrences get no steps (default {default('max_occurrences'):,})")
    add_json_flag(p)
    p.set_defaults(func=cmd_trace)

    p = nsub.add_parser("locate", help="where an n-gram occurs: (doc_id, offset), paginated")
    p.add_argument("prefix", nargs="+", help="PREFIX of PREFIX.bin/.idx (several = one store)")
    _add_query(p)
    p.add_argument("--offset", type=int, default=0, help="skip this many occurrences (index order)")
    p.add_argument("--limit", type=int, default=100, help=f"occurrences per page (at most {default('max_locate_page'):,}, the setting max_locate_page)")
    add_json_flag(p)
    p.set_defaults(func=cmd_locate)

    p = nsub.add_parser("steps", help="training steps whose rows hold an n-gram: counts, first/last, histogram")
    p.add_argument("prefix", nargs="+", help="PREFIX of PREFIX.bin/.idx (several = one store)")
    _add_query(p)
    add_order_options(p)
    p.add_argument("--bucket-steps", type=int, help="steps per histogram bucket (default: train_steps / 100)")
    add_max_occurrences(p, "refuse n-grams with more occurrences")
    add_json_flag(p)
    p.set_defaults(func=cmd_steps)

    p = sub.add_parser("sql", help="read-only SQL (DuckDB) over documents and ready views; SELECT, WITH, "
                       "DESCRIBE, SUMMARIZE, SHOW")
    p.add_argument("prefix", help="PREFIX of the store (tables PREFIX.documents.parquet, ...)")
    p.add_argument("query", help='one SELECT or WITH statement, e.g. "SELECT count(*) FROM documents"')
    p.add_argument("--table", action="append", default=[], metavar="NAME=PATH",
                   help="expose one more table NAME: a Parquet file, a dataset folder (its dataset.parquet), or a "
                   "quoted glob for several files (e.g. scores=DATASET/, parts='DIR/*.parquet')")
    p.add_argument("--part", action="append", default=[], metavar="PREFIX",
                   help="more prefixes of the same store (for --steps and --ngram-*)")
    p.add_argument("--max-rows", type=int, default=default("sql_max_rows"),
                   help=f"row limit (default {default('sql_max_rows'):,}, the setting sql_max_rows)")
    p.add_argument("--timeout", type=float, default=default("sql_timeout_s"),
                   help=f"seconds (default {default('sql_timeout_s'):g}, the setting sql_timeout_s)")
    p.add_argument("--steps", metavar="A:B", help="add row_pieces for steps A..B-1 and the views composition, "
                   "composition_by_bucket, documents_seen (needs order options)")
    p.add_argument("--ngram-tokens", help="add ngram_occurrences and the view ngram_timeseries for these ids")
    p.add_argument("--ngram-text", help="as --ngram-tokens, from text")
    p.add_argument("--tokenizer", help="tokenizer for --ngram-text (default: PREFIX.tokenizer.json)")
    p.add_argument("--bucket-steps", type=int, help="steps per bucket in the views (default: range / 100)")
    add_max_occurrences(p, "refuse --ngram-* views of n-grams with more occurrences")
    add_order_options(p)
    add_json_flag(p)
    p.set_defaults(func=cmd_sql)

    p = sub.add_parser("attach", help="attach a documents table (source, pile_set_name, meta) to a store "
                       "from its raw jsonl(.zst) or Parquet inputs")
    p.add_argument("prefix", nargs="+", help="PREFIX of PREFIX.bin/.idx (several = one store)")
    p.add_argument("--from", dest="inputs", nargs="+", required=True, metavar="INPUT",
                   help=".jsonl, .jsonl.zst, .jsonl.gz or .parquet files, or folders of them (sorted by name)")
    p.add_argument("--tokenizer", required=True, help="the tokenizer the store was made with (path or hub id)")
    p.add_argument("--append-eod", action="store_true", help="the store's items end with <|endoftext|>")
    p.add_argument("--text-key", default="text",
                   help="JSON key of the text; for Parquet, the text column (default: text)")
    p.add_argument("--min-match-fraction", type=float, default=MIN_MATCH_FRACTION,
                   help="write nothing and exit 2 unless this fraction of the smaller side (items or lines) "
                   f"matched (default: {MIN_MATCH_FRACTION})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json_flag(p)
    p.set_defaults(func=cmd_attach)


def add_max_occurrences(p: argparse.ArgumentParser, what: str) -> None:
    """``--max-occurrences``: the setting max_occurrences, for a command that expands occurrences to rows."""
    p.add_argument("--max-occurrences", type=int, default=default("max_occurrences"),
                   help=f"{what} (default {default('max_occurrences'):,}, the setting max_occurrences)")


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _bytes_arg(text: str) -> int:
    """--memory: an integer number of bytes, optionally with K, M, G or T (powers of 1024; B and iB allowed)."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = t[-1:] if t[-1:] in _UNITS else ""
    digits = t[: len(t) - len(unit)]
    if not digits.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected bytes like 4000000000, 4G or 512M")
    return int(digits) * _UNITS[unit]


def cmd_build(args: argparse.Namespace) -> int:
    if args.shard_tokens is not None and args.memory is not None:
        raise ConfigError("pass --memory (one large shard per .bin, format 3) or --shard-tokens (the old layout), "
                          "not both")
    with corpus_from_args(args, order=False) as corpus:
        store = corpus.store
        memory = None if args.shard_tokens is not None else (args.memory or default_memory())
        folder = build_index(store, shard_tokens=args.shard_tokens, progress=not (args.no_progress or args.json),
                             ray_address=args.ray, ray_num_cpus=args.ray_cpus, memory=memory,
                             sample_every=args.sample_every, sample_tokens=args.sample_tokens)
        idx = NgramIndex(store, folder)
        size = idx.disk_bytes()
    n = max(store.n_tokens, 1)
    emit({"index": str(folder), "format_version": idx.format_version, "memory": memory,
          "peak_rss_bytes": peak_rss_bytes(), "shards": len(idx.shards), "tokens": store.n_tokens, "index_bytes": size,
          "index_bytes_per_token": round(size / n, 4),
          "bytes_per_token_with_tokens": round((size + store.n_tokens * store.dtype.itemsize) / n, 4)}, args.json)
    return 0


def cmd_count(args: argparse.Namespace) -> int:
    with corpus_from_args(args, order=False) as corpus:
        if args.file is None:
            emit(first(corpus.count(args.tokens, args.text), "count"), args.json)
            return 0
        counts = corpus.count_file(args.file)
    out = sys.stdout
    for c in counts.counts:  # JSON lines, one per query, in the file's order
        out.write(json.dumps({"count": c.count, "tokens": c.tokens}) + "\n")
    return 0


def _has_order_options(args: argparse.Namespace) -> bool:
    return any(getattr(args, k) is not None for k in ("preset", "seed", "seq_length", "num_samples")) or args.preshuffled


def cmd_trace(args: argparse.Namespace) -> int:
    with corpus_from_args(args, order=_has_order_options(args)) as corpus:
        out = corpus.trace(args.tokens, args.text, min_tokens=args.min_tokens, max_count=args.max_count,
                           occurrences=args.occurrences)
    if args.json:
        emit(out, True)
        return 0
    print(f"{out.n_tokens:,} tokens: {out.maximal_spans:,} maximal spans, {len(out.spans):,} kept "
          f"({out.dropped_short:,} shorter than {out.min_tokens}, {out.dropped_frequent:,} over max_count)")
    for sp in out.spans:
        steps = f" steps {sp.first_step}..{sp.last_step}" if sp.steps_computed else ""
        what = repr(sp.text) if sp.text is not None else ",".join(map(str, sp.tokens))
        print(f"[{sp.start}:{sp.end}) count {sp.count:,}{steps}: {what[:120]}")
    return 0


def cmd_locate(args: argparse.Namespace) -> int:
    with corpus_from_args(args, order=False) as corpus:
        emit(first(corpus.locate(args.tokens, args.text, args.offset, args.limit), "count"), args.json)
    return 0


def cmd_steps(args: argparse.Namespace) -> int:
    with corpus_from_args(args) as corpus:  # one store for the query, the order and the index
        emit(corpus.steps(args.tokens, args.text, args.bucket_steps), args.json)
    return 0


def parse_step_range(text: str) -> tuple[int, int]:
    try:
        a, b = text.split(":")
        lo, hi = int(a), int(b)
    except ValueError as e:
        raise ConfigError(f"--steps {text!r}: expected A:B, two step numbers, e.g. 0:1000") from e
    if not 0 <= lo < hi:
        raise ConfigError(f"--steps {text!r}: expected 0 <= A < B")
    return lo, hi


SQL_TABLE_FLAGS = {"row_pieces": "--steps A:B and the order options",
                   "ngram_occurrences": "--ngram-tokens or --ngram-text and the order options"}


def cmd_sql(args: argparse.Namespace) -> int:
    with ExitStack() as stack:
        return _sql(args, stack)


def _sql(args: argparse.Namespace, stack: ExitStack) -> int:
    from pile_index.ngram import occurrences_table
    from pile_index.sql import exposed_files, row_pieces_table, run_sql

    extra: dict[str, Any] = {}  # built by run_sql once the SQL passed its checks
    if args.steps or args.ngram_tokens or args.ngram_text:
        corpus = stack.enter_context(corpus_from_args(args, [args.prefix, *args.part]))
        order = corpus.order
        if args.steps:
            lo, hi = parse_step_range(args.steps)
            extra["row_pieces"] = lambda: row_pieces_table(order, lo, hi, args.bucket_steps,
                                                           corpus.limit("max_view_rows"))
        if args.ngram_tokens or args.ngram_text:
            ids = corpus.query(args.ngram_tokens, args.ngram_text)
            extra["ngram_occurrences"] = lambda: occurrences_table(corpus.ngram, order, ids, args.bucket_steps,
                                                                   corpus.limit("max_occurrences"))
    tables = {}
    for spec in args.table:
        name, sep, path = spec.partition("=")
        if not sep or not path:
            raise ConfigError(f"--table {spec!r}: expected NAME=PATH, e.g. scores=runs/dataset.parquet")
        tables[name] = path
    res = run_sql(args.query, exposed_files(args.prefix, tables), extra, max_rows=args.max_rows,
                  timeout_s=args.timeout, max_sql_chars=default("max_sql_chars"),
                  max_response_bytes=default("max_response_bytes"),
                  table_options=SQL_TABLE_FLAGS, reveal_paths=True)
    if args.json:
        print(res.to_json())
        return 0
    print("\t".join(c["name"] for c in res.columns))
    for row in json.loads(res.rows_json, parse_float=Decimal, parse_int=Decimal):  # exact digits
        print("\t".join(_cell(v) for v in row))
    if res.truncated:
        print(f"(truncated at {args.max_rows:,} rows)")
    return 0


def _cell(v: Any, top: bool = True) -> str:
    """One value of an SQL answer as text: strings bare at the top level, everything else as JSON."""
    if v is None:
        return "" if top else "null"
    if isinstance(v, str):
        return v if top else json.dumps(v, ensure_ascii=False)
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(_cell(x, False) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)}: {_cell(x, False)}" for k, x in v.items()) + "}"
    return json.dumps(v)


def cmd_attach(args: argparse.Namespace) -> int:
    from ingest.attach import AttachConfig, attach

    report = attach(AttachConfig(prefixes=args.prefix, inputs=args.inputs, tokenizer=args.tokenizer,
                                 append_eod=args.append_eod, text_key=args.text_key,
                                 min_match_fraction=args.min_match_fraction,
                                 progress=not (args.no_progress or args.json)))
    keys = ("documents_table", "items", "lines", "matched", "match_fraction", "unmatched_items", "unmatched_lines",
            "hash_collisions_rejected", "duplicates", "empty_skipped")
    out = report if args.json else {k: report[k] for k in keys}
    if args.json:
        out = {k: v for k, v in report.items() if k not in ("unmatched_items_listed", "unmatched_lines_listed")}
        out["problems"] = {k: v for k, v in report["problems"].items() if k != "lines"}
    emit(out, args.json)
    return 0
