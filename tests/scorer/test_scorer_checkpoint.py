"""Checkpoint resolution: the Hugging Face hub cache layout offline, local folders, weight hashes, duplicates."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers", reason="transformers builds the test checkpoints")
from test_scorer_model import make_hf_model, pythia_config_json, write_bin  # noqa: E402

from pile_index.errors import NotFoundError  # noqa: E402
from pile_index.scorer import DuplicateWeights, hub_cache_dir, load_model, resolve_checkpoint  # noqa: E402
from pile_index.scorer.checkpoint import tensors_sha256  # noqa: E402

MODEL_ID = "EleutherAI/pythia-tiny-deduped"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def add_revision(cache: Path, model_id: str, revision: str, commit: str, files: dict[str, bytes]) -> Path:
    """Lay a revision out like huggingface_hub does: blobs/<sha256>, snapshots/<commit>/<name> -> blob
    (relative symlinks), refs/<revision> = commit."""
    repo = cache / ("models--" + model_id.replace("/", "--"))
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    (repo / "blobs").mkdir(exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snap / name
        if link.exists() or link.is_symlink():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, snap))
    (repo / "refs" / revision).write_text(commit)
    return snap


def checkpoint_files(tmp: Path, seed: int) -> dict[str, bytes]:
    hf = make_hf_model(seed=seed)
    folder = write_bin(hf, tmp / f"src{seed}", fp16=True)
    return {"config.json": (folder / "config.json").read_bytes(),
            "pytorch_model.bin": (folder / "pytorch_model.bin").read_bytes()}


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # hermetic: any download attempt is refused
    a, b = checkpoint_files(tmp_path, 1), checkpoint_files(tmp_path, 2)
    add_revision(cache, MODEL_ID, "step1000", "a" * 40, a)
    add_revision(cache, MODEL_ID, "step2000", "b" * 40, b)
    add_revision(cache, MODEL_ID, "main", "b" * 40, b)
    add_revision(cache, MODEL_ID, "step3000", "c" * 40, a)  # the hub serving old weights under a new name
    return cache, a, b


def test_hub_cache_dir_rules(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "x"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hub_cache_dir() == tmp_path / "x"
    monkeypatch.delenv("HF_HUB_CACHE")
    assert hub_cache_dir() == tmp_path / "home" / "hub"
    monkeypatch.delenv("HF_HOME")
    assert hub_cache_dir() == Path("~/.cache/huggingface/hub").expanduser()


def test_revision_resolves_offline_through_refs(hub_cache):
    cache, a, b = hub_cache
    ck = resolve_checkpoint(MODEL_ID, "step1000")
    assert ck.commit_sha == "a" * 40
    assert ck.folder == cache / "models--EleutherAI--pythia-tiny-deduped" / "snapshots" / ("a" * 40)
    assert [p.name for p in ck.weight_files] == ["pytorch_model.bin"]
    assert ck.weights_sha256 == hashlib.sha256(a["pytorch_model.bin"]).hexdigest()
    assert ck.record()["weight_files"] == {"pytorch_model.bin": ck.weights_sha256}
    assert resolve_checkpoint(MODEL_ID).commit_sha == "b" * 40  # no revision = main
    assert resolve_checkpoint(MODEL_ID, "b" * 40).revision == "b" * 40  # a commit sha names its snapshot
    model, _ = load_model(ck)
    assert model.embed_out.weight.dtype == torch.float32


def test_hf_home_and_repo_folder(hub_cache, monkeypatch):
    cache, _, _ = hub_cache
    home = cache.parent / "home"
    home.mkdir()
    (cache.parent / "hub").rename(home / "hub")
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(home))
    assert resolve_checkpoint(MODEL_ID, "step2000").commit_sha == "b" * 40
    repo = home / "hub" / "models--EleutherAI--pythia-tiny-deduped"
    ck = resolve_checkpoint(str(repo), "step1000")  # the repo folder itself as --model
    assert (ck.commit_sha, ck.revision) == ("a" * 40, "step1000")


def test_missing_revision_offline_is_a_clear_error(hub_cache):
    with pytest.raises(NotFoundError, match=r"revision 'step9000' is not in the hub cache .*refs/step9000.*"
                                            r"HF_HUB_OFFLINE is set.*huggingface-cli download"):
        resolve_checkpoint(MODEL_ID, "step9000")
    with pytest.raises(NotFoundError, match="no such folder .*, and not a hub id of the form Org/name"):
        resolve_checkpoint("no-such-folder")


def test_incomplete_snapshot_counts_as_missing(hub_cache):
    cache, _, _ = hub_cache
    snap = cache / "models--EleutherAI--pythia-tiny-deduped" / "snapshots" / ("a" * 40)
    (snap / "pytorch_model.bin").unlink()  # an interrupted download
    with pytest.raises(NotFoundError, match="step1000"):
        resolve_checkpoint(MODEL_ID, "step1000", allow_download=False)


def test_local_folder_with_revision_subfolders(tmp_path):
    hf = make_hf_model()
    write_bin(hf, tmp_path / "ckpts" / "step5")
    ck = resolve_checkpoint(str(tmp_path / "ckpts"), "step5")
    assert (ck.revision, ck.commit_sha, ck.folder) == ("step5", None, tmp_path / "ckpts" / "step5")
    with pytest.raises(NotFoundError, match="names a sub-folder"):
        resolve_checkpoint(str(tmp_path / "ckpts"), "step6")


def test_duplicate_weights_are_flagged(hub_cache, caplog):
    dups = DuplicateWeights()
    labels = {}
    with caplog.at_level(logging.WARNING, logger="pile_index.scorer.checkpoint"):
        for rev in ("step1000", "step2000", "step3000"):
            ck = resolve_checkpoint(MODEL_ID, rev)
            _, th = load_model(ck, with_tensor_hash=True)
            labels[rev] = dups.check(rev, ck.weights_sha256, th)
    assert labels == {"step1000": None, "step2000": None, "step3000": "step1000"}
    assert dups.duplicates == [("step1000", "step3000")]
    assert "step3000 carries the same weights as step1000" in caplog.text


def test_tensor_hash_sees_through_different_files(tmp_path):
    """Two differently written files with equal tensors (here fp16 .bin vs a re-saved copy) share a tensor hash."""
    hf = make_hf_model(seed=5)
    one = write_bin(hf, tmp_path / "one", fp16=True, buffers=True)
    two = write_bin(hf, tmp_path / "two", fp16=True, buffers=False, shards=2)
    c1, c2 = resolve_checkpoint(str(one)), resolve_checkpoint(str(two))
    assert c1.weights_sha256 != c2.weights_sha256
    _, h1 = load_model(c1, with_tensor_hash=True)
    _, h2 = load_model(c2, with_tensor_hash=True)
    assert h1 == h2
    assert json.loads((one / "config.json").read_text()) == pythia_config_json(hf)
    sd = torch.load(one / "pytorch_model.bin", weights_only=True)
    assert tensors_sha256({k: v for k, v in sd.items() if "attention.bias" not in k and "masked" not in k
                           and "inv_freq" not in k}) == h1


def test_download_goes_through_the_cache(tmp_path, monkeypatch):
    """The download path with a stand-in huggingface_hub (hermetic): it fetches config.json and one weight set
    (safetensors preferred, shards through their index) into the cache, then resolves from there."""
    import sys
    import types

    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    hf = make_hf_model(seed=3)
    src = tmp_path / "remote"
    hf.save_pretrained(src, max_shard_size=100_000)
    write_bin(hf, tmp_path / "remote-bin")  # a .bin beside: must not be fetched
    (src / "pytorch_model.bin").write_bytes((tmp_path / "remote-bin" / "pytorch_model.bin").read_bytes())
    fetched = []

    class FakeApi:
        def model_info(self, repo_id, revision=None, timeout=None):
            return types.SimpleNamespace(siblings=[types.SimpleNamespace(rfilename=p.name) for p in src.iterdir()])

    def fake_download(repo_id, filename, revision=None, cache_dir=None):
        fetched.append(filename)
        return str(add_revision(Path(cache_dir), repo_id, revision, "d" * 40,
                                {filename: (src / filename).read_bytes()}) / filename)

    monkeypatch.setitem(sys.modules, "huggingface_hub",
                        types.SimpleNamespace(HfApi=FakeApi, hf_hub_download=fake_download))
    ck = resolve_checkpoint(MODEL_ID, "step42")
    shards = sorted(p.name for p in src.glob("model-*.safetensors"))
    assert len(shards) >= 2
    assert fetched == ["model.safetensors.index.json", "config.json", "model.safetensors.index.json", *shards]
    assert (ck.commit_sha, [p.name for p in ck.weight_files]) == ("d" * 40, shards)
    with pytest.raises(NotFoundError, match="downloads are off"):
        resolve_checkpoint(MODEL_ID, "step43", allow_download=False)
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # not installed
    from pile_index.errors import ConfigError
    with pytest.raises(ConfigError, match="huggingface_hub is not installed"):
        resolve_checkpoint(MODEL_ID, "step43")


# ------------------------------------------------------------------- local paths and the hub, hermetically


@pytest.fixture
def no_network(monkeypatch):
    """Online as far as the environment says (HF_HUB_OFFLINE unset), but any hub call fails the test."""
    import sys
    import types

    from pile_index.scorer import checkpoint

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def touched(*a, **k):
        pytest.fail("the hub was asked")

    monkeypatch.setattr(checkpoint, "_download", touched)
    monkeypatch.setattr(checkpoint, "_hub_refs", touched, raising=False)
    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(HfApi=touched, hf_hub_download=touched))


def test_path_like_model_is_a_local_folder_and_never_asks_the_hub(tmp_path, monkeypatch, no_network):
    """``demo/nope`` beside a ``demo/`` folder is a typo of a folder: 'no such folder' naming what is there."""
    monkeypatch.chdir(tmp_path)
    for name in ("ckpts", "store"):
        (tmp_path / "demo" / name).mkdir(parents=True)
    (tmp_path / "demo" / "notes.txt").write_text("not a folder")
    with pytest.raises(NotFoundError, match=r"^model 'demo/nope': no such folder \(demo/ holds ckpts, store\)$"):
        resolve_checkpoint("demo/nope", "step8")
    with pytest.raises(NotFoundError, match=r"'demo/ckpts/step8': no such folder \(demo/ckpts/ holds none\)"):
        resolve_checkpoint("demo/ckpts/step8")  # a separator beyond Org/name
    with pytest.raises(NotFoundError, match=r"'\./nope': no such folder \(the current folder holds demo\)"):
        resolve_checkpoint("./nope")
    with pytest.raises(NotFoundError, match=rf"'{tmp_path}/gone/x': no such folder \({tmp_path}/ holds demo\)"):
        resolve_checkpoint(str(tmp_path / "gone" / "x"))
    with pytest.raises(NotFoundError, match="is a file: model names the folder"):
        resolve_checkpoint("demo/notes.txt")
    for bad in ("Eleuther AI/pythia-70m", "EleutherAI/pythia--70m", "EleutherAI/-x", "x" * 50 + "/" + "y" * 50):
        with pytest.raises(NotFoundError, match="no such folder .*and not a hub id of the form Org/name"):
            resolve_checkpoint(bad)


def test_hub_failure_is_one_offline_or_not_found_line(tmp_path, monkeypatch, caplog):
    """A well-formed hub id not in the cache, online: the hub is asked once (no retries, no file requests);
    its failure is one 'offline or not found: REPO@REVISION' and the client's retry warnings stay quiet."""
    import sys
    import types

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.chdir(tmp_path)
    calls = []

    class ConnectError(Exception):
        pass

    class FakeApi:
        def model_info(self, repo_id, revision=None, timeout=None):
            calls.append(("model_info", repo_id, revision, timeout))
            logging.getLogger("huggingface_hub.utils._http").warning("Retrying in 1s [Retry 1/5].")
            raise ConnectError("[Errno -3] Temporary failure in name resolution")

        def list_repo_files(self, repo_id, revision=None):
            return self.model_info(repo_id, revision)

    def fake_download(*a, **k):
        pytest.fail("a file was requested after the hub could not be reached")

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(HfApi=FakeApi,
                                                                              hf_hub_download=fake_download))
    with caplog.at_level(logging.WARNING):
        with pytest.raises(NotFoundError) as e:
            resolve_checkpoint(MODEL_ID, "step42")
    assert str(e.value).startswith(f"offline or not found: {MODEL_ID}@step42 (ConnectError): ")
    assert str(e.value).count("offline or not found") == 1
    assert len(calls) == 1 and calls[0][3] is not None  # one request, with a timeout
    assert "Retrying" not in caplog.text


