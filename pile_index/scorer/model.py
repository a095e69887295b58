"""The GPT-NeoX forward pass in plain torch, as the Pythia checkpoints on the Hugging Face hub run it.

nanoGPT-style: one config dataclass, modules named exactly as the Hugging Face state dict names them
(``gpt_neox.layers.N.attention.query_key_value.weight``, ``embed_out.weight``), so loading is a key-for-key
copy. Architecture facts (upstream: EleutherAI/gpt-neox ``megatron/model``, and the
GPT-NeoX model of Hugging Face transformers, which our tests use as the reference):

- parallel residual ``x = x + attn(ln1(x)) + mlp(ln2(x))`` (``use_parallel_residual=False``: sequential);
- fused ``query_key_value`` whose output reshapes to (heads, 3 * head_dim): q, k, v = thirds of each head;
- rotary embedding on the first ``int(head_dim * rotary_pct)`` dims of q and k, NeoX rotate-half pairing;
- exact (erf) GELU MLP, LayerNorm with bias, an untied output projection ``embed_out`` without bias.

Attention runs through ``F.scaled_dot_product_attention`` (flash / memory-efficient kernels where the
device has them, never a (T, T) score matrix on those paths). The model returns final hidden states; the
output projection is applied in chunks by :mod:`pile_index.scorer.metrics`, so a full (batch, seq, vocab)
logits tensor never exists.
"""

from __future__ import annotations

import math
import os
import reprlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, NotFoundError
from ..sidecar import read_json
from .kernels import split_qkv_rotary


MAX_CONFIG_BYTES = 1 << 20
"""config.json files are about 1 kB; anything past 1 MiB is not a model config (and is not parsed)."""

INT_LIMITS: dict[str, int] = {
    "vocab_size": 1 << 24,  # 16,777,216: 64x the largest vocabularies in use (~262k)
    "hidden_size": 1 << 16,  # 65,536: several times the widest published dense models (Pythia-12b: 5,120)
    "num_attention_heads": 1 << 12,  # 4,096 (Pythia-12b: 40)
    "num_hidden_layers": 1 << 10,  # 1,024 (Pythia-12b: 36); building more modules takes minutes
    "intermediate_size": 1 << 18,  # 262,144 (Pythia-12b: 20,480)
    "max_position_embeddings": 1 << 20,  # 1,048,576 tokens (Pythia: 2,048)
}
"""Integer fields of the config and the largest value taken: sane bounds, checked before anything is built."""

FLOAT_RANGES: dict[str, tuple[float, float, bool]] = {
    "rotary_pct": (0.0, 1.0, True),  # a share of each head's dims, 0 and 1 included
    "rotary_emb_base": (0.0, 1e12, False),  # theta > 0 (Pythia: 10,000; long-context models use up to ~1e7)
    "layer_norm_eps": (0.0, 1.0, False),  # eps > 0 (Pythia: 1e-5)
}
"""Float fields: (low, high, low included); every value must be finite and low <(=) value <= high."""

BOOL_FIELDS = ("use_parallel_residual", "attention_bias")

_SHOW = reprlib.Repr()
_SHOW.maxstring = _SHOW.maxother = _SHOW.maxlong = 40
_SHOW.maxlevel = 2


def show_value(v: Any) -> str:
    """A short repr of a config value for a message (a 400-digit integer or a deep list stays one line)."""
    return _SHOW.repr(v)


