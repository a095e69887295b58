"""The training-data explorer over a small demo corpus (store, order, n-gram index, documents table, a tiny
dataset), built once per session the way `pile-index demo` builds its own.

Two layers, one set of checks: every page's ``data-field`` figures are compared with the ``/v1`` JSON answers,
first on the server's HTML (TestClient, no browser needed), then in headless Chromium (Playwright, the
Debian ``chromium`` binary) against a real uvicorn on loopback, where each page must also log no console
error, request nothing from any other host, keep its links pointing where they say, work by keyboard, fit a
narrow window, and leave a screenshot plus its measured load time in the artifacts folder
(``$PILE_INDEX_ARTIFACTS``, default ``tests/artifacts/explorer``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import socket
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from fastapi.testclient import TestClient

from api.explorer.figures import COMPOSITION_SQL, HEAD_TOKENS, SOURCES_SQL
from api.explorer.render import fmt_num
from api.main import create_app
from api.settings import Settings
from cli.main import main as cli_main

NGRAM = " def __init__(self"
CHROMIUM = os.environ.get("PILE_INDEX_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("PILE_INDEX_ARTIFACTS") or Path(__file__).resolve().parents[1] / "artifacts" / "explorer")
L, B, REPLAY_STEPS = 64, 8, 4


def _cli(argv: list[str]) -> dict | None:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cli_main(argv)
    assert rc == 0, (argv, buf.getvalue())
    out = buf.getvalue()
    return json.loads(out) if "--json" in argv else None


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> dict:
    """A demo-like corpus: two sources, ~1.5 epochs, trained and never-trained rows, a 4-step replayed model
    and a cohort dataset over it."""
    from ingest.demo_corpus import build_demo_corpus, train_demo_tokenizer

    d = tmp_path_factory.mktemp("explorer")
    files = build_demo_corpus(d / "raw", max_docs=160, max_bytes=160_000)
    tok = d / "tokenizer.json"
    train_demo_tokenizer(files, tok, vocab_size=1024)
    prefix = str(d / "corpus")
    _cli(["ingest", *map(str, files), "--tokenizer", str(tok), "--out", prefix, "--append-eod", "--no-progress"])
    tokens = _cli(["info", prefix, "--json"])["tokens"]
    one_epoch = (tokens - 1) // L
    num_samples = int(one_epoch * 1.5)
    train_steps = min(int(one_epoch * 1.3) // B, num_samples // B - 2)
    order = ["--seed", "1234", "--seq-length", str(L), "--num-samples", str(num_samples), "--batch-size", str(B)]
    _cli(["order", "build", prefix, *order, "--train-steps", str(train_steps), "--json"])
    _cli(["ngram", "build", prefix, "--no-progress"])
    ckpts = d / "checkpoints"
    _cli(["replay", prefix, *order, "--train-steps", str(REPLAY_STEPS), "--steps", str(REPLAY_STEPS),
          "--out", str(ckpts), "--json"])
    ds = d / "dataset"
    _cli(["dataset", "build", prefix, *order, "--train-steps", str(REPLAY_STEPS), "--model", str(ckpts),
          "--revisions", f"pythia:{REPLAY_STEPS}", "--select", "cohort", "--cohort-steps", "2",
          "--batches-per-cohort", "2", "--rows-per-batch", "2", "--control-rows", "8", "--offline",
          "--out", str(ds), "--json"])
    settings = Settings(prefixes=[prefix], seed=1234, seq_length=L, num_samples=num_samples, batch_size=B,
                        train_steps=train_steps, datasets=[str(ds)], tokenizer=f"{prefix}.tokenizer.json")
    return {"settings": settings, "train_steps": train_steps, "dataset": ds.name, "dataset_dir": ds}


@pytest.fixture(scope="session")
def client(world):
    with TestClient(create_app(world["settings"])) as c:
        yield c


# ----------------------------------------------------------------------------------------------- reading pages


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _Fields(HTMLParser):
    """Every element with ``data-field``: its field, JSON value, shown text and enclosing ``data-row``."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[dict] = []
        self.fields: list[dict] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        rows = [e["row"] for e in self.stack if e["row"] is not None]
        el = {"tag": tag, "row": a.get("data-row"), "text": [], "field": None}
        if "data-field" in a:
            el["field"] = {"field": a["data-field"], "value": json.loads(a["data-value"]) if "data-value" in a else None,
                           "raw": a.get("data-value"), "row": rows[-1] if rows else None, "attrs": a}
            self.fields.append(el["field"])
        if tag not in VOID:
            self.stack.append(el)

    def handle_endtag(self, tag):
        while self.stack:
            el = self.stack.pop()
            if el["field"] is not None:
                el["field"]["text"] = "".join(el["text"]).strip()
            if el["tag"] == tag:
                break

    def handle_data(self, data):
        for el in self.stack:
            el["text"].append(data)


