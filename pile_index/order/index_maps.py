"""The GPT-NeoX v1.0 training order: ``doc_idx``, ``sample_idx`` and ``shuffle_idx``, built bit for bit.

Reference: EleutherAI/gpt-neox v1.0, ``megatron/data/gpt2_dataset.py`` (``_build_index_mappings``,
``_num_epochs``, ``_build_doc_idx``, ``_build_shuffle_idx``) and ``megatron/data/helpers.cpp``
(``build_sample_idx``); written out in ``docs/ORDER.md``. Upstream names are kept.

Algorithm, for N items with ``sizes`` and sequence length L:

1. ``tokens_per_epoch`` T = sum(sizes) (int64); epochs E = smallest e >= 1 with (e*T - 1) // L >= num_samples.
2. ``rng = np.random.RandomState(seed)`` (legacy MT19937), used in order by both shuffles.
3. ``doc_idx`` = E copies of arange(N), int32, one ``rng.shuffle`` over all E*N entries.
4. ``sample_idx`` int32 (S+1, 2), S = (E*T - 1) // L: row i = (position in doc_idx, offset) of global token i*L
   of the stream of documents in doc_idx order; row 0 is (0, 0) even if that document is empty.
5. ``shuffle_idx`` = arange(S) as uint32 (int64 if S >= 2**32 - 1), ``rng.shuffle``d after step 3.

GPT-NeoX's compiled helper asserts seq_length > 1 (and T > 1); the same rules extend to seq_length 1 here
(every row then holds 2 tokens), which GPT-NeoX itself cannot build.

Each array is saved with ``np.save(allow_pickle=True)`` bytes under GPT-NeoX's cache names, so files GPT-NeoX
wrote (the published Pythia index maps) load directly and ours are byte-identical to its.

Speed: ``RandomState.shuffle`` copies items through ``memcpy`` with a random-number draw between swaps, which
keeps one cache miss in flight at a time (measured: 4.7 s for 40M int32 on the 2-core dev box). Here the same
MT19937 stream and the same rejection sampling (``random_interval`` of numpy's legacy distributions) run in a
numba kernel that draws a block of swap targets first and then swaps, so misses overlap: 1.5 s for the same
array, identical output (pinned by tests against ``RandomState.shuffle`` itself), and the generator state is
handed back to the ``RandomState`` so the second shuffle continues the same stream.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numba
import numpy as np

from .. import files
from ..atomic import save_npy
from ..digests import ensure_digests
from ..errors import ConfigError, FormatError, LimitError, NotFoundError
from ..format.indexed import IndexedDataset, strip_prefix
from ..sidecar import read_json
from ..format.store import TokenStore

log = logging.getLogger(__package__)  # one logger per package: log lines name the concept

MAP_KINDS = ("doc_idx", "sample_idx", "shuffle_idx")

MAX_EPOCHS = 100
"""Default ``max_epochs``: the most epochs ``order build`` writes without being told to (a ``num_samples``
meant for the Pile, 147M rows, on a 1.2M-token store asks for 256,594 epochs and 2.8 GB of files)."""


# ----------------------------------------------------------------------------------------------- config


@dataclass
class OrderConfig:
    """The options that fix a GPT-NeoX training order (and how its rows group into steps)."""

    seed: int
    """Seed of ``np.random.RandomState`` (GPT-NeoX ``seed``); unitless, 0..2**32-1."""
    seq_length: int
    """Sequence length L in tokens; every row has L + 1 tokens."""
    num_samples: int
    """Samples GPT-NeoX was asked for (``num_samples`` in the cache file names), in rows."""
    name: str = "train_0"
    """Dataset name in the cache file names (GPT-NeoX ``train_{i}``)."""
    batch_size: int = 1024
    """Rows per optimizer step (global batch size), in rows."""
    train_steps: int | None = None
    """Steps counted as trained, in steps; None means num_samples // batch_size."""

    def __post_init__(self) -> None:
        self.validate()  # an OrderConfig that exists is a valid one (presets, replace() and callers alike)

    def validate(self) -> OrderConfig:
        for f in ("seed", "seq_length", "num_samples", "batch_size"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ConfigError(f"OrderConfig.{f}: expected an integer, found {v!r}")
        if not 0 <= self.seed <= 2**32 - 1:
            raise ConfigError(f"OrderConfig.seed: expected 0..4,294,967,295 (a RandomState seed), found {self.seed:,}")
        if not 1 <= self.seq_length <= 2**31 - 2:
            raise ConfigError(f"OrderConfig.seq_length: expected a positive token count, found {self.seq_length:,}")
        if self.num_samples < 1:
            raise ConfigError(f"OrderConfig.num_samples: expected at least 1 sample, found {self.num_samples:,}")
        if self.batch_size < 1:
            raise ConfigError(f"OrderConfig.batch_size: expected at least 1 row per step, found {self.batch_size:,}")
        if not self.name or "/" in self.name or os.sep in self.name:
            raise ConfigError(f"OrderConfig.name: expected a non-empty name without '/', found {self.name!r}")
        if self.train_steps is not None:
            if isinstance(self.train_steps, bool) or not isinstance(self.train_steps, (int, np.integer)):
                raise ConfigError(f"OrderConfig.train_steps: expected an integer or None, found {self.train_steps!r}")
            if self.train_steps < 0:
                raise ConfigError(f"OrderConfig.train_steps: expected >= 0 steps, found {self.train_steps:,}")
        return self

    @property
    def steps(self) -> int:
        """Steps counted as trained: ``train_steps`` or ``num_samples // batch_size``."""
        return self.train_steps if self.train_steps is not None else self.num_samples // self.batch_size


PRESETS: dict[str, OrderConfig] = {
    # Pythia (all sizes, standard and deduped, v1): 143,000 steps of 1,024 rows; num_samples =
    # ceil(143000 * 1024 * 1.005) from GPT-NeoX's get_normalized_weights_and_num_samples.
    "pythia": OrderConfig(seed=1234, seq_length=2048, num_samples=147_164_160, name="train_0", batch_size=1024,
                          train_steps=143_000),
}


def order_config(
    preset: str | None = None,
    *,
    seed: int | None = None,
    seq_length: int | None = None,
    num_samples: int | None = None,
    name: str | None = None,
    batch_size: int | None = None,
    train_steps: int | None = None,
    preshuffled_items: int | None = None,
) -> OrderConfig:
    """An :class:`OrderConfig` from a preset and/or explicit fields (explicit ones win), validated.

    Without a preset, seed, seq_length and num_samples are all required, except for a preshuffled store
    (``preshuffled_items`` = its row count), which only needs seq_length: its rows stand in for num_samples.
    """
    if preshuffled_items is not None and preset is None:
        if seq_length is None:
            raise ConfigError("a preshuffled store needs `seq_length` (or `preset` pythia): rows have seq_length + 1 tokens")
        seed = 0 if seed is None else seed
        num_samples = max(1, preshuffled_items) if num_samples is None else num_samples
    given = dict(seed=seed, seq_length=seq_length, num_samples=num_samples, name=name, batch_size=batch_size,
                 train_steps=train_steps)
    given = {k: v for k, v in given.items() if v is not None}
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"order preset {preset!r} is unknown; expected one of {sorted(PRESETS)}")
        return replace(PRESETS[preset], **given)
    missing = [k for k in ("seed", "seq_length", "num_samples") if k not in given]
    if missing:
        opts = ", ".join(f"`{m}`" for m in missing)
        raise ConfigError(f"the training order needs {opts} (or `preset` {'|'.join(PRESETS)})")
    return OrderConfig(**given)