@dataclass(frozen=True)
class GPTNeoXConfig:
    """The shape of a GPT-NeoX model, read from a Hugging Face ``config.json``. Validated when built: every
    integer field an ``int`` within :data:`INT_LIMITS`, every float finite within :data:`FLOAT_RANGES`,
    every flag a ``bool``."""

    vocab_size: int
    """rows of embed_in / embed_out (padded: 50304 for Pythia up to 2.8b), tokens"""
    hidden_size: int
    """model width d"""
    num_attention_heads: int
    """heads per layer; head_dim = hidden_size / num_attention_heads"""
    num_hidden_layers: int
    """transformer blocks"""
    intermediate_size: int
    """MLP width (4 d for Pythia)"""
    rotary_pct: float = 0.25
    """share of each head's dims that get rotary embedding; rotary dims = int(head_dim * rotary_pct)"""
    rotary_emb_base: float = 10000.0
    """rotary base (theta)"""
    layer_norm_eps: float = 1e-5
    """LayerNorm epsilon"""
    use_parallel_residual: bool = True
    """x + attn(ln1 x) + mlp(ln2 x) if true, else the sequential form"""
    max_position_embeddings: int = 2048
    """longest sequence the model was trained on, tokens"""
    attention_bias: bool = True
    """query_key_value and attention.dense carry biases"""

    def __post_init__(self) -> None:
        self.validate()

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def rotary_ndims(self) -> int:
        return int(self.head_dim * self.rotary_pct)

    def validate(self) -> None:
        """Raise ConfigError naming the first bad field (type, finiteness, range, divisibility)."""
        for f, cap in INT_LIMITS.items():
            v = getattr(self, f)
            if type(v) is not int:  # bool, float (64.7 or 64.0), str, None: refused, never truncated
                raise ConfigError(f"model config {f}={show_value(v)} ({type(v).__name__}): expected an integer")
            if not 1 <= v <= cap:
                raise ConfigError(f"model config {f}={show_value(v)}: expected an integer in 1 .. {cap:,}")
        for f, (lo, hi, lo_ok) in FLOAT_RANGES.items():
            v = getattr(self, f)
            if type(v) not in (int, float):
                raise ConfigError(f"model config {f}={show_value(v)} ({type(v).__name__}): expected a number")
            if not math.isfinite(v) or not ((lo <= v) if lo_ok else (lo < v)) or v > hi:
                bounds = f"{'[' if lo_ok else '('}{lo:g}, {hi:g}]"
                raise ConfigError(f"model config {f}={show_value(v)}: expected a finite number in {bounds}")
        for f in BOOL_FIELDS:
            v = getattr(self, f)
            if type(v) is not bool:
                raise ConfigError(f"model config {f}={show_value(v)} ({type(v).__name__}): expected true or false")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"model config hidden_size={self.hidden_size:,} is not a multiple of "
                f"num_attention_heads={self.num_attention_heads:,}"
            )
        if self.rotary_ndims % 2:
            raise ConfigError(
                f"model config rotary dims int({self.head_dim} * {self.rotary_pct}) = {self.rotary_ndims} is odd: "
                "rotate-half needs an even number"
            )

    @classmethod
    def from_hf_dict(cls, d: dict[str, Any]) -> GPTNeoXConfig:
        """From the dict of a Hugging Face ``config.json``: the Pythia form (``rotary_pct``, ``rotary_emb_base``)
        or the transformers-5 form (``rope_parameters: {partial_rotary_factor, rope_theta}``). Values are taken
        as they are (no int() / float() / bool() coercion), so a wrong type is an error, never a truncation."""
        if not isinstance(d, dict):
            raise ConfigError(f"config.json holds a JSON {type(d).__name__}: expected an object of GPT-NeoX fields")
        if d.get("model_type", "gpt_neox") != "gpt_neox":
            raise ConfigError(f"config.json model_type={show_value(d.get('model_type'))}: expected 'gpt_neox'")
        act = d.get("hidden_act", "gelu")
        if act != "gelu":
            raise ConfigError(
                f"config.json hidden_act={show_value(act)}: only the exact 'gelu' of GPT-NeoX/Pythia is supported"
            )
        tie = d.get("tie_word_embeddings", False)
        if tie is not False:
            raise ConfigError(
                f"config.json tie_word_embeddings={show_value(tie)}: expected false (GPT-NeoX has an untied embed_out)"
            )
        rope = d.get("rope_parameters") or d.get("rope_scaling") or {}
        if not isinstance(rope, dict):
            raise ConfigError(f"config.json rope_parameters={show_value(rope)}: expected an object or null")
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type not in ("default", None):
            raise ConfigError(f"config.json rope type {show_value(rope_type)}: only the default rotary is supported")
        missing = [k for k in ("vocab_size", "hidden_size", "num_attention_heads", "num_hidden_layers",
                               "intermediate_size") if k not in d]
        if missing:
            raise ConfigError(f"config.json lacks {missing[0]!r}: not a GPT-NeoX config")
        return cls(
            vocab_size=d["vocab_size"],
            hidden_size=d["hidden_size"],
            num_attention_heads=d["num_attention_heads"],
            num_hidden_layers=d["num_hidden_layers"],
            intermediate_size=d["intermediate_size"],
            rotary_pct=_real("rotary_pct", d.get("rotary_pct", rope.get("partial_rotary_factor", 0.25))),
            rotary_emb_base=_real("rotary_emb_base", d.get("rotary_emb_base", rope.get("rope_theta", 10000.0))),
            layer_norm_eps=_real("layer_norm_eps", d.get("layer_norm_eps", 1e-5)),
            use_parallel_residual=d.get("use_parallel_residual", True),
            max_position_embeddings=d.get("max_position_embeddings", 2048),
            attention_bias=d.get("attention_bias", True),
        )

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> GPTNeoXConfig:
        path = Path(path)
        if not path.is_file():
            raise NotFoundError(f"{path}: no config.json; a model folder needs config.json beside its weights")
        d = read_json(path, max_bytes=MAX_CONFIG_BYTES, what="model config", constants=True)  # NaN: a field error
        try:
            return cls.from_hf_dict(d)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from e

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def n_params(self) -> int:
        """Parameter count by arithmetic (no weights allocated); equals the sum of the state dict's numels."""
        d, f, v, n = self.hidden_size, self.intermediate_size, self.vocab_size, self.num_hidden_layers
        b = 1 if self.attention_bias else 0
        per_layer = (
            2 * 2 * d  # two LayerNorms, weight + bias
            + 3 * d * d + b * 3 * d  # query_key_value
            + d * d + b * d  # attention.dense
            + d * f + f + f * d + d  # MLP with biases
        )
        return 2 * v * d + n * per_layer + 2 * d  # embed_in + embed_out, layers, final LayerNorm

    def forward_flops_per_token(self, seq_len: int) -> int:
        """Forward FLOPs per token: 2 per weight multiply-add (embed_in excluded: a lookup) plus causal
        attention's QK^T and AV over on average (seq_len + 1) / 2 keys (PaLM appendix B counts all seq_len)."""
        matmul_params = self.n_params() - self.vocab_size * self.hidden_size
        attn = 2 * 2 * self.num_hidden_layers * self.hidden_size * (seq_len + 1) / 2
        return int(2 * matmul_params + attn)


