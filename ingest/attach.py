"""``attach``: give a store that has no metadata (Pythia's released idxmaps) its documents table.

The raw Pile-style JSON lines (or Parquet rows) are read and tokenized exactly as ``ingest`` does (same
readers, same tokenizer call, optional ``<|endoftext|>``), each line's tokens are hashed with ``token_hash`` in the
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

attach never replaces a table with a worse one. Below ``min_match_fraction`` of the smaller side (items or
lines) matched, or when an existing table gives a source to more items than this run matched, it writes
nothing and raises ``AttachRefusedError`` with the cause it can read from the data (the store's items end
in ``<|endoftext|>`` and the lines were tokenized without it, or the converse: the ``append_eod`` option).
"""

from __future__ import annotations

import contextlib
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
from pile_index.digests import record_digest
from pile_index.errors import ConfigError
from pile_index.files import attach_report_path
from pile_index.format import EOD_TOKEN, IndexedDatasetWriter, TokenStore, TokenizerFile, eod_id, read_tokenizer
from pile_index.sql import DOCUMENT_SCHEMA

from .pipeline import _encode_batch, token_hashes
from .readers import ParsedLine, ProblemLog, expand_inputs, open_input

log = logging.getLogger(__name__)

MAX_LISTED = 1000  # unmatched lines / items listed in the report; all are counted
CONFIRM_TOKENS = 1 << 24  # tokens compared per confirmation chunk
MIN_MATCH_FRACTION = 0.5  # default of AttachConfig.min_match_fraction
DUPLICATE_RULE = ("the k-th identical line in input order (files as given, then line number) is attached to "
                  "the k-th identical item in store order (doc_id); identical = same token_hash and n_tokens, "
                  "confirmed token for token")


@dataclass
class AttachConfig:
    """Options of one attach run."""

    prefixes: list[str]
    """The store (one or more PREFIX of PREFIX.bin/.idx); the table goes to the first PREFIX."""
    inputs: list[str]
    """Raw .jsonl / .jsonl.zst / .jsonl.gz / .parquet files or folders of them (sorted by name), in order."""
    tokenizer: str
    """tokenizer.json path or hub id: the one the store was made with."""
    append_eod: bool = False
    """Append <|endoftext|> to every line's tokens, as the store's ingest did (GPT-NeoX --append-eod)."""
    text_key: str = "text"
    """JSON key (Parquet: column) of the text."""
    batch_docs: int = 4096
    """Lines per tokenizer batch."""
    min_match_fraction: float = MIN_MATCH_FRACTION
    """Write the table only if at least this fraction of the smaller side (items or lines) matched (0..1)."""
    progress: bool = True
    """Show a progress bar on stderr."""

    def validate(self) -> None:
        if not self.inputs:
            raise ConfigError("inputs: expected at least one `inputs` .jsonl/.jsonl.zst/.jsonl.gz/.parquet file or "
                              "folder, found none")
        if self.batch_docs < 1:
            raise ConfigError(f"batch_docs: expected >= 1, found {self.batch_docs}")
        if not 0.0 <= self.min_match_fraction <= 1.0:
            raise ConfigError(f"min_match_fraction: expected a fraction in 0..1, found {self.min_match_fraction}")


class AttachRefusedError(ConfigError):
    """attach matched too little to write a table, or less than the table already there; nothing was written.

    ``report`` is the report the run would have written."""

    def __init__(self, message: str, report: dict[str, Any]):
        super().__init__(message)
        self.report = report


def _item_hashes(store: TokenStore) -> np.ndarray:
    out = [token_hashes(p.tokens, p.sizes) for p in store.parts]
    return np.concatenate(out) if out else np.zeros(0, np.uint64)


