"""`pile-index shards join|split|verify` on small stores split into Pythia-named shards."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from cli.main import main
from ingest.shards import find_shards, join_shards, read_hash_lines, shard_name, split_shards, verify_hashes
from pile_index.errors import FormatError, NotFoundError
from pile_index.format import IndexedDataset, write_indexed


@pytest.fixture()
def store(tmp_path) -> str:
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 50277, size=int(n), dtype=np.uint16) for n in rng.integers(1, 200, size=40)]
    prefix = tmp_path / "src" / "pile_text_document"
    prefix.parent.mkdir()
    write_indexed(prefix, docs, np.uint16)
    return str(prefix)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_split_then_join_is_identity(tmp_path, store):
    total = Path(f"{store}.bin").stat().st_size
    res = split_shards(store, 1000, out_dir=tmp_path / "shards", hashes_path=tmp_path / "sums.txt", progress=False)
    n = total // 1000 + 1
    assert total % 1000 and res["count"] == n and len(res["shards"]) == n
    names = sorted(os.listdir(tmp_path / "shards"))
    assert names == [shard_name("pile_text_document", i, n) for i in range(n)] + ["pile_text_document.idx"]
    assert names[0] == f"pile_text_document-00000-of-{n - 1:05}.bin"
    sizes = [(tmp_path / "shards" / nm).stat().st_size for nm in names[:-1]]
    assert sizes[:-1] == [1000] * (n - 1) and sizes[-1] == total - 1000 * (n - 1)
    assert read_hash_lines(tmp_path / "sums.txt") == [(nm, sha(tmp_path / "shards" / nm)) for nm in names]

    out = join_shards(tmp_path / "shards" / "pile_text_document", tmp_path / "joined" / "full", progress=False)
    assert out["shards"] == n and out["bytes"] == total and out["items"] == 40
    assert (tmp_path / "joined" / "full.bin").read_bytes() == Path(f"{store}.bin").read_bytes()
    assert (tmp_path / "joined" / "full.idx").read_bytes() == Path(f"{store}.idx").read_bytes()
    a, b = IndexedDataset(store), IndexedDataset(tmp_path / "joined" / "full")
    assert all(np.array_equal(a.get(i), b.get(i)) for i in range(40))


def test_join_from_shard_zero_path_and_without_idx(tmp_path, store):
    split_shards(store, 777, out_dir=tmp_path / "sh", progress=False)
    os.unlink(tmp_path / "sh" / "pile_text_document.idx")
    first = sorted((tmp_path / "sh").iterdir())[0]
    res = join_shards(first, tmp_path / "j", progress=False)
    assert res["idx"] is None
    assert (tmp_path / "j.bin").read_bytes() == Path(f"{store}.bin").read_bytes()
    assert not (tmp_path / "j.idx").exists()


def test_join_refuses_missing_resized_and_mixed_shards(tmp_path, store):
    split_shards(store, 1000, out_dir=tmp_path / "sh", progress=False)
    base = tmp_path / "sh" / "pile_text_document"
    _, shards = find_shards(base)
    n = len(shards)

    shards[2].rename(tmp_path / "aside.bin")
    with pytest.raises(NotFoundError, match=f"1 of {n} shards are missing: pile_text_document-00002-of-{n - 1:05}.bin"):
        join_shards(base, tmp_path / "j", progress=False)
    (tmp_path / "aside.bin").rename(shards[2])

    data = shards[1].read_bytes()
    shards[1].write_bytes(data[:-1])
    with pytest.raises(FormatError, match="size 999 bytes; expected 1,000 like shard 0"):
        join_shards(base, tmp_path / "j", progress=False)
    shards[1].write_bytes(data)

    extra = tmp_path / "sh" / f"pile_text_document-00000-of-{n:05}.bin"
    extra.write_bytes(b"x")
    with pytest.raises(FormatError, match="disagree on the shard count"):
        join_shards(base, tmp_path / "j", progress=False)
    extra.unlink()

    last = shards[-1].read_bytes()
    shards[-1].write_bytes(last[:-2])
    with pytest.raises(FormatError, match="pile_text_document.idx: describes a .bin of"):
        join_shards(base, tmp_path / "j", progress=False)
    assert not (tmp_path / "j.bin").exists() and not (tmp_path / "j.idx").exists()
    with pytest.raises(NotFoundError, match="no files named"):
        join_shards(tmp_path / "sh" / "other", tmp_path / "j", progress=False)


def test_verify_match_mismatch_missing(tmp_path, store, capsys):
    split_shards(store, 1000, out_dir=tmp_path / "sh", hashes_path=tmp_path / "sums.txt", progress=False)
    res = verify_hashes(tmp_path / "sh", tmp_path / "sums.txt", progress=False)
    assert res["ok"] and res["mismatch"] == res["missing"] == 0 and res["match"] == len(os.listdir(tmp_path / "sh"))
    assert main(["shards", "verify", str(tmp_path / "sh"), "--hashes", str(tmp_path / "sums.txt")]) == 0

    _, shards = find_shards(tmp_path / "sh" / "pile_text_document")
    data = bytearray(shards[1].read_bytes())
    data[123] ^= 0x01  # one flipped bit
    shards[1].write_bytes(bytes(data))
    shards[3].unlink()
    capsys.readouterr()
    assert main(["shards", "verify", str(tmp_path / "sh"), "--hashes", str(tmp_path / "sums.txt")]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert f"Mismatch  {shards[1].name}" in lines and f"Missing  {shards[3].name}" in lines
    assert f"Match  {shards[0].name}" in lines
    assert main(["shards", "verify", str(tmp_path / "sh"), "--hashes", str(tmp_path / "sums.txt"), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert (out["mismatch"], out["missing"], out["ok"]) == (1, 1, False)
    bad = {f["file"]: f for f in out["files"] if f["status"] != "Match"}
    assert bad[shards[1].name]["found"] == sha(shards[1]) and bad[shards[3].name]["found"] is None


def test_hash_lines_both_orders(tmp_path):
    h = "ab" * 32
    p = tmp_path / "h.txt"
    p.write_text(f"# comment\n{h}  a.bin\n{h} *b.bin\nc.bin {h.upper()}\n\n")
    assert read_hash_lines(p) == [("a.bin", h), ("b.bin", h), ("c.bin", h)]
    p.write_text("nothex  a.bin\n")
    with pytest.raises(FormatError, match=r"h\.txt:1: expected 'filename sha256' \(Pythia's order\) or 'sha256  "):
        read_hash_lines(p)


def test_cli_split_and_join(tmp_path, store, capsys):
    assert main(["shards", "split", store, "--size", "2048", "--out-dir", str(tmp_path / "sh"), "--json"]) == 0
    split = json.loads(capsys.readouterr().out)
    assert split["count"] == len(split["shards"]) >= 2
    assert main(["shards", "join", split["shards"][0], "--out", str(tmp_path / "j"), "--json"]) == 0
    joined = json.loads(capsys.readouterr().out)
    assert joined["items"] == 40 and joined["dtype"] == "uint16"
    assert (tmp_path / "j.bin").read_bytes() == Path(f"{store}.bin").read_bytes()
    assert main(["shards", "join", str(tmp_path / "nothing"), "--out", str(tmp_path / "k")]) == 2


def _read_like_pythia(path: Path) -> dict[str, str]:
    """pythia's utils/checksum_shards.py reading rule: each line stripped and split, filename first."""
    out = {}
    for line in path.read_text().splitlines(keepends=True):
        filename, digest = line.strip().split()
        out[filename] = digest
    return out


