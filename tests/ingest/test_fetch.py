"""`pile-index fetch` against miniature hub caches resolved by the real huggingface_hub, offline."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("huggingface_hub")

import ingest.hub as hub  # noqa: E402
from cli.main import main  # noqa: E402
from ingest.catalogue import CATALOGUE, catalogue_records  # noqa: E402
from ingest.hub import FetchConfig, fetch  # noqa: E402
from pile_index.errors import ConfigError, FormatError, NotFoundError  # noqa: E402
from tests.hub_miniatures import (IDXMAPS, IDXMAPS_BASE, PRESHUFFLED, TEXT, put_repo, random_store,  # noqa: E402
                                  sharded)


@pytest.fixture()
def offline_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


@pytest.fixture()
def idxmaps(tmp_path, offline_cache) -> Path:
    src = random_store(tmp_path / "src" / IDXMAPS_BASE)
    files = sharded(src, 83, hashes=True)
    files["README.md"] = b"# miniature\n"
    put_repo(offline_cache, IDXMAPS, files)
    return src


def run_fetch(repo: str, to: Path, **kw):
    return fetch(FetchConfig(repo_id=repo, to=str(to), progress=False, **kw))


def test_idxmaps_verified_joined_linked_and_rerun_does_nothing_again(tmp_path, idxmaps, monkeypatch):
    out = tmp_path / "pythia" / "raw"
    res = run_fetch(IDXMAPS, out)
    prefix = out / IDXMAPS_BASE
    assert Path(f"{prefix}.bin").read_bytes() == Path(f"{idxmaps}.bin").read_bytes()
    assert Path(f"{prefix}.idx").read_bytes() == Path(f"{idxmaps}.idx").read_bytes()
    assert res["verified"] == {"lists": ["shard_hashes.txt"], "match": 84, "not_downloaded": 0, "reused": False}
    assert [s["status"] for s in res["stores"]] == ["joined"] and res["stores"][0]["shards"] == 83
    assert res["stores"][0]["items"] == 200 and res["offline"] and res["layout"] == "raw"
    assert sorted(Path(x["path"]).name for x in res["linked"]) == ["README.md", "shard_hashes.txt"]
    assert (out / "README.md").is_symlink() and not any(p.name.endswith(".bin") and p.is_symlink() for p in out.iterdir())
    assert res["next"] == [f"pile-index order build {prefix} --preset pythia"]
    assert res["downloaded"]["files"] == 86

    def boom(*a, **k):
        raise AssertionError("a rerun of the same snapshot must not hash or join again")

    monkeypatch.setattr(hub, "verify_hashes", boom)
    monkeypatch.setattr(hub, "join_shards", boom)
    again = run_fetch(IDXMAPS, out)
    assert again["verified"]["reused"] and [s["status"] for s in again["stores"]] == ["already joined"]


def test_a_damaged_shard_is_refused_naming_its_blob(tmp_path, idxmaps, offline_cache, capsys):
    snap = next((offline_cache / "datasets--EleutherAI--pythia_deduped_pile_idxmaps" / "snapshots").iterdir())
    name = f"{IDXMAPS_BASE}-00041-of-00082.bin"
    blob = Path(os.path.realpath(snap / name))
    data = bytearray(blob.read_bytes())
    data[0] ^= 1
    blob.write_bytes(bytes(data))
    assert main(["fetch", IDXMAPS, "--to", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and name in err and str(blob) in err and "shard_hashes.txt" in err
    assert not (tmp_path / "o" / f"{IDXMAPS_BASE}.bin").exists()


def test_offline_and_not_cached_is_one_line(tmp_path, offline_cache, capsys):
    assert main(["fetch", PRESHUFFLED, "--to", str(tmp_path / "o"), "--revision", "v1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"pile-index fetch: error: offline and not in the hub cache: {PRESHUFFLED}@v1; the cache is "
                   f"{offline_cache} (HF_HUB_CACHE); unset HF_HUB_OFFLINE to download it"]


def test_preshuffled_21_shards_without_hashes(tmp_path, offline_cache):
    import numpy as np

    from pile_index.format import write_indexed
    rows = [np.arange(k, k + 9, dtype=np.uint16) for k in range(31)]
    src = tmp_path / "src" / "document"
    src.parent.mkdir()
    write_indexed(src, rows, np.uint16)
    files = sharded(src, 21, hashes=False)
    assert sorted(files)[0] == "document-00000-of-00020.bin" and "document.idx" in files
    put_repo(offline_cache, PRESHUFFLED, files)
    res = run_fetch(PRESHUFFLED, tmp_path / "pre")
    assert res["verified"] is None and res["linked"] == [] and res["stores"][0]["items"] == 31
    assert res["next"] == [f"pile-index sample {tmp_path / 'pre' / 'document'} --preshuffled --preset pythia "
                           "--step 1000 --slot 0 --json"]


def test_include_downloads_part_and_says_what_was_not_joined(tmp_path, idxmaps):
    res = run_fetch(IDXMAPS, tmp_path / "o", include=[f"*-00000-of-00082.bin"])
    assert res["stores"] == [] and len(res["not_joined"]) == 1 and "82 of 83 shards of pile_0.87_deduped_text_document are not downloaded (--include)" in res["not_joined"][0]["reason"]
    assert res["verified"]["match"] == 1 and res["verified"]["not_downloaded"] == 83  # 82 shards + the .idx
    assert res["next"][-1].startswith(f"pile-index fetch {IDXMAPS} --to ")


def test_a_join_cut_short_is_redone(tmp_path, idxmaps):
    out = tmp_path / "o"
    run_fetch(IDXMAPS, out)
    marker = json.loads((out / "fetch.json").read_text())
    marker["stores"][IDXMAPS_BASE]["state"] = "joining"
    (out / "fetch.json").write_text(json.dumps(marker))
    Path(f"{out / IDXMAPS_BASE}.bin").write_bytes(b"\0" * 10)
    res = run_fetch(IDXMAPS, out)
    assert res["stores"][0]["status"] == "joined"
    assert Path(f"{out / IDXMAPS_BASE}.bin").read_bytes() == Path(f"{idxmaps}.bin").read_bytes()


def test_files_fetch_did_not_write_are_never_overwritten(tmp_path, idxmaps):
    out = tmp_path / "o"
    out.mkdir()
    (out / f"{IDXMAPS_BASE}.bin").write_bytes(b"mine")
    with pytest.raises(ConfigError, match="fetch did not write it"):
        run_fetch(IDXMAPS, out)
    assert (out / f"{IDXMAPS_BASE}.bin").read_bytes() == b"mine"
    (out / f"{IDXMAPS_BASE}.bin").unlink()
    (out / "README.md").write_text("mine")
    with pytest.raises(ConfigError, match="README.md is already there"):
        run_fetch(IDXMAPS, out)
    assert (out / "README.md").read_text() == "mine"


def test_a_missing_shard_in_the_cache_is_named(tmp_path, idxmaps, offline_cache):
    snap = next((offline_cache / "datasets--EleutherAI--pythia_deduped_pile_idxmaps" / "snapshots").iterdir())
    (snap / f"{IDXMAPS_BASE}-00007-of-00082.bin").unlink()
    with pytest.raises(FormatError, match="shard_hashes.txt lists .*-00007-of-00082.bin, which the repository does not have"):
        run_fetch(IDXMAPS, tmp_path / "o")


def test_text_repository_is_linked_and_points_at_attach(tmp_path, offline_cache):
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq
    buf = io.BytesIO()
    pq.write_table(pa.table({"text": ["a", "b"]}), buf)
    put_repo(offline_cache, TEXT, {"data/train-00000-of-00001.parquet": buf.getvalue()})
    res = run_fetch(TEXT, tmp_path / "text")
    assert res["stores"] == [] and (tmp_path / "text" / "data" / "train-00000-of-00001.parquet").is_symlink()
    assert res["next"] == [f"pile-index attach RAW_PREFIX --from {tmp_path / 'text' / 'data'} "
                           "--tokenizer 20B_tokenizer.json"]


def test_bad_repo_id_and_another_repos_folder(tmp_path, idxmaps):
    with pytest.raises(ConfigError, match="expected Org/name"):
        run_fetch("not a repo", tmp_path / "o")
    run_fetch(IDXMAPS, tmp_path / "o")
    with pytest.raises(ConfigError, match="holds a fetch of 'EleutherAI/pythia_deduped_pile_idxmaps'"):
        run_fetch(PRESHUFFLED, tmp_path / "o")
    with pytest.raises(NotFoundError, match="no files matching --include nothing-like-this"):
        run_fetch(IDXMAPS, tmp_path / "o", include=["nothing-like-this"])


def test_list_prints_the_one_catalogue(capsys):
    assert main(["fetch", "--list", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)["repositories"]
    assert got == catalogue_records() and [r["repo_id"] for r in got] == [d.repo_id for d in CATALOGUE]
    assert {r["repo_id"] for r in got} >= {IDXMAPS, PRESHUFFLED, TEXT, "EleutherAI/pile-standard-pythia-preshuffled"}
    assert main(["fetch", "--list"]) == 0
    text = capsys.readouterr().out
    assert all(d.repo_id in text for d in CATALOGUE)
    assert main(["fetch"]) == 2
