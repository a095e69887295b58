"""Corpus: the store opened once, the order, n-gram index, documents table and tokenizer on first use, once
(also under concurrent first use), closed in one place."""

from __future__ import annotations

import json
import threading
from dataclasses import asdict

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import pile_index.corpus as corpus_mod
from pile_index import ConfigError, Corpus
from pile_index.errors import LimitError
from pile_index.format import write_indexed
from pile_index.ngram import build_index
from pile_index.order import open_order, order_config
from pile_index.settings import default
from pile_index.sql import DOCUMENT_SCHEMA

DOCS = [[5, 6, 7, 5, 6], [5, 6], [7, 7, 5, 6, 5, 6, 7], [6, 5, 6, 5]]
CFG = order_config(seed=3, seq_length=3, num_samples=6, batch_size=2)


@pytest.fixture()
def prefix(tmp_path):
    p = tmp_path / "c"
    write_indexed(p, [np.asarray(d, np.uint16) for d in DOCS], np.uint16)
    n = len(DOCS)
    pq.write_table(pa.table({
        "doc_id": np.arange(n, dtype=np.int64), "n_tokens": np.asarray([len(d) for d in DOCS], np.int64),
        "source_file": ["s"] * n, "source_line": np.arange(n, dtype=np.int64), "pile_set_name": ["A", "B", "A", "B"],
        "meta": ["{}"] * n, "n_bytes": [1] * n, "token_hash": np.arange(n, dtype=np.uint64),
    }, schema=DOCUMENT_SCHEMA), f"{p}.documents.parquet")
    order = open_order(str(p), CFG, build=True)
    build_index(order.store)
    return str(p)


def test_members_open_on_first_use_and_agree_with_the_parts(prefix):
    with Corpus.open(prefix, order=CFG) as c:
        assert repr(c) == f"Corpus({prefix!r}, opened=[])"
        assert c.ngram.count(np.asarray([5, 6])) == 6
        assert c.ngram.store is c.store and c.order.store is c.store  # the store is opened once
        ref = open_order(prefix, CFG)
        assert np.array_equal(c.order.batch(1), ref.batch(1))
        assert c.documents.row(2)["pile_set_name"] == "A"
        assert c.tokenizer is None  # no PREFIX.tokenizer.json beside this store
        assert c.order is c.order and c.ngram is c.ngram


def test_an_order_spec_may_be_a_function_of_the_store(prefix):
    seen = []
    with Corpus.open(prefix, order=lambda store: seen.append(len(store)) or CFG) as c:
        assert seen == []  # not called before the order is asked for
        assert c.order.num_samples == open_order(prefix, CFG).num_samples and seen == [len(DOCS)]


def test_without_order_options_only_the_order_is_refused(prefix):
    with Corpus.open(prefix) as c:
        assert c.ngram.count(np.asarray([7])) == 4 and not c.has_order
        with pytest.raises(ConfigError, match=r"opened without a training order \(order=None\)"):
            c.order


def test_concurrent_first_use_opens_each_member_once(prefix, monkeypatch):
    calls = []
    real = corpus_mod.NgramIndex
    gate = threading.Barrier(8)

    def counted(store):
        calls.append(1)
        return real(store)

    monkeypatch.setattr(corpus_mod, "NgramIndex", counted)
    c = Corpus.open(prefix, order=CFG)
    got = []

    def use():
        gate.wait()
        got.append(c.ngram)

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len({id(x) for x in got}) == 1
    c.close()


def test_close_closes_the_documents_table_and_refuses_later_opens(prefix):
    c = Corpus.open(prefix, order=CFG)
    docs = c.documents
    c.close()
    with pytest.raises(Exception, match="closed"):
        docs.row(0)  # its DuckDB connection is closed
    with pytest.raises(ConfigError, match="is closed; open it again"):
        c.order
    c.close()  # idempotent


def test_cli_and_api_print_the_same_typed_answers(prefix, capsys):
    """One dataclass per answer: the CLI's --json is its fields (asdict, less the null omit_none fields), the
    API's body is the same fields as JSON; both equal the Corpus call."""
    from fastapi.testclient import TestClient

    from api.main import create_app
    from api.settings import Settings
    from cli.main import main
    from pile_index.ngram.results import NgramSteps
    from pile_index.order.results import DocSteps, Sample

    opts = ["--seed", "3", "--seq-length", "3", "--num-samples", "6", "--batch-size", "2"]
    with Corpus.open(prefix, order=CFG) as c:
        sample, doc_steps, steps = c.sample(1, 1), c.doc_steps(2), c.steps(tokens=[5, 6])
    assert isinstance(sample, Sample) and isinstance(doc_steps, DocSteps) and isinstance(steps, NgramSteps)
    assert sample.text is None and all(s.metadata is not None for s in sample.spans)
    cli = {}
    for name, argv in {"sample": ["sample", prefix, *opts, "--step", "1", "--slot", "1"],
                       "doc-steps": ["doc-steps", prefix, *opts, "2"],
                       "steps": ["ngram", "steps", prefix, *opts, "--tokens", "5,6"]}.items():
        assert main([*argv, "--json"]) == 0
        cli[name] = json.loads(capsys.readouterr().out)
    want_sample = asdict(sample)
    del want_sample["text"]  # omit_none: no tokenizer, so the CLI leaves `text` out (as before typed answers)
    assert cli == {"sample": want_sample, "doc-steps": asdict(doc_steps), "steps": asdict(steps)}
    settings = Settings(prefixes=[prefix], seed=3, seq_length=3, num_samples=6, batch_size=2)
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/samples/1/1").json() == asdict(sample)
        assert client.get("/v1/documents/2/steps").json() == asdict(doc_steps)
        assert client.get("/v1/ngrams/steps", params={"tokens": "5,6"}).json() == asdict(steps)


def test_limits_are_the_corpus_own_and_checked_before_the_work(prefix):
    with Corpus.open(prefix, order=CFG, limits={"max_rows_per_request": 3, "max_locate_page": 1}) as c:
        with pytest.raises(LimitError, match="max_rows_per_request=3") as e:
            c.batch(0, 1)  # 4 rows
        assert e.value.setting == "max_rows_per_request"
        assert c.batch(1)[1].rows == 2
        with pytest.raises(LimitError, match="occurrences=2 exceeds max_locate_page=1"):
            c.trace(tokens=[5, 6], min_tokens=1, occurrences=2)
        assert c.limit("max_occurrences") == default("max_occurrences")
    with Corpus.open(prefix, order=CFG, limits={"max_rows_per_request": None}) as c:
        assert c.batch(0, 2)[1].rows == 6  # None: no bound (the CLI's batch writes any number of rows)
    with pytest.raises(ConfigError, match="no setting named max_rowz"):
        Corpus.open(prefix, limits={"max_rowz": 1})


def test_cli_trace_occurrences_over_the_limit_is_one_line(prefix, capsys):
    """Before typed answers the CLI raised a NameError (a traceback) instead of the limit's error."""
    from cli.main import main

    assert main(["ngram", "trace", prefix, "--tokens", "5,6", "--occurrences", "5000"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "max_locate_page=1,000" in err
