"""``pile-index export preshuffled|parquet``: rows in training order as Pythia's preshuffled ``.bin/.idx`` or as
Parquet files (``pile_index/order/export.py`` has the exact layouts)."""

from __future__ import annotations

import argparse

from pile_index.order import export_parquet, export_preshuffled
from pile_index.sql import documents_for

from .ngram_cmds import parse_step_range
from .order_options import add_order_options, open_order_from_args
from .output import add_json_flag, emit

STEPS_HELP = ("steps A..B-1 to export (default 0:train_steps, every trained step); B may reach the last step with "
              "a full batch")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write rows in training order: a preshuffled .bin/.idx or Parquet files")
    esub = p.add_subparsers(dest="export_command", metavar="FORMAT", required=True)

    q = esub.add_parser(
        "preshuffled", help="OUT.bin/.idx with item j = sample A x batch + j (Pythia's preshuffled layout)",
        description="Reads the rows through the order (raw + index maps, or a preshuffled store) and writes them "
        "as GPT-NeoX's builder does, one item (seq_length + 1 tokens) and one document per row, atomically. "
        "OUT.export.json records the export; a rerun of it does nothing, other files under OUT are refused. "
        "`pile-index shards split OUT --size BYTES` cuts the .bin into Pythia's shard names.")
    q.add_argument("prefix", nargs="+", help="PREFIX of the store (several = one store)")
    q.add_argument("--out", required=True, metavar="OUT", help="output prefix: writes OUT.bin, OUT.idx, OUT.export.json")
    q.add_argument("--steps", metavar="A:B", help=STEPS_HELP)
    add_order_options(q)
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json_flag(q)
    q.set_defaults(func=cmd_export_preshuffled)

    q = esub.add_parser(
        "parquet", help="OUT/train-IIIII-of-NNNNN.parquet: uid, step, slot, batch_idx, input_ids, doc_ids, "
        "pile_set_names",
        description="One row per training row, in training order, --rows-per-file rows a file (each written "
        "atomically; a rerun skips finished files). uid is the sample index (0..n-1 for an export from step 0); "
        "doc_ids over a raw store; pile_set_names with PREFIX.documents.parquet. Reads with "
        "pyarrow.dataset.dataset(OUT) or datasets.load_dataset('parquet', data_dir=OUT).")
    q.add_argument("prefix", nargs="+", help="PREFIX of the store (several = one store)")
    q.add_argument("--out", required=True, metavar="DIR", help="output folder")
    q.add_argument("--steps", metavar="A:B", help=STEPS_HELP)
    q.add_argument("--rows-per-file", type=int, default=None,
                   help="rows per Parquet file (default 1,000 steps: 1,024,000 rows at batch 1,024)")
    q.add_argument("--restart", action="store_true", help="delete OUT's files of an earlier export first")
    add_order_options(q)
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json_flag(q)
    q.set_defaults(func=cmd_export_parquet)


def _steps(args: argparse.Namespace) -> tuple[int, int] | None:
    return parse_step_range(args.steps) if args.steps else None


def cmd_export_preshuffled(args: argparse.Namespace) -> int:
    order = open_order_from_args(args, args.prefix)
    emit(export_preshuffled(order, args.out, steps=_steps(args), progress=not (args.no_progress or args.json)),
         args.json)
    return 0


def cmd_export_parquet(args: argparse.Namespace) -> int:
    order = open_order_from_args(args, args.prefix)
    documents = None if order.preshuffled else documents_for(order.store)
    res = export_parquet(order, args.out, steps=_steps(args), rows_per_file=args.rows_per_file,
                         documents=documents, progress=not (args.no_progress or args.json), restart=args.restart)
    if not args.json:
        res = {**res, "files": f"{len(res['files']):,} files in {res['out']}"}
    emit(res, args.json)
    return 0