# ----------------------------------------------------------------------------------------------- names


def index_map_paths(prefix: str | os.PathLike, cfg: OrderConfig) -> dict[str, Path]:
    """GPT-NeoX's cache file names: ``{prefix}_{name}_indexmap_{ns}ns_{sl}sl_{seed}s_{kind}.npy``."""
    base = files.index_map_base(strip_prefix(prefix), cfg.name, cfg.num_samples, cfg.seq_length, cfg.seed)
    return {kind: files.index_map_file(base, kind) for kind in MAP_KINDS}


def build_command(prefix: str, cfg: OrderConfig) -> str:
    """The CLI command that builds the files of ``cfg`` for ``prefix`` (for error messages)."""
    for pname, p in PRESETS.items():
        if replace(p, batch_size=cfg.batch_size, train_steps=cfg.train_steps) == cfg:
            return f"pile-index order build {prefix} --preset {pname}"
    return (f"pile-index order build {prefix} --seed {cfg.seed} --seq-length {cfg.seq_length} "
            f"--num-samples {cfg.num_samples} --name {cfg.name}")


# ----------------------------------------------------------------------------------------------- counts


def num_epochs(tokens_per_epoch: int, seq_length: int, num_samples: int) -> int:
    """Smallest e >= 1 with (e*T - 1) // L >= num_samples (GPT-NeoX ``_num_epochs``, in closed form)."""
    t, sl, ns = int(tokens_per_epoch), int(seq_length), int(num_samples)
    if t <= 0:
        raise ConfigError("the store has 0 tokens; a training order needs at least one token")
    return max(1, -(-(ns * sl + 1) // t))  # (e*T - 1) // L >= ns  <=>  e*T >= ns*L + 1


def num_samples_total(epochs: int, tokens_per_epoch: int, seq_length: int) -> int:
    """S = (E*T - 1) // L: rows of sample_idx minus one, entries of shuffle_idx."""
    return (int(epochs) * int(tokens_per_epoch) - 1) // int(seq_length)


_NPY_HEADER = 128  # bytes np.save writes before the data of a 1-D or 2-D array


def build_plan(sizes: np.ndarray, cfg: OrderConfig) -> dict[str, int | dict[str, int]]:
    """What ``order build`` would write for item ``sizes``, computed from the formats before anything is built:
    epochs, samples and the bytes of each index map and inverse file."""
    n = int(sizes.shape[0])
    t = int(np.sum(sizes, dtype=np.int64))
    e = num_epochs(t, cfg.seq_length, cfg.num_samples)
    s = num_samples_total(e, t, cfg.seq_length)
    shuffle_item = 8 if s >= np.iinfo(np.uint32).max - 1 else 4
    files = {"doc_idx": 4 * e * n, "sample_idx": 8 * (s + 1), "shuffle_idx": shuffle_item * s,
             "doc_idx_inverse": 4 * e * n, "shuffle_idx_inverse": shuffle_item * s}
    files = {k: v + _NPY_HEADER for k, v in files.items()}
    return {"epochs": e, "tokens_per_epoch": t, "documents": n, "samples_total": s, "bytes": sum(files.values()),
            "file_bytes": files}


def _human_bytes(n: int) -> str:
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:,} bytes"


def check_build_size(sizes: np.ndarray, cfg: OrderConfig, max_epochs: int | None = MAX_EPOCHS) -> dict:
    """The :func:`build_plan`, or LimitError ``max_epochs`` when it needs more epochs than that (None: no bound)."""
    plan = build_plan(sizes, cfg)
    if max_epochs is None:
        return plan
    if isinstance(max_epochs, bool) or not isinstance(max_epochs, (int, np.integer)) or max_epochs < 1:
        raise ConfigError(f"max_epochs: expected a positive number of epochs, found {max_epochs!r}")
    e, t = int(plan["epochs"]), int(plan["tokens_per_epoch"])
    if e > max_epochs:
        fits = (int(max_epochs) * t - 1) // cfg.seq_length
        raise LimitError(
            f"num_samples {cfg.num_samples:,} x seq_length {cfg.seq_length:,} needs {e:,} epochs of this store's "
            f"{t:,} tokens ({plan['documents']:,} documents) and {_human_bytes(int(plan['bytes']))} of index maps "
            f"and inverse files; the bound is max_epochs={int(max_epochs):,}. Nothing was written. Lower num_samples "
            f"(at most {fits:,} samples fit in {int(max_epochs):,} epochs) or raise max_epochs", "max_epochs")
    return plan


# ----------------------------------------------------------------------------------------------- kernels


@numba.njit(cache=True, inline="always")
def _mt_next32(key, pos):
    """Next tempered 32-bit output of MT19937 (state ``key[624]``, index ``pos[0]``)."""
    if pos[0] >= 624:
        _mt_regenerate(key)
        pos[0] = 0
    y = key[pos[0]]
    pos[0] += 1
    y ^= y >> np.uint32(11)
    y ^= (y << np.uint32(7)) & np.uint32(0x9D2C5680)
    y ^= (y << np.uint32(15)) & np.uint32(0xEFC60000)
    y ^= y >> np.uint32(18)
    return y


@numba.njit(cache=True)
def _mt_regenerate(key):
    """Refill the 624-word MT19937 state (Matsumoto & Nishimura 1998)."""
    for i in range(624):
        y = (key[i] & np.uint32(0x80000000)) | (key[(i + 1) % 624] & np.uint32(0x7FFFFFFF))
        v = key[(i + 397) % 624] ^ (y >> np.uint32(1))
        if y & np.uint32(1):
            v ^= np.uint32(0x9908B0DF)
        key[i] = v


@numba.njit(cache=True, nogil=True)
def _legacy_shuffle_kernel(x, key, pos, jbuf):
    """Fisher-Yates exactly as ``RandomState.shuffle`` on a 1-D array: for i = n-1 .. 1, swap x[i] with
    x[j], j uniform in [0, i] by masked rejection sampling (32-bit draws while i < 2**32, else two draws
    as one 64-bit value, high word first). Targets are drawn a block at a time, then swapped."""
    n = x.shape[0]
    i = n - 1
    block = jbuf.shape[0]
    while i >= 1:
        m = min(block, i)
        for t in range(m):
            mx = np.uint64(i - t)
            mask = mx
            mask |= mask >> np.uint64(1)
            mask |= mask >> np.uint64(2)
            mask |= mask >> np.uint64(4)
            mask |= mask >> np.uint64(8)
            mask |= mask >> np.uint64(16)
            mask |= mask >> np.uint64(32)
            if mx <= np.uint64(0xFFFFFFFF):
                while True:
                    v = np.uint64(_mt_next32(key, pos)) & mask
                    if v <= mx:
                        break
            else:
                while True:
                    hi = np.uint64(_mt_next32(key, pos))
                    lo = np.uint64(_mt_next32(key, pos))
                    v = ((hi << np.uint64(32)) | lo) & mask
                    if v <= mx:
                        break
            jbuf[t] = np.int64(v)
        for t in range(m):
            a = i - t
            b = jbuf[t]
            tmp = x[a]
            x[a] = x[b]
            x[b] = tmp
        i -= m


def legacy_shuffle(rng: np.random.RandomState, x: np.ndarray) -> None:
    """``rng.shuffle(x)`` for a 1-D array, same result and same rng state afterwards, about 3x faster."""
    if x.ndim != 1:
        raise ValueError("legacy_shuffle shuffles 1-D arrays only")
    state = rng.get_state(legacy=True)
    if state[0] != "MT19937":
        raise ValueError(f"legacy_shuffle needs an MT19937 RandomState, found {state[0]}")
    key = np.array(state[1], dtype=np.uint32)
    pos = np.array([state[2]], dtype=np.int64)
    _legacy_shuffle_kernel(x, key, pos, np.empty(1 << 14, dtype=np.int64))
    rng.set_state((state[0], key, int(pos[0]), state[3], state[4]))


@numba.njit(cache=True, nogil=True)
def _sample_idx_kernel(sizes, doc_idx, seq_length, out):
    """Fill out[(S+1), 2]: row i = (position p in doc_idx, offset) of global token i*L of the document
    stream in doc_idx order. Row 0 is (0, 0). Walks the documents once; no I/O.

    sizes[doc_idx[p]] is a random access (a cache miss per document at Pile scale); gathering a block of
    them in a loop of independent loads first lets the misses overlap (measured 3.5 s -> 1.1 s for 40M
    positions), then the walk over the block is sequential."""
    n_rows = out.shape[0]
    out[0, 0] = 0
    out[0, 1] = 0
    i = 1
    target = np.int64(seq_length)  # global token index of row i
    start = np.int64(0)  # global token index of the current document's first token
    n = doc_idx.shape[0]
    block = 1 << 16
    buf = np.empty(block, np.int64)
    for b0 in range(0, n, block):
        if i >= n_rows:
            break
        b1 = min(n, b0 + block)
        for p in range(b0, b1):
            buf[p - b0] = sizes[doc_idx[p]]
        for p in range(b0, b1):
            end = start + buf[p - b0]
            while i < n_rows and target < end:
                out[i, 0] = p
                out[i, 1] = target - start
                i += 1
                target += seq_length
            start = end
    return i


def build_doc_idx(n_docs: int, epochs: int, rng: np.random.RandomState) -> np.ndarray:
    """E copies of arange(N) as int32, shuffled as one array (GPT-NeoX ``_build_doc_idx``)."""
    if epochs * n_docs > 2**31 - 1:
        raise ConfigError(f"{epochs} epochs x {n_docs:,} documents overflow GPT-NeoX's int32 doc_idx")
    doc_idx = np.tile(np.arange(n_docs, dtype=np.int32), epochs)
    legacy_shuffle(rng, doc_idx)
    return doc_idx


def build_sample_idx(sizes: np.ndarray, doc_idx: np.ndarray, seq_length: int, epochs: int,
                     tokens_per_epoch: int) -> np.ndarray:
    """int32 (S+1, 2) with S = (E*T - 1) // L, as GPT-NeoX's ``helpers.build_sample_idx``."""
    s = num_samples_total(epochs, tokens_per_epoch, seq_length)
    out = np.empty((s + 1, 2), dtype=np.int32)
    filled = _sample_idx_kernel(sizes, doc_idx, np.int64(seq_length), out)
    if filled != s + 1:
        raise FormatError(
            f"sample_idx: filled {filled:,} of {s + 1:,} rows; doc_idx does not cover {epochs} epochs of the sizes given"
        )
    return out


def build_shuffle_idx(size: int, rng: np.random.RandomState) -> np.ndarray:
    """arange(size) as uint32 (int64 when size >= 2**32 - 1), shuffled (GPT-NeoX ``_build_shuffle_idx``)."""
    dtype = np.int64 if size >= np.iinfo(np.uint32).max - 1 else np.uint32
    shuffle_idx = np.arange(size, dtype=dtype)
    legacy_shuffle(rng, shuffle_idx)
    return shuffle_idx


# ----------------------------------------------------------------------------------------------- maps


@dataclass
class IndexMaps:
    """The three GPT-NeoX index maps of one order (read-only memmaps when loaded from disk)."""

    doc_idx: np.ndarray
    """int32 [E*N]: document of each position of the shuffled stream."""
    sample_idx: np.ndarray
    """int32 [S+1, 2]: (position in doc_idx, token offset) where each unshuffled sample starts."""
    shuffle_idx: np.ndarray
    """uint32 or int64 [S]: unshuffled sample of each training sample index."""
    epochs: int
    """E, in epochs."""
    tokens_per_epoch: int
    """T = sum(sizes), in tokens."""

    @property
    def n_samples_total(self) -> int:
        """S: rows the maps describe (shuffle_idx entries)."""
        return int(self.shuffle_idx.shape[0])

    @property
    def usable_samples(self) -> int:
        """GPT2Dataset.__len__ = min(len(shuffle_idx) - 1, len(sample_idx) - 1) = S - 1, in rows."""
        return min(int(self.shuffle_idx.shape[0]) - 1, int(self.sample_idx.shape[0]) - 1)


def _sizes_of(store: TokenStore | str | os.PathLike) -> tuple[str, np.ndarray]:
    if isinstance(store, TokenStore):
        return store.prefix, store.sizes
    ds = IndexedDataset(store)
    return ds.prefix, ds.sizes


def _expected_shapes(sizes: np.ndarray, cfg: OrderConfig) -> tuple[int, int, int]:
    t = int(np.sum(sizes, dtype=np.int64))
    e = num_epochs(t, cfg.seq_length, cfg.num_samples)
    return t, e, num_samples_total(e, t, cfg.seq_length)


def _load_checked(paths: dict[str, Path], n_docs: int, t: int, e: int, s: int, prefix: str,
                  cfg: OrderConfig) -> IndexMaps:
    arrays = {}
    for kind, path in paths.items():
        try:
            arrays[kind] = np.load(path, allow_pickle=False, mmap_mode="r")
        except Exception as err:  # a damaged header surfaces as ValueError, OSError, SyntaxError or TokenError
            # (found by tests/test_fuzz_inputs.py): all mean the same thing here
            raise FormatError(f"{path}: not a readable .npy index map ({err}); delete it and run "
                              f"`{build_command(prefix, cfg)}`") from err
    shuffle_dtype = np.dtype(np.int64) if s >= np.iinfo(np.uint32).max - 1 else np.dtype(np.uint32)
    expect = {
        "doc_idx": ((e * n_docs,), np.dtype(np.int32)),
        "sample_idx": ((s + 1, 2), np.dtype(np.int32)),
        "shuffle_idx": ((s,), shuffle_dtype),
    }
    for kind, (shape, dtype) in expect.items():
        a = arrays[kind]
        if a.shape != shape or a.dtype != dtype:
            raise FormatError(
                f"{paths[kind]}: expected {dtype} {shape} for {n_docs:,} documents, {t:,} tokens, {e} epoch(s); "
                f"found {a.dtype} {a.shape}. The file belongs to another store or options; delete the three "
                f"index maps and run `{build_command(prefix, cfg)}`"
            )
    si = arrays["sample_idx"]
    if int(si[0, 0]) != 0 or int(si[0, 1]) != 0:
        raise FormatError(f"{paths['sample_idx']}: row 0 must be (0, 0), found {tuple(int(x) for x in si[0])}")
    return IndexMaps(arrays["doc_idx"], si, arrays["shuffle_idx"], e, t)


@numba.njit(cache=True, nogil=True)
def _check_maps_kernel(sizes, doc_idx, sample_idx, shuffle_idx, seen):
    """(code, index) of the first entry that would make a look-up read out of bounds; (0, 0) if none.

    Codes are :data:`MAP_PROBLEMS`: 1 doc_idx value not a document; 2 sample_idx position outside doc_idx
    or decreasing; 3 sample_idx offset outside its document; 4 shuffle_idx value not a sample; 5 shuffle_idx
    value repeated."""
    n = sizes.shape[0]
    m = doc_idx.shape[0]
    for i in range(m):
        d = np.int64(doc_idx[i])
        if d < 0 or d >= n:
            return 1, i
    prev_p = np.int64(0)
    prev_o = np.int64(0)
    for r in range(sample_idx.shape[0]):
        p = np.int64(sample_idx[r, 0])
        o = np.int64(sample_idx[r, 1])
        if p < prev_p or p >= m or (p == prev_p and o < prev_o):
            return 2, r
        size = np.int64(sizes[doc_idx[p]])
        if o < 0 or (o >= size and not (o == 0 and size == 0)):
            return 3, r
        prev_p = p
        prev_o = o
    s = shuffle_idx.shape[0]
    for k in range(s):
        u = np.int64(shuffle_idx[k])
        if u < 0 or u >= s:
            return 4, k
        if seen[u]:
            return 5, k
        seen[u] = True
    return 0, 0


MAP_PROBLEMS = {
    # code: (file kind, what its entry should have been). The numba kernels that read the maps
    # (here and in training.py) return these codes with the entry's index; map_error names the file.
    # (9 is provenance's "row pieces do not add up to seq_length + 1 tokens", which names no single entry.)
    1: ("doc_idx", "a document index below the store's {n:,} documents"),
    2: ("sample_idx", "a doc_idx position inside doc_idx, non-decreasing"),
    3: ("sample_idx", "a token offset inside its document"),
    4: ("shuffle_idx", "a sample index below {s:,}"),
    5: ("shuffle_idx", "each sample index once (a permutation)"),
    6: ("doc_idx_inverse", "the doc_idx positions of its document, ascending (doc_idx[entry] is that document)"),
    7: ("shuffle_idx_inverse", "the sample index k with shuffle_idx[k] equal to the entry's index"),
    8: ("sample_idx", "a row that spans at most {span:,} doc_idx positions (seq_length + 1 tokens and the "
                      "store's empty documents)"),
    10: ("doc_idx", "every document as often as there are epochs (E shuffled copies of each document)"),
}


def map_error(code: int, index: int, arrays: dict[str, np.ndarray], paths: dict[str, Path], n_docs: int,
              prefix: str, cfg: OrderConfig, max_span: int | None = None) -> FormatError:
    """The FormatError for a kernel's (code, index): names the file, the entry, what was expected and found,
    and the command that rebuilds it. ``arrays`` / ``paths`` hold the maps (and inverse files) by kind."""
    kind, want = MAP_PROBLEMS[int(code)]
    a = arrays[kind]
    i = int(index)
    found = a[i].tolist() if 0 <= i < a.shape[0] else "(no such entry)"
    s = int(arrays["shuffle_idx"].shape[0])
    want = want.format(n=n_docs, s=s, span=max_span if max_span is not None else int(arrays["doc_idx"].shape[0]))
    extra = ""
    if kind == "doc_idx_inverse":
        extra = " (this file or doc_idx is damaged)"
    elif kind == "shuffle_idx_inverse":
        extra = " (this file or shuffle_idx is damaged)"
    return FormatError(
        f"{paths[kind]}: entry {i:,}: expected {want}, found {found}{extra}; the file is corrupt or belongs to "
        f"another store: delete the index maps and inverse files and run `{build_command(prefix, cfg)}`"
    )


def checked_marker_path(paths: dict[str, Path]) -> Path:
    """``X_checked.json`` beside the maps: remembers that :func:`check_index_maps` passed on these files."""
    return files.checked_marker_file(files.index_map_base_of(paths["doc_idx"]))


def checked_marker_key(paths: dict[str, Path], sizes: np.ndarray) -> dict:
    """What the marker must hold to be trusted: per file its size, mtime, ctime, inode and device, and a hash
    of the store's sizes. A user can set an mtime back (``touch -d``) but not a ctime: any write or
    ``utime`` moves it, so a file changed in place after the check is checked again."""
    import hashlib

    files = {}
    for kind, p in sorted(paths.items()):
        st = p.stat()
        files[kind] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns,
                       "inode": st.st_ino, "device": st.st_dev}
    return {"version": 2, "files": files,
            "sizes": hashlib.sha256(np.ascontiguousarray(sizes).tobytes()).hexdigest()}


