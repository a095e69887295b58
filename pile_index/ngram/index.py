"""The n-gram index: exact count and locate of any token sequence in a token store, by suffix array.

Semantics (``docs/ORDER.md``, "n-grams"): occurrences are counted *within items* — an n-gram spanning two
items never counts, because adjacent items were never adjacent in training — and overlapping occurrences
count, as in tokengrams and infini-gram.

The package: :mod:`.layout` (the files and the shard plan), :mod:`.suffix_array` (SA-IS), :mod:`.merge`
(parts sorted in RAM, merged on disk), :mod:`.build` (resumable builds, local or Ray), :mod:`.search` (the
numba search kernels, with their stable entry points), and here ``NgramIndex`` and query parsing.

Queries binary-search each shard's suffix array over the memmapped tokens (a suffix ends at the first
boundary bit after its start), the top levels on the shard's in-RAM sample (format 3), with the memmaps
advised ``MADV_RANDOM``; shards are searched in parallel threads (the kernels release the GIL) when there
are several; counts are summed, positions merged shard by shard.

References: infini-gram (Liu et al. 2024, 5-byte suffix pointers over 2-byte tokens, sharded, built by
make-part + merge); tokengrams (EleutherAI, u64 suffix tables). Nothing is copied from them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numba
import numpy as np

from ..errors import ConfigError, FormatError, LimitError, NotFoundError, QueryError
from ..files import ngram_manifest_path
from ..pool import run_blocks
from ..format.store import TokenStore
from .build import build_index, build_shard, default_memory  # noqa: F401 - the package's names, kept here
from .layout import (DEFAULT_SHARD_TOKENS, DIGEST_KEYS, FORMAT_VERSION, LEGACY_FORMAT_VERSION,  # noqa: F401
                     MAX_SHARD_TOKENS, MAX_SHARD_TOKENS_V3, REBUILD, ShardSpec, advise_random, index_dir,
                     mapped_tokens, plan_shards, read_manifest, sample_rows, shard_path, tokens_digest)
from .search import (BAD_POINTER, UNSORTED, _cmp, _range, _range_positions,  # noqa: F401 - stable entry points
                     _range_positions_sampled, _range_sampled, sa_at)
from .results import NgramTrace
from .suffix_array import suffix_array  # noqa: F401

_PROBE = np.zeros(1, dtype=np.int64)  # a pattern of the type every query pattern has (fresh int64, 1-D, C)


@numba.njit(cache=True)
def _pointer_at(words, n, row):
    return sa_at(words, n, row)


class _Shard:
    __slots__ = ("spec", "tokens", "words", "n", "path", "digests", "range", "range_positions", "search",
                 "search_positions", "stoks", "slen", "every", "version", "sample_path")

    def __init__(self, store: TokenStore, spec: ShardSpec, folder: Path, i: int, digests: dict[str, str],
                 manifest: dict[str, Any]):
        self.spec = spec
        self.n = n = spec.n_tokens
        self.version = version = manifest["format_version"]
        self.tokens = mapped_tokens(store, spec).view(np.ndarray)
        self.digests = digests
        self.path = path = shard_path(folder, i)
        size = spec.file_bytes(version)
        if not path.is_file():
            raise FormatError(f"{path}: missing; {REBUILD}")
        if path.stat().st_size != size:
            raise FormatError(
                f"{path}: expected {size:,} bytes for {spec.n_tokens:,} tokens, found {path.stat().st_size:,}; "
                f"the file is truncated: {REBUILD}"
            )
        mm = np.memmap(path, dtype="<u4" if version == LEGACY_FORMAT_VERSION else np.uint8, mode="r")
        advise_random(mm)
        self.words = mm.view(np.ndarray)
        if version == LEGACY_FORMAT_VERSION:
            first, last = int(self.words[n]), int(self.words[n + (n >> 5)]) >> (n & 31)
        else:
            first, last = int(self.words[5 * n]), int(self.words[5 * n + (n >> 3)]) >> (n & 7)
        if not first & 1 or last != 1:  # bit 0 (the first item starts) and bit n (the end), none after
            raise FormatError(f"{path}: the item-boundary bitmap (after the {n:,} suffix pointers) does not start "
                              f"and end where the shard does; the file is damaged: {REBUILD}")
        self.sample_path = None
        if version == LEGACY_FORMAT_VERSION:  # no sample: the search starts from the whole shard
            self.every = np.int64(1)
            self.stoks = np.zeros((0, 1), dtype=self.tokens.dtype)
            self.slen = np.zeros(0, dtype=np.uint8)
        else:
            self.every = np.int64(manifest["sample_every"])
            width = int(manifest["sample_tokens"])
            ns = sample_rows(n, int(self.every))
            self.sample_path = sp = shard_path(folder, i, ".sample")
            want = ns * (width * self.tokens.dtype.itemsize + 1)
            if not sp.is_file() or sp.stat().st_size != want:
                found = f"{sp.stat().st_size:,} bytes" if sp.is_file() else "no file"
                raise FormatError(f"{sp}: expected {want:,} bytes (the sample of {ns:,} rows), found {found}; "
                                  f"{REBUILD}")
            raw = np.fromfile(sp, dtype=np.uint8)
            k = ns * width * self.tokens.dtype.itemsize
            self.stoks = raw[:k].view(self.tokens.dtype).reshape(ns, width)
            self.slen = raw[k:]
            if ns and int(self.slen.max()) > width:
                raise FormatError(f"{sp}: a sample row says {int(self.slen.max())} tokens, more than its "
                                  f"{width}; the file is damaged: {REBUILD}")
        # range(tokens, words, pat) and range_positions(tokens, words, pat, skip, limit, base): the stable
        # kernels of .search over the whole shard; search / search_positions: the same through the sample.
        self.range = _entry_point(_range, self.tokens, self.words, _PROBE)
        self.range_positions = _entry_point(_range_positions, self.tokens, self.words, _PROBE, 0, 0, 0)
        self.search = _entry_point(_range_sampled, self.tokens, self.words, self.stoks, self.slen, self.every,
                                   _PROBE)
        self.search_positions = _entry_point(_range_positions_sampled, self.tokens, self.words, self.stoks,
                                             self.slen, self.every, _PROBE, 0, 0, 0)

    def count_range(self, pat: np.ndarray) -> tuple[int, int]:
        """(lo, hi) of ``pat`` in this shard (through the sample), or a damage code (lo < 0) and its row."""
        return self.search(self.tokens, self.words, self.stoks, self.slen, self.every, pat)

    def pointer(self, row: int) -> int:
        """The suffix pointer of ``row`` (either width)."""
        return int(_pointer_at(self.words, np.int64(self.n), np.int64(row)))

    def damaged(self, code: int, row: int) -> FormatError:
        """The error for a query kernel's damage report (code BAD_POINTER or UNSORTED at ``row``)."""
        value = self.pointer(row)
        if code == BAD_POINTER:
            what = f"holds {value:,}, not a token position below the shard's {self.n:,} tokens"
        else:
            what = f"(token position {value:,}) is out of suffix order"
        return FormatError(f"{self.path}: suffix-array row {row:,} {what}; the file is damaged: check the index "
                           f"with `pile-index verify` and rebuild it with `pile-index ngram build`")