def _real(field: str, v: Any) -> float:
    """A config number as float; bool, str, None and integers beyond float range are refused by name."""
    if type(v) not in (int, float):
        raise ConfigError(f"config.json {field}={show_value(v)} ({type(v).__name__}): expected a number")
    try:
        return float(v)
    except OverflowError as e:  # an integer literal like 10**400
        raise ConfigError(f"config.json {field}={show_value(v)}: expected a finite number") from e


PYTHIA_SHAPES: dict[str, dict[str, int]] = {
    "70m": dict(hidden_size=512, num_hidden_layers=6, num_attention_heads=8),
    "160m": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12),
    "410m": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16),
    "1b": dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=8),
    "1.4b": dict(hidden_size=2048, num_hidden_layers=24, num_attention_heads=16),
    "2.8b": dict(hidden_size=2560, num_hidden_layers=32, num_attention_heads=32),
}
"""Pythia model shapes (EleutherAI/pythia models/*.yml), for tests and benchmarks only: loading a checkpoint
always reads its config.json."""


def pythia_shape(name: str, vocab_size: int = 50304) -> GPTNeoXConfig:
    """A Pythia-shaped config (vocab 50,304, ff = 4 d, rotary 0.25, 2,048 positions)."""
    if name not in PYTHIA_SHAPES:
        raise ConfigError(f"unknown Pythia shape {name!r}: expected one of {', '.join(PYTHIA_SHAPES)}")
    s = PYTHIA_SHAPES[name]
    return GPTNeoXConfig(vocab_size=vocab_size, intermediate_size=4 * s["hidden_size"], **s)


