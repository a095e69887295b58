"""Metrics: chunked nll/rank/entropy against full logits; one-pass memorization against greedy decoding
(ours with a KV cache, a naive full-recompute loop, and transformers' generate)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("transformers", reason="transformers is the test-only reference model")
from test_scorer_model import file_state_dict, make_hf_model  # noqa: E402

from pile_index.scorer import GPTNeoX, GPTNeoXConfig, ScoreOptions, score_rows  # noqa: E402
from pile_index.scorer.metrics import (KVCache, greedy_decode, memorization_score, memorized_one_pass,  # noqa: E402
                                       row_means, token_metrics)

VOCAB = 61


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def ours_from(hf) -> GPTNeoX:
    model = GPTNeoX(GPTNeoXConfig.from_hf_dict(hf.config.to_dict())).eval().requires_grad_(False)
    model.load_state_dict(file_state_dict(hf))
    return model


@functools.cache
def bigram_models(seed: int = 0):
    """A GPT-NeoX that is a bigram table: the blocks add nothing (attention and MLP outputs zeroed),
    embed_in is one-hot, and embed_out scores next(t) highest for input t, for a random permutation next.
    Greedy decoding from any prefix therefore walks the permutation from the prefix's last token."""
    hf = make_hf_model(32, 2, n_layers=1, vocab=VOCAB, seed=seed)  # d = 64 >= VOCAB
    d = hf.config.hidden_size
    g = torch.Generator().manual_seed(seed)
    nxt = torch.randperm(VOCAB, generator=g)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "attention.dense" in name or "dense_4h_to_h" in name:
                p.zero_()
        hf.gpt_neox.final_layer_norm.weight.fill_(1.0)
        hf.gpt_neox.final_layer_norm.bias.zero_()
        hf.gpt_neox.embed_in.weight.copy_(torch.eye(VOCAB, d))
        normed = torch.nn.functional.layer_norm(torch.eye(VOCAB, d), (d,))  # LN(one-hot t), row t
        out = torch.empty(VOCAB, d)
        out[nxt] = normed  # row next(t) <- LN(e_t): logit of next(t) given t is the largest
        out += 0.01 * torch.randn(VOCAB, d, generator=g)  # break ties among the rest
        hf.get_output_embeddings().weight.copy_(10 * out)
    return hf, ours_from(hf), nxt.numpy()


def chain(nxt: np.ndarray, start: int, n: int) -> np.ndarray:
    row = np.empty(n, np.int64)
    row[0] = start
    for i in range(1, n):
        row[i] = nxt[row[i - 1]]
    return row


def hf_greedy(hf, prefix: torch.Tensor, n_new: int, ban_eod: bool = False) -> torch.Tensor:
    kwargs = dict(min_new_tokens=n_new, eos_token_id=0) if ban_eod else dict(eos_token_id=None)
    out = hf.generate(prefix, max_new_tokens=n_new, do_sample=False, pad_token_id=0,
                      attention_mask=torch.ones_like(prefix), **kwargs)
    return out[:, prefix.shape[1]:]


def naive_greedy(model: GPTNeoX, prefix: torch.Tensor, n_new: int) -> torch.Tensor:
    x = prefix
    with torch.no_grad():
        for _ in range(n_new):
            x = torch.cat([x, model(x)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return x[:, prefix.shape[1]:]


def test_token_metrics_equal_full_logits_at_any_chunking():
    hf = make_hf_model(64, 2, seed=11)
    ours = ours_from(hf)
    rows = torch.from_numpy(np.random.default_rng(0).integers(0, 101, (3, 41)))
    with torch.no_grad():
        logits = hf(rows[:, :-1]).logits  # (B, T, V)
    logp = logits.log_softmax(-1)
    labels = rows[:, 1:]
    ref_nll = -logp.gather(-1, labels[..., None]).squeeze(-1)
    ref_rank = (logits > logits.gather(-1, labels[..., None])).sum(-1)
    ref_ent = -(logp.exp() * logp).sum(-1)
    for chunk in (1, 7 * 3 * 101, 1 << 24):  # one position per chunk, 7 per chunk, all at once
        tm = token_metrics(ours, rows, logits_chunk_elems=chunk, argmax_window=(5, 17))
        torch.testing.assert_close(tm.nll, ref_nll, atol=1e-5, rtol=0)
        torch.testing.assert_close(tm.entropy, ref_ent, atol=1e-5, rtol=0)
        assert torch.equal(tm.rank.long(), ref_rank)
        assert torch.equal(tm.window_argmax, logits[:, 5:17].argmax(-1))
        means = row_means(tm)
        torch.testing.assert_close(means["loss"], ref_nll.double().mean(1), atol=1e-6, rtol=0)
        assert torch.equal(means["accuracy"], (ref_rank == 0).double().mean(1))
    lite = token_metrics(ours, rows, with_rank=False)
    assert torch.equal(row_means(lite)["accuracy"], (ref_rank == 0).double().mean(1))
    assert torch.equal(lite.rank, (ref_rank > 0).int())


def test_accuracy_counts_rank_zero_with_a_forced_match():
    _, ours, nxt = bigram_models()
    row = chain(nxt, 3, 65)
    cols = score_rows(ours, row[None], ScoreOptions(per_token=True))
    assert cols["accuracy"][0] == 1.0 and cols["token_rank"].max() == 0
    assert cols["memorized"][0] and cols["memorization_score"][0] == 1.0


def test_kv_cache_continuation_equals_full_forward():
    hf = make_hf_model(80, 2, seed=4)
    ours = ours_from(hf)
    x = torch.from_numpy(np.random.default_rng(3).integers(0, 101, (2, 30)))
    with torch.no_grad():
        full = ours.hidden(x)
        cache = KVCache(ours.config.num_hidden_layers)
        a = ours.hidden(x[:, :12], cache)
        b = ours.hidden(x[:, 12:20], cache)  # several new tokens after a cache
        c = ours.hidden(x[:, 20:21], cache)  # one
    assert cache.length == 21
    torch.testing.assert_close(torch.cat([a, b, c], 1), full[:, :21], atol=1e-5, rtol=0)


def test_greedy_decoding_equals_transformers_generate_on_a_random_model():
    hf = make_hf_model(32, 4, seed=9)
    ours = ours_from(hf)
    prefix = torch.from_numpy(np.random.default_rng(5).integers(1, 101, (4, 32)))
    ref = hf_greedy(hf, prefix, 32)
    assert torch.equal(greedy_decode(ours, prefix, 32), ref)
    assert torch.equal(naive_greedy(ours, prefix, 32), ref)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), corrupt=st.lists(st.tuples(st.integers(0, 79), st.integers(0, VOCAB - 1)),
                                                        max_size=3))
