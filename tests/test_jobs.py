"""The one resumable-job mechanism: claim_folder (units are their own markers) and JobRecord (units listed)."""

import json

import pytest

from pile_index.errors import ConfigError, FormatError
from pile_index.jobs import JobRecord, claim_folder
from pile_index.scorer.checkpoint import DuplicateWeights


def _record(path, job):
    return JobRecord(path, job, spec={"job": dict, "parts": dict}, empty={}, what="job", units="parts",
                     shown=path.parent, fix="start over")


def test_both_shapes_refuse_another_job_with_one_message(tmp_path):
    claim_folder(tmp_path / "a", {"x": 1, "y": 2}, what="job", units="parts")
    (tmp_path / "a" / "p0").write_bytes(b"done")
    with pytest.raises(ConfigError) as claimed:
        claim_folder(tmp_path / "a", {"x": 1, "y": 3}, what="job", units="parts", fix="start over")
    rec = _record(tmp_path / "b" / "manifest.json", {"x": 1, "y": 2})
    rec.folder.mkdir()
    rec.save()
    with pytest.raises(ConfigError) as listed:
        _record(tmp_path / "b" / "manifest.json", {"x": 1, "y": 3})
    assert str(claimed.value).replace("/a:", "/X:") == str(listed.value).replace("/b:", "/X:")
    assert "holds parts of a different job (differs in: y); start over" in str(listed.value)


def test_a_unit_counts_as_done_only_with_its_recorded_size(tmp_path):
    path = tmp_path / "parts" / "manifest.json"
    path.parent.mkdir()
    rec = _record(path, {"x": 1})
    (path.parent / "p0").write_bytes(b"12345")
    rec.finish("p0", rows=2)
    assert json.loads(path.read_text()) == {"job": {"x": 1}, "parts": {"p0": {"bytes": 5, "rows": 2}}}
    assert _record(path, {"x": 1}).done("p0")
    (path.parent / "p0").write_bytes(b"123")  # rewritten after it was recorded: computed again
    assert not _record(path, {"x": 1}).done("p0")
    assert not rec.done("p1")
    path.write_text('{"job": {"x": 1}}')
    with pytest.raises(FormatError, match=r"manifest.json: parts: expected a JSON object, found nothing"):
        _record(path, {"x": 1})


def test_duplicate_weights_one_rule_for_scorer_and_datasets():
    dups = DuplicateWeights()
    assert dups.check("step1", "w1", "t1") is None
    assert dups.check("step2", "w2", None) is None
    assert dups.check("step3", "w3", "t1") == "step1"  # other files, same tensors
    assert dups.check("step4", "w2", "t4") == "step2"  # same files, the tensors not hashed for step2
    assert dups.duplicates == [("step1", "step3"), ("step2", "step4")]
