"""Our GPT-NeoX forward and loader against transformers' GPTNeoXForCausalLM (the test-only reference).

Tiny random models with Pythia's structure (head dims 32..256, rotary int(hd * 0.25)) saved in Hugging Face
layouts: safetensors written by transformers' own save_pretrained (single and sharded), and pytorch_model.bin
(single and sharded, fp32 and fp16, with the old buffer keys) written the way the Pythia step branches
store them. transformers 5 ignores ``safe_serialization=False`` (it always writes safetensors), so the .bin
layouts are written here with torch.save plus the standard ``pytorch_model.bin.index.json``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers", reason="transformers is the test-only reference model")
from transformers import GPTNeoXConfig as HFConfig  # noqa: E402
from transformers import GPTNeoXForCausalLM  # noqa: E402

from pile_index.errors import ConfigError, FormatError, NotFoundError  # noqa: E402
from pile_index.scorer import (GPTNeoX, GPTNeoXConfig, ScoreOptions, load_model, resolve_checkpoint,  # noqa: E402
                               score_rows)
from pile_index.scorer.checkpoint import check_state_dict, read_state_dict  # noqa: E402
from pile_index.scorer.model import PYTHIA_SHAPES, pythia_shape  # noqa: E402

HEADS = {32: 4, 64: 2, 80: 2, 128: 2, 256: 1}  # head_dim -> heads: widths 128..256 keep the models tiny


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_hf_model(head_dim: int = 32, n_heads: int = 2, n_layers: int = 2, vocab: int = 101, parallel: bool = True,
                  seed: int = 0, max_pos: int = 128, attn: str = "eager") -> GPTNeoXForCausalLM:
    """A random GPT-NeoX in transformers with every weight perturbed (LayerNorms and biases too)."""
    cfg = HFConfig(vocab_size=vocab, hidden_size=head_dim * n_heads, num_attention_heads=n_heads,
                   num_hidden_layers=n_layers, intermediate_size=4 * head_dim * n_heads,
                   max_position_embeddings=max_pos, rotary_pct=0.25, rotary_emb_base=10000,
                   use_parallel_residual=parallel, attn_implementation=attn, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = GPTNeoXForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.normal_(0.0, 0.1)
            else:
                p.normal_(0.0, 0.08)
    return model


def file_state_dict(model: GPTNeoXForCausalLM) -> dict[str, torch.Tensor]:
    """The state dict under the names Pythia files use (transformers 5 calls embed_out lm_head in memory)."""
    return {("embed_out.weight" if k == "lm_head.weight" else k): v.detach().clone()
            for k, v in model.state_dict().items()}


def pythia_config_json(model: GPTNeoXForCausalLM) -> dict:
    """config.json as the Pythia repos write it (rotary_pct / rotary_emb_base, not rope_parameters)."""
    c = model.config
    return {
        "architectures": ["GPTNeoXForCausalLM"], "model_type": "gpt_neox", "hidden_act": "gelu",
        "vocab_size": c.vocab_size, "hidden_size": c.hidden_size, "num_attention_heads": c.num_attention_heads,
        "num_hidden_layers": c.num_hidden_layers, "intermediate_size": c.intermediate_size,
        "rotary_pct": 0.25, "rotary_emb_base": 10000, "layer_norm_eps": 1e-5,
        "max_position_embeddings": c.max_position_embeddings, "use_parallel_residual": c.use_parallel_residual,
        "tie_word_embeddings": False, "bos_token_id": 0, "eos_token_id": 0, "torch_dtype": "float16",
    }


def write_bin(model: GPTNeoXForCausalLM, folder: Path, shards: int = 1, fp16: bool = False,
              buffers: bool = True) -> Path:
    """pytorch_model.bin (or shards + index), Pythia-style: optional fp16, old buffer keys included."""
    folder.mkdir(parents=True, exist_ok=True)
    sd = file_state_dict(model)
    if fp16:
        sd = {k: v.half() for k, v in sd.items()}
    if buffers:  # what older GPT-NeoX exports carried; the loader must ignore them
        n = model.config.max_position_embeddings
        hd = model.config.hidden_size // model.config.num_attention_heads
        for i in range(model.config.num_hidden_layers):
            sd[f"gpt_neox.layers.{i}.attention.bias"] = torch.tril(torch.ones(n, n, dtype=torch.bool))[None, None]
            sd[f"gpt_neox.layers.{i}.attention.masked_bias"] = torch.tensor(-1e9)
            sd[f"gpt_neox.layers.{i}.attention.rotary_emb.inv_freq"] = torch.ones(int(hd * 0.25) // 2)
    (folder / "config.json").write_text(json.dumps(pythia_config_json(model)))
    if shards == 1:
        torch.save(sd, folder / "pytorch_model.bin")
        return folder
    keys = list(sd)
    weight_map = {}
    for s in range(shards):
        name = f"pytorch_model-{s + 1:05d}-of-{shards:05d}.bin"
        part = {k: sd[k] for k in keys[s::shards]}
        torch.save(part, folder / name)
        weight_map.update({k: name for k in part})
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


def save(model: GPTNeoXForCausalLM, folder: Path, fmt: str) -> Path:
    if fmt == "safetensors":
        model.save_pretrained(folder)
    elif fmt == "safetensors-sharded":
        total = sum(p.numel() * 4 for p in model.parameters())
        model.save_pretrained(folder, max_shard_size=max(total // 3, 1))
    elif fmt == "bin":
        write_bin(model, folder)
    elif fmt == "bin-sharded":
        write_bin(model, folder, shards=3)
    else:
        raise ValueError(fmt)
    return folder


FORMATS = ["safetensors", "safetensors-sharded", "bin", "bin-sharded"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("head_dim", sorted(HEADS))
def test_logits_and_loss_equal_transformers(tmp_path, head_dim, fmt):
    hf = make_hf_model(head_dim, HEADS[head_dim], seed=head_dim)
    folder = save(hf, tmp_path / "ckpt", fmt)
    ckpt = resolve_checkpoint(str(folder))
    if fmt.endswith("sharded"):
        assert len(ckpt.weight_files) >= 2
    else:
        assert len(ckpt.weight_files) == 1
    assert ckpt.config.rotary_ndims == int(head_dim * 0.25)
    ours, _ = load_model(ckpt)
    rows = torch.from_numpy(np.random.default_rng(head_dim).integers(0, 101, (3, 49)))
    with torch.no_grad():
        ref = hf(rows[:, :-1]).logits
        got = ours(rows[:, :-1])
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=0)
    cols = score_rows(ours, rows.numpy(), ScoreOptions(batch_size=2))
    with torch.no_grad():
        ref_loss = [hf(r[None], labels=r[None]).loss.item() for r in rows]
    np.testing.assert_allclose(cols["loss"], ref_loss, atol=1e-4, rtol=0)


@pytest.mark.parametrize("parallel", [True, False])
def test_sdpa_reference_and_sequential_residual(parallel):
    """transformers' default attention (sdpa) agrees too, and so does the non-parallel residual form."""
    hf = make_hf_model(64, 2, parallel=parallel, attn="sdpa", seed=3)
    assert hf.config._attn_implementation == "sdpa"
    ours = GPTNeoX(GPTNeoXConfig.from_hf_dict(hf.config.to_dict())).eval()
    ours.load_state_dict(file_state_dict(hf))
    x = torch.from_numpy(np.random.default_rng(1).integers(0, 101, (2, 70)))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), hf(x).logits, atol=1e-4, rtol=0)


