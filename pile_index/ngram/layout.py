"""The n-gram index on disk: ``PREFIX.ngram/``, its shard plan, its manifest, and what each file holds.

A store is cut into shards on item boundaries (so no n-gram crosses a shard) and within one ``.bin`` part
(so a shard's tokens are one contiguous memmap slice). One file per shard, ``shard-NNNNN.sa``: the suffix
array (``n`` shard-local token positions), then a bitmap of item boundaries (bit p set when an item starts
at local position p, and bit n). The tokens themselves are the store's ``.bin``. Two formats:

- **format 3** (written by every build without ``shard_tokens``): 5-byte little-endian suffix pointers, so one
  shard holds up to 2**40 - 1 tokens (the whole Pile is one shard per ``.bin``); the bitmap is bytes (bit p
  of byte ``5 n + p // 8``). Beside each shard, ``shard-NNNNN.sample``: rows 0, k, 2k, ... of the suffix
  array with their first ``sample_tokens`` tokens (``stoks``, the store's dtype, ``ceil(n / k)`` rows of
  ``sample_tokens``), then how many of them lie inside the row's item (``slen``, one byte a row). Loaded
  into RAM on open, it does the top ``log2(n / k)`` levels of every binary search. Index bytes per token:
  5 + 1/8 + (sample_tokens * itemsize + 1) / k (5.19 for uint16 tokens at k = 256, w = 8), plus the
  store's 2.
- **format 2** (``shard_tokens`` given: shards of at most that many tokens, as before issue 12): little-endian
  uint32 words, the suffix array then the bitmap (bit p of word ``n + p // 32``); no sample.

``manifest.json`` is written last and is the completion marker: it records the store's fingerprint and the
shard plan, and an index whose fingerprint differs from the store's is refused. Each shard also has a
``shard-NNNNN.json`` marker, so an interrupted build resumes at the first unfinished shard.
"""

from __future__ import annotations

import mmap
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..digests import sampled_digest
from ..errors import ConfigError, FormatError
from ..files import ngram_dir, ngram_manifest_path, ngram_shard_path
from ..format.store import TokenStore
from ..sidecar import check, optional, read_json

FORMAT_VERSION = 3  # what a build without shard_tokens writes
LEGACY_FORMAT_VERSION = 2  # what a build with shard_tokens writes (and every index before issue 12)
FORMATS = (LEGACY_FORMAT_VERSION, FORMAT_VERSION)
POINTER_BYTES = {LEGACY_FORMAT_VERSION: 4, FORMAT_VERSION: 5}
DEFAULT_SHARD_TOKENS = 1 << 28  # format 2: 268M tokens, ~5.8 GB peak RSS while building one (measured ~22 B/token)
MAX_SHARD_TOKENS = (1 << 32) - 1  # format 2: uint32 suffix pointers
MAX_SHARD_TOKENS_V3 = (1 << 40) - 1  # format 3: 5-byte suffix pointers (items are < 2**31 tokens, so one fits)
MAX_TOKENS = {LEGACY_FORMAT_VERSION: MAX_SHARD_TOKENS, FORMAT_VERSION: MAX_SHARD_TOKENS_V3}
DEFAULT_SAMPLE_EVERY = 256  # rows per sample row: 17 bytes per 256 tokens (0.066 B/token) for uint16 stores
DEFAULT_SAMPLE_TOKENS = 8  # tokens per sample row: queries of <= 8 tokens are placed within 256 rows in RAM

DIGEST_KEYS = ("sa_sha256", "tokens_sha256", "sample_sha256")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SHARD_SPEC: dict[str, Any] = {"part": int, "item_lo": int, "item_hi": int, "token_lo": int, "n_tokens": int,
                               "tokens_digest": str, "sa_sha256": optional(str), "tokens_sha256": optional(str),
                               "sample_sha256": optional(str)}
_MANIFEST_SPEC: dict[str, Any] = {"format_version": int, "store_fingerprint": str, "n_items": int, "n_tokens": int,
                                  "shard_tokens": int, "shards": [_SHARD_SPEC]}
_MANIFEST_V3_SPEC: dict[str, Any] = {**_MANIFEST_SPEC, "pointer_bytes": int, "sample_every": int,
                                     "sample_tokens": int}
REBUILD = "rebuild with `pile-index ngram build`"


def index_dir(prefix: str | os.PathLike) -> Path:
    """Where the n-gram index of the store whose first prefix is ``prefix`` lives: ``PREFIX.ngram/``."""
    return ngram_dir(prefix)


def shard_path(folder: Path, i: int, suffix: str = ".sa") -> Path:
    """``shard-NNNNN.sa`` (or ``.json``, ``.sample``) of shard ``i``."""
    return ngram_shard_path(folder, i, suffix)


@dataclass(frozen=True)
class ShardSpec:
    """One shard: items [item_lo, item_hi) of the store, all in part ``part``."""

    part: int
    item_lo: int
    item_hi: int
    token_lo: int  # token position of the shard's first item in the store (int64 across parts)
    n_tokens: int

    @property
    def n_words(self) -> int:
        """Format 2: uint32 words of the shard file: n suffix pointers, then the boundary bitmap (n + 1 bits)."""
        return self.n_tokens + (self.n_tokens >> 5) + 1

    def file_bytes(self, version: int) -> int:
        """Bytes of the shard file in format ``version``."""
        if version == LEGACY_FORMAT_VERSION:
            return 4 * self.n_words
        return 5 * self.n_tokens + (self.n_tokens >> 3) + 1

    def as_dict(self) -> dict[str, int]:
        return {"part": self.part, "item_lo": self.item_lo, "item_hi": self.item_hi,
                "token_lo": self.token_lo, "n_tokens": self.n_tokens}


