"""Streaming readers for Pile-style inputs: JSON lines (``.jsonl``, ``.jsonl.zst``, ``.jsonl.gz``) and Parquet.

Each input is read in fixed-size compressed chunks and split into lines, so memory is bounded by the chunk
size plus the longest line, never by the file.

Lines are what GPT-NeoX v1.0's ``tools/preprocess_data.py`` sees through lm_dataformat and ``jsonlines``:
a ``.jsonl`` is opened in text mode with ``utf-8-sig`` (a BOM at the start of the file is dropped) and
universal newlines (``\\n``, ``\\r\\n`` and a lone ``\\r`` each end a line; nothing else does, unlike
``str.splitlines``), and ``jsonlines`` drops one leading ``\\ufeff`` (BOM) or ``\\x1e`` (RFC 7464) from each
line. Every input, compressed or not, is read by that rule. lm_dataformat reads a ``.jsonl.zst`` as binary
lines split on ``\\n`` only (with the same per-line strip); the two differ only where a raw ``\\r`` sits
between JSON tokens inside a line (JSON whitespace that ``json.dumps`` never writes; a raw ``\\r`` inside a
string is invalid JSON either way) or where a zstd file starts with two BOMs, and a CR-only file gives its
documents instead of one malformed line. (lm_dataformat tokenizes each raw line of a ``.gz`` file, JSON
syntax included; we parse ``.jsonl.gz`` as JSON lines.)

Parsing follows lm_dataformat's ``handle_jsonl``: a line holding a JSON object gives ``obj[text_key]``
(a list of strings is joined with ``"\\n\\n"``), a line holding a bare JSON string is the text itself
(its legacy form), and the caller skips empty texts (GPT-NeoX's ``filter(lambda x: x, ...)``). Where GPT-NeoX
would crash (bad JSON, a missing key, invalid UTF-8) or silently read a truncated zstd stream as if it
ended there, we count the line under a named reason with its ``file:line`` and go on: no silent drops.

A folder given as an input stands for its ``.jsonl``, ``.jsonl.zst``, ``.jsonl.gz`` and ``.parquet`` files in
sorted name order, as lm_dataformat lists a folder (``sorted(os.listdir(...))``, not recursive).

A ``.parquet`` file (the Pile's text on the hub today: ``EleutherAI/the_pile_deduplicated``, a ``text`` column
only) is read row group by row group, a record batch at a time (``ParquetReader``): ``text_key`` names the
text column, an optional ``meta`` column is a JSON string or a struct, and each row becomes the ``ParsedLine``
the same record gives as a JSON line, with ``line`` = the 1-based row number in the file. A missing text column is an error naming the
columns found; a null or non-string value is a counted problem at ``file:row``.

zstd is decoded frame by frame with ``zstandard``'s decompressobj, because its ``stream_reader`` returns
end-of-file on a truncated frame without an error (checked with zstandard 0.25).
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from pile_index.errors import ConfigError, FormatError, NotFoundError

CHUNK_BYTES = 1 << 20  # compressed bytes read per step
PARQUET_BATCH_ROWS = 1024  # Parquet rows decoded per step (the Pile's documents average ~5 kB: ~5 MB a batch)
MAX_LISTED = 1000  # problem lines kept per reason in the report; all are counted
_BOM = b"\xef\xbb\xbf"  # U+FEFF in UTF-8
_SKIPPABLE_FIRST = (_BOM, b"\x1e")  # jsonlines drops one of these from the start of each line


class Reason(StrEnum):
    """Why a line did not become a document."""

    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_TEXT_KEY = "missing_text_key"
    TEXT_NOT_STRING = "text_not_string"
    INVALID_UTF8 = "invalid_utf8"
    INVALID_UNICODE = "invalid_unicode"  # a lone surrogate escape such as "\ud800": not encodable as UTF-8
    BLANK_LINE = "blank_line"
    TRUNCATED_STREAM = "truncated_stream"
    CORRUPT_STREAM = "corrupt_stream"
    NO_TOKENS = "no_tokens"  # a non-empty text the tokenizer maps to nothing


@dataclass
class Problem:
    file: str
    line: int  # 1-based line in the decompressed file
    reason: str
    detail: str

    def where(self) -> str:
        return f"{self.file}:{self.line}"


class StrictError(ConfigError):
    """Raised under ``--strict`` at the first problem line."""


@dataclass
class ProblemLog:
    """Counts per reason, and the first ``max_listed`` problem lines of each reason with file:line."""

    strict: bool = False
    max_listed: int = MAX_LISTED
    counts: dict[str, int] = field(default_factory=dict)
    listed: list[Problem] = field(default_factory=list)
    _listed_per_reason: dict[str, int] = field(default_factory=dict)

    def add(self, file: str, line: int, reason: Reason, detail: str) -> None:
        p = Problem(file, line, str(reason), detail)
        if self.strict:
            raise StrictError(
                f"{p.where()}: {p.reason}: {detail}; fix the input or run without `strict` to count and skip such lines"
            )
        self.counts[p.reason] = self.counts.get(p.reason, 0) + 1
        k = self._listed_per_reason.get(p.reason, 0)
        if k < self.max_listed:
            self.listed.append(p)
            self._listed_per_reason[p.reason] = k + 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": dict(sorted(self.counts.items())),
            "total": self.total,
            "listed_per_reason_max": self.max_listed,
            "lines": [
                {"file": p.file, "line": p.line, "reason": p.reason, "detail": p.detail} for p in self.listed
            ],
        }


class StreamError(Exception):
    """The compressed stream of a file ended early or is corrupt after ``line - 1`` complete lines."""

    def __init__(self, reason: Reason, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


FOLDER_SUFFIXES = (".jsonl", ".jsonl.zst", ".jsonl.gz", ".parquet")  # the files a folder input stands for


@dataclass
class Inputs:
    """The files to read, in order, after folders are expanded; ``folders`` says what each folder held."""

    files: list[str]
    folders: list[dict[str, Any]]


def expand_inputs(paths: list[str | os.PathLike], what: str = "input") -> Inputs:
    """Files in the order given, each folder replaced by its ``FOLDER_SUFFIXES`` files sorted by name.

    A folder's other entries are listed under ``not_read`` (never silently passed over); a folder with
    none of those files, or a path that does not exist, is an error naming it.
    """
    files: list[str] = []
    folders: list[dict[str, Any]] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            names = sorted(os.listdir(path))
            read = [n for n in names if n.endswith(FOLDER_SUFFIXES) and (path / n).is_file()]
            chosen = set(read)
            other = [n for n in names if n not in chosen]
            if not read:
                held = f"it holds {', '.join(other[:8])}{' ...' if len(other) > 8 else ''}" if other else "it is empty"
                raise NotFoundError(
                    f"{what} {path}: a folder with no {', '.join(FOLDER_SUFFIXES)} files ({held}); "
                    f"pass the files or a folder that holds them"
                )
            files += [os.fspath(path / n) for n in read]
            folders.append({"folder": os.fspath(p), "files": read, "not_read": other})
        elif path.is_file():
            files.append(os.fspath(p))
        else:
            raise NotFoundError(f"{what} {path}: no such file or folder")
    return Inputs(files, folders)


def compression_of(path: str | os.PathLike) -> str:
    """``"zst"``, ``"gz"`` or ``""`` from the name; ConfigError for anything else."""
    name = os.fspath(path)
    if name.endswith((".jsonl.zst", ".json.zst", ".zst")):
        return "zst"
    if name.endswith((".jsonl.gz", ".json.gz", ".gz")):
        return "gz"
    if name.endswith((".jsonl", ".json")):
        return ""
    raise ConfigError(f"input {name}: unknown kind; expected a .jsonl, .jsonl.zst, .jsonl.gz or .parquet file")


def _decompressed_chunks(f, chunk_bytes: int, new_decompressor, error: type[Exception], name: str,
                         unit: str) -> Iterator[bytes]:
    """Decompressed chunks of a stream of concatenated frames (zstd) or members (gzip), as far as it is
    intact: everything before the damage is handed out, then StreamError says what broke. (``GzipFile.read``
    and zstd's ``stream_reader`` would drop the last output or treat a truncation as the end of the file.)"""
    dobj = new_decompressor()
    fed = False  # the current frame / member has been given input
    while True:
        data = f.read(chunk_bytes)
        if not data:
            break
        while data:
            try:
                out = dobj.decompress(data)
            except error as e:
                raise StreamError(Reason.CORRUPT_STREAM, f"{name}: {e}") from e
            fed = True
            if out:
                yield out
            if dobj.eof:
                data = dobj.unused_data
                dobj = new_decompressor()
                fed = False
            else:
                data = b""
    if fed:
        raise StreamError(Reason.TRUNCATED_STREAM, f"{name}: the stream ends inside a {unit}; the file is truncated")


def _zst_chunks(f, chunk_bytes: int) -> Iterator[bytes]:
    dctx = zstandard.ZstdDecompressor()
    return _decompressed_chunks(f, chunk_bytes, dctx.decompressobj, zstandard.ZstdError, "zstd", "frame")


def _gz_chunks(f, chunk_bytes: int) -> Iterator[bytes]:
    return _decompressed_chunks(f, chunk_bytes, lambda: zlib.decompressobj(wbits=31), zlib.error, "gzip", "member")


def _plain_chunks(f, chunk_bytes: int) -> Iterator[bytes]:
    while True:
        out = f.read(chunk_bytes)
        if not out:
            return
        yield out


class LineReader:
    """Iterates ``(first_line_number, lines)`` blocks of one file; lines are bytes without ``b"\\n"``.

    ``compressed_read`` is how many bytes of the file have been consumed (for progress bars). When the
    stream is truncated or corrupt, the complete lines before it are yielded, then ``StreamError`` is
    raised with ``stream_error_line`` set to the line where the damage starts.
    """

    def __init__(self, path: str | os.PathLike, chunk_bytes: int = CHUNK_BYTES, text_key: str = "text"):
        self.path = Path(path)
        if not self.path.is_file():
            raise NotFoundError(f"input {self.path}: no such file or folder")
        self.kind = compression_of(self.path)
        self.chunk_bytes = chunk_bytes
        self.text_key = text_key
        self.compressed_read = 0
        self.stream_error_line = 0
        self.lines = 0  # lines read so far

    def documents(self, problems: ProblemLog, counters: dict[str, int],
                  keys: KeyTally | None = None) -> Iterator[list[ParsedLine]]:
        """The documents of each block (``parse_block``); a truncated or corrupt stream is a problem line."""
        name = os.fspath(self.path)
        try:
            for first, lines in self.blocks():
                self.lines = first + len(lines) - 1
                yield parse_block(name, first, lines, self.text_key, problems, counters, keys)
        except StreamError as e:
            problems.add(name, self.stream_error_line, e.reason, e.detail)

    def blocks(self) -> Iterator[tuple[int, list[bytes]]]:
        with open(self.path, "rb") as raw:
            f = _CountingFile(raw, self)
            chunks = {"zst": _zst_chunks, "gz": _gz_chunks, "": _plain_chunks}[self.kind](f, self.chunk_bytes)
            line_no = 1
            tail = b""
            after_cr = False  # the previous chunk ended in b"\r": a b"\n" opening this one ends no line
            try:
                for chunk in chunks:
                    if after_cr and chunk.startswith(b"\n"):
                        chunk = chunk[1:]
                    after_cr = chunk.endswith(b"\r")
                    if b"\r" in chunk:  # universal newlines: \r\n and a lone \r end a line like \n
                        chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
                    parts = chunk.split(b"\n")
                    if tail:
                        parts[0] = tail + parts[0]
                    tail = parts.pop()
                    if parts:
                        if line_no == 1:
                            parts[0] = _drop_bom(parts[0])
                        yield line_no, parts
                        line_no += len(parts)
            except StreamError:
                # The partial last line is not a line of the file: report the damage where it starts.
                self.stream_error_line = line_no
                raise
            if line_no == 1:
                tail = _drop_bom(tail)  # a file that is only a BOM has no lines
            if tail:
                yield line_no, [tail]


def _drop_bom(first_line: bytes) -> bytes:
    """The file's first line without a leading BOM (``utf-8-sig`` decoding)."""
    return first_line[3:] if first_line.startswith(_BOM) else first_line


class _CountingFile:
    def __init__(self, f, owner: LineReader):
        self._f = f
        self._owner = owner

    def read(self, n: int = -1) -> bytes:
        b = self._f.read(n)
        self._owner.compressed_read += len(b)
        return b


_MISSING = object()
KEY_SAMPLE_OBJECTS = 1000  # objects without the text key whose keys are tallied for the "did you mean" hint


@dataclass
class KeyTally:
    """Keys of the first ``limit`` JSON objects that lack the text key, and how much text each held."""

    limit: int = KEY_SAMPLE_OBJECTS
    seen: int = 0
    keys: dict[str, int] = field(default_factory=dict)  # key -> objects that have it
    text_chars: dict[str, int] = field(default_factory=dict)  # key -> characters of string values under it

    def add(self, ob: dict) -> None:
        if self.seen >= self.limit:
            return
        self.seen += 1
        for k, v in ob.items():
            self.keys[k] = self.keys.get(k, 0) + 1
            if isinstance(v, list) and all(isinstance(t, str) for t in v):
                v = "".join(v)  # a list of paragraphs is text too
            if isinstance(v, str) and v:
                self.text_chars[k] = self.text_chars.get(k, 0) + len(v)

    def suggestion(self) -> str | None:
        """The key that held the most text (the text, not an id or a title), if any held a string."""
        if not self.text_chars:
            return None
        return min(self.text_chars, key=lambda k: (-self.text_chars[k], k))


@dataclass
class ParsedLine:
    line: int
    text: str
    n_bytes: int
    pile_set_name: str | None
    meta: str | None  # JSON


def parse_block(
    file: str,
    first_line: int,
    lines: list[bytes],
    text_key: str,
    problems: ProblemLog,
    counters: dict[str, int],
    keys: KeyTally | None = None,
) -> list[ParsedLine]:
    """Parse one block of lines: documents out, problems logged, empty texts counted in ``counters["empty"]``;
    ``keys`` tallies the keys of objects that lack ``text_key``."""
    out: list[ParsedLine] = []
    loads = json.loads
    for k, raw in enumerate(lines):
        line = first_line + k
        if raw.startswith(_SKIPPABLE_FIRST):
            raw = raw[3:] if raw.startswith(_BOM) else raw[1:]
        try:
            s = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            problems.add(file, line, Reason.INVALID_UTF8, f"byte {e.start:,}: {e.reason}")
            continue
        try:
            ob = loads(s)
        except ValueError as e:
            if not s.strip():
                problems.add(file, line, Reason.BLANK_LINE, "empty line")
            else:
                problems.add(file, line, Reason.MALFORMED_JSON, str(e))
            continue
        meta: Any = None
        if isinstance(ob, dict):
            text = ob.get(text_key, _MISSING)
            if text is _MISSING:
                if keys is not None:
                    keys.add(ob)
                problems.add(file, line, Reason.MISSING_TEXT_KEY, f"no {text_key!r} key; keys: {sorted(ob)[:8]}")
                continue
            meta = ob.get("meta")
        elif isinstance(ob, str):
            text = ob  # lm_dataformat's legacy form: the line is the text
        else:
            problems.add(file, line, Reason.NOT_AN_OBJECT, f"a JSON {type(ob).__name__}, expected an object")
            continue
        if not isinstance(text, str):
            if isinstance(text, list) and all(isinstance(t, str) for t in text):
                text = "\n\n".join(text)  # lm_dataformat autojoin_paragraphs
            else:
                problems.add(
                    file, line, Reason.TEXT_NOT_STRING, f"{text_key!r} is a JSON {type(text).__name__}, expected a string"
                )
                continue
        if not text:
            counters["empty"] += 1
            continue
        try:
            n_bytes = len(text.encode("utf-8"))
        except UnicodeEncodeError as e:
            problems.add(file, line, Reason.INVALID_UNICODE, f"character {e.start:,}: {e.reason}")
            continue
        out.append(ParsedLine(line, text, n_bytes, *_meta_fields(meta)))
    return out


def _meta_fields(meta: Any) -> tuple[str | None, str | None]:
    """``(pile_set_name, meta JSON)`` of a record's parsed ``meta`` value (None: no meta)."""
    if meta is None:
        return None, None
    psn = None
    if isinstance(meta, dict):
        v = meta.get("pile_set_name")
        psn = v if isinstance(v, str) and _encodable(v) else None
    try:
        meta_json = json.dumps(meta, ensure_ascii=False, separators=(",", ":"))
        meta_json.encode("utf-8")
    except UnicodeEncodeError:
        meta_json = json.dumps(meta, ensure_ascii=True, separators=(",", ":"))
    return psn, meta_json


def _encodable(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _json_type(t: pa.DataType) -> bool:
    """Values of ``t`` come out of ``to_pylist`` as JSON values (null, bool, number, string, list, object)."""
    if pa.types.is_null(t) or pa.types.is_boolean(t) or pa.types.is_integer(t) or pa.types.is_floating(t):
        return True
    if _is_string(t):
        return True
    if _is_list(t):
        return _json_type(t.value_type)
    if pa.types.is_struct(t):
        return all(_json_type(t.field(i).type) for i in range(t.num_fields))
    return False  # maps (pairs, not objects), binary, dates, decimals, ...


def _columns_found(schema: pa.Schema) -> str:
    return ", ".join(f"{f.name} ({f.type})" for f in schema) or "none"


def parquet_batches(path: str | os.PathLike, columns: list[str],
                    batch_rows: int = PARQUET_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """The ``columns`` of a Parquet file, ``batch_rows`` rows at a time, in row order, one row group after the
    other (so memory is bounded by a row group's columns, and damage shows up in its group). Raises the
    reader's ``OSError`` / ``ArrowException``; callers turn it into their problem or error."""
    with pq.ParquetFile(path) as pf:
        for group in range(pf.num_row_groups):
            yield from pf.iter_batches(batch_size=batch_rows, row_groups=[group], columns=columns,
                                       use_threads=False)


class ParquetReader:
    """Iterates the documents of one ``.parquet`` file, ``batch_rows`` rows at a time.

    Only the text column and ``meta`` are read, row group by row group and ``batch_rows`` rows at a time
    (``ParquetFile.iter_batches``), so memory is bounded by a row group's two columns, never by the file.
    ``line`` is the 1-based row number. The schema is checked when the reader is made: a missing text
    column, or a column that cannot hold text or meta, is an error before any output exists.
    """

    META = "meta"

    def __init__(self, path: str | os.PathLike, text_key: str = "text", batch_rows: int = PARQUET_BATCH_ROWS):
        self.path = Path(path)
        if not self.path.is_file():
            raise NotFoundError(f"input {self.path}: no such file or folder")
        self.text_key = text_key
        self.batch_rows = batch_rows
        self.compressed_read = 0  # file bytes, in proportion to the rows read (for progress bars)
        self.lines = 0  # rows read so far
        try:
            with pq.ParquetFile(self.path) as pf:
                schema = pf.schema_arrow
                self.num_rows = pf.metadata.num_rows
        except (OSError, pa.ArrowException) as e:
            raise FormatError(f"input {self.path}: not a readable Parquet file ({e}); pass a .parquet file "
                              f"written by pyarrow, datasets or another Parquet writer") from e
        if text_key not in schema.names:
            raise ConfigError(f"input {self.path}: no column {text_key!r}; the columns are "
                              f"{_columns_found(schema)}: pass `text_key` with the column that holds the text")
        self.text_type = schema.field(text_key).type
        self.columns = [text_key]
        self.meta_is_json_text = False
        if self.META in schema.names and text_key != self.META:
            t = schema.field(self.META).type
            if not (_is_string(t) or (pa.types.is_struct(t) and _json_type(t))):
                raise ConfigError(f"input {self.path}: column 'meta' is a Parquet {t} column; expected a JSON "
                                  f"string or a struct of JSON values (strings, numbers, booleans, lists, "
                                  f"structs): rewrite or drop the column")
            self.meta_is_json_text = _is_string(t)
            self.columns.append(self.META)

    def documents(self, problems: ProblemLog, counters: dict[str, int],
                  keys: KeyTally | None = None) -> Iterator[list[ParsedLine]]:
        """The documents of each record batch; a row group that cannot be read is a ``corrupt_stream`` problem
        at its first row, and the rows before it are kept (as for a damaged zstd stream)."""
        name = os.fspath(self.path)
        size = self.path.stat().st_size
        try:
            for batch in parquet_batches(self.path, self.columns, self.batch_rows):
                out = self._parse(name, self.lines + 1, batch, problems, counters)
                self.lines += batch.num_rows
                self.compressed_read = size * self.lines // max(self.num_rows, 1)
                yield out
        except (OSError, pa.ArrowException) as e:
            problems.add(name, self.lines + 1, Reason.CORRUPT_STREAM, f"parquet: {e}")

    def _parse(self, name: str, first: int, batch: pa.RecordBatch, problems: ProblemLog,
               counters: dict[str, int]) -> list[ParsedLine]:
        key = self.text_key
        texts = _pylist(batch.column(0))
        metas = _pylist(batch.column(1)) if len(self.columns) > 1 else [None] * batch.num_rows
        out: list[ParsedLine] = []
        for k, (text, meta) in enumerate(zip(texts, metas)):
            line = first + k
            if isinstance(text, UnicodeDecodeError) or isinstance(meta, UnicodeDecodeError):
                e = text if isinstance(text, UnicodeDecodeError) else meta
                problems.add(name, line, Reason.INVALID_UTF8, f"byte {e.start:,}: {e.reason}")
                continue
            if isinstance(text, list) and all(isinstance(t, str) for t in text):
                text = "\n\n".join(text)  # lm_dataformat autojoin_paragraphs, as for JSON lines
            if not isinstance(text, str):
                what = "null" if text is None else f"a {self.text_type} value"
                problems.add(name, line, Reason.TEXT_NOT_STRING, f"{key!r} is {what}, expected a string")
                continue
            if not text:
                counters["empty"] += 1
                continue
            if isinstance(meta, str) and self.meta_is_json_text:
                try:
                    meta = json.loads(meta)
                except ValueError as e:
                    problems.add(name, line, Reason.MALFORMED_JSON, f"column 'meta': {e}")
                    continue
            out.append(ParsedLine(line, text, len(text.encode("utf-8")), *_meta_fields(meta)))
        return out


def _pylist(col: pa.Array) -> list[Any]:
    """``col.to_pylist()``; a value whose bytes are not UTF-8 (Parquet writers need not check) becomes its
    ``UnicodeDecodeError``, so one bad row is one problem row."""
    try:
        return col.to_pylist()
    except UnicodeDecodeError:
        pass
    out: list[Any] = []
    for i in range(len(col)):
        try:
            out.append(col[i].as_py())
        except UnicodeDecodeError as e:
            out.append(e)
    return out


def is_parquet(path: str | os.PathLike) -> bool:
    return os.fspath(path).endswith(".parquet")


def open_input(path: str | os.PathLike, text_key: str = "text") -> LineReader | ParquetReader:
    """The reader for one input file, by its name; both give ``documents(problems, counters, keys)``,
    ``lines`` and ``compressed_read``. Checks the kind (and a Parquet file's columns) before any work."""
    if is_parquet(path):
        return ParquetReader(path, text_key)
    return LineReader(path, text_key=text_key)