def _entry_point(kernel: Any, *args: Any) -> Any:
    """The compiled function of ``kernel`` for these argument types, called without the dispatcher's type
    matching (measured: ~0.8 us of a ~5 us count). Safe because the index only calls it with arrays of
    exactly these types (its own memmaps and patterns from :meth:`NgramIndex._pattern`); falls back to
    the dispatcher if numba's internals differ."""
    kernel(*args)  # compile (or load from the cache)
    try:
        sig = tuple(numba.typeof(a) for a in args)
        return kernel.overloads[sig].entry_point
    except (AttributeError, KeyError, TypeError):  # another numba layout: the dispatcher is always right
        return kernel


class NgramIndex:
    """A built n-gram index opened read-only over its store.

    Opening checks the manifest (keys, types, the store's fingerprint and shard plan, a sample of each shard's
    tokens) and each shard file's size and bitmap ends; queries check every suffix pointer they follow and the
    order of the rows around each answer. Full content digests are checked by :mod:`pile_index.verify`, which
    opens with ``check_tokens=False`` (it reads every token instead of a sample). Formats 2 and 3 open."""

    def __init__(self, store: TokenStore, folder: str | os.PathLike | None = None, check_tokens: bool = True):
        self.store = store
        self.folder = Path(folder) if folder is not None else index_dir(store.prefix)
        manifest_path = ngram_manifest_path(self.folder)
        if not os.path.lexists(manifest_path):
            raise NotFoundError(
                f"{manifest_path}: no n-gram index for {store.prefix}; build it with `pile-index ngram build {store.prefix}`"
            )
        self.manifest = read_manifest(self.folder)
        fp = store.fingerprint()
        if self.manifest["store_fingerprint"] != fp:
            raise FormatError(
                f"{manifest_path}: built for store fingerprint {self.manifest['store_fingerprint']}, but "
                f"{store.prefix} has {fp}; the store changed: rebuild with `pile-index ngram build`"
            )
        self.format_version = int(self.manifest["format_version"])
        self.shards = []
        for i, (entry, spec) in enumerate(zip(self.manifest["shards"], self._plan(manifest_path), strict=True)):
            digests = {k: entry[k] for k in DIGEST_KEYS if k in entry}
            shard = _Shard(store, spec, self.folder, i, digests, self.manifest)
            if check_tokens and tokens_digest(shard.tokens) != entry["tokens_digest"]:
                raise FormatError(
                    f"{manifest_path}: shard {i:,} (items {spec.item_lo:,}..{spec.item_hi - 1:,}): the store's tokens "
                    f"differ from those indexed (same sizes, other values); rebuild with `pile-index ngram build`"
                )
            self.shards.append(shard)
        self.n_tokens = int(self.manifest["n_tokens"])

    def _plan(self, manifest_path: Path) -> list[ShardSpec]:
        """The shard plan the manifest must hold: the one :func:`plan_shards` makes for this store."""
        fix = "the manifest is damaged: rebuild with `pile-index ngram build`"
        m = self.manifest
        if m["n_items"] != len(self.store) or m["n_tokens"] != self.store.n_tokens:
            raise FormatError(f"{manifest_path}: n_items {m['n_items']:,} and n_tokens {m['n_tokens']:,}, but the "
                              f"store has {len(self.store):,} items and {self.store.n_tokens:,} tokens; {fix}")
        limit = MAX_SHARD_TOKENS_V3 if m["format_version"] == FORMAT_VERSION else MAX_SHARD_TOKENS
        try:
            plan = plan_shards(self.store, m["shard_tokens"], limit)
        except ConfigError as e:
            raise FormatError(f"{manifest_path}: shard_tokens: {e}; {fix}") from e
        if len(plan) != len(m["shards"]):
            raise FormatError(f"{manifest_path}: shards: expected {len(plan):,} shards for shard_tokens "
                              f"{m['shard_tokens']:,}, found {len(m['shards']):,}; {fix}")
        for i, (spec, entry) in enumerate(zip(plan, m["shards"])):
            for key, want in spec.as_dict().items():
                if entry[key] != want:
                    raise FormatError(f"{manifest_path}: shards[{i}].{key}: expected {want:,} (the plan for this "
                                      f"store), found {entry[key]:,}; {fix}")
        return plan

    def disk_bytes(self) -> int:
        """Bytes of the index files (suffix arrays, bitmaps, samples, markers), not counting the store's tokens."""
        return sum(p.stat().st_size for p in self.folder.iterdir() if p.is_file())

    # -- queries ------------------------------------------------------------------------------------------

    def _pattern(self, tokens: Sequence[int] | np.ndarray) -> np.ndarray:
        """A fresh C-contiguous writable int64 1-D array: exactly the type the kernels were compiled for."""
        try:
            pat = np.array(tokens, dtype=np.int64)
        except (TypeError, ValueError, OverflowError) as e:
            raise QueryError(f"the n-gram must be a sequence of integer token ids; got {type(tokens).__name__} ({e})") from e
        if pat.ndim != 1:
            pat = np.ascontiguousarray(pat.reshape(-1))
        if pat.size == 0:
            raise QueryError("an empty n-gram has no count; pass at least one token")
        return pat

    def count(self, tokens: Sequence[int] | np.ndarray) -> int:
        """Exact number of (overlapping) occurrences of ``tokens`` inside items."""
        pat = self._pattern(tokens)
        if len(self.shards) == 1:
            s = self.shards[0]
            lo, hi = s.search(s.tokens, s.words, s.stoks, s.slen, s.every, pat)
            if lo < 0:
                raise s.damaged(lo, hi)
            return hi - lo
        n = len(self.shards)  # one block a shard: this thread searches some of them too
        if n == 0:  # an empty store
            return 0
        total = 0
        for s, (lo, hi) in zip(self.shards, run_blocks(lambda a, b: self.shards[a].count_range(pat), n, 1, n)):
            if lo < 0:
                raise s.damaged(lo, hi)
            total += hi - lo
        return total

    def positions(self, tokens: Sequence[int] | np.ndarray, offset: int = 0, limit: int | None = None) -> np.ndarray:
        """Store token positions (int64) of occurrences, in index order (shard, then suffix order):
        entries [offset, offset+limit) of that order. Each one is checked to hold ``tokens``."""
        if offset < 0 or (limit is not None and limit < 0):
            raise QueryError(f"offset={offset:,} and limit={limit!r} must be >= 0")
        pat = self._pattern(tokens)
        out: list[np.ndarray] = []
        skip = offset
        remaining = -1 if limit is None else limit
        for s in self.shards:
            if remaining == 0:
                break
            lo, hi, pos = s.search_positions(s.tokens, s.words, s.stoks, s.slen, s.every, pat, skip, remaining,
                                             s.spec.token_lo)
            if lo < 0:
                raise s.damaged(lo, hi)
            skip = max(skip - (hi - lo), 0)
            if pos.size:
                out.append(pos)
                if remaining > 0:
                    remaining -= pos.size
        if len(out) == 1:
            return out[0]
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def locate(self, tokens: Sequence[int] | np.ndarray, offset: int = 0, limit: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """(doc_id, offset-in-document) arrays of occurrences, paginated as in :meth:`positions`. Each one is
        checked against the store's item sizes to lie inside its document."""
        m = self._pattern(tokens).size
        pos = self.positions(tokens, offset, limit)
        doc, off = positions_to_documents(self.store, pos)
        if doc.size:
            over = off + m > np.asarray(self.store.sizes)[doc]
            if over.any():
                j = int(np.flatnonzero(over)[0])
                lows = [s.spec.token_lo for s in self.shards]
                shard = self.shards[int(np.searchsorted(lows, pos[j], side="right")) - 1]
                raise FormatError(
                    f"{shard.path}: the item-boundary bitmap lets an occurrence at token {int(pos[j]):,} run past "
                    f"the end of document {int(doc[j]):,}; the file is damaged: check the index with "
                    f"`pile-index verify` and rebuild it with `pile-index ngram build`")
        return doc, off


    # -- batch queries and trace live in their own modules (batch.py, trace.py); these are their entry points --

    def count_many(self, queries: Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
        """Exact counts of many n-grams (int64, order kept), each equal to :meth:`count`; see :mod:`.batch`."""
        from .batch import count_many

        return count_many(self, queries)

    def trace(self, ids: Sequence[int] | np.ndarray, **options: Any) -> NgramTrace:
        """The maximal spans of ``ids`` that occur in the index, with counts (options: see :func:`.trace.trace`)."""
        from .trace import trace

        return trace(self, ids, **options)


def positions_to_documents(store: TokenStore, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Store token positions -> (item, offset in item). Empty items never hold a position."""
    off = store.token_offsets()
    doc = np.searchsorted(off, pos, side="right").astype(np.int64) - 1
    return doc, pos - off[doc]


MAX_TOKEN_ID = 2**31  # int32 is the widest token dtype GPT-NeoX writes
_TOKEN_ID = re.compile(r"[0-9]{1,12}")  # ASCII digits only; 12 digits: past MAX_TOKEN_ID, short of int()'s limit


def query_tokens(
    tokens: Sequence[int] | str | None = None,
    text: str | None = None,
    tokenizer: Any = None,
    max_tokens: int | None = None,
    max_text_chars: int | None = None,
) -> np.ndarray:
    """The query as token ids: ``tokens`` (ids, or "1,2,3") or ``text`` encoded with ``tokenizer``.

    Limits are named settings (``max_tokens_per_query``, ``max_text_chars``).
    """
    if (tokens is None) == (text is None):
        raise QueryError("pass exactly one of tokens (ids) or text")
    if text is not None:
        if max_text_chars is not None and len(text) > max_text_chars:
            raise LimitError(f"text has {len(text):,} characters; the limit is max_text_chars={max_text_chars:,}",
                             "max_text_chars")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise QueryError(f"text: character {e.start:,} is a lone surrogate (U+{ord(text[e.start]):04X}); "
                             f"text must be valid Unicode") from None
        if tokenizer is None:
            raise ConfigError(
                "a text query needs the store's tokenizer: pass `tokenizer` PATH_OR_HUB_ID "
                "(or keep PREFIX.tokenizer.json beside the store)"
            )
        ids = np.asarray(tokenizer.encode(text, add_special_tokens=False).ids, dtype=np.int64)
    else:
        # Exactly the documented forms: "1,2,3" (ASCII digits, spaces around commas) or a sequence of ints.
        # Nothing looser: int() would also take "1_000", "+1", Arabic-Indic digits, True and 0.0.
        values = (tokens.split(",") if tokens.strip(" ") else []) if isinstance(tokens, str) else list(tokens)
        if max_tokens is not None and len(values) > max_tokens:
            raise LimitError(f"the query has {len(values):,} tokens; the limit is max_tokens_per_query={max_tokens:,}",
                             "max_tokens_per_query")
        ints = []
        for i, t in enumerate(values):
            if isinstance(t, str) and isinstance(tokens, str) and _TOKEN_ID.fullmatch(t.strip(" ")):
                ints.append(int(t))
            elif isinstance(t, (int, np.integer)) and not isinstance(t, (bool, np.bool_)):
                ints.append(int(t))
            elif isinstance(tokens, str):
                raise QueryError(f"tokens {tokens[:200]!r}: item {i:,} ({t[:40]!r}) is not a token id; expected "
                                 f"comma-separated ids in ASCII digits like 1,2,3")
            else:
                raise QueryError(f"tokens[{i:,}] is {str(t)[:40]!r} ({type(t).__name__}); expected an integer token id")
        bad = [t for t in ints if not 0 <= t < MAX_TOKEN_ID]
        if bad:
            raise QueryError(f"token id {bad[0]:,} is out of range; token ids are 0..{MAX_TOKEN_ID - 1:,}")
        ids = np.asarray(ints, dtype=np.int64)
    if ids.size == 0:
        raise QueryError("the query has no tokens; pass at least one token (text that encodes to nothing has no count)")
    if max_tokens is not None and ids.size > max_tokens:
        raise LimitError(f"the query has {ids.size:,} tokens; the limit is max_tokens_per_query={max_tokens:,}",
                         "max_tokens_per_query")
    return ids