def test_revisions_are_resolved_together(hub_cache, tmp_path):
    """Every revision is looked up before any is used: the missing and the present ones in one error."""
    from pile_index.scorer.checkpoint import resolve_revisions

    plan = resolve_revisions(MODEL_ID, ["step1000", "step2000"])
    assert sorted(plan.present) == ["step1000", "step2000"] and plan.to_download == []
    with pytest.raises(NotFoundError, match=r"2 of 4 revisions are missing \(not in the hub cache, and downloads "
                                            r"are off \(HF_HUB_OFFLINE is set\)\): step8, step9000; present: "
                                            r"step1000, step2000\. download them first"):
        resolve_revisions(MODEL_ID, ["step1000", "step8", "step2000", "step9000"])
    hf = make_hf_model()
    for rev in ("step0", "step1", "step4"):
        write_bin(hf, tmp_path / "ckpts" / rev)
    with pytest.raises(NotFoundError, match=r"1 of 4 revisions are missing \(no sub-folder with config.json\): "
                                            r"step2; present: step0, step1, step4\. add a sub-folder"):
        resolve_revisions(str(tmp_path / "ckpts"), ["step0", "step1", "step2", "step4"])


def test_revisions_online_ask_the_hub_once(hub_cache, monkeypatch):
    """Online, revisions missing from the cache are checked against the hub's branches and tags (one list, no
    download yet); when the hub cannot be reached, one error lists the missing and the present revisions."""
    import sys
    import types

    from pile_index.scorer.checkpoint import resolve_revisions

    monkeypatch.delenv("HF_HUB_OFFLINE")
    calls = []

    class ConnectError(Exception):
        pass

    class FakeApi:
        reachable = True

        def model_info(self, repo_id, revision=None, timeout=None):
            calls.append("model_info")
            if not self.reachable:
                raise ConnectError("no route to host")

        def list_repo_refs(self, repo_id):
            calls.append("list_repo_refs")
            names = ("main", "step1000", "step2000", "step3000", "step4000")
            return types.SimpleNamespace(branches=[types.SimpleNamespace(name=n) for n in names], tags=[])

    def no_download(*a, **k):
        pytest.fail("resolving revisions downloads nothing")

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(HfApi=FakeApi,
                                                                              hf_hub_download=no_download))
    plan = resolve_revisions(MODEL_ID, ["step1000", "step4000"])
    assert (sorted(plan.present), plan.to_download, calls) == (["step1000"], ["step4000"],
                                                               ["model_info", "list_repo_refs"])
    with pytest.raises(NotFoundError, match=r"1 of 3 revisions are missing \(not in the hub cache, and not among "
                                            r"the hub's branches and tags\): step9; present: step1000\."):
        resolve_revisions(MODEL_ID, ["step1000", "step4000", "step9"])
    FakeApi.reachable = False
    with pytest.raises(NotFoundError, match=r"2 of 3 revisions are missing \(offline or not found on the hub "
                                            r"\(ConnectError\)\): step4000, step9; present: step1000\."):
        resolve_revisions(MODEL_ID, ["step1000", "step4000", "step9"])
    with pytest.raises(NotFoundError, match=rf"^offline or not found: {MODEL_ID}@step4000 \(ConnectError\)"):
        resolve_revisions(MODEL_ID, ["step4000"])


