"""Content digests of derived files: sha256 over every byte, recorded when the file is built.

Opening a file checks its structure (sizes, shapes, value ranges on what a query touches); only a full digest
sees a value changed in place. So each derived file records its sha256 when it is written and
``pile-index verify`` (:mod:`pile_index.verify`) streams it again and compares:

- files that have no record of their own (index maps, inverse files, the documents table) get one beside them,
  ``FILE.sha256``, one line in ``sha256sum``'s format (``HEX  NAME``), so ``sha256sum -c FILE.sha256`` run in
  the file's folder checks it by hand too;
- files that already have a record (the n-gram shards, in the index's ``manifest.json``) keep it there.

A record is written after its file is in place and describes the bytes then. Replacing a file through
:mod:`pile_index.atomic` drops its record first, so a record never describes an earlier file: a rebuilt file
has none until its writer records it (:func:`ensure_digests`, which also completes a build that was killed
between the two), and a file changed in place keeps the old one, which ``verify`` then reports as a mismatch.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from . import files
from .atomic import write_bytes
from .errors import FormatError

CHUNK_BYTES = 8 << 20  # read size while streaming a file: large enough for full disk speed, small for progress
_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.+)\n?$")


def sha256_file(path: str | os.PathLike, on_bytes: Callable[[int], None] | None = None, start: int = 0,
                length: int | None = None) -> str:
    """sha256 of the file's bytes (``length`` of them from ``start``; default all), streamed in ``CHUNK_BYTES``
    pieces (``on_bytes(n)`` after each). Reads, never maps: the process's RSS does not grow with the file."""
    h = hashlib.sha256()
    left = -1 if length is None else length
    with open(path, "rb") as f:
        f.seek(start)
        while left and (chunk := f.read(CHUNK_BYTES if left < 0 else min(left, CHUNK_BYTES))):
            h.update(chunk)
            if left > 0:
                left -= len(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
    return h.hexdigest()


def sha256_array(a: np.ndarray, on_bytes: Callable[[int], None] | None = None) -> str:
    """sha256 of a C-contiguous array's bytes (a memmap slice is read in place, never copied whole)."""
    flat = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
    h = hashlib.sha256()
    for s in range(0, flat.size, CHUNK_BYTES):
        piece = flat[s : s + CHUNK_BYTES]
        h.update(memoryview(piece))
        if on_bytes is not None:
            on_bytes(int(piece.size))
    return h.hexdigest()


def sampled_digest(tokens: np.ndarray, windows: int = 64, window: int = 2048) -> str:
    """blake2b over ``windows`` evenly spaced windows of ``window`` tokens (all of them when short): a cheap
    check, on open, that tokens were not rewritten in place (the n-gram manifest, the statistics cache)."""
    h = hashlib.blake2b(digest_size=16)
    n = tokens.size
    if n <= windows * window:
        h.update(np.ascontiguousarray(tokens).tobytes())
    else:
        for start in np.linspace(0, n - window, windows).astype(np.int64):
            h.update(np.ascontiguousarray(tokens[start : start + window]).tobytes())
    return h.hexdigest()


def digest_path(path: str | os.PathLike) -> Path:
    """Where the digest record of ``path`` lives: ``path + ".sha256"``."""
    return files.digest_path(path)


def record_digest(paths: Path | str | Iterable[Path | str]) -> None:
    """Stream each file and write its ``FILE.sha256`` record (atomically)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    for path in paths:
        p = Path(path)
        write_bytes(digest_path(p), f"{sha256_file(p)}  {p.name}\n".encode())


def ensure_digests(paths: Iterable[Path | str]) -> None:
    """Record the digest of each file that has none (a fresh build, or a rerun after a kill between writing a
    file and its record); files that have a record keep it."""
    for path in paths:
        if not os.path.lexists(digest_path(path)):
            record_digest(path)


def recorded_digest(path: str | os.PathLike) -> str | None:
    """The sha256 recorded for ``path`` in ``FILE.sha256``; None when there is no record."""
    rec = digest_path(path)
    if not os.path.lexists(rec):
        return None
    fix = f"delete {rec.name} and rebuild {Path(path).name} to record its digest again"
    try:
        text = rec.read_bytes()[:4096].decode("ascii")
    except OSError as e:
        raise FormatError(f"{rec}: cannot be read ({e.strerror or e}); {fix}") from e
    except UnicodeDecodeError as e:
        raise FormatError(f"{rec}: expected one 'SHA256  NAME' line of ASCII, found other bytes; {fix}") from e
    m = _LINE.match(text)
    if m is None or m.group(2) != Path(path).name:
        raise FormatError(f"{rec}: expected one line '<64 hex digits>  {Path(path).name}', found {text[:100]!r}; {fix}")
    return m.group(1)