def check_index_maps(maps: IndexMaps, sizes: np.ndarray, paths: dict[str, Path], prefix: str, cfg: OrderConfig) -> None:
    """One pass over the maps: every value in range, sample_idx monotone, shuffle_idx a permutation.

    The result is remembered in ``X_checked.json`` (:func:`checked_marker_key`), so the pass runs once per set
    of files (about 1 s per 300M entries). The marker only saves time: the kernels that read the maps check
    every value they follow, so a marker that lies (forged, or a file changed behind it) still ends in a
    FormatError, never in an out-of-bounds read."""
    import json

    from ..atomic import write_bytes

    marker = checked_marker_path(paths)
    key = checked_marker_key(paths, sizes)
    try:
        if read_json(marker, "it is checked again") == key:
            return
    except FormatError:
        pass  # no marker yet, or an unreadable one: check again
    seen = np.zeros(maps.shuffle_idx.shape[0], dtype=np.bool_)
    code, i = _check_maps_kernel(np.asarray(sizes), maps.doc_idx, maps.sample_idx, maps.shuffle_idx, seen)
    if code:
        arrays = {"doc_idx": maps.doc_idx, "sample_idx": maps.sample_idx, "shuffle_idx": maps.shuffle_idx}
        raise map_error(int(code), int(i), arrays, paths, len(sizes), prefix, cfg)
    try:
        write_bytes(marker, json.dumps(key).encode())
    except OSError:
        pass  # read-only data folder: the check simply runs again next time


