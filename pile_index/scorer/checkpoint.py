"""Finding and loading GPT-NeoX checkpoints: local folders, the Hugging Face hub cache, hub downloads.

Resolution of ``(model, revision)``:

- ``model`` is a folder with ``config.json``: that folder (``revision`` then names a sub-folder, so
  ``--model ckpts --revision step1000`` reads ``ckpts/step1000/``);
- ``model`` is a hub cache repo folder (``.../models--Org--name`` with ``refs/`` and ``snapshots/``), or
  ``model`` is a hub id ``Org/name`` found in the cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
  ``~/.cache/huggingface/hub``): ``refs/<revision>`` holds a commit sha, the files are in
  ``snapshots/<sha>/``; a 40-hex revision names the snapshot directly. This works offline.
- otherwise, when online and allowed, ``huggingface_hub`` (optional) downloads config.json and one weight
  set into that cache, then the cache is read as above.

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
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import ConfigError, FormatError, NotFoundError
from .model import GPTNeoX, GPTNeoXConfig, expected_shapes

log = logging.getLogger(__name__)

IGNORED_KEY_SUFFIXES = ("attention.bias", "attention.masked_bias", "attention.rotary_emb.inv_freq")
"""Non-persistent buffers that older GPT-NeoX exports saved (causal mask, rotary frequencies)."""

KEY_ALIASES = {"lm_head.weight": "embed_out.weight"}
"""transformers 5 calls the output projection lm_head in memory; files use embed_out."""

WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")


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


def hub_cache_dir() -> Path:
    """The hub cache folder, by huggingface_hub's rules: $HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path("~/.cache/huggingface/hub").expanduser()


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def repo_cache_folder(model_id: str, cache_dir: Path | None = None) -> Path:
    return (cache_dir or hub_cache_dir()) / ("models--" + model_id.replace("/", "--"))


def _has_weights(folder: Path) -> bool:
    return any((folder / n).is_file() for n in WEIGHT_INDEXES + WEIGHT_FILES)


def weight_files_in(folder: Path) -> tuple[Path, ...]:
    """The weight set of a folder: safetensors before pickles, an index before a single file."""
    for index_name, single in (("model.safetensors.index.json", "model.safetensors"),
                               ("pytorch_model.bin.index.json", "pytorch_model.bin")):
        index = folder / index_name
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (ValueError, KeyError, TypeError) as e:
                raise FormatError(f"{index}: not a weight index (expected JSON with a 'weight_map')") from e
            names = sorted(set(weight_map.values()))
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
        sha = ref.read_text().strip()
        if not _SHA_RE.match(sha):
            raise FormatError(f"{ref}: expected a 40-hex commit sha, found {sha[:60]!r}")
    snap = repo / "snapshots" / sha
    if not (snap / "config.json").is_file() or not _has_weights(snap):
        return None
    return snap, sha


def _checkpoint(model: str, revision: str | None, sha: str | None, folder: Path) -> Checkpoint:
    return Checkpoint(model=model, revision=revision, commit_sha=sha, folder=folder,
                      weight_files=weight_files_in(folder), config=GPTNeoXConfig.from_json(folder / "config.json"))


def resolve_checkpoint(model: str, revision: str | None = None, *, allow_download: bool = True,
                       cache_dir: str | os.PathLike | None = None) -> Checkpoint:
    """Find the files of ``model`` at ``revision`` (see the module docstring for the rules)."""
    path = Path(model).expanduser()
    if path.is_dir():
        if (path / "refs").is_dir() and (path / "snapshots").is_dir():  # a hub cache repo folder
            rev = revision or "main"
            found = _resolve_in_repo_folder(path, rev)
            if found is None:
                raise NotFoundError(
                    f"{path}: revision {rev!r} is not in this cache folder (no refs/{rev} with a complete "
                    f"snapshot): download it, or pick one of {sorted(p.name for p in (path / 'refs').iterdir())}"
                )
            return _checkpoint(model, rev, found[1], found[0])
        folder = path / revision if revision else path
        if revision and not (folder / "config.json").is_file():
            raise NotFoundError(
                f"{folder}: no config.json; with a local --model folder, --revision names a sub-folder"
            )
        return _checkpoint(model, revision, _snapshot_sha(folder.resolve()), folder)

    if model.count("/") != 1 or model.startswith((".", "/", "~")):
        raise NotFoundError(
            f"--model {model!r}: not a folder, and not a hub id of the form Org/name (e.g. EleutherAI/pythia-70m)"
        )
    rev = revision or "main"
    cache = Path(cache_dir).expanduser() if cache_dir else hub_cache_dir()
    repo = repo_cache_folder(model, cache)
    found = _resolve_in_repo_folder(repo, rev) if repo.is_dir() else None
    if found is not None:
        return _checkpoint(model, rev, found[1], found[0])
    if not allow_download or hub_offline():
        raise NotFoundError(
            f"{model} revision {rev!r} is not in the hub cache {cache} (looked for "
            f"{repo.name}/refs/{rev} and its snapshot) and downloads are off "
            f"({'HF_HUB_OFFLINE is set' if hub_offline() else 'not allowed'}): download it first, "
            f"e.g. `huggingface-cli download {model} --revision {rev}`, or point --model at a folder"
        )
    _download(model, rev, cache)
    found = _resolve_in_repo_folder(repo, rev)
    if found is None:
        raise NotFoundError(f"{model} revision {rev!r}: downloaded, but {repo} still lacks a complete snapshot")
    return _checkpoint(model, rev, found[1], found[0])