def test_fp16_bin_like_pythia_step_branches(tmp_path):
    """Pythia's step branches hold fp16 pickles: loaded into fp32 they give the reference's logits."""
    hf = make_hf_model(80, 2, seed=7)
    with torch.no_grad():
        for p in hf.parameters():
            p.copy_(p.half().float())  # the reference holds exactly the fp16 values
    folder = write_bin(hf, tmp_path / "ckpt", fp16=True)
    ours, _ = load_model(resolve_checkpoint(str(folder)))
    assert ours.embed_out.weight.dtype == torch.float32
    x = torch.from_numpy(np.random.default_rng(2).integers(0, 101, (2, 40)))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), hf(x).logits, atol=1e-4, rtol=0)


@pytest.mark.parametrize("narrow", [torch.float16, torch.bfloat16])
def test_narrow_matrices_stay_narrow_and_score_as_if_widened(tmp_path, narrow):
    """On CPU in fp32 the layers' matrices and embed_in keep the file's 16-bit dtype (half their memory) and
    are widened where used: every per-token figure equals, bit for bit, that of the same weights widened at
    load; LayerNorms, biases and embed_out are fp32."""
    from safetensors.torch import save_file

    hf = make_hf_model(64, 2, seed=11)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    save_file({k: v.to(narrow).contiguous() for k, v in file_state_dict(hf).items()},
              str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(pythia_config_json(hf)))
    ours, _ = load_model(resolve_checkpoint(str(folder)))
    dtypes = {k: v.dtype for k, v in ours.state_dict().items()}
    narrow_keys = {k for k, d in dtypes.items() if d == narrow}
    assert narrow_keys == {k for k in dtypes if k == "gpt_neox.embed_in.weight" or (
        k.endswith(".weight") and ("query_key_value" in k or ".dense" in k))}
    assert len(narrow_keys) == 1 + 4 * hf.config.num_hidden_layers
    assert set(dtypes.values()) == {narrow, torch.float32} and ours.compute_dtype == torch.float32
    wide = GPTNeoX(ours.config).eval()
    wide.load_state_dict({k: v.float() for k, v in ours.state_dict().items()})
    rows = np.random.default_rng(5).integers(0, 101, (3, 81))
    opts = ScoreOptions(batch_size=2, per_token=True, memorization_score=True)
    got, ref = score_rows(ours, rows, opts), score_rows(wide, rows, opts)
    for k in ("token_nll", "token_rank", "token_entropy", "loss", "memorized", "memorization_score"):
        np.testing.assert_array_equal(got[k], ref[k], err_msg=k)
    with torch.no_grad():
        assert torch.equal(ours(torch.from_numpy(rows[:, :-1])), wide(torch.from_numpy(rows[:, :-1])))
    on_gpu_dtype, _ = load_model(resolve_checkpoint(str(folder)), dtype=torch.bfloat16)  # no fp32: all converted
    assert {v.dtype for v in on_gpu_dtype.state_dict().values()} == {torch.bfloat16}