def fields_of_html(html: str) -> list[dict]:
    p = _Fields()
    p.feed(html)
    p.close()
    return p.fields


FIELDS_JS = """() => Array.from(document.querySelectorAll('[data-field]')).map(el => {
  const row = el.closest('[data-row]');
  return {field: el.dataset.field, value: el.dataset.value === undefined ? null : JSON.parse(el.dataset.value),
          row: row ? row.dataset.row : null, text: el.textContent.trim(), raw: el.dataset.value, attrs: {}};
})"""


def one(fields: list[dict], name: str, row: str | None = None):
    got = [f for f in fields if f["field"] == name and (row is None or f["row"] == row)]
    assert len(got) == 1, (name, row, got)
    return got[0]["value"]


def column(fields: list[dict], name: str) -> list:
    return [f["value"] for f in fields if f["field"] == name]


def by_row(fields: list[dict], name: str) -> dict:
    """Row key -> value of ``name`` in the page's tables (figures outside a ``data-row`` left out)."""
    return {f["row"]: f["value"] for f in fields if f["field"] == name and f["row"] is not None}


def shown_as_formatted(fields: list[dict]) -> None:
    """What the page shows is the value itself, formatted (ints with separators, floats rounded)."""
    for f in fields:
        if f["raw"] is not None and re.fullmatch(r"-?[0-9]+", f["raw"]) and f["text"] and f["field"] != "seed":
            assert f["text"] == fmt_num(int(f["raw"])), f


def records(res: dict) -> list[dict]:
    names = [c["name"] for c in res["columns"]]
    return [dict(zip(names, r)) for r in res["rows"]]


def api(c, url: str, **params) -> dict:
    r = c.get(url, params=params)
    assert r.status_code == 200, (url, r.text)
    return r.json()


# ----------------------------------------------------------------------------------------------- the checks
# Each takes a way to GET the API (TestClient or the browser's request context) and the page's fields.


def check_overview(get, fields):
    corpus, order = get("/v1/corpus"), get("/v1/order")
    top = [f for f in fields if f["row"] is None]
    assert one(top, "documents") == corpus["documents"] and one(top, "tokens") == corpus["tokens"]
    assert one(top, "items") == corpus["items"]
    for k in ("seed", "seq_length", "batch_size", "epochs", "train_steps", "first_repeat", "documents_seen"):
        assert one(top, k) == order[k], k
    src = records(get("/v1/sql", sql=SOURCES_SQL))
    assert by_row(fields, "tokens") == {r["pile_set_name"]: r["tokens"] for r in src}
    assert by_row(fields, "documents") == {r["pile_set_name"]: r["documents"] for r in src}
    total = sum(r["tokens"] for r in src)
    assert by_row(fields, "share") == pytest.approx({r["pile_set_name"]: r["tokens"] / total for r in src})
    comp = records(get("/v1/sql", sql=COMPOSITION_SQL, steps=f"0:{order['train_steps']}"))
    chart = one(fields, "composition")
    assert sum(len(b["tokens"]) for b in chart) == len(comp)
    assert {(b["step_start"], s): n for b in chart for s, n in b["tokens"].items()} == \
        {(r["step_start"], r["pile_set_name"]): r["tokens"] for r in comp}
    shown_as_formatted(fields)


def dominant(spans: list[dict]) -> str | None:
    agg: dict = {}
    for s in spans:
        name = (s.get("metadata") or {}).get("pile_set_name")
        agg[name] = agg.get(name, 0) + s["doc_end"] - s["doc_start"]
    return max(agg.items(), key=lambda kv: (kv[1], kv[0] or ""))[0] if agg else None


