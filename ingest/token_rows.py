"""Parquet token rows in training order -> a preshuffled store ``PREFIX.bin/.idx`` (no tokenizer needed).

Some publish Pythia's training rows as Parquet rather than ``.bin/.idx``: one row per training row, a list
column of token ids (``token_ids``, 2,049 ids for Pythia), often a row id (``uid``) and the step
(``batch_idx``), one file per 1,000 steps. ``ingest_token_rows`` reads the files in the order given (a folder:
its ``.parquet`` files sorted by name, as ``expand_inputs`` lists it), rows in file order, each row one item
and one document (the layout of ``pile_index/order/export.py``'s preshuffled export), so item k is training
row k and ``order verify --against PREFIX`` compares it with raw + index maps.

Every row is checked, and the first bad one stops the ingest before any output exists (a skipped or
reordered row would shift every later step): a null row or id, a row whose length differs from the first
row's, an id outside the store dtype (uint16 by default: Pythia's; ``int32`` for big vocabularies) or, with
a tokenizer, outside its vocabulary. When a ``uid`` (or else ``index``) column exists, it must count
0, 1, 2, ... across all files in order. Files are read a record batch at a time (``parquet_batches``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pile_index.atomic import write_bytes
from pile_index.errors import ConfigError, FormatError
from pile_index.files import ingest_report_path, tokenizer_path
from pile_index.format import IndexedDatasetWriter, best_fitting_dtype, read_tokenizer, strip_prefix
from pile_index.progress import progress_bar

from .readers import _columns_found, _is_list, expand_inputs, is_parquet, parquet_batches

log = logging.getLogger(__name__)

INDEX_COLUMNS = ("uid", "index")  # row-id columns checked for 0..n-1, the first present one
TOKEN_DTYPES = ("uint16", "int32")  # the store dtypes GPT-NeoX's builder writes for token ids
BATCH_ROWS = 1024  # Parquet rows decoded per step (4 MB of Pythia rows)


@dataclass
class TokenRowsConfig:
    """Options of one token-rows ingest."""

    inputs: list[str]
    """``.parquet`` files or folders of them, in training order."""
    out: str
    """Output PREFIX: writes PREFIX.bin, PREFIX.idx, PREFIX.ingest_report.json (and PREFIX.tokenizer.json)."""
    tokens_column: str = "token_ids"
    """The list column holding each row's token ids."""
    dtype: str = "uint16"
    """Store dtype without a tokenizer: uint16 (Pythia) or int32."""
    tokenizer: str | None = None
    """Optional tokenizer.json or hub id: ids must be below its vocabulary size, the dtype follows it, and
    the file is copied to PREFIX.tokenizer.json."""
    progress: bool = True
    """Show a progress bar on stderr."""

    def validate(self) -> None:
        if not self.inputs:
            raise ConfigError("inputs: expected at least one .parquet file or folder, found none")
        if not self.tokens_column:
            raise ConfigError("tokens_column: expected a column name such as 'token_ids', found an empty string")
        if self.dtype not in TOKEN_DTYPES:
            raise ConfigError(f"dtype: expected one of {', '.join(TOKEN_DTYPES)}, found {self.dtype!r}")


def _check_schema(path: str, schema: pa.Schema, column: str) -> str | None:
    """The index column to check (or None); a missing or non-integer-list tokens column is a ConfigError."""
    if column not in schema.names:
        raise ConfigError(f"input {path}: no column {column!r}; the columns are {_columns_found(schema)}: pass "
                          f"tokens_column with the column that holds the token ids")
    t = schema.field(column).type
    if not (_is_list(t) and pa.types.is_integer(t.value_type)):
        raise ConfigError(f"input {path}: column {column!r} is {t}; expected a list of integer token ids")
    for name in INDEX_COLUMNS:
        if name in schema.names and name != column:
            if not pa.types.is_integer(schema.field(name).type):
                raise ConfigError(f"input {path}: column {name!r} is {schema.field(name).type}; expected integer "
                                  f"row ids 0..n-1 (or rename the column)")
            return name
    return None


