"""Finding and loading GPT-NeoX checkpoints: local folders, the Hugging Face hub cache, hub downloads.

Resolution of ``(model, revision)``:

- ``model`` is a folder with ``config.json``: that folder (``revision`` then names a sub-folder, so
  ``model=ckpts, revision=step1000`` reads ``ckpts/step1000/``);
- ``model`` is a hub cache repo folder (``.../models--Org--name`` with ``refs/`` and ``snapshots/``), or
  ``model`` is a hub id ``Org/name`` found in the cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
  ``~/.cache/huggingface/hub``): ``refs/<revision>`` holds a commit sha, the files are in
  ``snapshots/<sha>/``; a 40-hex revision names the snapshot directly. This works offline.
- a value that starts with ``.``, ``/`` or ``~``, has a path separator beyond ``Org/name``, or whose parent
  folder exists (``demo/nope``) is a local path: when missing, "no such folder" naming the folders that do
  exist there, and the network is never asked;
- otherwise, for a well-formed hub id, when online and allowed, ``huggingface_hub`` (optional) downloads
  config.json and one weight set into that cache, then the cache is read as above. The hub is asked once
  first, without retries; when that fails the one error is "offline or not found: REPO@REVISION".

:func:`resolve_revisions` resolves a list of revisions before any is scored and names the missing and the
present ones together. A config.json is validated field by field (:class:`~.model.GPTNeoXConfig`) and
against the bytes of the weight files before any module is built.

Weights: ``model.safetensors`` or ``pytorch_model.bin`` (``torch.load(weights_only=True)``), single or
sharded through ``*.index.json``. The buffer keys ``attention.bias``, ``attention.masked_bias`` and
``attention.rotary_emb.inv_freq`` of older exports are dropped; every other key and shape is checked against
config.json and the first bad one is named. Each checkpoint gets a sha256 over its weight files and one over
its tensors, so revisions that carry identical weights (pythia issues 195, 205, 206) can be flagged.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import ConfigError, FormatError, NotFoundError
from ..hub_cache import SHA_RE, hub_cache_dir, hub_offline, is_hub_id, quiet_hub_logs
from ..hub_cache import repo_cache_folder as _repo_cache_folder
from ..sidecar import read_json
from .model import GPTNeoX, GPTNeoXConfig, expected_shapes, kept_narrow, show_value

log = logging.getLogger(__name__)

IGNORED_KEY_SUFFIXES = ("attention.bias", "attention.masked_bias", "attention.rotary_emb.inv_freq")
"""Non-persistent buffers that older GPT-NeoX exports saved (causal mask, rotary frequencies)."""

KEY_ALIASES = {"lm_head.weight": "embed_out.weight"}
"""transformers 5 calls the output projection lm_head in memory; files use embed_out."""

WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_SHA_RE = SHA_RE

MAX_INDEX_BYTES = 64 << 20
"""A ``*.index.json`` lists one line per tensor (Pythia-12b: ~40 kB); past 64 MiB it is not a weight index."""

MIN_BYTES_PER_PARAM = 1
"""The narrowest floating-point dtype a weight may have (float8): a config implying more parameters than the
weight files have bytes describes other weights."""

HUB_TIMEOUT_S = 10.0
"""Seconds the one hub request that checks a repo and revision (before any download) may take."""


@dataclass(frozen=True)
class Checkpoint:
    """One resolved checkpoint: where its files are and what they are."""

    model: str
    """model id or folder, as given"""
    revision: str | None
    """branch, tag or sha asked for (None for a plain folder)"""
    commit_sha: str | None
    """hub commit the revision resolved to (None for a folder outside a hub cache)"""
    folder: Path
    """folder holding config.json and the weight files"""
    weight_files: tuple[Path, ...]
    """weight files in load order (the shards of an index, or one file)"""
    config: GPTNeoXConfig = field(compare=False)

    @functools.cached_property
    def file_sha256s(self) -> dict[str, str]:
        """sha256 of each weight file, by file name (for hub files: the LFS object id)."""
        return {p.name: file_sha256(p) for p in self.weight_files}

    @property
    def weights_sha256(self) -> str:
        """The weight file's sha256 for one file; for shards, sha256 over lines ``<sha256>  <name>\\n``
        in file-name order (the form of a sha256sum listing)."""
        shas = self.file_sha256s
        if len(shas) == 1:
            return next(iter(shas.values()))
        listing = "".join(f"{shas[n]}  {n}\n" for n in sorted(shas))
        return hashlib.sha256(listing.encode()).hexdigest()

    def record(self) -> dict:
        """What a result file records about the checkpoint."""
        return {
            "model": self.model,
            "revision": self.revision,
            "commit_sha": self.commit_sha,
            "weights_sha256": self.weights_sha256,
            "weight_files": self.file_sha256s,
        }


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 24) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def repo_cache_folder(model_id: str, cache_dir: Path | None = None) -> Path:
    return _repo_cache_folder(model_id, cache_dir, "model")


def is_local_path(model: str) -> bool:
    """A ``model`` value meant as a path: it starts with ``.``, ``/`` or ``~``, has a path separator beyond the
    one of ``Org/name``, or its parent folder exists (``demo/nope`` beside a ``demo/`` folder is a typo of a
    folder, not a hub id)."""
    if model.startswith((".", "/", "~")) or model.count("/") > 1:
        return True
    if any(sep in model for sep in (os.sep, os.altsep) if sep and sep != "/"):
        return True
    return "/" in model and Path(model).expanduser().parent.is_dir()


def _names(items: Sequence[str], cap: int = 12) -> str:
    """``a, b, c`` for a message, the first ``cap`` and a count of the rest."""
    items = list(items)
    if not items:
        return "none"
    shown = ", ".join(items[:cap])
    return shown if len(items) <= cap else f"{shown} ... ({len(items) - cap:,} more)"


def _subfolders(folder: Path) -> list[str]:
    """The folders in ``folder`` a user may have meant (hidden ones and ``__pycache__`` left out)."""
    try:
        return sorted(p.name for p in folder.iterdir()
                      if p.is_dir() and not p.name.startswith(".") and p.name != "__pycache__")
    except OSError:
        return []


def _no_such_folder(model: str, hub_hint: bool = False) -> NotFoundError:
    """'no such folder' naming the deepest existing folder above ``model`` and the folders it holds."""
    base = Path(model).expanduser()
    while not base.is_dir() and base != base.parent:
        base = base.parent
    shown = f"{base}/" if str(base) != "." else "the current folder"
    hint = ", and not a hub id of the form Org/name (e.g. EleutherAI/pythia-70m)" if hub_hint else ""
    return NotFoundError(f"model {model!r}: no such folder ({shown} holds {_names(_subfolders(base))}){hint}")


def _has_weights(folder: Path) -> bool:
    return any((folder / n).is_file() for n in WEIGHT_INDEXES + WEIGHT_FILES)


def shard_names(index: Path | str, weight_map: object) -> list[str]:
    """The shard files an index's ``weight_map`` names, sorted; each must be a plain file name beside the
    index (a name like ``../../x.bin`` or ``/etc/passwd`` points outside the model folder and is refused)."""
    if not isinstance(weight_map, dict) or not weight_map:
        raise FormatError(f"{index}: weight_map is {show_value(weight_map)}: expected an object key -> shard file")
    for key, name in weight_map.items():
        if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name \
                or "\0" in name or os.path.isabs(name) or Path(name).name != name:
            raise FormatError(
                f"{index}: weight_map[{show_value(key)}] = {show_value(name)} is not a file name in the model "
                "folder (shards must sit beside the index; paths outside the folder are refused)"
            )
    return sorted(set(weight_map.values()))


def _read_index(index: Path) -> list[str]:
    data = read_json(index, max_bytes=MAX_INDEX_BYTES, what="weight index")
    if not isinstance(data, dict) or "weight_map" not in data:
        raise FormatError(f"{index}: not a weight index (expected JSON with a 'weight_map')")
    return shard_names(index, data["weight_map"])


def weight_files_in(folder: Path) -> tuple[Path, ...]:
    """The weight set of a folder: safetensors before pickles, an index before a single file."""
    for index_name, single in (("model.safetensors.index.json", "model.safetensors"),
                               ("pytorch_model.bin.index.json", "pytorch_model.bin")):
        index = folder / index_name
        if index.is_file():
            names = _read_index(index)
            missing = [n for n in names if not (folder / n).is_file()]
            if missing:
                raise NotFoundError(
                    f"{index} names {len(names):,} shards but {missing[0]} is missing "
                    f"({len(missing):,} missing): download the whole checkpoint"
                )
            return tuple(folder / n for n in names)
        if (folder / single).is_file():
            return (folder / single,)
    raise NotFoundError(
        f"{folder}: no weights (expected one of {', '.join(WEIGHT_INDEXES + WEIGHT_FILES)})"
    )


def _snapshot_sha(folder: Path) -> str | None:
    """The commit sha when ``folder`` is ``.../snapshots/<sha>`` of a hub cache."""
    folder = folder.absolute()
    if folder.parent.name == "snapshots" and _SHA_RE.match(folder.name):
        return folder.name
    return None


def _resolve_in_repo_folder(repo: Path, revision: str) -> tuple[Path, str] | None:
    """(snapshot folder, commit sha) of ``revision`` in a hub cache repo folder, or None if not cached."""
    if _SHA_RE.match(revision):
        sha = revision
    else:
        ref = repo / "refs" / revision
        if not ref.is_file():
            return None
        sha = ref.read_text(errors="replace").strip()
        if not _SHA_RE.match(sha):
            raise FormatError(f"{ref}: expected a 40-hex commit sha, found {sha[:60]!r}")
    snap = repo / "snapshots" / sha
    if not (snap / "config.json").is_file() or not _has_weights(snap):
        return None
    return snap, sha


def check_weights_size(cfg: GPTNeoXConfig, files: Sequence[Path], config_path: Path) -> None:
    """Refuse a config that implies more parameters than the weight files can hold (at
    :data:`MIN_BYTES_PER_PARAM` each), before any module is built or any weight read."""
    have = sum(p.stat().st_size for p in files)
    n = cfg.n_params()
    if n * MIN_BYTES_PER_PARAM > have:
        raise FormatError(
            f"{config_path}: describes {n:,} parameters (num_hidden_layers={cfg.num_hidden_layers:,}, "
            f"hidden_size={cfg.hidden_size:,}, vocab_size={cfg.vocab_size:,}), at least "
            f"{n * MIN_BYTES_PER_PARAM:,} bytes of weights, but the weight files hold {have:,} bytes: "
            "config.json does not belong to these weights"
        )


def _checkpoint(model: str, revision: str | None, sha: str | None, folder: Path) -> Checkpoint:
    cfg = GPTNeoXConfig.from_json(folder / "config.json")
    files = weight_files_in(folder)
    check_weights_size(cfg, files, folder / "config.json")
    return Checkpoint(model=model, revision=revision, commit_sha=sha, folder=folder, weight_files=files, config=cfg)


def _kind(model: str) -> tuple[str, Path | None]:
    """What ``model`` names: ("repo", hub cache repo folder), ("folder", folder) or ("hub", None) for a hub id.
    A local path that does not exist, or a value that is neither, is a NotFoundError (no network is asked)."""
    path = Path(model).expanduser()
    if path.is_dir():
        if (path / "refs").is_dir() and (path / "snapshots").is_dir():
            return "repo", path
        return "folder", path
    if path.exists():
        raise NotFoundError(
            f"model {model!r} is a file: model names the folder that holds config.json and the weights"
        )
    if is_local_path(model):
        raise _no_such_folder(model)
    if not is_hub_id(model):
        raise _no_such_folder(model, hub_hint=True)
    return "hub", None


def _resolve_local(model: str, revision: str | None, cache_dir: Path | None) -> Checkpoint | None:
    """The checkpoint when its files are on this machine (a folder, a cache repo folder, the hub cache), else
    None. Never downloads."""
    kind, path = _kind(model)
    if kind == "repo":
        rev = revision or "main"
        found = _resolve_in_repo_folder(path, rev)
        return None if found is None else _checkpoint(model, rev, found[1], found[0])
    if kind == "folder":
        folder = path / revision if revision else path
        if not (folder / "config.json").is_file():
            return None
        return _checkpoint(model, revision, _snapshot_sha(folder.resolve()), folder)
    rev = revision or "main"
    repo = repo_cache_folder(model, cache_dir)
    found = _resolve_in_repo_folder(repo, rev) if repo.is_dir() else None
    return None if found is None else _checkpoint(model, rev, found[1], found[0])


def _not_here(model: str, revision: str | None, cache_dir: Path | None, why: str) -> NotFoundError:
    """The error for a revision whose files are not on this machine; ``why`` says why none is downloaded."""
    kind, path = _kind(model)
    if kind == "repo":
        rev = revision or "main"
        refs = sorted(p.name for p in (path / "refs").iterdir()) if (path / "refs").is_dir() else []
        return NotFoundError(
            f"{path}: revision {rev!r} is not in this cache folder (no refs/{rev} with a complete "
            f"snapshot): download it, or pick one of {_names(refs)}"
        )
    if kind == "folder":
        folder = path / revision if revision else path
        if revision:
            return NotFoundError(
                f"{folder}: no config.json; with a local model folder, revision names a sub-folder "
                f"({path} holds {_names(_subfolders(path))})"
            )
        return NotFoundError(f"{folder}: no config.json; a model folder needs config.json beside its weights")
    rev = revision or "main"
    cache = cache_dir or hub_cache_dir()
    return NotFoundError(
        f"{model} revision {rev!r} is not in the hub cache {cache} (looked for "
        f"{repo_cache_folder(model, cache).name}/refs/{rev} and its snapshot) and {why}: download it first, "
        f"e.g. `huggingface-cli download {model} --revision {rev}`, or point model at a folder"
    )


def _downloads_off(allow_download: bool) -> str | None:
    """Why no download may be tried, or None when one may."""
    if hub_offline():
        return "downloads are off (HF_HUB_OFFLINE is set)"
    if not allow_download:
        return "downloads are off (not allowed)"
    return None


def resolve_checkpoint(model: str, revision: str | None = None, *, allow_download: bool = True,
                       cache_dir: str | os.PathLike | None = None) -> Checkpoint:
    """Find the files of ``model`` at ``revision`` (see the module docstring for the rules)."""
    cache = Path(cache_dir).expanduser() if cache_dir else None
    found = _resolve_local(model, revision, cache)
    if found is not None:
        return found
    kind, _ = _kind(model)
    off = _downloads_off(allow_download)
    if kind != "hub" or off:
        raise _not_here(model, revision, cache, off or "")
    rev = revision or "main"
    _download(model, rev, cache or hub_cache_dir())
    found = _resolve_local(model, rev, cache)
    if found is None:
        raise NotFoundError(f"{model}@{rev}: downloaded, but {repo_cache_folder(model, cache)} still lacks a "
                            "complete snapshot")
    return found


@dataclass(frozen=True)
class RevisionPlan:
    """Where each revision of a model is, found before any scoring starts."""

    model: str
    present: dict[str | None, Checkpoint]
    """revisions whose files are here, resolved (config validated, weight files listed)"""
    to_download: list[str]
    """revisions not here that the hub lists: downloaded when scored"""


def resolve_revisions(model: str, revisions: Sequence[str | None], *, allow_download: bool = True,
                      cache_dir: str | os.PathLike | None = None) -> RevisionPlan:
    """Resolve every revision before any is scored: NotFoundError listing the missing ones and the present ones
    when any is neither here nor (online, downloads allowed, hub id) on the hub; a bad config.json or weight
    index of a present one raises here too. The hub is asked once (its list of branches and tags)."""
    cache = Path(cache_dir).expanduser() if cache_dir else None
    present: dict[str | None, Checkpoint] = {}
    absent: list[str | None] = []
    for rev in revisions:
        ck = _resolve_local(model, rev, cache)
        if ck is None:
            absent.append(rev)
        else:
            present[rev] = ck
    if not absent:
        return RevisionPlan(model, present, [])
    kind, _ = _kind(model)
    off = _downloads_off(allow_download)
    label = lambda r: r if r is not None else "(default)"  # noqa: E731
    if kind == "hub" and not off:
        refs, failure = _hub_refs(model)
        if failure is not None:
            if len(absent) == 1 and not present:
                raise _offline_or_not_found(model, absent[0] or "main", failure) from failure
            where = f"offline or not found on the hub ({type(failure).__name__})"
        else:
            where = "not in the hub cache, and not among the hub's branches and tags"
        to_download = [r or "main" for r in absent if failure is None and ((r or "main") in refs
                                                                          or _SHA_RE.match(r or "main"))]
        missing = [r for r in absent if (r or "main") not in to_download]
        if not missing:
            return RevisionPlan(model, present, to_download)
        if len(missing) == 1 and not present:
            raise _offline_or_not_found(model, missing[0] or "main")
        fix = "check the revision names, or download them first"
    else:
        missing = absent
        if len(missing) == 1 and not present:
            raise _not_here(model, missing[0], cache, off or "")
        if kind == "folder":
            where = "no sub-folder with config.json"
            fix = "add a sub-folder with config.json and weights for each, or leave them out of revisions"
        else:
            where = f"not in the hub cache, and {off or 'downloads are off'}"
            fix = (f"download them first (e.g. `huggingface-cli download {model} --revision "
                   f"{missing[0] or 'main'}`), or leave them out of revisions")
    raise NotFoundError(
        f"model {model}: {len(missing):,} of {len(revisions):,} revisions are missing ({where}): "
        f"{_names([label(r) for r in missing])}; present: {_names([label(r) for r in present])}. {fix}"
    )


def _offline_or_not_found(model: str, revision: str, e: Exception | None = None) -> NotFoundError:
    cause = f" ({type(e).__name__})" if e is not None else ""
    return NotFoundError(
        f"offline or not found: {model}@{revision}{cause}: check the model id and revision, or download it "
        f"by hand (`huggingface-cli download {model} --revision {revision}`)"
    )


def _hub_client():
    try:
        import huggingface_hub
    except ImportError as e:
        raise ConfigError(
            "a checkpoint is not in the hub cache and huggingface_hub is not installed: "
            "`pip install huggingface_hub` (the [hub] extra), or download the checkpoint by hand"
        ) from e
    return huggingface_hub


def _hub_refs(model: str) -> tuple[set[str], Exception | None]:
    """The hub's branch and tag names of ``model``, and None; or an empty set and the client's error. One
    request with a timeout first (the repo's main, which also tells whether the hub can be reached), then the
    list of refs; no retries."""
    hub = _hub_client()
    with quiet_hub_logs():
        try:
            api = hub.HfApi()
            api.model_info(model, timeout=HUB_TIMEOUT_S)
            refs = api.list_repo_refs(model)
        except Exception as e:  # the client raises many kinds (connection, timeout, HTTP, repo not found)
            return set(), e
    return {r.name for r in [*(refs.branches or []), *(refs.tags or [])]}, None


def _download(model: str, revision: str, cache: Path) -> None:
    """Download config.json and one weight set (safetensors preferred) into the hub cache. The hub is asked
    first with one request without retries (the repo at that revision and its file list); if that fails,
    one 'offline or not found' error, and nothing else is tried."""
    hub = _hub_client()
    with quiet_hub_logs():
        try:
            info = hub.HfApi().model_info(model, revision=revision, timeout=HUB_TIMEOUT_S)
        except Exception as e:  # the client raises many kinds (connection, timeout, HTTP, repo/revision not found)
            raise _offline_or_not_found(model, revision, e) from e
        names = {s.rfilename for s in (getattr(info, "siblings", None) or [])}
        try:
            wanted = ["config.json"]
            for index_name, single in (("model.safetensors.index.json", "model.safetensors"),
                                       ("pytorch_model.bin.index.json", "pytorch_model.bin")):
                if index_name in names:
                    path = Path(hub.hf_hub_download(model, index_name, revision=revision, cache_dir=cache))
                    wanted += [index_name] + _read_index(path)
                    break
                if single in names:
                    wanted.append(single)
                    break
            else:
                raise NotFoundError(f"{model}@{revision} has no GPT-NeoX weight files on the hub "
                                    f"(it lists {_names(sorted(names))})")
            for name in wanted:
                log.info("downloading %s@%s: %s", model, revision, name)
                hub.hf_hub_download(model, name, revision=revision, cache_dir=cache)
        except (NotFoundError, FormatError):
            raise
        except Exception as e:  # the client raises many kinds (HTTP, connection lost mid-download, disk full)
            raise NotFoundError(f"{model}@{revision}: download failed ({type(e).__name__}: {e}); rerun to retry, "
                                f"or download it by hand (`huggingface-cli download {model} --revision "
                                f"{revision}`)") from e


SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
"""safetensors dtype codes this reader takes (the float8 codes of newer files are refused by name)."""

MAX_SAFETENSORS_HEADER_BYTES = 100 << 20
"""The safetensors format's own cap on its JSON header (one entry per tensor: a few MB at most)."""


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file (8-byte little-endian header length, a JSON header of
    ``{name: {dtype, shape, data_offsets}}``, then the data), each read by plain file reads into memory of
    its own. Not memory-mapped: a copy out of a mapping keeps the file's pages resident beside the copy, so
    loading peaked at twice the weights (measured, whole process: 926 MiB peak for the 70m model's 269 MiB
    of weights from 312 MiB before loading, against 655 MiB read this way)."""
    bad = lambda why: FormatError(f"{path}: not a readable safetensors file ({why})")
    try:
        with open(path, "rb", buffering=0) as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            if len(head) < 8:
                raise bad(f"{size:,} bytes: shorter than the 8-byte header length")
            n = int.from_bytes(head, "little")
            if n > min(MAX_SAFETENSORS_HEADER_BYTES, size - 8):
                raise bad(f"header length {n:,} does not fit the file of {size:,} bytes")
            try:
                header = json.loads(f.read(n))
            except (ValueError, UnicodeDecodeError) as e:
                raise bad(f"header is not JSON: {e}") from e
            if not isinstance(header, dict):
                raise bad("header is not a JSON object")
            base, data_size = 8 + n, size - 8 - n
            out: dict[str, torch.Tensor] = {}
            for key, ent in header.items():
                if key == "__metadata__":
                    continue
                try:
                    dtype = SAFETENSORS_DTYPES[ent["dtype"]]
                    shape = [int(x) for x in ent["shape"]]
                    begin, end = (int(x) for x in ent["data_offsets"])
                except (KeyError, TypeError, ValueError) as e:
                    raise bad(f"tensor {key}: entry {show_value(ent)} is not a known dtype, shape and offsets") from e
                t = torch.empty(shape, dtype=dtype)
                nbytes = t.numel() * t.element_size()
                if min(shape, default=0) < 0 or not 0 <= begin <= end <= data_size or end - begin != nbytes:
                    raise bad(f"tensor {key}: offsets {begin:,}..{end:,} do not hold {nbytes:,} bytes of shape "
                              f"{shape} within the {data_size:,} data bytes")
                f.seek(base + begin)
                view = memoryview(t.reshape(-1).view(torch.uint8).numpy()) if nbytes else memoryview(b"")
                got = 0
                while got < nbytes:  # one read returns at most ~2 GiB on Linux
                    k = f.readinto(view[got:])
                    if not k:
                        raise bad(f"tensor {key}: the file ends {nbytes - got:,} bytes early")
                    got += k
                out[key] = t
            return out
    except OSError as e:
        raise bad(str(e)) from e


def _read_weight_file(path: Path) -> tuple[dict[str, torch.Tensor], bool]:
    """The tensors of one weight file, and whether they are memory-mapped (the .bin path: copy before use)."""
    if path.suffix == ".safetensors":
        return _read_safetensors(path), False
    try:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # legacy (non-zip) pickles cannot be memory-mapped
            return _checked_dict(path, torch.load(path, map_location="cpu", weights_only=True)), False
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError ... for bad files
        raise FormatError(f"{path}: not a loadable weights-only torch file ({type(e).__name__}: {e})") from e
    return _checked_dict(path, sd), True


def _checked_dict(path: Path, sd: object) -> dict[str, torch.Tensor]:
    if not isinstance(sd, dict):
        raise FormatError(f"{path}: holds a {type(sd).__name__}, expected a state dict")
    return sd


def _read_weights(files: Sequence[Path]) -> tuple[dict[str, torch.Tensor], dict[str, Path], set[str]]:
    sd: dict[str, torch.Tensor] = {}
    origin: dict[str, Path] = {}
    mapped: set[str] = set()
    for path in files:
        tensors, is_mapped = _read_weight_file(Path(path))
        for key, tensor in tensors.items():
            if key.endswith(IGNORED_KEY_SUFFIXES):
                continue
            key = KEY_ALIASES.get(key, key)
            if key in sd:
                raise FormatError(f"{path}: key {key} also appears in {origin[key]}")
            sd[key], origin[key] = tensor, Path(path)
            if is_mapped:
                mapped.add(key)
    return sd, origin, mapped


def read_state_dict(files: tuple[Path, ...] | list[Path]) -> tuple[dict[str, torch.Tensor], dict[str, Path]]:
    """Every tensor of the weight files, keys aliased and buffer keys dropped; and which file held each key."""
    sd, origin, _ = _read_weights(files)
    return sd, origin


def check_state_dict(sd: dict[str, torch.Tensor], cfg: GPTNeoXConfig, origin: dict[str, Path] | None = None) -> None:
    """Raise FormatError naming the first missing, unexpected or misshapen key."""
    expected = expected_shapes(cfg)
    where = (lambda k: f"{origin[k]}: " if origin and k in origin else "")
    missing = [k for k in expected if k not in sd]
    if missing:
        raise FormatError(
            f"checkpoint lacks {missing[0]} ({len(missing):,} of {len(expected):,} keys missing): the weights "
            "do not belong to this config.json, or a shard is incomplete"
        )
    unexpected = sorted(k for k in sd if k not in expected)
    if unexpected:
        k = unexpected[0]
        raise FormatError(
            f"{where(k)}unexpected key {k} ({len(unexpected):,} unexpected): config.json describes a "
            f"different model (num_hidden_layers={cfg.num_hidden_layers})"
        )
    for k, shape in expected.items():
        got = tuple(sd[k].shape)
        if got != shape:
            raise FormatError(f"{where(k)}{k} has shape {list(got)}, expected {list(shape)} from config.json")
        if not sd[k].is_floating_point():
            raise FormatError(f"{where(k)}{k} has dtype {sd[k].dtype}, expected a floating-point tensor")


def tensors_sha256(sd: dict[str, torch.Tensor]) -> str:
    """sha256 over (key, dtype, shape, bytes) of every tensor in key order: equal for equal weights even when
    the files differ byte for byte (a re-pickled or re-sharded copy)."""
    h = hashlib.sha256()
    for k in sorted(sd):
        t = sd[k].detach().contiguous().cpu()
        h.update(f"{k}|{t.dtype}|{list(t.shape)}\n".encode())
        h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))  # no bytes copy of each tensor
    return h.hexdigest()


def load_model(ckpt: Checkpoint, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
               *, with_tensor_hash: bool = False) -> tuple[GPTNeoX, str | None]:
    """Build the model of ``ckpt`` on ``device`` computing in ``dtype`` (no random init: built on the meta
    device and the checked tensors assigned). On CPU in fp32, the matrices stored in fp16 or bf16 (Pythia's
    files are fp16) stay so and are widened where used (:func:`.model.kept_narrow`); every other tensor is
    converted to ``dtype`` here. Returns (model, tensors_sha256 or None)."""
    sd, origin, mapped = _read_weights(ckpt.weight_files)
    check_state_dict(sd, ckpt.config, origin)
    tensor_hash = tensors_sha256(sd) if with_tensor_hash else None
    with torch.device("meta"):
        model = GPTNeoX(ckpt.config)
    narrow_ok = torch.device(device).type == "cpu" and dtype == torch.float32
    owned: dict[str, torch.Tensor] = {}
    for k in list(sd):
        t = sd.pop(k)
        keep = narrow_ok and t.dtype in (torch.float16, torch.bfloat16) and kept_narrow(k)
        owned[k] = _owned(t, device, t.dtype if keep else dtype, k in mapped)
    model.load_state_dict(owned, strict=True, assign=True)
    return model.eval().requires_grad_(False), tensor_hash


def _owned(t: torch.Tensor, device: str | torch.device, dtype: torch.dtype, mapped: bool) -> torch.Tensor:
    """``t`` on device in dtype, in memory of its own: a tensor still backed by a .bin file's mmap (same
    device and dtype) is copied, so the file can be closed. Tensors read from safetensors files already own
    64-byte-aligned memory and are used as they are when device and dtype match."""
    out = t.to(device=device, dtype=dtype)
    return out.clone() if mapped and out.data_ptr() == t.data_ptr() else out


class DuplicateWeights:
    """Remembers the weight hashes of checkpoints seen and warns when a new one repeats an earlier one."""

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}
        self.duplicates: list[tuple[str, str]] = []

    def check(self, label: str, *hashes: str | None) -> str | None:
        """Note ``label``'s hashes; return (and log a warning with) the earlier label they repeat, if any."""
        earlier = next((self._seen[h] for h in hashes if h and h in self._seen), None)
        for h in hashes:
            if h:
                self._seen.setdefault(h, label)
        if earlier is not None and earlier != label:
            self.duplicates.append((earlier, label))
            log.warning(
                "%s carries the same weights as %s (equal weight files or tensors; on the hub, pythia issues "
                "195, 205 and 206 list revisions that serve another step's weights): their scores will be equal",
                label, earlier,
            )
            return earlier
        return None