@pytest.mark.parametrize("name,expected", [("70m", 70_426_624), ("160m", 162_322_944), ("410m", 405_334_016),
                                           ("1b", 1_011_781_632)])
def test_pythia_parameter_counts(name, expected):
    cfg = pythia_shape(name)
    assert cfg.n_params() == expected
    with torch.device("meta"):  # no weights allocated
        assert GPTNeoX(cfg).n_params() == expected
        s = PYTHIA_SHAPES[name]
        hf = GPTNeoXForCausalLM(HFConfig(vocab_size=50304, intermediate_size=4 * s["hidden_size"], rotary_pct=0.25,
                                         **s))
    assert sum(p.numel() for p in hf.parameters()) == expected


def test_config_forms_agree():
    """Pythia's config.json form and transformers 5's rope_parameters form read the same."""
    hf = make_hf_model(80, 2)
    a = GPTNeoXConfig.from_hf_dict(pythia_config_json(hf))
    b = GPTNeoXConfig.from_hf_dict(hf.config.to_dict())
    assert a == b
    assert (a.rotary_ndims, a.rotary_emb_base, a.head_dim) == (20, 10000.0, 80)
    with pytest.raises(ConfigError, match="hidden_act='gelu_new'"):
        GPTNeoXConfig.from_hf_dict({**pythia_config_json(hf), "hidden_act": "gelu_new"})
    with pytest.raises(ConfigError, match="lacks 'hidden_size'"):
        d = pythia_config_json(hf)
        del d["hidden_size"]
        GPTNeoXConfig.from_hf_dict(d)


# --------------------------------------------------------------------------------- key and shape checks