def check_step(get, fields, step, tokenizer):
    order = get("/v1/order")
    slots = column(fields, "slot")
    assert slots == list(range(order["batch_size"]))
    spans, doms, trained, heads = (by_row(fields, k) for k in ("spans", "dominant_source", "trained", "head_text"))
    for slot in slots:
        rec = get(f"/v1/samples/{step}/{slot}")
        assert spans[str(slot)] == len(rec["spans"])
        assert doms[str(slot)] == dominant(rec["spans"])
        assert trained[str(slot)] == rec.get("trained", rec["sample_index"] < order["trained_samples"])
        assert heads[str(slot)] == tokenizer.decode(rec["tokens"][:HEAD_TOKENS], skip_special_tokens=False)
    comp = records(get("/v1/sql", sql=COMPOSITION_SQL, steps=f"{step}:{step + 1}", bucket_steps=1))
    assert by_row(fields, "tokens") == {r["pile_set_name"]: r["tokens"] for r in comp}
    assert by_row(fields, "rows") == {r["pile_set_name"]: r["rows"] for r in comp}
    assert one(fields, "tokens_by_source") == {r["pile_set_name"]: r["tokens"] for r in comp}
    shown_as_formatted(fields)


def check_sample(get, fields, step, slot, dataset):
    rec = get(f"/v1/samples/{step}/{slot}")
    top = [f for f in fields if f["row"] is None]
    assert one(top, "step") == step and one(top, "slot") == slot and one(top, "sample_index") == rec["sample_index"]
    assert one(top, "text") == rec["text"]
    got = list(zip(column(fields, "doc_id"), column(fields, "doc_start"), column(fields, "doc_end"),
                   column(fields, "sample_start")))
    assert got == [(s["doc_id"], s["doc_start"], s["doc_end"], s["sample_start"]) for s in rec["spans"]]
    ds = get(f"/v1/datasets/{dataset}/samples/{rec['sample_index']}") if dataset else None
    if ds is not None:
        assert by_row(fields, "loss") == {c["revision"]: c["loss"] for c in ds["checkpoints"]}
        assert by_row(fields, "memorized") == {c["revision"]: c["memorized"] for c in ds["checkpoints"]}
        assert one(fields, "treatment_step") == ds["treatment_step"]
        assert one(fields, "loss_by_checkpoint") == {"loss": [c["loss"] for c in ds["checkpoints"]]}
    shown_as_formatted(fields)


def check_document(get, fields, doc_id, offset, page_tokens):
    doc = get(f"/v1/documents/{doc_id}", offset=offset, limit=page_tokens)
    steps = get(f"/v1/documents/{doc_id}/steps")
    top = [f for f in fields if f["row"] is None]
    assert one(top, "doc_id") == doc_id and one(top, "n_tokens") == doc["n_tokens"]
    assert one(top, "text") == doc["text"] and one(top, "offset") == doc["offset"]
    for k in ("pile_set_name", "source_file", "source_line", "n_tokens", "n_bytes", "token_hash", "meta"):
        assert one(top, f"metadata.{k}") == doc["metadata"][k], k
    assert one(top, "first_step") == steps["first_step"] and one(top, "last_step") == steps["last_step"]
    assert one(top, "occurrences") == len(steps["occurrences"])
    assert one(top, "steps") == sorted({o["step"] for o in steps["occurrences"]})
    listed = list(zip(column(fields, "step"), column(fields, "slot"), column(fields, "doc_start"),
                      column(fields, "doc_end")))
    assert listed == [(o["step"], o["slot"], o["doc_start"], o["doc_end"]) for o in steps["occurrences"][:len(listed)]]
    shown_as_formatted(fields)


def check_ngram(get, fields, text, offset, page):
    st = get("/v1/ngrams/steps", text=text)
    loc = get("/v1/ngrams/locate", text=text, offset=offset, limit=page)
    top = [f for f in fields if f["row"] is None]
    assert one(top, "tokens") == st["tokens"] and one(top, "count") == st["count"] == loc["count"]
    for k in ("count_in_rows", "count_split_by_row_boundary", "count_in_untrained_rows", "documents_seen",
              "first_step", "last_step", "histogram", "by_source", "bucket_steps"):
        assert one(top, k) == st[k], k
    occ = list(zip(column(fields, "doc_id"), column(fields, "offset")))
    assert occ == [(o["doc_id"], o["offset"]) for o in loc["occurrences"]]
    pairs = records(get("/v1/sql", sql='SELECT doc_id, "offset", step, slot FROM ngram_occurrences '
                                       'WHERE in_row OR split ORDER BY step, slot', ngram_text=text))
    want: dict = {}
    for p in pairs:
        want.setdefault(f"{p['doc_id']}:{p['offset']}", []).append([p["step"], p["slot"]])
    rows: dict = {}
    for f in fields:
        if f["field"] == "row":
            rows.setdefault(f["row"], []).append(f["value"])
    assert rows or not occ
    assert rows == {k: v for k, v in want.items() if k in rows}
    assert set(rows) == {k for k in (f"{d}:{o}" for d, o in occ) if k in want}
    shown_as_formatted(fields)


