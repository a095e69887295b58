"""``attach``: give a store that has no metadata (Pythia's released idxmaps) its documents table.

The raw Pile-style JSON lines are read and tokenized exactly as ``ingest`` does (same readers, same
tokenizer call, optional ``<|endoftext|>``), each line's tokens are hashed with ``token_hash`` in the
store's dtype, and the lines are joined to the store's items in DuckDB on ``(token_hash, n_tokens)``.
Every match is then confirmed token for token (a hash collision is counted, never trusted).

Duplicates: identical documents (same tokens) map to several items. The rule is positional: the k-th
identical line, in input order (files in the order given, then line number), goes to the k-th identical
item in store order (doc_id). That is what GPT-NeoX's preprocessing produces when the inputs are the
store's own inputs in order, and it stays deterministic when lines are shuffled or missing (then the
pairing among identical documents is arbitrary but harmless: their tokens are the same). Lines beyond the
number of identical items are reported as unmatched surplus duplicates.

Outputs (atomic): ``PREFIX.documents.parquet`` (one row per item, ``DOCUMENT_SCHEMA``; unmatched items
keep ``n_tokens`` and ``token_hash`` with null source columns) and ``PREFIX.attach_report.json``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tokenizers import Tokenizer

from pile_index.atomic import atomic_path, write_bytes
from pile_index.docstore import DOCUMENT_SCHEMA
from pile_index.errors import ConfigError
from pile_index.indexed import IndexedDatasetWriter
from pile_index.store import TokenStore
from pile_index.tokenizer import eod_id, load_tokenizer, tokenizer_fingerprint

from .pipeline import _encode_batch, token_hashes
from .readers import LineReader, ParsedLine, ProblemLog, StreamError, parse_block

log = logging.getLogger(__name__)

MAX_LISTED = 1000  # unmatched lines / items listed in the report; all are counted
CONFIRM_TOKENS = 1 << 24  # tokens compared per confirmation chunk
DUPLICATE_RULE = ("the k-th identical line in input order (files as given, then line number) is attached to "
                  "the k-th identical item in store order (doc_id); identical = same token_hash and n_tokens, "
                  "confirmed token for token")


@dataclass
class AttachConfig:
    """Options of one attach run."""

    prefixes: list[str]
    """The store (one or more PREFIX of PREFIX.bin/.idx); the table goes to the first PREFIX."""
    inputs: list[str]
    """Raw .jsonl / .jsonl.zst / .jsonl.gz files, in order."""
    tokenizer: str
    """tokenizer.json path or hub id: the one the store was made with."""
    append_eod: bool = False
    """Append <|endoftext|> to every line's tokens, as the store's ingest did (GPT-NeoX --append-eod)."""
    text_key: str = "text"
    """JSON key of the text."""
    batch_docs: int = 4096
    """Lines per tokenizer batch."""
    progress: bool = True
    """Show a progress bar on stderr."""

    def validate(self) -> None:
        if not self.inputs:
            raise ConfigError("inputs: expected at least one --from .jsonl/.jsonl.zst/.jsonl.gz file, found none")
        if self.batch_docs < 1:
            raise ConfigError(f"batch_docs: expected >= 1, found {self.batch_docs}")


def _item_hashes(store: TokenStore) -> np.ndarray:
    out = [token_hashes(p.tokens, p.sizes) for p in store.parts]
    return np.concatenate(out) if out else np.zeros(0, np.uint64)


def _read_lines(cfg: AttachConfig, tok: Tokenizer, dtype: np.dtype, lines_prefix: str,
                problems: ProblemLog) -> tuple[pa.Table, list[dict[str, Any]]]:
    """Tokenize every input line into a temporary store (one item per line, in input order) and return
    the lines' table: line_seq, source_file, source_line, pile_set_name, meta, n_tokens, n_bytes, token_hash."""
    encode = _encode_batch(tok)
    eod = eod_id(tok) if cfg.append_eod else None
    cols: dict[str, list] = {k: [] for k in ("source_file", "source_line", "pile_set_name", "meta", "n_bytes")}
    sizes: list[np.ndarray] = []
    hashes: list[np.ndarray] = []
    per_file = []
    bar = None
    if cfg.progress:
        from pile_index.progress import progress_bar

        bar = progress_bar(desc="attach: tokenize", unit=" lines")
    with IndexedDatasetWriter(lines_prefix, dtype) as w:

        def flush(name: str, docs: list[ParsedLine]) -> None:
            if not docs:
                return
            enc = encode([d.text for d in docs])
            arrs = []
            for e in enc:
                ids = e.ids + [eod] if eod is not None else e.ids
                a = np.asarray(ids, dtype=dtype)
                w.add_document(a)
                arrs.append(a)
            sz = np.array([a.size for a in arrs], dtype=np.int64)
            sizes.append(sz)
            hashes.append(token_hashes(np.concatenate(arrs) if arrs else np.zeros(0, dtype), sz))
            cols["source_file"] += [name] * len(docs)
            cols["source_line"] += [d.line for d in docs]
            cols["pile_set_name"] += [d.pile_set_name for d in docs]
            cols["meta"] += [d.meta for d in docs]
            cols["n_bytes"] += [d.n_bytes for d in docs]
            if bar is not None:
                bar.update(len(docs))

        for path in cfg.inputs:
            name = os.fspath(path)
            r = LineReader(path)
            counters = {"empty": 0}
            before = problems.total
            n_docs = 0
            n_lines = 0
            pending: list[ParsedLine] = []
            try:
                for first, lines in r.blocks():
                    n_lines = first + len(lines) - 1
                    for d in parse_block(name, first, lines, cfg.text_key, problems, counters):
                        pending.append(d)
                        if len(pending) >= cfg.batch_docs:
                            flush(name, pending)
                            n_docs += len(pending)
                            pending = []
            except StreamError as e:
                problems.add(name, r.stream_error_line, e.reason, e.detail)
            flush(name, pending)
            n_docs += len(pending)
            per_file.append({"file": name, "lines": n_lines, "documents": n_docs, "empty": counters["empty"],
                             "problems": problems.total - before})
    if bar is not None:
        bar.close()
    n = sum(s.size for s in sizes)
    table = pa.table({
        "line_seq": pa.array(np.arange(n, dtype=np.int64)),
        "source_file": pa.array(cols["source_file"], pa.string()),
        "source_line": pa.array(cols["source_line"], pa.int64()),
        "pile_set_name": pa.array(cols["pile_set_name"], pa.string()),
        "meta": pa.array(cols["meta"], pa.string()),
        "n_tokens": pa.array(np.concatenate(sizes) if sizes else np.zeros(0, np.int64)),
        "n_bytes": pa.array(cols["n_bytes"], pa.int64()),
        "token_hash": pa.array(np.concatenate(hashes) if hashes else np.zeros(0, np.uint64), pa.uint64()),
    })
    return table, per_file