def _download(model: str, revision: str, cache: Path) -> None:
    """Download config.json and one weight set (safetensors preferred) into the hub cache."""
    try:
        from huggingface_hub import HfApi, hf_hub_download
    except ImportError as e:
        raise ConfigError(
            f"{model} revision {revision!r} is not in the hub cache {cache} and huggingface_hub is not "
            "installed: `pip install huggingface_hub` (the [hub] extra), or download the checkpoint by hand"
        ) from e
    try:
        names = set(HfApi().list_repo_files(model, revision=revision))
        wanted = ["config.json"]
        for index_name, single in (("model.safetensors.index.json", "model.safetensors"),
                                   ("pytorch_model.bin.index.json", "pytorch_model.bin")):
            if index_name in names:
                path = hf_hub_download(model, index_name, revision=revision, cache_dir=cache)
                wanted += [index_name] + sorted(set(json.loads(Path(path).read_text())["weight_map"].values()))
                break
            if single in names:
                wanted.append(single)
                break
        else:
            raise NotFoundError(f"{model} revision {revision!r} has no GPT-NeoX weight files on the hub")
        for name in wanted:
            log.info("downloading %s@%s: %s", model, revision, name)
            hf_hub_download(model, name, revision=revision, cache_dir=cache)
    except NotFoundError:
        raise
    except Exception as e:  # the hub client raises many kinds (HTTP, repo/revision not found, offline)
        raise NotFoundError(f"{model} revision {revision!r}: download failed: {type(e).__name__}: {e}") from e


def _read_weight_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as e:
            raise FormatError(f"{path}: not a readable safetensors file ({e})") from e
    try:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # legacy (non-zip) pickles cannot be memory-mapped
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError ... for bad files
        raise FormatError(f"{path}: not a loadable weights-only torch file ({type(e).__name__}: {e})") from e
    if not isinstance(sd, dict):
        raise FormatError(f"{path}: holds a {type(sd).__name__}, expected a state dict")
    return sd


def read_state_dict(files: tuple[Path, ...] | list[Path]) -> tuple[dict[str, torch.Tensor], dict[str, Path]]:
    """Every tensor of the weight files, keys aliased and buffer keys dropped; and which file held each key."""
    sd: dict[str, torch.Tensor] = {}
    origin: dict[str, Path] = {}
    for path in files:
        for key, tensor in _read_weight_file(Path(path)).items():
            if key.endswith(IGNORED_KEY_SUFFIXES):
                continue
            key = KEY_ALIASES.get(key, key)
            if key in sd:
                raise FormatError(f"{path}: key {key} also appears in {origin[key]}")
            sd[key], origin[key] = tensor, Path(path)
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
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def load_model(ckpt: Checkpoint, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
               *, with_tensor_hash: bool = False) -> tuple[GPTNeoX, str | None]:
    """Build the model of ``ckpt`` on ``device`` in ``dtype`` (no random init: built on the meta device and
    the checked tensors assigned). Returns (model, tensors_sha256 or None)."""
    sd, origin = read_state_dict(ckpt.weight_files)
    check_state_dict(sd, ckpt.config, origin)
    tensor_hash = tensors_sha256(sd) if with_tensor_hash else None
    with torch.device("meta"):
        model = GPTNeoX(ckpt.config)
    model.load_state_dict({k: _owned(v, device, dtype) for k, v in sd.items()}, strict=True, assign=True)
    return model.eval().requires_grad_(False), tensor_hash


def _owned(t: torch.Tensor, device: str | torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``t`` on device in dtype, in memory of its own: a tensor still backed by the weight file's mmap
    (same device and dtype) is copied, so it is 64-byte aligned for the matmul kernels (safetensors data
    is only 8-byte aligned) and the file can be closed."""
    out = t.to(device=device, dtype=dtype)
    return out.clone() if out.data_ptr() == t.data_ptr() else out


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