def rotary_tables(cfg: GPTNeoXConfig, start: int, length: int,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin, (length, rotary_ndims) fp32, for positions start .. start+length-1 (the NeoX layout:
    frequencies repeated twice, pairing dim i with dim i + rotary_ndims/2)."""
    r = cfg.rotary_ndims
    inv_freq = 1.0 / (cfg.rotary_emb_base ** (torch.arange(0, r, 2, dtype=torch.float32, device=device) / r))
    pos = torch.arange(start, start + length, dtype=torch.float32, device=device)
    freqs = pos[:, None] * inv_freq[None, :]  # (T, r/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (T, r)
    return emb.cos(), emb.sin()


def apply_rotary_(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> None:
    """Rotate, in place, the first cos.shape[-1] dims of x (B, T, H, n, hd) at positions T (the n slots of
    each head share the rotation: q and k of the fused projection); the rest are left alone. The same
    products and sums as the rotate-half form ``x_rot * cos + cat(-x2, x1) * sin`` (a + (-b) is a - b in
    IEEE arithmetic), so the result is bit for bit the same, without its two concatenations and full copy."""
    r = cos.shape[-1]
    if r == 0:
        return
    h = r // 2
    c, s = cos[:, None, None, :h], sin[:, None, None, :h]  # (T, 1, 1, r/2): both halves of the tables are equal
    x1, x2 = x[..., :h], x[..., h:r]  # strided views into x
    first = x1 * c
    first -= x2 * s  # x1 cos - x2 sin
    second = x2 * c
    second += x1 * s  # x2 cos + x1 sin
    x1.copy_(first)
    x2.copy_(second)


_ONEDNN_LINEAR = getattr(torch.ops.mkldnn, "_linear_pointwise", None) if torch.backends.mkldnn.is_available() else None


def kept_narrow(key: str) -> bool:
    """Whether the state-dict tensor ``key`` stays in its stored 16-bit dtype when the model computes in fp32
    on CPU: the matrices of the layers and the input embedding (~75% of the weights at 410m), each widened
    to fp32 where it is used (:func:`linear`, :meth:`GPTNeoX.hidden`). Widening fp16 or bf16 to fp32 is
    exact, so the products are those of the fp32 model transformers loads from the same file, with half the
    memory for these weights. The output projection (read once per chunk of positions), LayerNorms and
    biases are widened once, at load."""
    return key == "gpt_neox.embed_in.weight" or (
        key.endswith(".weight") and (".attention." in key or ".mlp." in key))


def linear(x: torch.Tensor, layer: nn.Linear, gelu: bool = False) -> torch.Tensor:
    """``layer(x)``, then the exact (erf) GELU when ``gelu``; a weight kept narrow (:func:`kept_narrow`) is
    widened to x's dtype for the product. On CPU in fp32 without autograd, through oneDNN's matmul with bias
    and GELU fused in (one pass over the output instead of three): on the 2-core AMD EPYC (Zen 4) box the 70m
    body took 3.25-3.33 CPU-s per 2 x 2,048 tokens against 3.9-4.3 s through MKL's addmm plus gelu,
    per-token losses equal to transformers' within the same 1.9e-6. Elsewhere: ``F.linear``."""
    w = layer.weight if layer.weight.dtype == x.dtype else layer.weight.to(x.dtype)
    if (_ONEDNN_LINEAR is not None and x.device.type == "cpu" and x.dtype == torch.float32
            and not (torch.is_grad_enabled() and w.requires_grad)):
        return _ONEDNN_LINEAR(x, w, layer.bias, "gelu" if gelu else "none", [], "none" if gelu else "")
    y = F.linear(x, w, layer.bias)
    return F.gelu(y) if gelu else y


class KVCache:
    """Keys and values of the positions seen so far, per layer, for greedy decoding."""

    def __init__(self, n_layers: int):
        self.k: list[torch.Tensor | None] = [None] * n_layers
        self.v: list[torch.Tensor | None] = [None] * n_layers
        self.length = 0  # positions already cached


class Attention(nn.Module):
    def __init__(self, cfg: GPTNeoXConfig):
        super().__init__()
        self.n_head, self.head_dim = cfg.num_attention_heads, cfg.head_dim
        self.query_key_value = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size, bias=cfg.attention_bias)
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size, bias=cfg.attention_bias)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        B, T, d = x.shape
        qkv = linear(x, self.query_key_value).view(B, T, self.n_head, 3, self.head_dim)  # (B, T, H, 3, hd)
        # q, k, v contiguous in one (3, B, H, T, hd) tensor: CPU flash attention ran 8% faster on them than on
        # strided views (measured alone, 410m shape, 2,048 tokens); on CPU one fused pass (kernels.py)
        if x.device.type == "cpu" and qkv.dtype == cos.dtype == torch.float32 and not qkv.requires_grad:
            qkv_t = torch.empty(3, B, self.n_head, T, self.head_dim)
            split_qkv_rotary(qkv.numpy(), cos.contiguous().numpy(), sin.contiguous().numpy(), qkv_t.numpy())
        else:
            apply_rotary_(qkv[:, :, :, :2], cos, sin)  # q and k, in place
            qkv_t = qkv.permute(3, 0, 2, 1, 4).contiguous()
        q, k, v = qkv_t.unbind(0)  # each (B, H, T, hd)
        past = 0
        if cache is not None:
            if cache.k[layer] is not None:
                past = cache.k[layer].shape[2]
                k = torch.cat((cache.k[layer], k), dim=2)
                v = torch.cat((cache.v[layer], v), dim=2)
            cache.k[layer], cache.v[layer] = k, v
        if past == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.head_dim**-0.5)
        elif T == 1:  # one new token sees every cached position
            y = F.scaled_dot_product_attention(q, k, v, scale=self.head_dim**-0.5)
        else:  # several new tokens after a cache: causal within them, all of the past
            keep = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, scale=self.head_dim**-0.5)
        y = y.transpose(1, 2).reshape(B, T, d)  # (B, T, d)
        return linear(y, self.dense)