def _confirm(store: TokenStore, lines: TokenStore, doc_ids: np.ndarray, line_seqs: np.ndarray) -> np.ndarray:
    """bool per pair: the item's tokens equal the line's tokens (same length is given by the join)."""
    ok = np.ones(doc_ids.size, dtype=bool)
    sizes = np.asarray(store.sizes, dtype=np.int64)[doc_ids] if doc_ids.size else np.zeros(0, np.int64)
    lsizes = np.asarray(lines.sizes, dtype=np.int64)[line_seqs] if line_seqs.size else np.zeros(0, np.int64)
    ok &= sizes == lsizes
    ends = np.cumsum(sizes)
    start = 0
    while start < doc_ids.size:
        # pairs [start, stop) hold about CONFIRM_TOKENS tokens (at least one pair)
        base = ends[start - 1] if start else 0
        stop = max(int(np.searchsorted(ends, base + CONFIRM_TOKENS, side="right")), start + 1)
        sel = slice(start, stop)
        ln = np.where(ok[sel], sizes[sel], 0)
        zeros = np.zeros(ln.size, dtype=np.int64)
        a = store.gather(doc_ids[sel], zeros, ln)
        b = lines.gather(line_seqs[sel], zeros, ln)
        bad = np.concatenate([[0], np.cumsum(a != b)])
        bounds = np.concatenate([[0], np.cumsum(ln)])
        ok[sel] &= (bad[bounds[1:]] - bad[bounds[:-1]]) == 0
        start = stop
    return ok


