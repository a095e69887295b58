"""Fuzzing the other inputs: mutated index maps (.npy) and mutated .jsonl / .jsonl.zst corpora.

Together with tests/format/test_fuzz_indexed.py (10,000 mutated .idx/.bin pairs) this is 14,000 mutated inputs
with ``PILE_INDEX_FUZZ_FULL=1`` and a quarter of them (the first quarter of each sequence) by default. Each
one ends in a named PileIndexError or in a correct result: rows equal a plain reading of the (mutated) maps
with GPT2Dataset's semantics; ingested items equal the tokenization of exactly the lines that parse."""

from __future__ import annotations

import io
import json
import os
import shutil

import numpy as np
import pytest
import zstandard
from tokenizers import Tokenizer, models, pre_tokenizers

from ingest.pipeline import IngestConfig, ingest
from pile_index import PileIndexError, TokenStore
from pile_index.errors import FormatError
from pile_index.order import OrderConfig, index_map_paths, open_order
from tests.stores import random_store

MAP_MUTATIONS = 2000  # full runs; see the fuzz_count fixture
JSONL_MUTATIONS = 1000
ZSTD_MUTATIONS = 1000


def _ref_row(tokens_of, doc_idx, sample_idx, shuffle_idx, k):
    """GPT2Dataset.__getitem__ over the given arrays (numpy, bounds-checked by Python indexing)."""
    u = int(shuffle_idx[k])
    f, a = int(sample_idx[u][0]), int(sample_idx[u][1])
    last, b = int(sample_idx[u + 1][0]), int(sample_idx[u + 1][1])
    if f == last:
        return tokens_of(int(doc_idx[f]))[a : b + 1]
    parts = [tokens_of(int(doc_idx[f]))[a:]]
    parts += [tokens_of(int(doc_idx[i])) for i in range(f + 1, last)]
    parts.append(tokens_of(int(doc_idx[last]))[: b + 1])
    return np.concatenate(parts)


