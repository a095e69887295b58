"""``pile-index export preshuffled|parquet``: rows in training order as Pythia's preshuffled ``.bin/.idx`` or as
Parquet files (``pile_index/order/export.py`` has the exact layouts)."""

from __future__ import annotations

import argparse

from pile_index.order import export_parquet, export_preshuffled

from .ngram_cmds import parse_step_range
from .order_options import corpus_from_args, order_command
from .output import emit

PREFIX_HELP = "PREFIX of the store (several = one store)"
STEPS_HELP = ("steps A..B-1 to export (default 0:train_steps, every trained step); B may reach the last step with "
              "a full batch")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write rows in training order: a preshuffled .bin/.idx or Parquet files")
    esub = p.add_subparsers(dest="export_command", metavar="FORMAT", required=True)

    with order_command(
            esub, "preshuffled", cmd_export_preshuffled,
            "OUT.bin/.idx with item j = sample A x batch + j (Pythia's preshuffled layout)", prefix_help=PREFIX_HELP,
            description="Reads the rows through the order (raw + index maps, or a preshuffled store) and writes them "
            "as GPT-NeoX's builder does, one item (seq_length + 1 tokens) and one document per row, atomically. "
            "OUT.export.json records the export; a rerun of it does nothing, other files under OUT are refused. "
            "`pile-index shards split OUT --size BYTES` cuts the .bin into Pythia's shard names.") as q:
        q.add_argument("--out", required=True, metavar="OUT",
                       help="output prefix: writes OUT.bin, OUT.idx, OUT.export.json")
        _add_steps(q)

    with order_command(
            esub, "parquet", cmd_export_parquet,
            "OUT/train-IIIII-of-NNNNN.parquet: uid, step, slot, batch_idx, input_ids, doc_ids, pile_set_names",
            prefix_help=PREFIX_HELP,
            description="One row per training row, in training order, --rows-per-file rows a file (each written "
            "atomically; a rerun skips finished files). uid is the sample index (0..n-1 for an export from step 0); "
            "doc_ids over a raw store; pile_set_names with PREFIX.documents.parquet. Reads with "
            "pyarrow.dataset.dataset(OUT) or datasets.load_dataset('parquet', data_dir=OUT).") as q:
        q.add_argument("--out", required=True, metavar="DIR", help="output folder")
        q.add_argument("--rows-per-file", type=int, default=None,
                       help="rows per Parquet file (default 1,000 steps: 1,024,000 rows at batch 1,024)")
        q.add_argument("--restart", action="store_true", help="delete OUT's files of an earlier export first")
        _add_steps(q)


def _add_steps(q: argparse.ArgumentParser) -> None:
    q.add_argument("--steps", metavar="A:B", help=STEPS_HELP)
    q.add_argument("--no-progress", action="store_true", help="no progress bar")


def _steps(args: argparse.Namespace) -> tuple[int, int] | None:
    return parse_step_range(args.steps) if args.steps else None


def cmd_export_preshuffled(args: argparse.Namespace) -> int:
    with corpus_from_args(args) as corpus:
        emit(export_preshuffled(corpus.order, args.out, steps=_steps(args),
                                progress=not (args.no_progress or args.json)), args.json)
    return 0


def cmd_export_parquet(args: argparse.Namespace) -> int:
    with corpus_from_args(args) as corpus:
        order = corpus.order
        res = export_parquet(order, args.out, steps=_steps(args), rows_per_file=args.rows_per_file,
                             documents=None if order.preshuffled else corpus.documents,
                             progress=not (args.no_progress or args.json), restart=args.restart)
    if not args.json:
        res = {**res, "files": f"{len(res['files']):,} files in {res['out']}"}
    emit(res, args.json)
    return 0