@pytest.mark.parametrize("edit, needle", [
    (lambda sd: sd.pop("gpt_neox.layers.1.mlp.dense_4h_to_h.bias"),
     r"lacks gpt_neox\.layers\.1\.mlp\.dense_4h_to_h\.bias \(1 of"),
    (lambda sd: sd.update({"gpt_neox.layers.2.mlp.dense_4h_to_h.bias": torch.zeros(64)}),
     r"pytorch_model\.bin: unexpected key gpt_neox\.layers\.2\.mlp"),
], ids=["missing", "unexpected"])
def test_missing_or_unexpected_key_is_named(tmp_path, edit, needle):
    hf = make_hf_model()
    folder = tmp_path / "ckpt"
    write_bin(hf, folder)
    sd = torch.load(folder / "pytorch_model.bin", weights_only=True)
    edit(sd)
    torch.save(sd, folder / "pytorch_model.bin")
    with pytest.raises(FormatError, match=needle):
        load_model(resolve_checkpoint(str(folder)))


def test_wrong_shape_is_named_with_its_shard(tmp_path):
    hf = make_hf_model()
    folder = tmp_path / "ckpt"
    write_bin(hf, folder, shards=3)
    index = json.loads((folder / "pytorch_model.bin.index.json").read_text())
    shard = index["weight_map"]["gpt_neox.layers.0.attention.query_key_value.weight"]
    sd = torch.load(folder / shard, weights_only=True)
    sd["gpt_neox.layers.0.attention.query_key_value.weight"] = torch.zeros(64, 64)
    torch.save(sd, folder / shard)
    with pytest.raises(FormatError, match=rf"{shard}: gpt_neox\.layers\.0\.attention\.query_key_value\.weight "
                                          r"has shape \[64, 64\], expected \[192, 64\]"):
        load_model(resolve_checkpoint(str(folder)))


def test_missing_shard_and_no_weights(tmp_path):
    hf = make_hf_model()
    folder = save(hf, tmp_path / "ckpt", "safetensors-sharded")
    victim = sorted(folder.glob("model-*.safetensors"))[1]
    victim.unlink()
    with pytest.raises(NotFoundError, match=rf"{victim.name} is missing"):
        resolve_checkpoint(str(folder))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text(json.dumps(pythia_config_json(hf)))
    with pytest.raises(NotFoundError, match="no weights"):
        resolve_checkpoint(str(empty))


def test_buffers_ignored_and_lm_head_alias(tmp_path):
    hf = make_hf_model()
    folder = write_bin(hf, tmp_path / "ckpt", buffers=True)
    sd, _ = read_state_dict([folder / "pytorch_model.bin"])
    assert not any(k.endswith(("attention.bias", "masked_bias", "inv_freq")) for k in sd)
    check_state_dict(sd, GPTNeoXConfig.from_hf_dict(pythia_config_json(hf)))
    # a transformers-5 in-memory state dict saved as is (lm_head.weight) loads too
    torch.save(dict(hf.state_dict()), folder / "pytorch_model.bin")
    sd, _ = read_state_dict([folder / "pytorch_model.bin"])
    assert "embed_out.weight" in sd and "lm_head.weight" not in sd


# --------------------------------------------------------------------------- config.json, field by field


@pytest.fixture(scope="module")
def weights_folder(tmp_path_factory):
    """A tiny checkpoint (d 64, 2 layers, vocab 101): its config.json as a dict and its weight file."""
    hf = make_hf_model()
    folder = write_bin(hf, tmp_path_factory.mktemp("weights") / "ckpt")
    return json.loads((folder / "config.json").read_text()), folder / "pytorch_model.bin"


def _with_config(tmp_path: Path, weights: Path, text: str, name: str = "ckpt") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(text)
    (folder / "pytorch_model.bin").symlink_to(weights)
    return folder