def plan_shards(store: TokenStore, shard_tokens: int = DEFAULT_SHARD_TOKENS,
                max_tokens: int = MAX_SHARD_TOKENS) -> list[ShardSpec]:
    """Cut the store into shards of at most ``shard_tokens`` tokens on item boundaries, never across parts
    (an item longer than ``shard_tokens`` is a shard of its own). Shards with no tokens are skipped."""
    if not 1 <= shard_tokens <= max_tokens:
        raise ConfigError(f"shard_tokens={shard_tokens:,}: expected 1..{max_tokens:,} tokens per shard "
                          f"(the suffix pointers' width)")
    offsets = store.token_offsets()
    shards: list[ShardSpec] = []
    for part in range(len(store.parts)):
        lo, end = int(store.item_offsets[part]), int(store.item_offsets[part + 1])
        while lo < end:
            limit = offsets[lo] + shard_tokens
            # last item boundary <= limit, but take at least one item
            hi = int(np.searchsorted(offsets, limit, side="right")) - 1
            hi = min(max(hi, lo + 1), end)
            n = int(offsets[hi] - offsets[lo])
            if n > 0:
                shards.append(ShardSpec(part, lo, hi, int(offsets[lo]), n))
            lo = hi
    return shards


def shard_token_start(store: TokenStore, spec: ShardSpec) -> int:
    """Index, in its part's ``.bin``, of the shard's first token."""
    part = store.parts[spec.part]
    local = spec.item_lo - int(store.item_offsets[spec.part])
    return int(part.pointers[local]) // part.dtype.itemsize if spec.item_hi > spec.item_lo else 0


def shard_slice(store: TokenStore, spec: ShardSpec) -> np.ndarray:
    """The shard's tokens: a slice of the store's memmap of its part."""
    start = shard_token_start(store, spec)
    return store.parts[spec.part].tokens[start : start + spec.n_tokens].view(np.ndarray)


def advise_random(a: np.ndarray) -> None:
    """``madvise(MADV_RANDOM)`` on the mapping under memmap ``a`` (Linux; a no-op elsewhere): a binary search
    faults in one page per probe instead of a readahead window (measured: 56 ms for a cold count without)."""
    mm = getattr(a, "_mmap", None)
    advice = getattr(mmap, "MADV_RANDOM", None)
    if mm is not None and advice is not None:
        try:
            mm.madvise(advice)
        except (OSError, ValueError):  # advice is a hint: a filesystem that refuses it still serves reads
            pass


def mapped_tokens(store: TokenStore, spec: ShardSpec) -> np.ndarray:
    """The shard's tokens in a mapping of their own, advised for random reads (the store's mapping keeps its
    default readahead for the sequential readers that share it)."""
    if spec.n_tokens == 0:
        return np.zeros(0, dtype=store.dtype)
    part = store.parts[spec.part]
    start = shard_token_start(store, spec)
    mm = np.memmap(part.bin_path, dtype=part.dtype, mode="r", offset=start * part.dtype.itemsize,
                   shape=(spec.n_tokens,))
    advise_random(mm)
    return mm


def tokens_digest(tokens: np.ndarray) -> str:
    """The manifest's ``tokens_digest`` of a shard's tokens: :func:`pile_index.digests.sampled_digest`.

    The store fingerprint covers sizes, not token values; this catches a ``.bin`` rewritten in place with
    the same sizes (a different tokenizer, a corrupted copy) at the cost of ~256 KB read per shard on open;
    ``tokens_sha256`` (every token) is checked by ``pile-index verify``."""
    return sampled_digest(tokens)


def item_starts(store: TokenStore, spec: ShardSpec, item_lo: int | None = None, item_hi: int | None = None
                ) -> np.ndarray:
    """Shard-local token positions of the starts of items [item_lo, item_hi] (default: the shard's, with its end)."""
    off = store.token_offsets()
    lo = spec.item_lo if item_lo is None else item_lo
    hi = spec.item_hi if item_hi is None else item_hi
    return (off[lo : hi + 1] - off[spec.item_lo]).astype(np.int64)


def sample_rows(n: int, every: int) -> int:
    """Rows of a shard's sample: rows 0, every, 2 every, ... of its n."""
    return (n + every - 1) // every


def read_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """The n-gram manifest in ``folder``, with its required keys and types checked (FormatError if damaged).
    Formats 2 and 3 open; any other is refused with the command that rebuilds it."""
    path = ngram_manifest_path(folder)
    doc = read_json(path, REBUILD)
    version = doc.get("format_version") if isinstance(doc, dict) else None
    if isinstance(doc, dict) and version not in FORMATS:
        raise FormatError(f"{path}: format_version {version!r}, expected one of {', '.join(map(str, FORMATS))}; "
                          f"{REBUILD}")
    check(doc, _MANIFEST_V3_SPEC if version == FORMAT_VERSION else _MANIFEST_SPEC, path, REBUILD)
    if version == FORMAT_VERSION:
        if doc["pointer_bytes"] != POINTER_BYTES[FORMAT_VERSION]:
            raise FormatError(f"{path}: pointer_bytes {doc['pointer_bytes']!r}, expected 5 for format 3; {REBUILD}")
        if not 1 <= doc["sample_every"] <= 1 << 30 or not 1 <= doc["sample_tokens"] <= 255:
            raise FormatError(f"{path}: sample_every {doc['sample_every']!r} / sample_tokens "
                              f"{doc['sample_tokens']!r}: expected 1..2**30 and 1..255; {REBUILD}")
    return doc
