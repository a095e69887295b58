"""Replay training saves a checkpoint series on the schedule, readable by transformers, in a hub-cache layout,
and the rows a step trained on lose more loss at the next checkpoint than rows never trained on."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from pile_index.datasets import ReplayConfig, replay_training
from pile_index.scorer.model import GPTNeoX, GPTNeoXConfig

B, L, V = 4, 16, 50


def _rows(step: int) -> np.ndarray:
    return np.random.default_rng(step).integers(2, V, size=(B, L + 1))


def _loss(folder, rows) -> torch.Tensor:
    cfg = GPTNeoXConfig.from_json(folder / "config.json")
    m = GPTNeoX(cfg)
    m.load_state_dict(load_file(str(folder / "model.safetensors")))
    x = torch.from_numpy(rows)
    with torch.no_grad():
        logits = m(x[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="none").view(B, L).mean(1)


def test_replay_series_and_treatment_effect(tmp_path):
    saved = replay_training(_rows, V, L, ReplayConfig(steps=8, checkpoint_steps=[0, 1, 2, 4, 8], lr=1e-2), tmp_path)
    assert sorted(saved) == ["step0", "step1", "step2", "step4", "step8"]
    refs = tmp_path / "hub" / "models--local--replay" / "refs"
    commit = (refs / "step4").read_text()
    assert (tmp_path / "hub" / "models--local--replay" / "snapshots" / commit / "model.safetensors").is_file()
    assert json.loads((saved["step0"] / "config.json").read_text())["model_type"] == "gpt_neox"
    # Rows of step 2 are trained between step2 and step4; rows of "step 100" never are.
    trained, control = _rows(2), _rows(100)
    drop_trained = (_loss(saved["step2"], trained) - _loss(saved["step4"], trained)).mean()
    drop_control = (_loss(saved["step2"], control) - _loss(saved["step4"], control)).mean()
    assert drop_trained > drop_control + 0.05


def test_checkpoint_loads_in_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    saved = replay_training(_rows, V, L, ReplayConfig(steps=1, checkpoint_steps=[1]), tmp_path)
    ref = transformers.GPTNeoXForCausalLM.from_pretrained(saved["step1"]).eval()
    x = torch.from_numpy(_rows(7))[:, :-1]
    ours = GPTNeoX(GPTNeoXConfig.from_json(saved["step1"] / "config.json"))
    ours.load_state_dict(load_file(str(saved["step1"] / "model.safetensors")))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x).logits, atol=1e-4, rtol=1e-4)