@pytest.mark.parametrize("field,value,error,message", [
    ("layer_norm_eps", float("nan"), ConfigError, r"layer_norm_eps=nan: expected a finite number in \(0, 1\]"),
    ("layer_norm_eps", float("inf"), ConfigError, r"layer_norm_eps=inf: expected a finite number"),
    ("layer_norm_eps", 0, ConfigError, r"layer_norm_eps=0\.0: expected a finite number in \(0, 1\]"),
    ("layer_norm_eps", "1e-5", ConfigError, r"layer_norm_eps='1e-5' \(str\): expected a number"),
    ("hidden_size", 64.7, ConfigError, r"hidden_size=64\.7 \(float\): expected an integer"),
    ("hidden_size", 64.0, ConfigError, r"hidden_size=64\.0 \(float\): expected an integer"),
    ("hidden_size", 1e9, ConfigError, r"hidden_size=1000000000\.0 \(float\): expected an integer"),
    ("hidden_size", 10**400, ConfigError, r"hidden_size=1000.*000: expected an integer in 1 \.\. 65,536"),
    ("num_hidden_layers", 1e6, ConfigError, r"num_hidden_layers=1000000\.0 \(float\): expected an integer"),
    ("num_hidden_layers", 10**6, ConfigError, r"num_hidden_layers=1000000: expected an integer in 1 \.\. 1,024"),
    ("num_hidden_layers", 1024, FormatError, r"describes [\d,]+ parameters \(num_hidden_layers=1,024.* but the "
                                             r"weight files hold [\d,]+ bytes"),
    ("vocab_size", True, ConfigError, r"vocab_size=True \(bool\): expected an integer"),
    ("vocab_size", -1, ConfigError, r"vocab_size=-1: expected an integer in 1 \.\."),
    ("rotary_emb_base", 10**400, ConfigError, r"rotary_emb_base=1000.*: expected a finite number"),
    ("rotary_pct", 1.5, ConfigError, r"rotary_pct=1\.5: expected a finite number in \[0, 1\]"),
    ("use_parallel_residual", "false", ConfigError, r"use_parallel_residual='false' \(str\): expected true or false"),
    ("tie_word_embeddings", "no", ConfigError, r"tie_word_embeddings='no': expected false"),
    ("rope_scaling", [1], ConfigError, r"rope_parameters=\[1\]: expected an object or null"),
    ("max_position_embeddings", None, ConfigError, r"max_position_embeddings=None \(NoneType\): expected an integer"),
])
def test_bad_config_values_are_refused_by_name(tmp_path, weights_folder, field, value, error, message):
    """Every field is checked for type (exactly int where int), finiteness and range, and the config against
    the bytes of the weights, before any module is built: no NaN loss, no truncation, no traceback."""
    cfg, weights = weights_folder
    folder = _with_config(tmp_path, weights, json.dumps({**cfg, field: value}))
    with pytest.raises(error, match=rf"{folder / 'config.json'}: .*{message}"):
        load_model(resolve_checkpoint(str(folder)))


def test_config_file_is_parsed_robustly(tmp_path, weights_folder):
    cfg, weights = weights_folder
    deep = json.dumps({**cfg, "task_specific_params": "X"}).replace('"X"', "[" * 100_000 + "]" * 100_000)
    with pytest.raises(FormatError, match=r"config\.json: JSON nested too deeply to be a model config"):
        resolve_checkpoint(str(_with_config(tmp_path, weights, deep, "deep")))
    with pytest.raises(ConfigError, match=r"config\.json holds a JSON list: expected an object"):
        resolve_checkpoint(str(_with_config(tmp_path, weights, "[1, 2]", "list")))
    with pytest.raises(FormatError, match=r"larger than 1,048,576 bytes, too large for a model config"):
        resolve_checkpoint(str(_with_config(tmp_path, weights, json.dumps({**cfg, "x": "y" * (1 << 20)}), "big")))
    with pytest.raises(FormatError, match=r"config\.json: not valid JSON"):
        resolve_checkpoint(str(_with_config(tmp_path, weights, json.dumps(cfg)[:-7], "cut")))
    with pytest.raises(FormatError, match=r"config\.json: not valid JSON"):
        resolve_checkpoint(str(_with_config(tmp_path, weights, '{"vocab_size": ' + "9" * 5000 + "}", "digits")))