def trace_passage(get) -> str:
    """A passage a model might write: two pieces of training documents around words the corpus lacks."""
    a = get("/v1/documents/3")["text"]
    b = get("/v1/documents/7")["text"]
    return a[:120] + " zqxj vrrk " + b[40:160]


def check_trace(get, fields, passage):
    t = get("/v1/ngrams/trace", text=passage)
    top = [f for f in fields if f["row"] is None]
    for k in ("tokens", "n_tokens", "maximal_spans", "dropped_short", "min_tokens"):
        assert one(top, k) == t[k], k
    assert t["spans"], "the passage should hold spans of the training data"
    for k in ("start", "end", "length", "count", "first_step", "last_step"):
        assert by_row(fields, k) == {f"span-{i}": s[k] for i, s in enumerate(t["spans"])}, k
    assert all(s["steps_computed"] for s in t["spans"])
    shown_as_formatted(fields)


def check_dataset(get, fields, name):
    s = get(f"/v1/datasets/{name}/summary")
    eff = {("all" if e["cohort"] is None else str(e["cohort"])): e for e in s["treatment_effects"]}
    for k in ("n_rows", "mean_delta_treated", "mean_delta_control", "mean_effect", "stderr_effect"):
        got = {r: v for r, v in by_row(fields, k).items() if r in eff}
        assert got == {r: e[k] for r, e in eff.items()}, k
    assert by_row(fields, "n") == {r["group"]: r["n"] for r in s["rows"]}
    means = {}
    for c in s["checkpoints"]:
        for m in get(f"/v1/datasets/{name}/checkpoints/{c['revision']}")["means"]:
            means[f"{c['revision']}:{m['group']}:{m['cohort']}"] = m
    for k in ("mean_loss", "memorized_share", "n_rows"):
        got = {r: v for r, v in by_row(fields, k).items() if r in means}
        assert got == {r: m[k] for r, m in means.items()}, k
    revs = [c["revision"] for c in s["checkpoints"]]
    for k in ("mean_loss", "memorized_share"):
        chart = one(fields, f"{k}_by_checkpoint")
        assert chart["control"] == [means[f"{r}:control:-1"][k] for r in revs]
        cohorts = sorted({m["cohort"] for m in means.values() if m["group"] == "treated"})
        for c in cohorts:
            assert chart[f"treated cohort {c}"] == [means.get(f"{r}:treated:{c}", {}).get(k) for r in revs]
    shown_as_formatted(fields)


def check_sql(get, fields, query):
    res = get("/v1/sql", sql=query)
    assert one(fields, "rows") == res["rows"] and one(fields, "row_count") == res["row_count"]


# ----------------------------------------------------------------------------------------------- server-side HTML


def page(client, url: str, status: int = 200) -> list[dict]:
    r = client.get(url, headers={"accept": "text/html"})
    assert r.status_code == status, (url, r.text[:2000])
    assert r.headers["content-type"].startswith("text/html")
    return fields_of_html(r.text)


@pytest.fixture(scope="session")
def tokenizer(world):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(world["settings"].tokenizer)


@pytest.fixture(scope="session")
def picks(client, world):
    """A sample of the dataset with several documents, one of its documents, an n-gram page size."""
    import pyarrow.parquet as pq

    rows = pq.read_table(world["dataset_dir"] / "rows.parquet").to_pylist()
    treated = [(r["step"], r["slot"]) for r in rows if r["group"] == "treated"]
    assert treated
    several = [(s, k) for s, k in treated if len(client.get(f"/v1/samples/{s}/{k}").json()["spans"]) > 1]
    step, slot = (several or treated)[0]
    rec = client.get(f"/v1/samples/{step}/{slot}").json()
    seen = [s["doc_id"] for s in rec["spans"]
            if client.get(f"/v1/documents/{s['doc_id']}/steps").json()["occurrences"]]
    return {"step": step, "slot": slot, "doc_id": seen[0], "spans": rec["spans"]}


def get_json(client):
    return lambda url, **params: api(client, url, **params)


def test_overview(client):
    check_overview(get_json(client), page(client, "/"))


def test_step(client, tokenizer):
    check_step(get_json(client), page(client, "/steps/1"), 1, tokenizer)


def test_untrained_step_says_so(client, world):
    step = world["train_steps"]  # the first never-trained step
    fields = page(client, f"/steps/{step}")
    assert one([f for f in fields if f["row"] is None], "trained") is False
    assert set(by_row(fields, "trained").values()) == {False}