def load_index_mappings(store_prefix: TokenStore | str | os.PathLike, cfg: OrderConfig) -> IndexMaps:
    """Memmap the three cached index maps; NotFoundError names the missing file and the command that builds it."""
    cfg.validate()
    prefix, sizes = _sizes_of(store_prefix)
    paths = index_map_paths(prefix, cfg)
    for kind, path in paths.items():
        if not path.is_file():
            raise NotFoundError(f"{path}: the {kind} index map is missing; build it with `{build_command(prefix, cfg)}`")
    t, e, s = _expected_shapes(sizes, cfg)
    maps = _load_checked(paths, int(sizes.shape[0]), t, e, s, prefix, cfg)
    check_index_maps(maps, sizes, paths, prefix, cfg)
    return maps


def build_index_mappings(store: TokenStore | str | os.PathLike, cfg: OrderConfig, progress: bool = True,
                         max_epochs: int | None = MAX_EPOCHS) -> IndexMaps:
    """Load the cached maps if all three exist, else build all three (as GPT-NeoX does: one missing file
    rebuilds all, since both shuffles share one RNG stream) and save each atomically. Returns memmaps.
    Building more than ``max_epochs`` epochs is refused before anything is written (None: no bound)."""
    cfg.validate()
    prefix, sizes = _sizes_of(store)
    paths = index_map_paths(prefix, cfg)
    t, e, s = _expected_shapes(sizes, cfg)
    n_docs = int(sizes.shape[0])
    if all(p.is_file() for p in paths.values()):
        log.info("reusing index maps %s", files.index_map_base_of(paths["doc_idx"].name))
        maps = _load_checked(paths, n_docs, t, e, s, prefix, cfg)
        check_index_maps(maps, sizes, paths, prefix, cfg)
        ensure_digests(paths.values())  # a build killed before its records, or maps from elsewhere
        return maps
    write_index_mappings(sizes, cfg, prefix, progress=progress, max_epochs=max_epochs)
    return _load_checked(paths, n_docs, t, e, s, prefix, cfg)