class MLP(nn.Module):
    def __init__(self, cfg: GPTNeoXConfig):
        super().__init__()
        self.dense_h_to_4h = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.dense_4h_to_h = nn.Linear(cfg.intermediate_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(linear(x, self.dense_h_to_4h, gelu=True), self.dense_4h_to_h)  # exact erf GELU, as Pythia was trained


class Block(nn.Module):
    def __init__(self, cfg: GPTNeoXConfig):
        super().__init__()
        self.parallel = cfg.use_parallel_residual
        self.input_layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.post_attention_layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.attention = Attention(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        a = self.attention(self.input_layernorm(x), cos, sin, cache, layer)
        if self.parallel:
            y = self.mlp(self.post_attention_layernorm(x))
            y += a  # in place, in transformers' order: (mlp + attn) + x
            y += x
            return y
        a += x
        y = self.mlp(self.post_attention_layernorm(a))
        y += a
        return y


class GPTNeoX(nn.Module):
    """GPT-NeoX causal LM. ``hidden(idx)`` gives final-normed states; ``embed_out`` maps them to logits."""

    def __init__(self, cfg: GPTNeoXConfig):
        super().__init__()
        cfg.validate()
        self.config = cfg
        self.gpt_neox = nn.ModuleDict(dict(
            embed_in=nn.Embedding(cfg.vocab_size, cfg.hidden_size),
            layers=nn.ModuleList(Block(cfg) for _ in range(cfg.num_hidden_layers)),
            final_layer_norm=nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps),
        ))
        self.embed_out = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)

    def hidden(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """idx (B, T) token ids -> (B, T, d) final-normed hidden states. With a cache, positions continue
        after the cached ones and the new keys/values are appended to it."""
        B, T = idx.shape
        start = cache.length if cache is not None else 0
        x = self.gpt_neox.embed_in(idx).to(self.compute_dtype)  # (B, T, d); a narrow embedding widened
        # rotary tables in fp32, then the activations' dtype (as transformers does: identical fp32 results)
        cos, sin = rotary_tables(self.config, start, T, idx.device)
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)  # (T, r), broadcast over (B, H)
        for i, block in enumerate(self.gpt_neox.layers):
            x = block(x, cos, sin, cache, i)  # (B, T, d)
        if cache is not None:
            cache.length = start + T
        return self.gpt_neox.final_layer_norm(x)

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype of the activations: that of the LayerNorms, which are always widened at load (the
        matrices may be kept narrower, :func:`kept_narrow`)."""
        return self.gpt_neox.final_layer_norm.weight.dtype

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Full logits (B, T, V) in the model's dtype. For tests and short inputs only: scoring uses the
        chunked path in metrics.py, which never holds (B, T, V)."""
        return linear(self.hidden(idx), self.embed_out)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def expected_shapes(cfg: GPTNeoXConfig) -> dict[str, tuple[int, ...]]:
    """Every state-dict key of the model and its shape, computed on the meta device (nothing allocated)."""
    with torch.device("meta"):
        m = GPTNeoX(cfg)
    return {k: tuple(v.shape) for k, v in m.state_dict().items()}


__all__ = ["PYTHIA_SHAPES", "GPTNeoX", "GPTNeoXConfig", "KVCache", "apply_rotary_", "expected_shapes", "kept_narrow", "linear",
           "pythia_shape", "rotary_tables"]