def test_sample(client, world, picks):
    fields = page(client, f"/samples/{picks['step']}/{picks['slot']}")
    check_sample(get_json(client), fields, picks["step"], picks["slot"], world["dataset"])
    assert one(fields, "group") == "treated"


def test_document(client, picks):
    check_document(get_json(client), page(client, f"/documents/{picks['doc_id']}"), picks["doc_id"], 0, 2048)


def test_long_document_is_paged(client):
    sizes = [(client.get(f"/v1/documents/{i}", params={"limit": 0}).json()["n_tokens"], i) for i in range(40)]
    n, doc_id = max(sizes)
    assert n > 2048, "the fixture needs a document longer than one page"
    fields = page(client, f"/documents/{doc_id}?offset=2048")
    check_document(get_json(client), fields, doc_id, 2048, 2048)


def test_ngram(client):
    check_ngram(get_json(client), page(client, f"/ngrams?text={quote(NGRAM)}"), NGRAM, 0, 20)
    count = client.get("/v1/ngrams/count", params={"text": " self"}).json()["count"]
    assert count > 40, "the fixture needs a frequent n-gram to page through"
    check_ngram(get_json(client), page(client, f"/ngrams?text={quote(' self')}&offset=20"), " self", 20, 20)


def test_trace(client):
    passage = trace_passage(get_json(client))
    check_trace(get_json(client), page(client, f"/ngrams?trace={quote(passage)}"), passage)
    r = client.get("/ngrams", params={"trace": passage, "min_tokens": 0}, headers={"accept": "text/html"})
    assert r.status_code == 422 and "text/html" in r.headers["content-type"]


def test_ngram_by_tokens(client):
    ids = client.get("/v1/ngrams/count", params={"text": NGRAM}).json()["tokens"]
    fields = page(client, f"/ngrams?tokens={','.join(map(str, ids))}")
    assert one(fields, "count") == client.get("/v1/ngrams/count", params={"text": NGRAM}).json()["count"]


def test_dataset(client, world):
    check_dataset(get_json(client), page(client, f"/datasets/{world['dataset']}"), world["dataset"])
    assert column(page(client, "/datasets"), "name") == [world["dataset"]]


def test_sql_console(client):
    q = "SELECT pile_set_name, count(*) AS n FROM documents GROUP BY ALL ORDER BY n DESC"
    check_sql(get_json(client), page(client, f"/sql?sql={quote(q)}"), q)
    r = client.get("/sql")  # the form alone, with an example query
    assert r.status_code == 200 and "SELECT coalesce(pile_set_name" in r.text


@pytest.mark.parametrize("url,api_url,status,kind,setting", [
    ("/sql?sql=DROP+TABLE+documents", "/v1/sql?sql=DROP+TABLE+documents", 400, "bad_query", None),
    ("/sql?sql=SELECT+1&max_rows=99999999", "/v1/sql?sql=SELECT+1&max_rows=99999999", 413, "limit_exceeded",
     "sql_max_rows"),
    ("/sql?sql=SELECT+*+FROM+nowhere", "/v1/sql?sql=SELECT+*+FROM+nowhere", 400, "bad_query", None),
])
def test_sql_errors_in_the_one_error_shape(client, url, api_url, status, kind, setting):
    fields = page(client, url, status)
    want = client.get(api_url).json()["error"]
    assert (want["type"], want["setting"]) == (kind, setting)
    assert one(fields, "type") == kind and one(fields, "message") == want["message"]
    if setting:
        assert one(fields, "setting") == setting


@pytest.mark.parametrize("url,api_url,status,same_message", [
    ("/steps/999999", "/v1/samples/999999/0", 400, True),
    ("/samples/0/999", "/v1/samples/0/999", 400, True),
    ("/documents/999999999", "/v1/documents/999999999", 404, True),
    ("/steps/-1", "/v1/samples/-1/0", 422, True),
    ("/datasets/nope", "/v1/datasets/nope/summary", 404, True),
    ("/documents/0?occ=-1", "/v1/documents/0?offset=-1", 422, False),
    ("/nowhere", "/v1/nowhere", 404, False),
])
def test_every_error_is_a_readable_page(client, url, api_url, status, same_message):
    fields = page(client, url, status)
    body = client.get(api_url).json()["error"]  # the API keeps the JSON error shape
    assert one(fields, "status") == status and one(fields, "type") == body["type"]
    assert one(fields, "message") == body["message"] if same_message else one(fields, "message")