def write_index_mappings(sizes: np.ndarray, cfg: OrderConfig, prefix: str | os.PathLike, progress: bool = True,
                         max_epochs: int | None = MAX_EPOCHS) -> None:
    """Build the three maps for item ``sizes`` and save each atomically under GPT-NeoX's names for ``prefix``.
    More than ``max_epochs`` epochs is a LimitError raised before anything is written (None: no bound).

    Peak memory: doc_idx (4 bytes x E*N) + sample_idx (8 bytes x S) beside ``sizes``; each array is written
    and dropped before the next is built.
    """
    cfg.validate()
    paths = index_map_paths(prefix, cfg)
    sizes = np.ascontiguousarray(sizes, dtype=np.int32)
    plan = check_build_size(sizes, cfg, max_epochs)
    n_docs = int(sizes.shape[0])
    t, e, s = int(plan["tokens_per_epoch"]), int(plan["epochs"]), int(plan["samples_total"])
    bar = _stage_bar(progress, 3, "order build")
    rng = np.random.RandomState(seed=cfg.seed)
    t0 = time.perf_counter()
    doc_idx = build_doc_idx(n_docs, e, rng)
    save_npy(paths["doc_idx"], doc_idx)
    log.info("doc_idx: %s entries (%d epochs) in %.2f s", f"{doc_idx.size:,}", e, time.perf_counter() - t0)
    bar.update(1)
    t0 = time.perf_counter()
    sample_idx = build_sample_idx(sizes, doc_idx, cfg.seq_length, e, t)
    del doc_idx
    save_npy(paths["sample_idx"], sample_idx)
    del sample_idx
    log.info("sample_idx: %s rows in %.2f s", f"{s + 1:,}", time.perf_counter() - t0)
    bar.update(1)
    t0 = time.perf_counter()
    shuffle_idx = build_shuffle_idx(s, rng)
    save_npy(paths["shuffle_idx"], shuffle_idx)
    del shuffle_idx
    log.info("shuffle_idx: %s entries in %.2f s", f"{s:,}", time.perf_counter() - t0)
    bar.update(1)
    bar.close()
    ensure_digests(paths.values())  # FILE.sha256 beside each map, for `pile-index verify`


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _stage_bar(progress: bool, total: int, desc: str):
    if not progress:
        return _NoBar()
    from ..progress import progress_bar

    return progress_bar(total=total, desc=desc, unit="stage", leave=False)