def ingest_token_rows(cfg: TokenRowsConfig) -> dict[str, Any]:
    """Write the preshuffled store (module docstring); returns the report, also in PREFIX.ingest_report.json."""
    t0 = time.perf_counter()
    cfg.validate()
    prefix = strip_prefix(cfg.out)
    tok_file = read_tokenizer(cfg.tokenizer) if cfg.tokenizer else None
    vocab = tok_file.tokenizer.get_vocab_size() if tok_file else None
    dtype = best_fitting_dtype(vocab) if tok_file else np.dtype(cfg.dtype)
    limit = vocab if vocab is not None else int(np.iinfo(dtype).max) + 1  # ids must be < limit
    inputs = expand_inputs(cfg.inputs)
    files: list[tuple[str, str | None, int]] = []
    for path in inputs.files:
        if not is_parquet(path):
            raise ConfigError(f"input {path}: token rows are read from .parquet files only; pass the Parquet "
                              f"files (or drop tokens_column to tokenize text)")
        try:
            with pq.ParquetFile(path) as pf:
                schema, n_rows = pf.schema_arrow, pf.metadata.num_rows
        except (OSError, pa.ArrowException) as e:
            raise FormatError(f"input {path}: not a readable Parquet file ({e})") from e
        files.append((path, _check_schema(path, schema, cfg.tokens_column), n_rows))
    total = sum(n for _, _, n in files)
    if total == 0:
        raise ConfigError(f"inputs: {len(files):,} Parquet files hold no rows; nothing to ingest")

    width: int | None = None
    row = 0  # rows read so far, all files: the next item index and the uid expected next
    per_file = []
    bar = progress_bar(total=total, desc="ingest rows", unit="row", enabled=cfg.progress, unit_scale=True)
    try:
        with IndexedDatasetWriter(prefix, dtype) as w:
            for path, index_col, _ in files:
                first_row = row
                columns = [cfg.tokens_column] + ([index_col] if index_col else [])
                file_row = 0
                try:
                    for batch in parquet_batches(path, columns, BATCH_ROWS):
                        if batch.num_rows == 0:
                            continue
                        rows, width = _batch_rows(path, file_row, batch.column(cfg.tokens_column), width, limit,
                                                  dtype, vocab)
                        if index_col:
                            _check_ids(path, file_row, index_col, batch.column(index_col), row)
                        w.add_rows(rows)
                        file_row += batch.num_rows
                        row += batch.num_rows
                        bar.update(batch.num_rows)
                except (OSError, pa.ArrowException) as e:
                    raise FormatError(f"input {path}: row {file_row + 1:,} and after cannot be read ({e}); no store "
                                      f"was written") from e
                per_file.append({"file": path, "rows": row - first_row, "index_column": index_col})
    finally:
        bar.close()
    report = {
        "kind": "token_rows", "prefix": prefix, "rows": row, "tokens_per_row": width, "dtype": str(dtype),
        "tokens_column": cfg.tokens_column, "vocab_size": vocab, "inputs": per_file, "folders": inputs.folders,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if tok_file is not None:
        write_bytes(tokenizer_path(prefix), tok_file.data)
    write_bytes(ingest_report_path(prefix), (json.dumps(report, indent=1) + "\n").encode())
    return report


def _batch_rows(path: str, file_row: int, col: pa.Array, width: int | None, limit: int, dtype: np.dtype,
                vocab: int | None) -> tuple[np.ndarray, int]:
    """One record batch's token lists as a (rows, width) array of ``dtype``, every row checked."""
    if isinstance(col, pa.FixedSizeListArray):
        col = col.cast(pa.list_(col.type.value_type))
    if col.null_count:
        r = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
        raise FormatError(f"input {path}: row {file_row + r + 1:,} has no token list (null); every row must hold "
                          f"its token ids")
    lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False).astype(np.int64)
    if width is None:
        width = int(lengths[0]) if lengths.size else 0
        if width < 1:
            raise FormatError(f"input {path}: row 1 holds no token ids; expected rows of seq_length + 1 ids")
    bad = np.flatnonzero(lengths != width)
    if bad.size:
        r = int(bad[0])
        raise FormatError(f"input {path}: row {file_row + r + 1:,} has {int(lengths[r]):,} token ids, the rows "
                          f"before it {width:,}; every row of a preshuffled store has the same length "
                          f"(seq_length + 1)")
    values = pc.list_flatten(col)
    if values.null_count:
        v = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
        raise FormatError(f"input {path}: row {file_row + v // width + 1:,} holds a null token id at position "
                          f"{v % width:,}")
    ids = values.to_numpy(zero_copy_only=False)
    out_of_range = (ids < 0) | (ids >= limit) if ids.dtype.kind == "i" else ids >= limit
    if ids.size and out_of_range.any():
        v = int(np.flatnonzero(out_of_range)[0])
        what = (f"the tokenizer's vocabulary of {vocab:,} ids" if vocab is not None
                else f"the store dtype {dtype} (0..{limit - 1:,}); pass dtype int32 for a bigger vocabulary")
        raise FormatError(f"input {path}: row {file_row + v // width + 1:,} holds token id {int(ids[v]):,} at "
                          f"position {v % width:,}, outside {what}")
    return ids.astype(dtype, copy=False).reshape(-1, width), width


def _check_ids(path: str, file_row: int, name: str, col: pa.Array, expected_first: int) -> None:
    """Row ids must continue 0..n-1 across the files: the batch holds expected_first, expected_first + 1, ..."""
    ids = col.to_numpy(zero_copy_only=False)
    want = np.arange(expected_first, expected_first + len(ids), dtype=np.int64)
    if col.null_count or not np.array_equal(ids.astype(np.int64, copy=False), want):
        nulls = col.is_null().to_numpy(zero_copy_only=False)
        r = int(np.flatnonzero(nulls | (np.where(nulls, -1, ids).astype(np.int64) != want))[0])
        found = "null" if nulls[r] else f"{int(ids[r]):,}"
        raise FormatError(f"input {path}: row {file_row + r + 1:,} has {name} {found}, expected {int(want[r]):,}: "
                          f"the rows are not contiguous 0..n-1 in file order (pass the files in training order, "
                          f"each once)")