def test_safetensors_reader_equals_the_safetensors_library_and_owns_its_memory(tmp_path):
    from safetensors.torch import load_file, save_file

    from pile_index.scorer.checkpoint import _read_weight_file

    g = torch.Generator().manual_seed(0)
    tensors = {"f32": torch.randn(3, 5, generator=g), "bf16": torch.randn(7, generator=g).bfloat16(),
               "f16": torch.randn(2, 2, generator=g).half(), "i64": torch.arange(4), "scalar": torch.tensor(2.5),
               "empty": torch.zeros(0, 3), "flag": torch.tensor([True, False])}
    save_file(tensors, str(tmp_path / "w.safetensors"), metadata={"format": "pt"})
    got, mapped = _read_weight_file(tmp_path / "w.safetensors")
    ref = load_file(str(tmp_path / "w.safetensors"))
    assert not mapped and got.keys() == ref.keys()
    for k in ref:
        assert got[k].dtype == ref[k].dtype and torch.equal(got[k], ref[k]), k
    assert got["f32"].data_ptr() % 64 == 0  # torch's own allocation: aligned for the matmul kernels


def test_damaged_safetensors_files_are_named_errors(tmp_path):
    from safetensors.torch import save_file

    from pile_index.errors import FormatError
    from pile_index.scorer.checkpoint import _read_weight_file

    path = tmp_path / "model.safetensors"
    save_file({"a": torch.ones(100), "b": torch.ones(3)}, str(path))
    data = path.read_bytes()
    cases = {
        "short": (data[:5], r"5 bytes: shorter than the 8-byte header length"),
        "truncated": (data[:-8], r"tensor [ab]: offsets .* do not hold .* within the 404 data bytes"),
        "header": ((10**9).to_bytes(8, "little") + data[8:], r"header length 1,000,000,000 does not fit"),
        "json": (data[:8] + b"x" + data[9:], r"header is not JSON"),
    }
    for name, (blob, why) in cases.items():
        path.write_bytes(blob)
        with pytest.raises(FormatError, match=rf"model.safetensors: not a readable safetensors file \(.*{why}"):
            _read_weight_file(path)
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    header["a"]["dtype"] = "F8_E4M3"
    raw = json.dumps(header).encode()
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + data[8 + n :])
    with pytest.raises(FormatError, match=r"tensor a: entry .* is not a known dtype"):
        _read_weight_file(path)