def test_api_clients_keep_json_errors(client):
    r = client.get("/nowhere", headers={"accept": "application/json"})
    assert r.status_code == 404 and set(r.json()) == {"error"}
    r = client.get("/v1/documents/999999999", headers={"accept": "text/html"})
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"


def test_go_redirects(client):
    assert client.get("/go?step=2", follow_redirects=False).headers["location"] == "/steps/2"
    assert client.get("/go?step=2&slot=3", follow_redirects=False).headers["location"] == "/samples/2/3"
    assert client.get("/go?step=2&slot=", follow_redirects=False).headers["location"] == "/steps/2"  # empty box
    assert client.get("/go?doc_id=7", follow_redirects=False).headers["location"] == "/documents/7"
    fields = page(client, "/go?step=x", 400)
    assert "step='x'" in one(fields, "message")
    page(client, "/go", 400)


def test_docs_page_needs_nothing_from_elsewhere(client):
    r = client.get("/docs")
    assert r.status_code == 200
    html = r.text
    for needle in ("cdn.", "unpkg", "jsdelivr", "swagger-ui", 'src="http', 'href="http'):
        assert needle not in html, needle
    paths = client.get("/openapi.json").json()["paths"]
    shown = column(fields_of_html(html), "path")
    assert set(shown) == set(paths) and "/v1/order" in shown
    assert client.get("/redoc").status_code == 404


def test_package_ships_no_remote_reference():
    root = Path(__file__).resolve().parents[2] / "api" / "explorer"
    for f in [*root.glob("templates/*.html"), *root.glob("static/*"), *root.glob("*.py")]:
        text = f.read_text()
        for scheme in ("http://", "https://", "//cdn"):
            rest = text.replace('xmlns=\\"http://www.w3.org/2000/svg\\"', "")
            assert scheme not in rest, (f.name, scheme)


def test_order_route(client, world):
    order = client.get("/v1/order").json()
    s = world["settings"]
    assert (order["seed"], order["seq_length"], order["batch_size"], order["train_steps"]) == \
        (s.seed, s.seq_length, s.batch_size, s.train_steps)
    assert order["epochs"] == 2 and order["trained_samples"] == s.train_steps * s.batch_size
    fr = order["first_repeat"]
    assert fr is not None and fr["sample_index"] == fr["step"] * s.batch_size + fr["slot"]


# ----------------------------------------------------------------------------------------------- in a real browser


def _playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set PILE_INDEX_CHROMIUM)")
    return sync_playwright


