"""The fused CPU logit-statistics kernel against an fp64 torch reference: nll, entropy, strict rank counts
(ties with the label not counted), vector tails (V not a multiple of the lane count), logits large enough that
the shift matters, and NaN rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pile_index.errors import ConfigError
from pile_index.scorer.kernels import logit_stats
from pile_index.scorer.metrics import token_metrics
from pile_index.scorer.model import GPTNeoX, GPTNeoXConfig


def reference(logits: np.ndarray, labels: np.ndarray):
    z = torch.from_numpy(logits).double()
    t = z.gather(-1, torch.from_numpy(labels)[:, None])
    logp = z.log_softmax(-1)
    nll = -logp.gather(-1, torch.from_numpy(labels)[:, None])[:, 0]
    ent = -(logp.exp() * logp).sum(-1)
    return nll.numpy(), ent.numpy(), (z > t).sum(-1).numpy()


def stats(logits: np.ndarray, labels: np.ndarray):
    R = logits.shape[0]
    nll, ent, rank = np.empty(R, np.float32), np.empty(R, np.float32), np.empty(R, np.int32)
    logit_stats(logits, labels, nll, rank, ent)
    return nll, ent, rank


@pytest.mark.parametrize("V", [1, 7, 1037, 50304])
@pytest.mark.parametrize("scale", [0.5, 30.0])
def test_logit_stats_equal_fp64_reference(V, scale):
    rng = np.random.default_rng(V)
    logits = (rng.standard_normal((13, V)) * scale).astype(np.float32)
    labels = rng.integers(0, V, 13)
    logits[0, :] = logits[0, labels[0]]  # all tied with the label: rank 0
    logits[1, labels[1]] = logits[1].max()  # the label is a maximum
    nll, ent, rank = stats(logits, labels)
    ref_nll, ref_ent, ref_rank = reference(logits, labels)
    np.testing.assert_array_equal(rank, ref_rank)
    assert rank[0] == 0 and rank[1] == 0
    # fp32 outputs: within a few ulp of the exact value (nll up to ~200 nats at scale 30)
    np.testing.assert_allclose(nll, ref_nll, rtol=2e-7, atol=1e-6)
    np.testing.assert_allclose(ent, ref_ent, rtol=2e-6, atol=1e-6)


def test_logit_stats_nan_rows_give_nan():
    logits = np.zeros((3, 100), np.float32)
    logits[1, 50] = np.nan
    logits[2, 3] = np.inf
    nll, ent, rank = stats(logits, np.array([0, 0, 0]))
    assert np.isfinite(nll[0]) and np.isnan(nll[1]) and np.isnan(ent[1]) and np.isnan(nll[2])
    np.testing.assert_allclose(nll[0], np.log(100), rtol=1e-7)


def test_token_metrics_refuses_labels_outside_the_vocabulary():
    cfg = GPTNeoXConfig(vocab_size=11, hidden_size=16, num_attention_heads=2, num_hidden_layers=1,
                        intermediate_size=32)
    model = GPTNeoX(cfg).eval()
    with pytest.raises(ConfigError, match=r"token ids in \[0, 11\].*vocabulary \[0, 11\)"):
        token_metrics(model, torch.tensor([[0, 11, 3]]))


@pytest.mark.parametrize("gelu", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_linear_equals_torch_linear(gelu, bias):
    from torch import nn

    from pile_index.scorer.model import linear

    g = torch.Generator().manual_seed(0)
    layer = nn.Linear(64, 96, bias=bias).requires_grad_(False)
    x = torch.randn(2, 5, 64, generator=g)
    ref = torch.nn.functional.linear(x.double(), layer.weight.double(), None if not bias else layer.bias.double())
    ref = torch.nn.functional.gelu(ref) if gelu else ref
    got = linear(x, layer, gelu=gelu)
    assert got.shape == (2, 5, 96) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), ref, atol=1e-5, rtol=0)
    layer.requires_grad_(True)  # under autograd: plain torch ops, so backward works
    linear(x, layer, gelu=gelu).sum().backward()
    assert layer.weight.grad is not None


def rotate_half_reference(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """The rotate-half form of the NeoX rotary on x (B, H, T, hd), with its concatenations."""
    r = cos.shape[-1]
    x_rot, x_pass = x[..., :r], x[..., r:]
    rotated = torch.cat((-x_rot[..., r // 2 :], x_rot[..., : r // 2]), dim=-1)
    return torch.cat((x_rot * cos + rotated * sin, x_pass), dim=-1)


@pytest.mark.parametrize("rotary_pct", [0.0, 0.25, 1.0])
def test_split_qkv_rotary_equals_rotate_half_bit_for_bit(rotary_pct):
    from pile_index.scorer.kernels import split_qkv_rotary
    from pile_index.scorer.model import apply_rotary_, rotary_tables

    B, T, H, hd = 2, 37, 3, 32
    cfg = GPTNeoXConfig(vocab_size=11, hidden_size=H * hd, num_attention_heads=H, num_hidden_layers=1,
                        intermediate_size=8, rotary_pct=rotary_pct)
    cos, sin = rotary_tables(cfg, 5, T, torch.device("cpu"))  # positions 5 .. 41, as after a cache
    qkv = torch.randn(B, T, H, 3, hd, generator=torch.Generator().manual_seed(1)) * 4
    got = torch.empty(3, B, H, T, hd)
    split_qkv_rotary(qkv.numpy(), cos.numpy(), sin.numpy(), got.numpy())
    q, k, v = qkv.permute(3, 0, 2, 1, 4).unbind(0)  # (B, H, T, hd) views
    for out, ref in zip(got, (rotate_half_reference(q, cos, sin), rotate_half_reference(k, cos, sin), v)):
        assert torch.equal(out, ref)
    fallback = qkv.clone()  # the torch path (CUDA, autograd): in place on q and k
    apply_rotary_(fallback[:, :, :, :2], cos, sin)
    assert torch.equal(fallback.permute(3, 0, 2, 1, 4), got)
