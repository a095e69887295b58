"""``pile-index ingest`` and ``pile-index shards join|split|verify``."""

from __future__ import annotations

import argparse
import logging
import sys

from ingest.pipeline import IngestConfig, ingest
from ingest.shards import join_shards, split_shards, verify_hashes
from ingest.token_rows import TokenRowsConfig, ingest_token_rows
from pile_index.errors import ConfigError
from pile_index.files import ingest_report_path

from .output import add_json_flag, emit

log = logging.getLogger(__name__)

PRINT_PROBLEMS = 20  # problem lines printed at the end of `ingest`; the report file has them all


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ingest",
        help="tokenize Pile-style .jsonl/.jsonl.zst/.jsonl.gz/.parquet into PREFIX.bin/.idx + "
        "PREFIX.documents.parquet",
        description="Stream the inputs in the order given (a folder: its .jsonl, .jsonl.zst, .jsonl.gz and .parquet "
        "files sorted by name; Parquet is read a record batch at a time), tokenize as GPT-NeoX's preprocess_data does (empty texts skipped, one item per "
        "document), and write the store, its document table, PREFIX.tokenizer.json (a byte copy of --tokenizer) "
        "and PREFIX.ingest_report.json, all atomically. 0 documents is an error unless --allow-empty. With "
        "--tokens-column, Parquet token rows in training order become a preshuffled store (item k = row k), "
        "no tokenizer needed.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help=".jsonl, .jsonl.zst, .jsonl.gz or .parquet files, or folders of them, in order")
    p.add_argument("--tokenizer", help="tokenizer.json path or Hugging Face hub id (required unless --tokens-column)")
    p.add_argument("--out", required=True, metavar="PREFIX", help="output prefix (writes PREFIX.bin, PREFIX.idx, ...)")
    p.add_argument("--append-eod", action="store_true", help="append <|endoftext|> to every document (GPT-NeoX --append-eod)")
    p.add_argument("--text-key", default="text",
                   help="JSON key of the text; for Parquet, the text column (default: text)")
    p.add_argument("--tokens-column", metavar="COLUMN",
                   help="the inputs are Parquet token rows in training order (e.g. token_ids): write them as a "
                   "preshuffled store, one item per row, no tokenizer needed; rows of differing lengths, ids "
                   "outside --tokens-dtype (or the --tokenizer vocabulary) and a uid/index column that does not "
                   "count 0..n-1 are refused")
    p.add_argument("--tokens-dtype", choices=["uint16", "int32"], default="uint16",
                   help="with --tokens-column and no --tokenizer: the store dtype (default uint16, Pythia's)")
    p.add_argument("--strict", action="store_true", help="stop at the first malformed line instead of counting it")
    p.add_argument("--allow-empty", action="store_true",
                   help="write a store of 0 documents instead of exiting 2 when no line gives a document")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json_flag(p)
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("shards", help="join, split and verify Pythia-style .bin shards")
    ss = p.add_subparsers(dest="shards_command", metavar="ACTION", required=True)

    q = ss.add_parser(
        "join",
        help="concatenate {BASE}-00000-of-000NN.bin ... into PREFIX.bin (and copy BASE.idx)",
        description="BASE is the shard name without -00000-of-000NN.bin (or the path of any shard). "
        "Checks that shards 0..NN are all there and sized as a plain byte split (a final 0-byte shard, as "
        "pythia's shard_memmap.py writes for an exact multiple, is accepted); copies BASE.idx "
        "(Pythia ships the .idx whole) to PREFIX.idx and checks the pair reads as a store.",
    )
    q.add_argument("base", help="shard base path, e.g. data/pile_0.87_deduped_text_document")
    q.add_argument("--out", required=True, metavar="PREFIX", help="writes PREFIX.bin (and PREFIX.idx)")
    q.add_argument("--no-progress", action="store_true")
    add_json_flag(q)
    q.set_defaults(func=cmd_join)

    q = ss.add_parser("split", help="split PREFIX.bin into {PREFIX}-00000-of-000NN.bin shards of --size bytes",
                      description="Writes bytes // size + 1 shards, as pythia's shard_memmap.py does (an exact "
                      "multiple of --size ends in a 0-byte shard), and copies PREFIX.idx beside them.")
    q.add_argument("prefix", help="PREFIX of PREFIX.bin")
    q.add_argument("--size", required=True, type=int, help="bytes per shard (Pythia's idxmaps: 5000000000)")
    q.add_argument("--out-dir", help="folder for the shards (default: beside PREFIX.bin)")
    q.add_argument("--hashes", help="also write 'filename sha256' lines (the order of Pythia's shard_hashes.txt "
                   "and checksum_shards.py) for the shards and the .idx to this file")
    q.add_argument("--no-progress", action="store_true")
    add_json_flag(q)
    q.set_defaults(func=cmd_split)

    q = ss.add_parser("verify", help="check files in DIR against 'filename sha256' lines; exit 1 on any mismatch")
    q.add_argument("dir", help="folder holding the files")
    q.add_argument("--hashes", required=True, help="file of 'filename sha256' lines (Pythia's shard_hashes.txt; "
                   "sha256sum's 'sha256  filename' order is read too)")
    q.add_argument("--no-progress", action="store_true")
    add_json_flag(q)
    q.set_defaults(func=cmd_verify)


