"""The ingest job: Pile-style JSON lines or Parquet -> ``PREFIX.bin/.idx`` + ``PREFIX.documents.parquet``.

Semantics are GPT-NeoX v1.0 ``tools/preprocess_data.py`` with the ``HFTokenizer``: inputs are read in the
order given, empty texts are skipped before tokenizing (so item index != line number), each remaining
document becomes one item ``tokenizer.encode(text).ids`` (+ ``<|endoftext|>`` with ``--append-eod``), written
with GPT-NeoX's builder layout in the dtype of ``best_fitting_dtype(vocab_size)``: uint16 below 65,500
entries, else int32 (the MMIDIDX code table has no uint32, so GPT-NeoX writes int32 for big vocabularies).

Speed on few cores comes from overlap, not from more processes (token lists are never moved between
processes). Three stages joined by bounded queues, in order:

1. reader thread: decompress (zstandard/zlib release the GIL), split lines, ``json.loads`` (or decode a
   Parquet record batch), batch;
2. calling thread: ``Tokenizer.encode_batch_fast`` (Rust, rayon over the batch, GIL released; same ids
   as ``encode``, without character offsets), two batches in flight so the cores never wait on a batch's tail;
3. writer thread: ids -> one numpy array per batch, ``.bin`` writes, token hashes, document rows.

Outputs appear atomically at the end, the ``.idx`` last, so an interrupted run leaves nothing that opens as
a store; every output is a pure function of the inputs, the tokenizer and the options, so a rerun writes
identical bytes. Memory is bounded by the queues and the writer's int32 ``sizes`` buffer.

``token_hash``: 64-bit BLAKE2b (``digest_size=8``) of an item's token bytes as stored (store dtype,
little-endian, EOD included when appended), read as a little-endian unsigned integer.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import functools
import hashlib
import itertools
import json
import logging
import os
import queue
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tokenizers import Tokenizer, normalizers

from pile_index.atomic import atomic_path, write_bytes
from pile_index.digests import record_digest
from pile_index.errors import ConfigError
from pile_index.files import documents_path, ingest_report_path, tokenizer_path
from pile_index.format import (IndexedDatasetWriter, TokenizerFile, best_fitting_dtype, eod_id, index_file_path,
                               read_tokenizer, strip_prefix)
from pile_index.sql import DOCUMENT_SCHEMA, token_hashes

from .readers import KeyTally, ParsedLine, ProblemLog, Reason, expand_inputs, open_input

log = logging.getLogger(__name__)

ROW_GROUP_ROWS = 1 << 17  # documents per Parquet row group (fixed, so reruns write identical files)


def token_hash(tokens: np.ndarray, dtype: np.dtype | type | None = None) -> int:
    """64-bit BLAKE2b of ``tokens``' bytes in the store dtype (``dtype`` casts first), little-endian uint64."""
    arr = np.asarray(tokens)
    if dtype is not None:
        arr = arr.astype(np.dtype(dtype), copy=False)
    arr = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("<"), copy=False))
    return int.from_bytes(hashlib.blake2b(memoryview(arr).cast("B"), digest_size=8).digest(), "little")


