"""``pile-index fetch``: a hub dataset repository into a folder pile-index reads.

1. ``huggingface_hub.snapshot_download(repo_type="dataset")`` into the hub cache (resumable: a rerun
   downloads only what is missing). With ``HF_HUB_OFFLINE`` set it resolves from the cache only
   (``local_files_only``) and a repository that is not there is one error line.
2. When the download holds a hash list (``shard_hashes.txt``, ``filename sha256`` lines), every listed file
   is checked against it (``ingest.shards.verify_hashes``); a mismatch stops here, naming the blob to delete.
3. Each set of Pythia shards ``{base}-{i:05}-of-{n-1:05}.bin`` (+ ``{base}.idx``) is joined into
   ``DIR/{base}.bin/.idx`` (``ingest.shards.join_shards``: checked, atomic).
4. Every other file is linked into ``DIR`` at its path in the repository (a link into the hub cache, no copy).
5. ``DIR/fetch.json`` records the commit, each file's blob and size, the verification and the joined stores,
   so a rerun of the same snapshot neither hashes nor joins again, and a join cut short is redone.

The hub client is imported here only; the library (``pile_index``) never needs the network.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pile_index.atomic import write_bytes
from pile_index.errors import ConfigError, FormatError, NotFoundError, PileIndexError
from pile_index.format import IndexedDataset
from pile_index.hub_cache import hub_cache_dir, hub_offline, is_hub_id, quiet_hub_logs, repo_cache_folder
from pile_index.sidecar import read_json

from .catalogue import HubDataset, Layout, known
from .shards import join_shards, parse_shard_name, read_hash_lines, verify_hashes

MARKER = "fetch.json"
"""The record of what ``fetch`` put in the folder (beside the stores)."""
HASH_LISTS = ("shard_hashes.txt",)
"""File names of the hash lists a repository may ship (``filename sha256`` lines)."""


@dataclass
class FetchConfig:
    """What to fetch and where."""

    repo_id: str
    """hub dataset repository, ``Org/name``"""
    to: str
    """folder that receives the joined stores and links to the other files"""
    revision: str = "main"
    """branch, tag or commit sha"""
    include: list[str] | None = None
    """glob patterns of repository paths to download (None: all); a hash list is always added"""
    progress: bool = True
    """progress bars on stderr (download, sha256, join)"""


def fetch(cfg: FetchConfig) -> dict[str, Any]:
    """Download (or resolve from the cache), verify, join and link; return what the folder now holds."""
    if not is_hub_id(cfg.repo_id):
        raise ConfigError(f"repo id {cfg.repo_id!r}: expected Org/name as the hub spells it, e.g. "
                          "EleutherAI/pythia_deduped_pile_idxmaps (`pile-index fetch --list` shows the known ones)")
    entry = known(cfg.repo_id)
    out = Path(cfg.to)
    old = _read_marker(out, cfg.repo_id)  # before any download: a folder of another repository is refused
    patterns = [*cfg.include, *(f"*{h}" for h in HASH_LISTS)] if cfg.include else None
    snapshot = download_snapshot(cfg.repo_id, cfg.revision, patterns, cfg.progress)
    files = _selected_files(snapshot, patterns)
    if not (_selected_files(snapshot, cfg.include) if cfg.include else files):  # the hash list alone is not a match
        what = f" matching --include {' '.join(cfg.include)}" if cfg.include else ""
        raise NotFoundError(f"{cfg.repo_id}@{cfg.revision}: no files{what} (snapshot {snapshot.name}); "
                            "check the patterns against the repository's file names")
    out.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "repo_id": cfg.repo_id, "revision": cfg.revision, "commit": snapshot.name,
        "files": {rel: _file_id(snapshot / rel) for rel in files}, "verified": None, "stores": {},
    }
    same = old is not None and old.get("commit") == snapshot.name
    record["verified"] = _verify(cfg, snapshot, files, old if same else None, record["files"])
    _write_marker(out, record)
    stores, not_joined, used = _join_all(cfg, snapshot, files, out, old if same else None, record)
    linked = _link_rest(snapshot, [f for f in files if f not in used], out, cfg.repo_id)
    return _summary(cfg, entry, snapshot, files, record["verified"], stores, not_joined, linked, out)


def download_snapshot(repo_id: str, revision: str, patterns: list[str] | None, progress: bool) -> Path:
    """The snapshot folder of ``repo_id@revision`` in the hub cache, downloading what is missing unless
    ``HF_HUB_OFFLINE`` is set. Every failure is one :class:`PileIndexError`."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:
        raise ConfigError("pile-index fetch needs huggingface_hub: `pip install huggingface_hub` (the [hub] extra)"
                          ) from e
    offline, cache = hub_offline(), hub_cache_dir()
    with quiet_hub_logs(), _progress_bars(progress):
        try:
            path = snapshot_download(repo_id, repo_type="dataset", revision=revision, cache_dir=str(cache),
                                     allow_patterns=patterns, local_files_only=offline)
        except Exception as e:  # the client raises many kinds (offline, not found, gated, HTTP, disk full)
            raise _hub_error(e, repo_id, revision, offline, cache) from e
    return Path(path)