@pytest.fixture(scope="session")
def server(world):
    """uvicorn on a loopback socket bound (and listening) before the server starts, so no wait is needed:
    the first request queues in the backlog until the lifespan has opened the store."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    srv = uvicorn.Server(uvicorn.Config(create_app(world["settings"]), log_level="warning"))
    th = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    srv.should_exit = True
    th.join(timeout=30)
    sock.close()


@pytest.fixture(scope="session")
def browser():
    sync_playwright = _playwright()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM)
        yield b
        b.close()


@pytest.fixture(scope="session")
def timings():
    out: dict[str, dict[str, float]] = {}
    yield out
    if out:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "load_times_ms.json").write_text(json.dumps(out, indent=2) + "\n")
        print("\nexplorer page loads, first / warm visit (ms): "
              + ", ".join(f"{k} {v['first']:.0f} / {v['warm']:.0f}" for k, v in out.items()))


class Visit:
    """One page in a fresh browser context: every request and console message recorded."""

    def __init__(self, browser, base: str, width: int = 1280):
        self.base = base
        self.ctx = browser.new_context(viewport={"width": width, "height": 900})
        self.page = self.ctx.new_page()
        self.requests: list[str] = []
        self.console: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("console", lambda m: self.console.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.console.append(f"page error: {e}"))

    def open(self, url: str, status: int = 200) -> list[dict]:
        resp = self.page.goto(self.base + url, wait_until="load")
        assert resp is not None and resp.status == status, (url, resp and resp.status)
        return self.page.evaluate(FIELDS_JS)

    def load_ms(self) -> float:
        return self.page.evaluate("() => { const n = performance.getEntriesByType('navigation')[0];"
                                  " return n.loadEventEnd - n.startTime; }")

    def check_clean(self, error_status: int | None = None) -> None:
        host = urlsplit(self.base).netloc
        foreign = [u for u in self.requests if not u.startswith("data:") and urlsplit(u).netloc != host]
        assert not foreign, foreign
        allowed = f"the server responded with a status of {error_status}" if error_status else None
        errors = [m for m in self.console if not (allowed and allowed in m)]
        assert not errors, errors

    def check_links(self) -> None:
        """Every link on the page leads to a page that answers 200 (fragments must name an element there)."""
        hrefs = self.page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
        host = urlsplit(self.base).netloc
        seen = set()
        for h in hrefs:
            parts = urlsplit(h)
            if parts.netloc != host:
                continue
            target = h.split("#")[0]
            if target in seen or len(seen) >= 60:
                continue
            seen.add(target)
            r = self.ctx.request.get(target)
            assert r.status == 200, (h, r.status)

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def fits(self) -> None:
        """Nothing wider than the window: wide tables scroll inside their own box."""
        sw, w = self.page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        assert sw <= w, (sw, w)

    def close(self) -> None:
        self.ctx.close()


def browser_pages(world, picks):
    step, slot, doc = picks["step"], picks["slot"], picks["doc_id"]
    return {
        "overview": ("/", lambda g, f: check_overview(g, f)),
        "step": (f"/steps/{step}", None),
        "sample": (f"/samples/{step}/{slot}", lambda g, f: check_sample(g, f, step, slot, world["dataset"])),
        "document": (f"/documents/{doc}", lambda g, f: check_document(g, f, doc, 0, 2048)),
        "ngrams": (f"/ngrams?text={quote(NGRAM)}", lambda g, f: check_ngram(g, f, NGRAM, 0, 20)),
        "trace": (None, None),  # the passage comes from the API: see test_page_in_browser
        "dataset": (f"/datasets/{world['dataset']}", lambda g, f: check_dataset(g, f, world["dataset"])),
        "sql": (f"/sql?sql={quote(SOURCES_SQL)}", lambda g, f: check_sql(g, f, SOURCES_SQL)),
        "docs": ("/docs", None),
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", ["overview", "step", "sample", "document", "ngrams", "trace", "dataset", "sql",
                                  "docs"])
def test_page_in_browser(browser, server, world, picks, tokenizer, timings, name):
    url, check = browser_pages(world, picks)[name]
    if name == "trace":
        with TestClient(create_app(world["settings"])) as c:
            passage = trace_passage(get_json(c))
        url, check = f"/ngrams?trace={quote(passage)}", (lambda g, f: check_trace(g, f, passage))
    v = Visit(browser, server)
    try:
        v.open(url)  # the first visit of a page may open what it needs (order statistics, n-gram index)
        first = v.load_ms()
        fields = v.open(url)
        timings[name] = {"first": first, "warm": v.load_ms()}  # reported, not asserted
        v.check_clean()

        def get(u, **params):
            r = v.ctx.request.get(server + u, params=params or None)
            assert r.status == 200, (u, r.text())
            return r.json()

        if name == "step":
            check_step(get, fields, picks["step"], tokenizer)
        elif check is not None:
            check(get, fields)
        v.check_links()
        v.shot(name)
    finally:
        v.close()
    narrow = Visit(browser, server, width=390)
    try:
        narrow.open(url)
        narrow.check_clean()
        narrow.fits()
        narrow.shot(f"{name}-narrow")
    finally:
        narrow.close()


@pytest.mark.slow
def test_error_page_in_browser(browser, server):
    v = Visit(browser, server)
    try:
        fields = v.open("/steps/999999", status=400)
        assert one(fields, "type") == "bad_query" and "999,999" in one(fields, "message")
        v.check_clean(error_status=400)
        assert v.page.get_by_role("link", name="Back to the overview").is_visible()
        v.shot("error")
    finally:
        v.close()


@pytest.mark.slow
def test_click_through_by_keyboard_and_mouse(browser, server, picks):
    """A newcomer's path: overview -> step -> sample -> document -> a row that saw it; search boxes; keys."""
    v = Visit(browser, server)
    p = v.page
    try:
        v.open("/")
        p.get_by_role("link", name="Step 0 →").click()
        p.wait_for_url(server + "/steps/0")
        p.keyboard.press("ArrowRight")  # rel=next
        p.wait_for_url(server + "/steps/1")
        p.keyboard.press("ArrowLeft")
        p.wait_for_url(server + "/steps/0")
        p.locator("tr[data-row='3'] a[data-field='slot']").click()
        p.wait_for_url(server + "/samples/0/3")
        assert p.locator("[data-field='slot']").first.get_attribute("data-value") == "3"

        v.open(f"/samples/{picks['step']}/{picks['slot']}")
        p.locator("main").focus()
        for _ in range(40):  # Tab to the first document span: its tooltip shows doc_id and the token range
            p.keyboard.press("Tab")
            if p.evaluate("() => document.activeElement.classList.contains('span')"):
                break
        span = picks["spans"][0]
        tip = p.evaluate("() => getComputedStyle(document.activeElement, '::after').content")
        assert tip == f'"doc {span["doc_id"]:,} · tokens {span["doc_start"]:,}..{span["doc_end"]:,} · ' \
                      f'{span["metadata"]["pile_set_name"]}"', tip
        p.keyboard.press("Enter")
        p.wait_for_url(f"{server}/documents/{span['doc_id']}?offset=*")
        assert p.locator("h1 [data-field='doc_id']").get_attribute("data-value") == str(span["doc_id"])

        v.open(f"/documents/{picks['doc_id']}")
        link = p.locator("#h-occ ~ div a").first
        step, slot = (link.locator("[data-field='step']").get_attribute("data-value"),
                      link.locator("[data-field='slot']").get_attribute("data-value"))
        link.click()
        p.wait_for_url(f"{server}/samples/{step}/{slot}#doc-{picks['doc_id']}")
        assert p.locator(f"#doc-{picks['doc_id']}").count() == 1  # the anchor names the document's span

        v.open("/")
        p.keyboard.press("/")  # focuses the first search box
        p.keyboard.type("2")
        p.keyboard.press("Enter")
        p.wait_for_url(server + "/steps/2")
        v.open("/")
        p.get_by_label("Document id").fill(str(picks["doc_id"]))
        p.get_by_label("Document id").press("Enter")
        p.wait_for_url(f"{server}/documents/{picks['doc_id']}")
        v.open("/")
        p.get_by_label("n-gram text").fill(NGRAM)
        p.get_by_label("n-gram text").press("Enter")
        p.wait_for_url(f"{server}/ngrams?text=*")
        count = p.locator("[data-field='count']").get_attribute("data-value")
        assert int(count) == v.ctx.request.get(server + "/v1/ngrams/count", params={"text": NGRAM}).json()["count"]
        p.locator(".occurrences a[data-field='row']").first.click()
        p.wait_for_url(f"{server}/samples/**")
        v.open("/")
        p.get_by_role("link", name="dataset", exact=True).click()
        p.wait_for_url(server + "/datasets/dataset")
        v.check_clean()
    finally:
        v.close()