def cmd_ingest(args: argparse.Namespace) -> int:
    if args.tokens_column:
        return _ingest_token_rows(args)
    if not args.tokenizer:
        raise ConfigError("ingest needs --tokenizer to tokenize text (or --tokens-column for Parquet token rows)")
    cfg = IngestConfig(
        inputs=list(args.inputs), out=args.out, tokenizer=args.tokenizer, append_eod=args.append_eod,
        text_key=args.text_key, strict=args.strict, allow_empty=args.allow_empty,
        progress=not (args.no_progress or args.json),
    )
    res = ingest(cfg)
    rep = res.report
    summary = {
        "prefix": res.prefix,
        "documents": res.items,
        "tokens": res.tokens,
        "empty_skipped": rep["empty_skipped"],
        "problems": rep["problems"]["counts"],
        "dtype": rep["dtype"],
        "seconds": round(res.elapsed_s, 3),
        "tokens_per_s": round(res.tokens / max(res.elapsed_s, 1e-9)),
        "report": str(res.report_path),
    }
    if rep["folders"]:
        summary["files_read"] = [f["file"] for f in rep["inputs"]]
    emit(summary, args.json)
    if not args.json and rep["problems"]["total"]:
        lines = rep["problems"]["lines"]
        print(f"{rep['problems']['total']:,} problem lines, skipped; all listed in {res.report_path}"
              f"{' (first ' + str(len(lines)) + ')' if len(lines) < rep['problems']['total'] else ''}:", file=sys.stderr)
        for p in lines[:PRINT_PROBLEMS]:
            print(f"  {p['file']}:{p['line']}: {p['reason']}: {p['detail']}", file=sys.stderr)
        if len(lines) > PRINT_PROBLEMS:
            print(f"  ... {len(lines) - PRINT_PROBLEMS:,} more in the report", file=sys.stderr)
    return 0


def _ingest_token_rows(args: argparse.Namespace) -> int:
    given = [flag for flag, on in (("--append-eod", args.append_eod), ("--strict", args.strict),
                                   ("--allow-empty", args.allow_empty), ("--text-key", args.text_key != "text")) if on]
    if given:
        raise ConfigError(f"{', '.join(given)}: options of text ingest; --tokens-column reads token ids as they are "
                          f"(and refuses any bad row): drop them")
    rep = ingest_token_rows(TokenRowsConfig(inputs=list(args.inputs), out=args.out, tokens_column=args.tokens_column,
                                            dtype=args.tokens_dtype, tokenizer=args.tokenizer,
                                            progress=not (args.no_progress or args.json)))
    emit({k: rep[k] for k in ("prefix", "rows", "tokens_per_row", "dtype", "seconds")}
         | {"files_read": [f["file"] for f in rep["inputs"]],
            "index_column": next((f["index_column"] for f in rep["inputs"] if f["index_column"]), None),
            "report": str(ingest_report_path(rep["prefix"]))}, args.json)
    return 0


def cmd_join(args: argparse.Namespace) -> int:
    emit(join_shards(args.base, args.out, progress=not (args.no_progress or args.json)), args.json)
    return 0


def cmd_split(args: argparse.Namespace) -> int:
    res = split_shards(args.prefix, args.size, out_dir=args.out_dir, hashes_path=args.hashes,
                       progress=not (args.no_progress or args.json))
    emit(res, args.json)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    res = verify_hashes(args.dir, args.hashes, progress=not (args.no_progress or args.json))
    if args.json:
        emit(res, True)
    else:
        for f in res["files"]:
            print(f"{f['status']}  {f['file']}")
        print(f"{res['match']:,} match, {res['mismatch']:,} mismatch, {res['missing']:,} missing")
    return 0 if res["ok"] else 1
