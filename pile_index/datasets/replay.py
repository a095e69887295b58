"""Replay training: train a small GPT-NeoX on the reconstructed training order and save checkpoints on
Pythia's schedule, in the Hugging Face layout the scorer loads.

Real Pythia weights cannot be downloaded everywhere; this makes a checkpoint series whose relation to the
data is known: the model at ``stepN`` has trained on exactly the rows of steps ``0 .. N-1``, in GPT-NeoX's
order. Rows trained at step ``s`` should show a loss drop at the first checkpoint after ``s`` that
never-trained control rows do not: the treatment effect the datasets measure (and the tests check).

Checkpoints go to ``OUT/stepN/`` (``config.json`` + ``model.safetensors``), and ``OUT`` is also laid out as
a Hugging Face hub cache (``models--local--NAME/refs/stepN`` -> ``snapshots/<sha>/``) so revisions resolve
through the same offline path as real Pythia checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..atomic import atomic_path, write_bytes
from ..errors import ConfigError
from ..scorer.model import GPTNeoX, GPTNeoXConfig

log = logging.getLogger(__package__)  # one logger per package: log lines name the concept


@dataclass
class ReplayConfig:
    """How to replay training; ``validate()`` names the bad field."""

    steps: int  # training steps to replay (each = batch_size rows of the order)
    checkpoint_steps: list[int]  # save stepN after N steps (0 = initialisation)
    lr: float = 3e-3  # AdamW learning rate (constant; tiny models, few steps)
    seed: int = 0  # torch seed of the initialisation
    hidden_size: int = 64  # model width d
    num_layers: int = 2  # transformer blocks
    num_heads: int = 4  # attention heads
    name: str = "replay"  # model name in the hub-cache layout: models--local--{name}

    def validate(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"replay.steps={self.steps}: expected >= 1")
        bad = [s for s in self.checkpoint_steps if not 0 <= s <= self.steps]
        if bad:
            raise ConfigError(f"replay.checkpoint_steps: {bad} outside 0..{self.steps}")
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"replay.hidden_size={self.hidden_size} is not a multiple of num_heads={self.num_heads}")


def hf_config_dict(cfg: GPTNeoXConfig) -> dict:
    """A ``config.json`` that transformers' GPTNeoXForCausalLM and our loader both read."""
    d = dict(cfg.to_dict())
    d.update(
        architectures=["GPTNeoXForCausalLM"], model_type="gpt_neox", bos_token_id=0, eos_token_id=0,
        tie_word_embeddings=False, hidden_act="gelu", initializer_range=0.02, use_cache=True, torch_dtype="float32",
    )
    return d


def save_hf_checkpoint(model: GPTNeoX, folder: Path) -> str:
    """Write ``config.json`` and ``model.safetensors`` atomically; returns the weights' sha256."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(folder / "model.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    write_bytes(folder / "config.json", json.dumps(hf_config_dict(model.config), indent=2).encode())
    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


def _init_weights(model: GPTNeoX, seed: int) -> None:
    """GPT-NeoX-style init: normal(0, 0.02) matrices, zero biases, unit LayerNorms."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
            elif name.endswith("weight"):
                p.fill_(1.0)
            else:
                p.zero_()


def replay_training(
    batch: Callable[[int], np.ndarray],
    vocab_size: int,
    seq_length: int,
    cfg: ReplayConfig,
    out_dir: str | os.PathLike,
    progress: Callable[[int, float], None] | None = None,
) -> dict[str, Path]:
    """Train on ``batch(step)`` (rows of ``seq_length + 1`` tokens) for ``cfg.steps`` steps; save checkpoints.

    Returns revision -> checkpoint folder. Deterministic for a given seed (CPU, one thread order).
    """
    cfg.validate()
    out = Path(out_dir)
    vocab = int(-(-vocab_size // 64) * 64)  # padded like Pythia's embedding (multiple of 64 here)
    mcfg = GPTNeoXConfig(
        vocab_size=vocab, hidden_size=cfg.hidden_size, num_attention_heads=cfg.num_heads,
        num_hidden_layers=cfg.num_layers, intermediate_size=4 * cfg.hidden_size,
        max_position_embeddings=max(seq_length, 16),
    )
    torch.manual_seed(cfg.seed)
    model = GPTNeoX(mcfg)
    _init_weights(model, cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.0)
    saved: dict[str, Path] = {}
    wanted = sorted(set(cfg.checkpoint_steps))

    def save(step: int) -> None:
        folder = out / f"step{step}"
        sha = save_hf_checkpoint(model, folder)
        _link_into_hub_cache(out, cfg.name, f"step{step}", folder, sha)
        saved[f"step{step}"] = folder

    if 0 in wanted:
        save(0)
    model.train()
    for step in range(cfg.steps):
        rows = torch.from_numpy(np.asarray(batch(step), dtype=np.int64))  # (B, L+1)
        logits = model(rows[:, :-1])  # (B, L, V): tiny models only
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), rows[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if progress is not None:
            progress(step, float(loss.detach()))
        if step + 1 in wanted:
            save(step + 1)
    return saved


def _link_into_hub_cache(root: Path, name: str, revision: str, folder: Path, sha: str) -> None:
    """Lay ``root`` out as a hub cache too: ``models--local--NAME/refs/REV`` names ``snapshots/<commit>/``.

    The commit is derived from the weights' hash (the hub would give a git sha); files are copied.
    """
    commit = hashlib.sha1(f"{revision}:{sha}".encode()).hexdigest()
    repo = root / "hub" / f"models--local--{name}"
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    for f in ("config.json", "model.safetensors"):
        with atomic_path(snap / f) as tmp:
            shutil.copyfile(folder / f, tmp)
    write_bytes(repo / "refs" / revision, commit.encode())