@pytest.mark.slow
def test_mutated_index_maps(tmp_path, fuzz_count):
    rng = np.random.default_rng(7)
    store, docs = random_store(tmp_path / "s", rng, n_docs=40, vocab=100, max_len=40)
    total = sum(len(d) for d in docs)
    cfg = OrderConfig(seed=3, seq_length=8, num_samples=(2 * total - 1) // 8, batch_size=4)
    open_order(store, cfg, build=True)
    paths = index_map_paths(store.prefix, cfg)
    pristine = {k: p.read_bytes() for k, p in paths.items()}
    outcomes = {"error": 0, "rows": 0}
    n_runs = fuzz_count(MAP_MUTATIONS)
    for i in range(n_runs):
        kind = list(paths)[i % 3]
        data = bytearray(pristine[kind])
        how = int(rng.integers(0, 4))
        if how == 0:  # flip a byte anywhere (header included)
            j = int(rng.integers(0, len(data)))
            data[j] ^= int(rng.integers(1, 256))
        elif how == 1:  # truncate
            data = data[: int(rng.integers(0, len(data)))]
        elif how == 2:  # a random 4-byte value in the array part
            j = int(rng.integers(128, max(129, len(data) - 4)))
            data[j : j + 4] = int(rng.integers(-(2**31), 2**31)).to_bytes(4, "little", signed=True)
        else:  # swap two 4-byte words (keeps a permutation a permutation)
            a, b = (int(x) for x in rng.integers(32, (len(data) - 4) // 4, 2) * 4)
            data[a : a + 4], data[b : b + 4] = data[b : b + 4], data[a : a + 4]
        for k, p in paths.items():
            p.write_bytes(bytes(data) if k == kind else pristine[k])
        for marker in tmp_path.glob("*_checked.json"):
            marker.unlink()
        try:
            order = open_order(store, cfg)
            ks = np.arange(order.num_samples)
            rows = order.rows(ks)
        except PileIndexError as e:
            assert isinstance(e, FormatError), repr(e)
            outcomes["error"] += 1
            continue
        arrays = {k: np.load(p) for k, p in paths.items()}
        for k in ks:
            want = _ref_row(store.get, arrays["doc_idx"], arrays["sample_idx"], arrays["shuffle_idx"], int(k))
            np.testing.assert_array_equal(rows[k], want)
        outcomes["rows"] += 1
    assert outcomes["error"] > n_runs // 2 and outcomes["rows"] > n_runs // 20, outcomes


def _tokenizer() -> Tokenizer:
    vocab = {chr(c): i + 2 for i, c in enumerate(range(32, 127))}
    vocab.update({"<|endoftext|>": 0, "<|padding|>": 1, "[UNK]": 200})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    return tok


def _lines(rng, n):
    out = []
    for i in range(n):
        text = "".join(chr(int(c)) for c in rng.integers(32, 127, size=int(rng.integers(0, 30))))
        out.append(json.dumps({"text": text, "meta": {"pile_set_name": f"S{i % 3}"}}))
    return out


def _expected_items(data: bytes, tok: Tokenizer) -> list[list[int]]:
    """Items a plain jsonl reading of ``data`` must give: non-empty string texts of lines that parse, the
    lines as Python's text mode gives them (utf-8-sig, universal newlines; jsonlines drops one leading
    BOM or RS per line); a line with invalid UTF-8 is skipped."""
    items = []
    for line in io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", errors="surrogateescape", newline=None):
        line = line[1:] if line.startswith(("\ufeff", "\x1e")) else line
        try:
            line.encode("utf-8")
            obj = json.loads(line)
        except (UnicodeEncodeError, ValueError):
            continue
        if isinstance(obj, dict) and isinstance(obj.get("text"), str) and obj["text"]:
            try:
                obj["text"].encode("utf-8")
            except UnicodeEncodeError:
                continue  # lone surrogates: counted as invalid_unicode
            items.append(tok.encode(obj["text"]).ids)
    return items


def _zstd_prefix(data: bytes) -> bytes:
    """The complete lines a reader can trust: decode frame by frame until the data ends or breaks."""
    out, pos, clean = b"", 0, True
    while pos < len(data):
        d = zstandard.ZstdDecompressor().decompressobj()
        try:
            out += d.decompress(data[pos:])
        except zstandard.ZstdError:
            clean = False
            break
        if not d.eof:
            clean = False  # truncated frame
            break
        pos = len(data) - len(d.unused_data)
    if not clean:  # up to the last line break (\n, or a lone \r in text mode)
        out = out[: max(out.rfind(b"\n"), out.rfind(b"\r")) + 1]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("compressed", [False, True])
def test_mutated_jsonl_and_zstd_inputs(tmp_path, compressed, fuzz_count):
    rng = np.random.default_rng(11 if compressed else 13)
    tok = _tokenizer()
    base = ("\n".join(_lines(rng, 12)) + "\n").encode()
    cctx = zstandard.ZstdCompressor(level=3)
    n_runs = fuzz_count(ZSTD_MUTATIONS if compressed else JSONL_MUTATIONS)
    counts = {"clean": 0, "problems": 0}
    for i in range(n_runs):
        raw = bytearray(cctx.compress(base) if compressed else base)
        for _ in range(int(rng.integers(1, 4))):
            how = int(rng.integers(0, 3))
            if how == 0 and raw:
                j = int(rng.integers(0, len(raw)))
                raw[j] = int(rng.integers(0, 256))
            elif how == 1 and raw:
                raw = raw[: int(rng.integers(0, len(raw)))]
            else:
                j = int(rng.integers(0, len(raw) + 1))
                raw[j:j] = bytes(rng.integers(0, 256, size=int(rng.integers(1, 5))).astype(np.uint8))
        src = tmp_path / f"in.jsonl{'.zst' if compressed else ''}"
        src.write_bytes(bytes(raw))
        out = tmp_path / "out"
        if out.exists():
            shutil.rmtree(out)
        res = ingest(IngestConfig(inputs=[str(src)], out=str(out / "c"), tokenizer="(object)", progress=False,
                                  batch_docs=5, allow_empty=True), tokenizer=tok)
        store = TokenStore(str(out / "c")) if (out / "c.idx").exists() else None
        got = [store.get(k).tolist() for k in range(len(store))] if store is not None else []
        if not compressed:
            assert got == _expected_items(bytes(raw), tok), f"mutation {i}"
        else:
            # Items = the complete lines of what decompresses before any damage (zstd frames carry no
            # checksum by default, so a flipped literal byte decodes as other text: the file's content).
            assert got == _expected_items(_zstd_prefix(bytes(raw)), tok), f"mutation {i}"
        problems = res.report["problems"]["total"]
        listed = res.report["problems"]["lines"]
        assert res.report["documents"] == len(got) and len(listed) == min(problems, 1000)
        counts["problems" if problems else "clean"] += 1
        for f in os.listdir(tmp_path):
            assert ".tmp-" not in f
    assert counts["problems"] > n_runs // 3, counts