def _hub_error(e: Exception, repo_id: str, revision: str, offline: bool, cache: Path) -> PileIndexError:
    names = {c.__name__ for c in type(e).__mro__}
    where = f"{repo_id}@{revision}"
    if offline and names & {"LocalEntryNotFoundError", "IncompleteSnapshotError", "OfflineModeIsEnabled"}:
        part = " (only part of it: the cached snapshot is incomplete)" if "IncompleteSnapshotError" in names else ""
        return NotFoundError(f"offline and not in the hub cache: {where}{part}; the cache is {cache} "
                             "(HF_HUB_CACHE); unset HF_HUB_OFFLINE to download it")
    if "GatedRepoError" in names:
        return ConfigError(f"{repo_id} is gated: accept its terms on the hub and log in (HF_TOKEN), then rerun")
    if "RevisionNotFoundError" in names:
        return NotFoundError(f"{repo_id} has no revision {revision!r} on the hub; use a branch, tag or commit sha")
    if "RepositoryNotFoundError" in names:
        return NotFoundError(f"no dataset repository {repo_id} on the hub (or it is private); "
                             "`pile-index fetch --list` shows the known ones")
    if names & {"LocalEntryNotFoundError", "IncompleteSnapshotError"}:
        return NotFoundError(f"the hub cannot be reached and {where} is not (completely) in the hub cache {cache}: "
                             "rerun when online; the download resumes")
    first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
    return NotFoundError(f"download of {where} failed ({type(e).__name__}: {first}); rerun to resume it")