def test_a_bare_store_still_explains_itself(tmp_path):
    """No order options, no tokenizer, no documents table, no n-gram index: the pages that can answer do, the
    others are error pages that say what to start the service with or build."""
    import numpy as np

    from pile_index import write_indexed

    write_indexed(tmp_path / "s", [np.arange(2, 40), np.arange(5, 9)], np.uint16)
    with TestClient(create_app(Settings(prefixes=[str(tmp_path / "s")]))) as c:
        r = c.get("/")
        assert r.status_code == 200 and "No documents table" in r.text
        assert one(fields_of_html(r.text), "documents") == 2
        fields = page(c, "/steps/0", 400)
        assert one(fields, "type") == "bad_config" and one(fields, "message") == c.get("/v1/order").json()["error"]["message"]
        fields = page(c, "/documents/1")
        assert one(fields, "text") is None and one(fields, "doc_id") == 1
        fields = page(c, "/ngrams?tokens=5,6", 404)
        assert one(fields, "message") == c.get("/v1/ngrams/count?tokens=5,6").json()["error"]["message"]
        assert page(c, "/datasets") == []


def test_a_preshuffled_store_shows_rows_without_documents(tmp_path):
    import numpy as np

    from pile_index import write_indexed

    write_indexed(tmp_path / "p", [np.arange(k, k + 9) for k in range(8)], np.uint16)  # 8 rows of L + 1 = 9
    s = Settings(prefixes=[str(tmp_path / "p")], preshuffled=True, seq_length=8, batch_size=2, train_steps=3)
    with TestClient(create_app(s)) as c:
        order = c.get("/v1/order").json()
        assert order["preshuffled"] is True and order["epochs"] is None and order["train_steps"] == 3
        fields = page(c, "/")
        assert one(fields, "train_steps") == 3 and one(fields, "batch_size") == 2
        fields = page(c, "/steps/3")
        assert column(fields, "slot") == [0, 1] and set(by_row(fields, "trained").values()) == {False}
        assert set(by_row(fields, "spans").values()) == {None}
        fields = page(c, "/samples/1/1")
        assert one(fields, "sample_index") == 3 and one(fields, "trained") is True
        page(c, "/steps/4", 400)
