"""Per-token and per-row metrics of training rows under a GPT-NeoX model, without full logits in memory.

A row is seq_length + 1 tokens: inputs ``row[:-1]``, labels ``row[1:]`` (no BOS; docs/ORDER.md, "Rows").
Per token t (predicting ``row[t+1]``):

- ``nll``   = logsumexp(logits_t) - logits_t[label]  (natural log);
- ``rank``  = number of vocabulary entries whose logit is strictly higher than the label's. Counted on the
  logits, which is the same order as the log-probs (log-softmax subtracts one constant per position) and
  avoids ties made by rounding ``logits - lse``. Over the model's full, padded output row (50,304 entries
  for Pythia up to 2.8b, beyond the tokenizer's 50,277): the padding entries are part of the model as
  trained (never labels, so training pushes their logits down); we keep the row the model has rather than
  cut it at a tokenizer's size, and say so here;
- ``entropy`` of the predictive distribution, over the same full row (nats).

Per row: ``loss`` = mean nll, ``entropy`` = mean entropy, ``accuracy`` = share of tokens with rank 0.
Memorization (Biderman et al. 2023, "Emergent and Predictable Memorization", k = 32):
``memorized`` = argmax(logits[31:63]) == row[32:64] at all 32 positions, from the same forward pass (exact
32-extractability under greedy decoding); ``memorization_score`` = share of the 32 greedy-decoded tokens after
the 32-token prefix that equal row[32:64], position by position, decoded with a KV cache. ``ban_token``
forbids one token during decoding (their code set a minimum length, which bans EOD = 0: a quirk to offer).

The output projection and the log-softmax run over chunks of positions: at most ``logits_chunk_elems``
logits (fp32) exist at a time, never (batch, seq, vocab). On CUDA the projection runs in the model's
dtype (bf16/fp16) and everything after it in fp32; the log-sum-exp is always fp32. On CPU the statistics of
a chunk come from one fused kernel (:func:`.kernels.logit_stats`: one read of the chunk instead of about 12
torch passes, and no second buffer); on CUDA from torch ops over the chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ConfigError
from .kernels import logit_stats
from .model import GPTNeoX, KVCache, linear

MEM_PREFIX = 32
"""memorization prefix length k, tokens (Biderman et al.)"""
MEM_CONTINUATION = 32
"""memorization continuation length, tokens"""


@dataclass
class TokenMetrics:
    """Per-token metrics of a batch of rows, each (B, T) with T = seq_length."""

    nll: torch.Tensor
    """negative log-likelihood of each label, fp32"""
    rank: torch.Tensor
    """entries with a strictly higher logit than the label, int32 (with_rank=False: 0 or 1, rank > 0)"""
    entropy: torch.Tensor
    """entropy of the predictive distribution, fp32, nats"""
    window_argmax: torch.Tensor | None
    """argmax token at positions [window[0], window[1]), int64 (B, W); None without a window"""


@torch.no_grad()
def token_metrics(model: GPTNeoX, rows: torch.Tensor, *, logits_chunk_elems: int = 1 << 24,
                  argmax_window: tuple[int, int] | None = None, with_rank: bool = True) -> TokenMetrics:
    """nll, rank and entropy of every label of ``rows`` (B, L+1) in one forward pass.

    ``logits_chunk_elems`` bounds the logits held at once (on CUDA plus one fp32 buffer of the same size).
    ``argmax_window`` = (a, b) also returns the argmax token at positions a..b-1 (for ``memorized``).
    ``with_rank=False`` gives the rank only as 0 or not (``rank`` holds 0 where the label is a maximum, 1
    elsewhere), which is all the per-row accuracy needs; on CUDA it skips the full count (one compare pass
    and one sum pass over the logits), on CPU the fused kernel counts anyway at no extra pass.
    """
    if rows.dim() != 2 or rows.shape[1] < 2:
        raise ConfigError(f"rows of shape {list(rows.shape)}: expected (batch, seq_length + 1) with seq_length >= 1")
    rows = rows.long()
    inputs, labels = rows[:, :-1], rows[:, 1:]  # (B, T) each
    B, T = inputs.shape
    V = model.config.vocab_size
    if int(rows.min()) < 0 or int(rows.max()) >= V:
        raise ConfigError(f"rows hold token ids in [{int(rows.min()):,}, {int(rows.max()):,}], outside the "
                          f"model's vocabulary [0, {V:,})")
    h = model.hidden(inputs)  # (B, T, d)
    step = max(1, logits_chunk_elems // (B * V))  # positions per chunk
    dev = rows.device
    nll = torch.empty(B, T, dtype=torch.float32, device=dev)
    rank = torch.empty(B, T, dtype=torch.int32, device=dev)
    entropy = torch.empty(B, T, dtype=torch.float32, device=dev)
    win = None
    if argmax_window is not None:
        a, b = argmax_window
        win = torch.empty(B, b - a, dtype=torch.int64, device=dev)
    w_out = model.embed_out.weight  # (V, d)
    fused = dev.type == "cpu"
    fp32 = w_out.dtype == torch.float32
    n_buf = B * min(step, T) * V
    if not fused:  # p_buf holds the rank mask (as 0/1 floats), then the exp of the logits
        logits_buf = torch.empty(n_buf, dtype=torch.float32, device=dev) if fp32 else None
        p_buf = torch.empty(n_buf, dtype=torch.float32, device=dev)
        ones = torch.ones(V, 1, dtype=torch.float32, device=dev) if with_rank else None
    for s in range(0, T, step):
        e = min(T, s + step)
        c = e - s
        # a 2-D matmul: on a strided (B, c, d) slice torch routes nn.Linear through a broadcast bmm that
        # ran 3x slower on CPU (measured 6.0 s vs 2.0 s per 2 x 2048 rows of a 70m model)
        hc = h[:, s:e].reshape(B * c, -1)
        if fused:
            # CPU: oneDNN's matmul (model.linear), a fresh chunk each time: 2.5-2.7 CPU-s per 2,048 x 50,304
            # logits (d = 1,024) against 3.3-3.4 s for MKL's mm into a reused buffer on the AMD EPYC box,
            # page faults of the new chunk included
            logits = linear(hc, model.embed_out).float().view(B, c, V)
        elif fp32:
            logits = torch.mm(hc, w_out.t(), out=logits_buf[: B * c * V].view(B * c, V)).view(B, c, V)
        else:  # bf16/fp16 matmul, fp32 statistics from here on
            logits = torch.mm(hc, w_out.t()).float().view(B, c, V)
        if win is not None and s < b and e > a:
            lo, hi = max(s, a), min(e, b)
            win[:, lo - a : hi - a] = logits[:, lo - s : hi - s].argmax(-1)
        if fused:
            st_nll = torch.empty(B * c, dtype=torch.float32)
            st_rank = torch.empty(B * c, dtype=torch.int32)
            st_ent = torch.empty(B * c, dtype=torch.float32)
            logit_stats(logits.view(B * c, V).numpy(), labels[:, s:e].reshape(-1).numpy(),
                        st_nll.numpy(), st_rank.numpy(), st_ent.numpy())
            nll[:, s:e] = st_nll.view(B, c)
            rank[:, s:e] = st_rank.view(B, c) if with_rank else st_rank.view(B, c).clamp(max=1)
            entropy[:, s:e] = st_ent.view(B, c)
            del logits
            continue
        target = logits.gather(-1, labels[:, s:e, None])  # (B, c, 1)
        m = logits.amax(-1, keepdim=True)  # (B, c, 1)
        p = p_buf[: B * c * V].view(B, c, V)
        if with_rank:
            # count as a float GEMV over a 0/1 mask: exact (counts < 2**24), and on CPU ~6x faster than
            # summing a bool tensor (measured: 13 ms vs 83 ms per 2**24 logits on this box)
            torch.gt(logits, target, out=p)
            rank[:, s:e] = (p.view(-1, V) @ ones).view(B, c).round().int()
        else:
            rank[:, s:e] = (target.squeeze(-1) < m.squeeze(-1)).int()
        logits.sub_(m)  # shifted logits z, max 0
        torch.exp(logits, out=p)  # unnormalised probs
        z = p.sum(-1)  # (B, c)
        # entropy = log z - sum(p * shifted) / z; the dot product as a batched matmul (no third buffer)
        dot = torch.bmm(p.view(-1, 1, V), logits.view(-1, V, 1)).view(B, c)
        log_z = z.log()
        nll[:, s:e] = log_z - (target.squeeze(-1) - m.squeeze(-1))
        entropy[:, s:e] = log_z - dot / z
        del logits
    return TokenMetrics(nll=nll, rank=rank, entropy=entropy, window_argmax=win)


def row_means(tm: TokenMetrics) -> dict[str, torch.Tensor]:
    """Per-row loss, entropy and accuracy (fp64 sums of the fp32 per-token values)."""
    return {
        "loss": tm.nll.double().mean(1),
        "entropy": tm.entropy.double().mean(1),
        "accuracy": (tm.rank == 0).double().mean(1),
    }


def memorized_one_pass(window_argmax: torch.Tensor, rows: torch.Tensor, prefix: int = MEM_PREFIX) -> torch.Tensor:
    """(B,) bool: the argmax at positions prefix-1 .. prefix+W-2 equals row[prefix : prefix+W] everywhere."""
    W = window_argmax.shape[1]
    return (window_argmax == rows[:, prefix : prefix + W].long()).all(1)


@torch.no_grad()
def greedy_decode(model: GPTNeoX, prefix: torch.Tensor, n_new: int, *, ban_token: int | None = None) -> torch.Tensor:
    """Greedy continuation (B, n_new) of ``prefix`` (B, P), with a KV cache. ``ban_token`` is never chosen.
    Ties go to the lowest token id (torch.argmax), as in transformers' greedy search."""
    cache = KVCache(model.config.num_hidden_layers)
    h = model.hidden(prefix.long(), cache=cache)[:, -1]  # (B, d)
    out = torch.empty(prefix.shape[0], n_new, dtype=torch.int64, device=prefix.device)
    for i in range(n_new):
        logits = model.embed_out(h).float()  # (B, V)
        if ban_token is not None:
            logits[:, ban_token] = float("-inf")
        out[:, i] = logits.argmax(-1)
        if i + 1 < n_new:
            h = model.hidden(out[:, i : i + 1], cache=cache)[:, -1]
    return out


def memorization_score(model: GPTNeoX, rows: torch.Tensor, *, prefix: int = MEM_PREFIX,
                       continuation: int = MEM_CONTINUATION, ban_token: int | None = None) -> torch.Tensor:
    """(B,) fp64: share of the greedy continuation of row[:prefix] that equals row[prefix:prefix+continuation]."""
    if rows.shape[1] < prefix + continuation:
        raise ConfigError(
            f"rows of {rows.shape[1]:,} tokens: memorization needs {prefix + continuation} "
            f"({prefix} prefix + {continuation} continuation)"
        )
    gen = greedy_decode(model, rows[:, :prefix], continuation, ban_token=ban_token)
    return (gen == rows[:, prefix : prefix + continuation].long()).double().mean(1)