@pytest.mark.parametrize("target", ["../../outside.bin", "/etc/passwd", "sub/shard.bin", ".."])
def test_weight_map_pointing_outside_the_folder_is_refused(tmp_path, target):
    hf = make_hf_model()
    folder = write_bin(hf, tmp_path / "a" / "b" / "ckpt", shards=2)
    (tmp_path / "a" / "outside.bin").write_bytes((folder / "pytorch_model-00001-of-00002.bin").read_bytes())
    index = json.loads((folder / "pytorch_model.bin.index.json").read_text())
    key = next(iter(index["weight_map"]))
    index["weight_map"][key] = target
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    with pytest.raises(FormatError, match=rf"weight_map\['{re.escape(key)}'\] = '{re.escape(target)}' is not a "
                                          r"file name in the model folder"):
        resolve_checkpoint(str(folder))


CONFIG_MUTATIONS = 300
"""Mutated config.json files per run of the fuzz test (each a resolve + load of a 2-layer model)."""

_FUZZ_VALUES = [None, True, False, 0, 1, -1, 2, 3, 4, 8, 16, 64, 128, 101, 256, 1024, 2**31, 2**63, 10**400, -10**400,
                0.0, 0.25, 0.5, 1.0, 1.5, 64.0, 64.7, 1e-5, 1e-300, 1e6, 1e9, 1e308, float("nan"), float("inf"),
                float("-inf"), "", "64", "gelu", "gpt_neox", "false", [], [64], {}, {"rope_type": "yarn"},
                {"rope_theta": 10000, "partial_rotary_factor": 0.5}]


def _mutated_config(rng: np.random.Generator, base: dict) -> str:
    d = dict(base)
    kind = int(rng.integers(0, 10))
    if kind == 0:  # damage the text itself
        text = json.dumps(d)
        choice = int(rng.integers(0, 3))
        if choice == 0:
            return text[: int(rng.integers(0, len(text)))]
        if choice == 1:
            depth = int(rng.integers(1, 200_000))
            return text[:-1] + ', "nest": ' + "[" * depth + "]" * depth + "}"
        return "[" + text + "]"
    keys = sorted(set(d) | {"rope_parameters", "rope_scaling", "attention_bias"})
    for _ in range(int(rng.integers(1, 4))):
        key = keys[int(rng.integers(0, len(keys)))]
        if rng.random() < 0.15:
            d.pop(key, None)
        else:
            d[key] = _FUZZ_VALUES[int(rng.integers(0, len(_FUZZ_VALUES)))]
    return json.dumps(d)


def test_config_fuzz_ends_in_a_named_error_or_a_correct_load(tmp_path, weights_folder):
    """CONFIG_MUTATIONS mutated configs beside fixed weights: each ends in a ConfigError / FormatError /
    NotFoundError, or loads a model whose config equals the file's values exactly and whose logits are finite."""
    base, weights = weights_folder
    rng = np.random.default_rng(16)
    folder = _with_config(tmp_path, weights, json.dumps(base))
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 101, (2, 9)))
    outcomes = {"named_error": 0, "loaded": 0}
    for i in range(CONFIG_MUTATIONS):
        text = _mutated_config(rng, base)
        (folder / "config.json").write_text(text)
        try:
            model, _ = load_model(resolve_checkpoint(str(folder)))
        except (ConfigError, FormatError, NotFoundError):
            outcomes["named_error"] += 1
            continue
        outcomes["loaded"] += 1
        d = json.loads(text)
        cfg = model.config
        for f in ("vocab_size", "hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size"):
            assert getattr(cfg, f) == d[f] and type(d[f]) is int, (i, f, text)
        assert cfg.layer_norm_eps == d.get("layer_norm_eps", 1e-5), (i, text)
        assert cfg.use_parallel_residual is d.get("use_parallel_residual", True), (i, text)
        with torch.no_grad():
            assert torch.isfinite(model(x)).all(), (i, text)
    assert outcomes["named_error"] > CONFIG_MUTATIONS // 2 and outcomes["loaded"] > 10, outcomes