@contextlib.contextmanager
def _progress_bars(enabled: bool) -> Iterator[None]:
    """The hub client's bars off for this call when ``enabled`` is false, as they were afterwards."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_off = are_progress_bars_disabled()
    if not enabled:
        disable_progress_bars()
    try:
        yield
    finally:
        if not enabled and not was_off:
            enable_progress_bars()


def _selected_files(snapshot: Path, patterns: list[str] | None) -> list[str]:
    """Repository paths under ``snapshot`` that the patterns select (the hub's own matching). An offline
    snapshot may hold files of an earlier, wider download: only the selected ones are used."""
    from huggingface_hub.utils import filter_repo_objects

    rels = sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file())
    rels = [r for r in rels if not r.startswith(".git")]
    return list(filter_repo_objects(rels, allow_patterns=patterns)) if patterns else rels


def _file_id(path: Path) -> dict[str, Any]:
    """A snapshot file's blob (its name in ``blobs/`` is the hub's etag) and size."""
    return {"blob": Path(os.path.realpath(path)).name, "size": path.stat().st_size}


def _read_marker(out: Path, repo_id: str) -> dict[str, Any] | None:
    path = out / MARKER
    if not path.exists():
        return None
    rec = read_json(path, fix=f"remove {path} and rerun (stores in {out} are then joined again)")
    if not isinstance(rec, dict) or not isinstance(rec.get("stores"), dict):
        raise FormatError(f"{path}: not a fetch record (expected repo_id, commit, files, stores); remove it and rerun")
    if rec.get("repo_id") != repo_id:
        raise ConfigError(f"`to` {out}: holds a fetch of {rec.get('repo_id')!r}, not {repo_id}; choose another folder")
    return rec


def _write_marker(out: Path, record: dict[str, Any]) -> None:
    write_bytes(out / MARKER, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode())


def _verify(cfg: FetchConfig, snapshot: Path, files: list[str], old: dict[str, Any] | None,
            ids: dict[str, Any]) -> dict[str, Any] | None:
    """Check the selected files each shipped hash list names; None when the download has no hash list. A
    rerun over the same blobs reuses the earlier result instead of hashing again."""
    lists = [f for f in files if Path(f).name in HASH_LISTS]
    if not lists:
        return None
    wanted: dict[str, set[str]] = {}  # hash list -> the names in it (relative to its folder) that were selected
    skipped = 0
    for rel in lists:
        parent = Path(rel).parent.as_posix()
        prefix = "" if parent == "." else parent + "/"
        names = [name for name, _ in read_hash_lines(snapshot / rel)]
        absent = [n for n in names if prefix + n not in ids]
        if absent and not cfg.include:
            raise FormatError(f"{cfg.repo_id}@{cfg.revision}: {rel} lists {absent[0]}"
                              f"{f' and {len(absent) - 1:,} more' if len(absent) > 1 else ''}, which the repository "
                              "does not have; the hash list and the files disagree")
        skipped += len(absent)
        wanted[rel] = {n for n in names if prefix + n in ids}
    checked = sorted((Path(rel).parent / n).as_posix().removeprefix("./") for rel, ns in wanted.items() for n in ns)
    done = (old or {}).get("verified") or {}
    if done.get("lists") == lists and set(checked) <= set(done.get("files") or []) \
            and all((old or {}).get("files", {}).get(n) == ids[n] for n in checked):
        return {**done, "files": checked, "match": len(checked), "not_downloaded": skipped, "reused": True}
    for rel, names in wanted.items():
        res = verify_hashes((snapshot / rel).parent, snapshot / rel, progress=cfg.progress, only=names)
        for f in res["files"]:
            if f["status"] == "Mismatch":
                name = (Path(rel).parent / f["file"]).as_posix().removeprefix("./")
                raise FormatError(
                    f"{cfg.repo_id}@{cfg.revision}: {name} has sha256 {f['found']}, {rel} says {f['expected']}: "
                    f"the download is damaged; delete {os.path.realpath(snapshot / name)} and rerun fetch "
                    "(it downloads that file again)")
    return {"lists": lists, "match": len(checked), "not_downloaded": skipped, "files": checked, "reused": False}


def _join_all(cfg: FetchConfig, snapshot: Path, files: list[str], out: Path, old: dict[str, Any] | None,
              record: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, str]], set[str]]:
    """Join every shard set; returns the stores, the sets that could not be joined, and the paths used."""
    groups: dict[str, dict[int, tuple[int, str]]] = {}
    for rel in files:
        parsed = parse_shard_name(Path(rel).name)
        if parsed:
            parent = Path(rel).parent.as_posix()
            key = parsed[0] if parent == "." else f"{parent}/{parsed[0]}"
            groups.setdefault(key, {})[parsed[1]] = (parsed[2], rel)
    stores, not_joined, used = [], [], set()
    for base_rel, found in sorted(groups.items()):
        last = max(v[0] for v in found.values())
        missing = [i for i in range(last + 1) if i not in found]
        if missing:  # the join reads only what this fetch selected, never other files of the snapshot
            what = "not downloaded (--include)" if cfg.include else "missing from the download"
            reason = (f"{len(missing):,} of {last + 1:,} shards of {base_rel} are {what}, e.g. "
                      f"{Path(base_rel).name}-{missing[0]:05}-of-{last:05}.bin")
            if not cfg.include:
                raise NotFoundError(f"{cfg.repo_id}@{cfg.revision}: {reason}; rerun fetch to resume the download")
            not_joined.append({"base": base_rel, "reason": reason})
            continue
        shards = [found[i][1] for i in range(last + 1)]
        idx_rel = f"{base_rel}.idx"
        if idx_rel not in record["files"] and (snapshot / idx_rel).is_file():
            record["files"][idx_rel] = _file_id(snapshot / idx_rel)  # join_shards copies it: record what it read
        inputs = shards + ([idx_rel] if idx_rel in record["files"] else [])
        prefix = out / base_rel
        entry = {"state": "joining", "inputs": {r: record["files"][r] for r in inputs}}
        prev = ((old or {}).get("stores") or {}).get(base_rel)
        bin_path = Path(f"{prefix}.bin")
        if prev and prev.get("state") == "done" and prev.get("inputs") == entry["inputs"] \
                and bin_path.is_file() and bin_path.stat().st_size == prev.get("bytes"):
            record["stores"][base_rel] = prev
            stores.append(_store_info(prefix, len(shards), "already joined"))
            used.update(inputs)
            continue
        if not prev and (bin_path.exists() or Path(f"{prefix}.idx").exists()):
            raise ConfigError(f"`to` {out}: {bin_path.name} is already there and fetch did not write it; "
                              "remove it or choose another folder")
        record["stores"][base_rel] = entry
        _write_marker(out, record)  # a join cut short is redone, not trusted
        prefix.parent.mkdir(parents=True, exist_ok=True)
        res = join_shards(snapshot / base_rel, prefix, progress=cfg.progress)
        record["stores"][base_rel] = {**entry, "state": "done", "bytes": res["bytes"]}
        _write_marker(out, record)
        stores.append(_store_info(prefix, len(shards), "joined"))
        used.update(inputs)
    return stores, not_joined, used


def _store_info(prefix: Path, shards: int, status: str) -> dict[str, Any]:
    ds = IndexedDataset(prefix)
    return {"prefix": str(prefix), "status": status, "shards": shards, "items": len(ds), "tokens": int(ds.n_tokens),
            "dtype": str(ds.dtype), "bytes": Path(f"{prefix}.bin").stat().st_size}


def _link_rest(snapshot: Path, rels: list[str], out: Path, repo_id: str) -> list[dict[str, Any]]:
    """Link each file into ``out`` at its repository path; a link fetch made earlier (into this repository's
    cache folder) is renewed, anything else there is refused."""
    repo_folder = str(Path(os.path.abspath(snapshot)).parents[1])
    linked = []
    for rel in rels:
        target = os.path.abspath(snapshot / rel)
        dest = out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_symlink():
            if os.readlink(dest) != target:
                if not os.readlink(dest).startswith(repo_folder + os.sep):
                    raise ConfigError(f"`to` {out}: {rel} is a link fetch did not make; remove it or choose another folder")
                tmp = dest.with_name(f".{dest.name}.fetch-link")
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                os.symlink(target, tmp)
                os.replace(tmp, dest)
        elif dest.exists():
            raise ConfigError(f"`to` {out}: {rel} is already there and is not a link into the hub cache of "
                              f"{repo_id}; remove it or choose another folder")
        else:
            os.symlink(target, dest)
        linked.append({"path": str(dest), "bytes": dest.stat().st_size})
    return linked


def _summary(cfg: FetchConfig, entry: HubDataset | None, snapshot: Path, files: list[str],
             verified: dict[str, Any] | None, stores: list[dict[str, Any]], not_joined: list[dict[str, str]],
             linked: list[dict[str, Any]], out: Path) -> dict[str, Any]:
    nxt = []
    for s in stores:
        if entry is not None and entry.layout in (Layout.PRESHUFFLED, Layout.RAW):
            nxt.append(entry.next_command.format(prefix=s["prefix"], dir=str(out)))
        else:
            nxt.append(f"pile-index info {s['prefix']}")
    parquet_dirs = sorted({str(Path(item["path"]).parent) for item in linked if item["path"].endswith(".parquet")})
    for d in parquet_dirs:
        if entry is not None and entry.layout is Layout.TEXT:
            nxt.append(entry.next_command.format(prefix="", dir=d))
        else:
            nxt.append(f"pile-index ingest {d} --tokenizer 20B_tokenizer.json --out PREFIX")
    if not_joined:
        nxt.append(f"pile-index fetch {cfg.repo_id} --to {out}   # without --include: all shards, then they are joined")
    size = sum((snapshot / f).stat().st_size for f in files)
    return {
        "repo_id": cfg.repo_id,
        "revision": cfg.revision,
        "commit": snapshot.name,
        "known": entry is not None,
        "layout": str(entry.layout) if entry else None,
        "holds": entry.holds if entry else None,
        "offline": hub_offline(),
        "hub_cache": str(repo_cache_folder(cfg.repo_id, hub_cache_dir(), "dataset")),
        "downloaded": {"files": len(files), "bytes": size},
        "verified": None if verified is None else {k: verified[k] for k in ("lists", "match", "not_downloaded", "reused")},
        "stores": stores,
        "not_joined": not_joined,
        "linked": linked,
        "folder": str(out),
        "next": nxt,
    }