def attach(cfg: AttachConfig, tokenizer: Tokenizer | None = None) -> dict[str, Any]:
    """Run attach; write the documents table and the report; return the report."""
    cfg.validate()
    t0 = time.perf_counter()
    store = TokenStore(cfg.prefixes)
    tok = tokenizer if tokenizer is not None else load_tokenizer(cfg.tokenizer)
    readers = [LineReader(p) for p in cfg.inputs]  # NotFoundError before any work
    del readers
    prefix = store.prefix
    out_path = store.documents_path()
    problems = ProblemLog()
    tmp_dir = Path(tempfile.mkdtemp(prefix=".attach-", dir=Path(prefix).parent))
    try:
        lines_prefix = str(tmp_dir / "lines")
        lines_tbl, per_file = _read_lines(cfg, tok, store.dtype, lines_prefix, problems)
        lines_store = TokenStore(lines_prefix)
        items_tbl = pa.table({
            "doc_id": pa.array(np.arange(len(store), dtype=np.int64)),
            "n_tokens": pa.array(np.asarray(store.sizes, dtype=np.int64)),
            "token_hash": pa.array(_item_hashes(store), pa.uint64()),
        })
        con = duckdb.connect(":memory:")
        con.register("items", items_tbl)
        con.register("lines", lines_tbl)
        pairs = con.execute("""
            WITH i AS (SELECT doc_id, token_hash, n_tokens,
                              row_number() OVER (PARTITION BY token_hash, n_tokens ORDER BY doc_id) AS k FROM items),
                 l AS (SELECT line_seq, token_hash, n_tokens,
                              row_number() OVER (PARTITION BY token_hash, n_tokens ORDER BY line_seq) AS k FROM lines)
            SELECT i.doc_id, l.line_seq FROM i JOIN l USING (token_hash, n_tokens, k) ORDER BY i.doc_id
        """).fetchnumpy()
        doc_ids = np.asarray(pairs["doc_id"], dtype=np.int64)
        line_seqs = np.asarray(pairs["line_seq"], dtype=np.int64)
        ok = _confirm(store, lines_store, doc_ids, line_seqs)
        collisions = int((~ok).sum())
        doc_ids, line_seqs = doc_ids[ok], line_seqs[ok]
        con.register("matched", pa.table({"doc_id": doc_ids, "line_seq": line_seqs}))
        dup = con.execute("""
            WITH gi AS (SELECT token_hash, n_tokens, count(*) AS items FROM items GROUP BY ALL),
                 gl AS (SELECT token_hash, n_tokens, count(*) AS lines FROM lines GROUP BY ALL)
            SELECT count(*) FILTER (WHERE gi.items > 1) AS item_groups,
                   coalesce(sum(gi.items) FILTER (WHERE gi.items > 1), 0) AS items_in_groups,
                   count(*) FILTER (WHERE gl.lines > 1) AS line_groups,
                   coalesce(sum(gl.lines) FILTER (WHERE gl.lines > 1), 0) AS lines_in_groups,
                   coalesce(sum(greatest(gl.lines - coalesce(gi.items, 0), 0)) FILTER (WHERE gi.items >= 1), 0)
                       AS surplus_lines
            FROM gl FULL JOIN gi USING (token_hash, n_tokens)
        """).fetchall()[0]
        table = con.sql("""
            SELECT i.doc_id, l.source_file, l.source_line, l.pile_set_name, l.meta, i.n_tokens, l.n_bytes,
                   i.token_hash
            FROM items i LEFT JOIN matched m USING (doc_id) LEFT JOIN lines l USING (line_seq)
            ORDER BY i.doc_id
        """).to_arrow_table().cast(DOCUMENT_SCHEMA)
        unmatched_items = con.execute(
            f"SELECT doc_id FROM items ANTI JOIN matched USING (doc_id) ORDER BY doc_id LIMIT {MAX_LISTED}"
        ).fetchnumpy()["doc_id"]
        unmatched_lines = con.execute(
            f"SELECT source_file, source_line FROM lines ANTI JOIN matched USING (line_seq) "
            f"ORDER BY line_seq LIMIT {MAX_LISTED}").fetchall()
        con.close()
        with atomic_path(out_path) as tmp:
            pq.write_table(table, tmp, compression="zstd")
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    n_items, n_lines, matched = len(store), lines_tbl.num_rows, int(doc_ids.size)
    report = {
        "prefix": prefix,
        "documents_table": str(out_path),
        "inputs": per_file,
        "items": n_items,
        "lines": n_lines,
        "matched": matched,
        "unmatched_items": n_items - matched,
        "unmatched_lines": n_lines - matched,
        "unmatched_items_listed": [int(x) for x in unmatched_items],
        "unmatched_lines_listed": [{"file": f, "line": int(ln)} for f, ln in unmatched_lines],
        "hash_collisions_rejected": collisions,
        "duplicates": {
            "rule": DUPLICATE_RULE,
            "item_groups": int(dup[0]),
            "items_in_groups": int(dup[1]),
            "line_groups": int(dup[2]),
            "lines_in_groups": int(dup[3]),
            "surplus_lines": int(dup[4]),
        },
        "empty_skipped": sum(f["empty"] for f in per_file),
        "problems": problems.to_dict(),
        "append_eod": cfg.append_eod,
        "text_key": cfg.text_key,
        "tokenizer_sha256": tokenizer_fingerprint(tok),
        "elapsed_s": round(time.perf_counter() - t0, 3),
    }
    write_bytes(f"{prefix}.attach_report.json", (json.dumps(report, indent=1, ensure_ascii=False) + "\n").encode())
    log.info("attach %s: %s of %s items matched", prefix, f"{matched:,}", f"{n_items:,}")
    return report


__all__ = ["AttachConfig", "attach", "DUPLICATE_RULE"]