def test_one_pass_memorization_equals_greedy_decoding(seed, corrupt):
    hf, ours, nxt = bigram_models()
    rng = np.random.default_rng(seed)
    rows = np.stack([chain(nxt, int(rng.integers(VOCAB)), 80) for _ in range(3)])
    for pos, tok in corrupt:  # corrupt the first row; the others stay pure chains
        rows[0, pos] = tok
    t = torch.from_numpy(rows)
    tm = token_metrics(ours, t, argmax_window=(31, 63))
    memorized = memorized_one_pass(tm.window_argmax, t)
    gen = greedy_decode(ours, t[:, :32], 32)
    assert torch.equal(gen, hf_greedy(hf, t[:, :32], 32))
    score = (gen == t[:, 32:64]).double().mean(1)
    assert torch.equal(memorized, score == 1.0)
    assert torch.equal(memorization_score(ours, t), score)
    assert bool(memorized[1]) and bool(memorized[2])
    cols = score_rows(ours, rows, ScoreOptions(batch_size=2, decode_batch_size=1))
    assert np.array_equal(cols["memorized"], memorized.numpy())
    assert np.array_equal(cols["memorization_score"], score.numpy())


def test_constructed_cases():
    _, ours, nxt = bigram_models()
    base = chain(nxt, 5, 70)
    late = base.copy()
    late[40] = (base[40] + 1) % VOCAB  # one wrong token in the continuation; row[41] still follows base[40]
    early = base.copy()
    early[10] = (base[10] + 1) % VOCAB  # a wrong token inside the prefix, far from its end
    cols = score_rows(ours, np.stack([base, late, early]), ScoreOptions())
    assert cols["memorized"].tolist() == [True, False, True]
    assert cols["memorization_score"].tolist() == [1.0, 31 / 32, 1.0]


def test_ban_eod_matches_min_length_generation():
    hf, ours, nxt = bigram_models()
    prv = np.argsort(nxt)  # the inverse permutation
    s0 = 0
    for _ in range(41):
        s0 = int(prv[s0])
    row = chain(nxt, s0, 70)  # walks into token 0 at position 41, inside the continuation
    assert row[41] == 0 and 0 not in row[:41]
    t = torch.from_numpy(row[None])
    free = memorization_score(ours, t)
    banned = memorization_score(ours, t, ban_token=0)
    assert free.item() == 1.0 and banned.item() < 1.0
    ref = hf_greedy(hf, t[:, :32], 32, ban_eod=True)
    assert torch.equal(greedy_decode(ours, t[:, :32], 32, ban_token=0), ref)
    assert banned.item() == (ref == t[:, 32:64]).double().mean().item()
    cols = score_rows(ours, row[None], ScoreOptions(ban_eod=True))
    assert cols["memorized"][0] and cols["memorization_score"][0] == banned.item()


def test_short_rows_have_no_memorization():
    _, ours, nxt = bigram_models()
    cols = score_rows(ours, chain(nxt, 1, 40)[None], ScoreOptions())
    assert cols["memorized"] is None and cols["memorization_score"] is None
    assert cols["accuracy"][0] == 1.0