def _read_lines(cfg: AttachConfig, files: list[str], tok: Tokenizer, dtype: np.dtype, lines_prefix: str,
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

        for path in files:
            name = os.fspath(path)
            r = open_input(path, cfg.text_key)
            counters = {"empty": 0}
            before = problems.total
            n_docs = 0
            pending: list[ParsedLine] = []
            for docs in r.documents(problems, counters):
                for d in docs:
                    pending.append(d)
                    if len(pending) >= cfg.batch_docs:
                        flush(name, pending)
                        n_docs += len(pending)
                        pending = []
            flush(name, pending)
            n_docs += len(pending)
            per_file.append({"file": name, "lines": r.lines, "documents": n_docs, "empty": counters["empty"],
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


def _last_tokens_equal(store: TokenStore, token: int) -> tuple[int, int]:
    """(items ending in ``token``, non-empty items)."""
    sizes = np.asarray(store.sizes, dtype=np.int64)
    items = np.flatnonzero(sizes > 0)
    if not items.size:
        return 0, 0
    last = store.gather(items, sizes[items] - 1, np.ones(items.size, dtype=np.int64))
    return int((last == token).sum()), int(items.size)


def _diagnose(store: TokenStore, lines: TokenStore, tok: Tokenizer, append_eod: bool) -> str:
    """What would make the lines match, as far as the data tells: the append_eod option, or else the inputs."""
    generic = ("the lines are not the store's documents, or the tokenizer or `text_key` is not the one the store "
               "was made with")
    eod = tok.token_to_id(EOD_TOKEN)
    if eod is None:
        return generic
    s_end, s_n = _last_tokens_equal(store, eod)
    l_end, l_n = _last_tokens_equal(lines, eod)
    if not s_n or not l_n:
        return generic
    if not append_eod and s_end >= 0.9 * s_n and l_end < 0.5 * l_n:
        return (f"{s_end:,} of the store's {s_n:,} items end in token {eod} ({EOD_TOKEN}) and the lines, tokenized "
                f"without it, do not: pass `append_eod`")
    if append_eod and s_end < 0.5 * s_n:
        return (f"`append_eod` ends every line in token {eod} ({EOD_TOKEN}) but only {s_end:,} of the store's "
                f"{s_n:,} items end in it: drop `append_eod`")
    return generic


def _existing_sources(path: Path, n_items: int) -> int | None:
    """Items the table at ``path`` gives a source; None when there is none, or it does not describe this store."""
    if not path.is_file():
        return None
    try:
        col = pq.read_table(path, columns=["source_file"]).column("source_file")
    except (OSError, pa.ArrowException, KeyError) as e:
        log.warning("%s: unreadable (%s); attach replaces it", path, e)
        return None
    if len(col) != n_items:
        log.warning("%s: %s rows for a store of %s items; attach replaces it", path, f"{len(col):,}", f"{n_items:,}")
        return None
    return len(col) - col.null_count


def attach(cfg: AttachConfig, tokenizer: Tokenizer | None = None) -> dict[str, Any]:
    """Run attach; write the documents table and the report; return the report.

    Raises ``AttachRefusedError`` (nothing written) below ``cfg.min_match_fraction`` or when the table already
    there gives a source to more items than this run matched."""
    cfg.validate()
    t0 = time.perf_counter()
    store = TokenStore(cfg.prefixes)
    tok_file = TokenizerFile.of(tokenizer) if tokenizer is not None else read_tokenizer(cfg.tokenizer)
    tok = tok_file.tokenizer
    inputs = expand_inputs(cfg.inputs, what="`inputs`")  # NotFoundError before any work
    for p in inputs.files:
        open_input(p, cfg.text_key)  # the kind of every file (and a Parquet file's columns) before any work
    prefix = store.prefix
    out_path = store.documents_path()
    problems = ProblemLog()
    tmp_dir = Path(tempfile.mkdtemp(prefix=".attach-", dir=Path(prefix).parent))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, tmp_dir, ignore_errors=True)
        lines_prefix = str(tmp_dir / "lines")
        lines_tbl, per_file = _read_lines(cfg, inputs.files, tok, store.dtype, lines_prefix, problems)
        lines_store = TokenStore(lines_prefix)
        items_tbl = pa.table({
            "doc_id": pa.array(np.arange(len(store), dtype=np.int64)),
            "n_tokens": pa.array(np.asarray(store.sizes, dtype=np.int64)),
            "token_hash": pa.array(_item_hashes(store), pa.uint64()),
        })
        con = stack.enter_context(duckdb.connect(":memory:"))
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
        unmatched_items = con.execute(
            f"SELECT doc_id FROM items ANTI JOIN matched USING (doc_id) ORDER BY doc_id LIMIT {MAX_LISTED}"
        ).fetchnumpy()["doc_id"]
        unmatched_lines = con.execute(
            f"SELECT source_file, source_line FROM lines ANTI JOIN matched USING (line_seq) "
            f"ORDER BY line_seq LIMIT {MAX_LISTED}").fetchall()
        n_items, n_lines, matched = len(store), lines_tbl.num_rows, int(doc_ids.size)
        smaller = min(n_items, n_lines)
        fraction = matched / smaller if smaller else (1.0 if n_items == 0 else 0.0)
        report = {
            "prefix": prefix,
            "documents_table": str(out_path),
            "inputs": per_file,
            "folders": inputs.folders,
            "items": n_items,
            "lines": n_lines,
            "matched": matched,
            "match_fraction": round(fraction, 6),
            "min_match_fraction": cfg.min_match_fraction,
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
            "tokenizer": tok_file.source,
            "tokenizer_sha256": tok_file.sha256,
        }
        existing = _existing_sources(out_path, n_items)
        kept = f"{out_path} is kept as it was" if out_path.exists() else "no table was written"
        if fraction < cfg.min_match_fraction:
            why = (_diagnose(store, lines_store, tok, cfg.append_eod) if n_lines else
                   f"No input line gave a document (problem lines: {problems.to_dict()['counts']}, empty texts: "
                   f"{report['empty_skipped']:,}); check `text_key` and the inputs")
            raise AttachRefusedError(
                f"{prefix}: {matched:,} of {n_items:,} items matched ({matched:,} of {n_lines:,} lines: "
                f"{fraction:.1%} of the smaller side, below min_match_fraction {cfg.min_match_fraction}); {kept}. "
                f"{why}", report)
        if existing is not None and existing > matched:
            raise AttachRefusedError(
                f"{prefix}: this run matched {matched:,} of {n_items:,} items but {out_path} gives a source "
                f"to {existing:,}; {kept}. Give all the raw files in one run, or move the table aside to replace it",
                report)
        table = con.sql("""
            SELECT i.doc_id, l.source_file, l.source_line, l.pile_set_name, l.meta, i.n_tokens, l.n_bytes,
                   i.token_hash
            FROM items i LEFT JOIN matched m USING (doc_id) LEFT JOIN lines l USING (line_seq)
            ORDER BY i.doc_id
        """).to_arrow_table().cast(DOCUMENT_SCHEMA)
        with atomic_path(out_path) as tmp:
            pq.write_table(table, tmp, compression="zstd")
        record_digest(out_path)  # FILE.sha256, for `pile-index verify`
    report["elapsed_s"] = round(time.perf_counter() - t0, 3)
    write_bytes(attach_report_path(prefix), (json.dumps(report, indent=1, ensure_ascii=False) + "\n").encode())
    log.info("attach %s: %s of %s items matched", prefix, f"{matched:,}", f"{n_items:,}")
    return report


__all__ = ["AttachConfig", "AttachRefusedError", "attach", "DUPLICATE_RULE", "MIN_MATCH_FRACTION"]