@dataclass
class IngestConfig:
    """Options of one ingest run."""

    inputs: list[str]
    """Input files (.jsonl, .jsonl.zst, .jsonl.gz, .parquet) or folders of them (sorted by name), in this order."""
    out: str
    """Output PREFIX: writes PREFIX.bin, .idx, .documents.parquet, .tokenizer.json, .ingest_report.json."""
    tokenizer: str
    """tokenizer.json path or Hugging Face hub id."""
    append_eod: bool = False
    """Append <|endoftext|> to every document (GPT-NeoX --append-eod)."""
    text_key: str = "text"
    """JSON key (Parquet: column) of the text (GPT-NeoX --jsonl-keys, one key)."""
    strict: bool = False
    """Stop at the first problem line instead of counting and skipping it."""
    allow_empty: bool = False
    """Write a store of 0 documents instead of refusing (an empty input, or a wrong text_key, gives 0)."""
    batch_bytes: int = 2 << 20
    """Text bytes per tokenizer batch (a batch's Encodings take ~100 bytes per token until written)."""
    batch_docs: int = 4096
    """Most documents per tokenizer batch."""
    queue_batches: int = 2
    """Batches buffered between each pair of stages; memory is bounded by this and batch_bytes."""
    progress: bool = True
    """Show a progress bar on stderr."""

    def validate(self) -> None:
        if not self.inputs:
            raise ConfigError("inputs: expected at least one .jsonl/.jsonl.zst/.jsonl.gz/.parquet file or folder, "
                              "found none")
        if not self.text_key:
            raise ConfigError("text_key: expected a JSON key such as 'text', found an empty string")
        for name in ("batch_bytes", "batch_docs", "queue_batches"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: expected >= 1, found {getattr(self, name)}")


@dataclass
class _Batch:
    file: str
    docs: list[ParsedLine]
    read_bytes: int  # compressed input bytes consumed so far (all files), for the progress bar


@dataclass
class IngestResult:
    prefix: str
    items: int
    tokens: int
    report: dict[str, Any]
    elapsed_s: float
    report_path: Path = field(default_factory=Path)


class _Stopped(Exception):
    pass


class _Pipe:
    """A bounded queue whose put/get give up when the shared stop event is set."""

    def __init__(self, maxsize: int, stop: threading.Event):
        self.q: queue.Queue = queue.Queue(maxsize)
        self.stop = stop

    def put(self, item: Any) -> None:
        while True:
            if self.stop.is_set():
                raise _Stopped
            try:
                self.q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def get(self) -> Any:
        while True:
            if self.stop.is_set():
                raise _Stopped
            try:
                return self.q.get(timeout=0.1)
            except queue.Empty:
                continue


_END = object()


def _encode_batch(tok: Tokenizer):
    """``encode(texts) -> encodings`` in order, with the ids of ``tok.encode``.

    ``encode_batch_fast`` (tokenizers >= 0.20) skips character offsets. When the tokenizer's normalizer is NFC
    alone (GPT-NeoX-20B's), a text already in NFC goes to a twin without the normalizer: NFC leaves such a
    text, and every piece the added tokens cut from it, unchanged, so the ids are the same, without the
    normalizer's per-character work and its alignment vectors (~8% of encode's CPU samples on the 20B
    tokenizer, measured with perf). Python's Unicode tables (``unicodedata``, 14.0 from Python 3.11) are newer
    than those tokenizers normalizes with (unicode-normalization-alignments 0.1.12, a 2019 fork), and under
    the Unicode stability policy a character unknown to older tables is an inert starter, so an NFC text by
    the newer tables is left unchanged by the older ones.
    """
    fast = getattr(tok, "encode_batch_fast", tok.encode_batch)
    twin = _without_nfc(tok)
    if twin is None:
        return fast
    twin_fast = getattr(twin, "encode_batch_fast", twin.encode_batch)
    is_nfc = functools.partial(unicodedata.is_normalized, "NFC")

    def encode(texts: list[str]) -> list:
        nfc = list(map(is_nfc, texts))
        if all(nfc):
            return twin_fast(texts)
        if not any(nfc):
            return fast(texts)
        out: list = [None] * len(texts)
        for want, enc in ((True, twin_fast), (False, fast)):
            idx = [i for i, x in enumerate(nfc) if x is want]
            for i, e in zip(idx, enc([texts[i] for i in idx])):
                out[i] = e
        return out

    return encode


def _without_nfc(tok: Tokenizer) -> Tokenizer | None:
    """A copy of ``tok`` without its normalizer if that is NFC alone and every added token is in NFC, else None."""
    if not isinstance(tok.normalizer, normalizers.NFC):
        return None
    if not all(unicodedata.is_normalized("NFC", t.content) for t in tok.get_added_tokens_decoder().values()):
        return None
    try:
        twin = Tokenizer.from_str(tok.to_str())
    except Exception:  # a component that does not serialize (a custom Python pre-tokenizer): no twin
        return None
    twin.normalizer = None
    return twin


def ingest(
    cfg: IngestConfig,
    tokenizer: Tokenizer | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> IngestResult:
    """Run the ingest job; returns counts and the report (also written to PREFIX.ingest_report.json).

    ``tokenizer`` overrides loading ``cfg.tokenizer``; ``on_batch(docs, tokens)`` is called from the
    writer thread after each batch is written (progress hooks, benchmarks).
    """
    t0 = time.perf_counter()
    cfg.validate()
    prefix = strip_prefix(cfg.out)
    tok_file = TokenizerFile.of(tokenizer) if tokenizer is not None else read_tokenizer(cfg.tokenizer)
    tok = tok_file.tokenizer
    vocab = tok.get_vocab_size()
    dtype = best_fitting_dtype(vocab)
    eod = eod_id(tok) if cfg.append_eod else None
    inputs = expand_inputs(cfg.inputs)  # NotFoundError before any output exists
    readers = [open_input(p, cfg.text_key) for p in inputs.files]  # kinds and Parquet columns checked here
    total_in = sum(r.path.stat().st_size for r in readers)

    problems = ProblemLog(strict=cfg.strict)
    keys = KeyTally()
    per_file = [{"file": p, "lines": 0, "documents": 0, "empty": 0, "problems": 0} for p in inputs.files]
    stop = threading.Event()
    errors: list[BaseException] = []
    to_tok = _Pipe(cfg.queue_batches, stop)
    to_write = _Pipe(cfg.queue_batches, stop)
    totals = {"items": 0, "tokens": 0}
    encode = _encode_batch(tok)

    def read_stage() -> None:
        done_bytes = 0
        for r, stats in zip(readers, per_file):
            name = stats["file"]
            counters = {"empty": 0}
            before = problems.total
            pending: list[ParsedLine] = []
            pending_bytes = 0
            for docs in r.documents(problems, counters, keys):
                stats["lines"] = r.lines
                for d in docs:
                    pending.append(d)
                    pending_bytes += d.n_bytes
                    if pending_bytes >= cfg.batch_bytes or len(pending) >= cfg.batch_docs:
                        stats["documents"] += len(pending)
                        to_tok.put(_Batch(name, pending, done_bytes + r.compressed_read))
                        pending, pending_bytes = [], 0
            if pending:
                stats["documents"] += len(pending)
                to_tok.put(_Batch(name, pending, done_bytes + r.compressed_read))
            done_bytes += r.compressed_read
            stats["empty"] = counters["empty"]
            stats["problems"] = problems.total - before
        to_tok.put(_END)

    # An exception anywhere below discards the temp .bin (the writer's exit) and, before its commit, the temp
    # documents table (atomic_path's exit). Finalize order: drop any old .idx first, so no crash point pairs
    # the new .bin with an old .idx; the documents table and tokenizer come before the store, the .idx last
    # of the store files.
    with IndexedDatasetWriter(prefix, dtype) as writer:  # .bin goes to a temp file until finalize()
        with atomic_path(documents_path(prefix)) as pq_tmp:
            bar = _Progress(cfg.progress, total_in)
            pq_writer = pq.ParquetWriter(pq_tmp, DOCUMENT_SCHEMA, compression="zstd")
            try:
                _run_stages(read_stage, _make_write_stage(writer, pq_writer, to_write, problems, totals, bar, eod, dtype,
                                                          on_batch),
                            lambda: _tokenize_stage(to_tok, to_write, encode), stop, errors)
            finally:
                pq_writer.close()
                bar.close()
            if totals["items"] == 0 and not cfg.allow_empty:
                raise _empty_error(cfg, per_file, problems, keys)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(index_file_path(prefix))
        record_digest(documents_path(prefix))  # FILE.sha256, for `pile-index verify`
        write_bytes(tokenizer_path(prefix), tok_file.data)  # the file given, byte for byte
        writer.finalize()
    elapsed = time.perf_counter() - t0

    report = {
        "prefix": prefix,
        "inputs": per_file,
        "folders": inputs.folders,
        "documents": totals["items"],
        "tokens": totals["tokens"],
        "empty_skipped": sum(f["empty"] for f in per_file),
        "problems": problems.to_dict(),
        "dtype": str(dtype),
        "vocab_size": vocab,
        "append_eod": cfg.append_eod,
        "eod_id": eod,
        "text_key": cfg.text_key,
        "tokenizer": tok_file.source,
        "tokenizer_sha256": tok_file.sha256,
        "token_hash": "blake2b(digest_size=8) of the item's token bytes in the store dtype, little-endian uint64",
    }
    report_path = ingest_report_path(prefix)
    write_bytes(report_path, (json.dumps(report, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))
    return IngestResult(prefix, totals["items"], totals["tokens"], report, elapsed, report_path)


class EmptyIngestError(ConfigError):
    """The inputs gave 0 documents and ``allow_empty`` is off; nothing was written."""


def _empty_error(cfg: IngestConfig, per_file: list[dict[str, Any]], problems: ProblemLog,
                 keys: KeyTally) -> EmptyIngestError:
    """Why a run gave 0 documents, and the fix: the keys the objects had, the one that held text."""
    lines = sum(f["lines"] for f in per_file)
    what = ", ".join(f"{n:,} {r}" for r, n in sorted(problems.counts.items()))
    empty = sum(f["empty"] for f in per_file)
    if empty:
        what = ", ".join(x for x in (what, f"{empty:,} empty texts") if x)
    if not lines:
        why = f"the input{'s hold' if len(per_file) > 1 else ' holds'} no lines"
    else:
        why = f"{lines:,} lines: {what}"
    hint = ""
    if keys.seen:
        listed = sorted(keys.keys, key=lambda k: (-keys.keys[k], k))[:8]
        hint = f"; the objects in the first lines have no {cfg.text_key!r} key but {listed}"
        if (k := keys.suggestion()) is not None:
            hint += f": did you mean `text_key` {k}?"
    return EmptyIngestError(
        f"0 documents from {len(per_file):,} input file{'s' if len(per_file) != 1 else ''} ({why}); nothing was "
        f"written{hint} (`allow_empty` writes an empty store)"
    )


def _run_stages(read_stage, write_stage, tokenize_stage, stop: threading.Event, errors: list[BaseException]) -> None:
    """Reader and writer in threads, the tokenizer in the calling thread; the first error is re-raised."""
    threads = [
        threading.Thread(target=_guard(read_stage, stop, errors), name="ingest-read", daemon=True),
        threading.Thread(target=_guard(write_stage, stop, errors), name="ingest-write", daemon=True),
    ]
    for t in threads:
        t.start()
    try:
        _guard(tokenize_stage, stop, errors)()
    except BaseException:  # KeyboardInterrupt in the calling thread: stop the others, then re-raise
        stop.set()
        raise
    finally:
        for t in threads:
            while t.is_alive():
                t.join(timeout=0.2)
    if errors:
        raise errors[0]


def _make_write_stage(writer, pq_writer, to_write, problems, totals, bar, eod, dtype, on_batch):
    def write_stage() -> None:
        cols = _Columns()
        doc_id = 0
        while True:
            item = to_write.get()
            if item is _END:
                break
            batch, encs = item
            ids = [e.ids for e in encs]
            docs = batch.docs
            if not all(ids):
                # GPT-NeoX would write no item but still end a document (and crash with --append-eod);
                # byte-level BPE never gets here. We keep one item per row: count, list, skip.
                keep = [i for i, x in enumerate(ids) if x]
                for i, x in enumerate(ids):
                    if not x:
                        problems.add(batch.file, docs[i].line, Reason.NO_TOKENS, "the tokenizer gave no tokens")
                ids = [ids[i] for i in keep]
                docs = [docs[i] for i in keep]
            if eod is not None:
                for x in ids:
                    x.append(eod)
            n = len(ids)
            sizes = np.fromiter(map(len, ids), dtype=np.int64, count=n)
            total = int(sizes.sum())
            flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=dtype, count=total)
            pos = 0
            for s in sizes.tolist():
                writer.add_document(flat[pos : pos + s])
                pos += s
            cols.add(doc_id, batch.file, docs, sizes, token_hashes(flat, sizes))
            doc_id += n
            if cols.n >= ROW_GROUP_ROWS:
                pq_writer.write_table(cols.take(ROW_GROUP_ROWS))
            totals["items"] += n
            totals["tokens"] += total
            bar.advance(batch.read_bytes, n, total)
            if on_batch is not None:
                on_batch(n, total)
        while cols.n:
            pq_writer.write_table(cols.take(ROW_GROUP_ROWS))

    return write_stage


TOKENIZE_IN_FLIGHT = 2  # batches being tokenized at once: rayon's threads start on the next batch while the
# last long documents of one are still being encoded, so both cores stay busy across batch boundaries (one
# batch at a time left a core idle at each batch's tail); batches leave in input order.


def _tokenize_stage(to_tok: _Pipe, to_write: _Pipe, encode) -> None:
    with concurrent.futures.ThreadPoolExecutor(TOKENIZE_IN_FLIGHT, thread_name_prefix="ingest-tokenize") as pool:
        pending: collections.deque = collections.deque()
        try:
            while True:
                batch = to_tok.get()
                if batch is _END:
                    break
                pending.append((batch, pool.submit(encode, [d.text for d in batch.docs])))
                if len(pending) >= TOKENIZE_IN_FLIGHT:
                    b, fut = pending.popleft()
                    to_write.put((b, fut.result()))
            while pending:
                b, fut = pending.popleft()
                to_write.put((b, fut.result()))
        finally:
            for _, fut in pending:
                fut.cancel()
    to_write.put(_END)


def _guard(fn, stop: threading.Event, errors: list[BaseException]):
    def run() -> None:
        try:
            fn()
        except _Stopped:
            pass
        except BaseException as e:  # recorded and re-raised by the calling thread
            errors.append(e)
            stop.set()

    return run


class _Columns:
    """Document rows buffered as Arrow tables; ``take(k)`` cuts fixed-size row groups."""

    def __init__(self) -> None:
        self.tables: list[pa.Table] = []
        self.n = 0

    def add(self, first_id: int, file: str, docs: list[ParsedLine], sizes: np.ndarray, hashes: np.ndarray) -> None:
        n = len(docs)
        t = pa.table(
            {
                "doc_id": pa.array(np.arange(first_id, first_id + n, dtype=np.int64)),
                "source_file": pa.array([file] * n, pa.string()),
                "source_line": pa.array([d.line for d in docs], pa.int64()),
                "pile_set_name": pa.array([d.pile_set_name for d in docs], pa.string()),
                "meta": pa.array([d.meta for d in docs], pa.string()),
                "n_tokens": pa.array(sizes.astype(np.int64)),
                "n_bytes": pa.array([d.n_bytes for d in docs], pa.int64()),
                "token_hash": pa.array(hashes, pa.uint64()),
            },
            schema=DOCUMENT_SCHEMA,
        )
        self.tables.append(t)
        self.n += n

    def take(self, k: int) -> pa.Table:
        t = pa.concat_tables(self.tables).combine_chunks()
        head, rest = t.slice(0, k), t.slice(k)
        self.tables = [rest] if rest.num_rows else []
        self.n = rest.num_rows
        return head


class _Progress:
    def __init__(self, enabled: bool, total_bytes: int):
        self.bar = None
        self.t0 = time.perf_counter()
        self.docs = 0
        self.tokens = 0
        if enabled:
            from pile_index.progress import progress_bar

            self.bar = progress_bar(total=total_bytes, unit="B", unit_scale=True, desc="ingest", smoothing=0.1)

    def advance(self, read_bytes: int, docs: int, tokens: int) -> None:
        self.docs += docs
        self.tokens += tokens
        if self.bar is None:
            return
        dt = max(time.perf_counter() - self.t0, 1e-9)
        self.bar.update(max(0, read_bytes - self.bar.n))
        self.bar.set_postfix_str(f"{self.docs / dt:,.0f} docs/s, {self.tokens / dt:,.0f} tokens/s", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