def test_hashes_are_written_in_pythias_order(tmp_path, store):
    split_shards(store, 1000, out_dir=tmp_path / "sh", hashes_path=tmp_path / "shard_hashes.txt", progress=False)
    names = sorted(os.listdir(tmp_path / "sh"))
    text = (tmp_path / "shard_hashes.txt").read_text()
    assert text.splitlines()[0] == f"{names[0]} {sha(tmp_path / 'sh' / names[0])}"
    assert _read_like_pythia(tmp_path / "shard_hashes.txt") == {nm: sha(tmp_path / "sh" / nm) for nm in names}
    assert verify_hashes(tmp_path / "sh", tmp_path / "shard_hashes.txt", progress=False)["ok"]
    sums = tmp_path / "sha256sum.txt"  # sha256sum's order still verifies
    sums.write_text("".join(f"{sha(tmp_path / 'sh' / nm)}  {nm}\n" for nm in names))
    assert verify_hashes(tmp_path / "sh", sums, progress=False)["match"] == len(names)


def test_exact_multiple_ends_in_an_empty_shard_as_pythia_writes(tmp_path, store):
    total = Path(f"{store}.bin").stat().st_size
    size = total // 2  # uint16 tokens: the .bin has an even number of bytes
    assert size * 2 == total
    res = split_shards(store, size, out_dir=tmp_path / "sh", hashes_path=tmp_path / "h.txt", progress=False)
    # pythia's shard_memmap.py: total // size + 1 shards, named -of-{total // size:05}
    assert res["count"] == 3
    names = [shard_name("pile_text_document", i, 3) for i in range(3)]
    assert names[2] == "pile_text_document-00002-of-00002.bin"
    assert [Path(p).name for p in res["shards"]] == names
    assert [(tmp_path / "sh" / nm).stat().st_size for nm in names] == [size, size, 0]
    assert _read_like_pythia(tmp_path / "h.txt")[names[2]] == hashlib.sha256(b"").hexdigest()
    joined = join_shards(tmp_path / "sh" / "pile_text_document", tmp_path / "j", progress=False)
    assert joined["shards"] == 3 and (tmp_path / "j.bin").read_bytes() == Path(f"{store}.bin").read_bytes()

    # the same bytes without the empty shard (as split wrote them before): join accepts that too
    old = tmp_path / "old"
    old.mkdir()
    data = Path(f"{store}.bin").read_bytes()
    for i in range(2):
        (old / shard_name("pile_text_document", i, 2)).write_bytes(data[i * size : (i + 1) * size])
    (old / "pile_text_document.idx").write_bytes(Path(f"{store}.idx").read_bytes())
    joined = join_shards(old / "pile_text_document", tmp_path / "k", progress=False)
    assert joined["shards"] == 2 and joined["items"] == 40
    assert (tmp_path / "k.bin").read_bytes() == data
