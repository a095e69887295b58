"""What the explorer's pages show, fetched through the ``/v1`` route handlers (called in-process with the
page's request), so every figure on a page is the API's answer by construction; the browser tests still
compare the two. Only presentation is computed here: per-span text, a step's rows, an n-gram's context.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from fastapi import Request, Response

from pile_index import Corpus
from pile_index.datasets import dominant_sources
from pile_index.errors import NotFoundError, PileIndexError
from pile_index.ngram import occurrence_rows, query_tokens
from pile_index.sql import SqlCancel

from ..routers import corpus as corpus_routes
from ..routers import datasets as dataset_routes
from ..routers import documents as document_routes
from ..routers import ngrams as ngram_routes
from ..routers import order as order_routes
from ..routers import samples as sample_routes
from ..routers import sql as sql_routes
from ..settings import Settings
from ..state import AppState

HEAD_TOKENS = 24  # tokens of a row shown as its first words on a step page
CONTEXT_TOKENS = 16  # tokens each side of an n-gram occurrence
SOURCES_SQL = ("SELECT coalesce(pile_set_name, '(unknown)') AS pile_set_name, count(*) AS documents, "
               "sum(n_tokens)::BIGINT AS tokens FROM documents GROUP BY ALL ORDER BY tokens DESC, pile_set_name")
COMPOSITION_SQL = "SELECT * FROM composition ORDER BY step_start, pile_set_name"


def answer(result: Any) -> Any:
    """A route handler's return value as the JSON the client gets (routes answer with a Response, or plain data)."""
    return json.loads(result.body) if isinstance(result, Response) else result


def state_of(request: Request) -> AppState:
    return request.app.state.pi


def corpus_of(request: Request) -> Corpus:
    return request.app.state.pi.corpus


def settings_of(request: Request) -> Settings:
    return request.app.state.pi.settings


def records(res: dict[str, Any]) -> list[dict[str, Any]]:
    """An ``/v1/sql`` answer's rows as dicts by column name."""
    names = [c["name"] for c in res["columns"]]
    return [dict(zip(names, r)) for r in res["rows"]]


def sql(request: Request, query: str, *, steps: str | None = None, ngram_tokens: str | None = None,
        ngram_text: str | None = None, bucket_steps: int | None = None, max_rows: int | None = None) -> dict:
    toks = None if ngram_tokens is None else query_tokens(tokens=ngram_tokens).tolist()
    q = sql_routes.SqlQuery(sql=query, max_rows=max_rows, steps=steps, ngram_tokens=toks, ngram_text=ngram_text,
                            bucket_steps=bucket_steps)
    return json.loads(sql_routes.run_query(corpus_of(request), settings_of(request), q, SqlCancel(),
                                           state_of(request).sql))


# -- corpus and order


def corpus(request: Request) -> dict[str, Any]:
    return answer(corpus_routes.get_corpus(corpus_of(request)))


def sources(request: Request) -> list[dict[str, Any]]:
    """Documents and tokens per ``pile_set_name`` (largest first), with shares; [] without a documents table.
    Cached: the page palette follows this order."""
    state = state_of(request)
    if "explorer_sources" not in state.cache:
        rows: list[dict[str, Any]] = []
        if state.corpus.documents is not None:
            rows = records(sql(request, SOURCES_SQL))
            total = sum(r["tokens"] or 0 for r in rows) or 1
            for r in rows:
                r["share"] = (r["tokens"] or 0) / total
        state.cache["explorer_sources"] = rows
    return state.cache["explorer_sources"]


def order(request: Request) -> dict[str, Any]:
    return answer(order_routes.get_order(corpus_of(request)))


def chart_steps(request: Request, info: dict[str, Any]) -> tuple[int, int]:
    """The step range of the overview's composition chart: the trained steps, cut to
    ``explorer_max_chart_rows`` rows."""
    cap = settings_of(request).explorer_max_chart_rows
    hi = min(info["train_steps"], max(1, cap // info["batch_size"]))
    return 0, hi


def composition(request: Request, lo: int, hi: int, bucket_steps: int | None = None) -> dict[str, Any]:
    """The ``composition`` view over steps [lo, hi), as ``/v1/sql`` answers it, grouped into buckets."""
    res = sql(request, COMPOSITION_SQL, steps=f"{lo}:{hi}", bucket_steps=bucket_steps)
    buckets: dict[int, dict[str, Any]] = {}
    for r in records(res):
        b = buckets.setdefault(r["step_start"], {"step_start": r["step_start"], "step_end": r["step_end"],
                                                 "tokens": {}, "parts": []})
        b["tokens"][r["pile_set_name"]] = r["tokens"]
        b["parts"].append(r)
    for b in buckets.values():
        b["parts"].sort(key=lambda r: (-r["tokens"], r["pile_set_name"]))
    return {"sql": COMPOSITION_SQL, "steps": f"{lo}:{hi}", "buckets": [buckets[k] for k in sorted(buckets)]}


# -- steps and samples


def step_rows(request: Request, step: int) -> list[dict[str, Any]]:
    """Each row of a step: slot, sample_index, its first tokens as text, number of document spans, the
    source holding most of its tokens, and whether it was trained."""
    corpus = corpus_of(request)
    order = corpus.order
    tokens = order.batch(step)  # range-checked: a step past the order is a QueryError
    ks = np.arange(*order.step_rows(step), dtype=np.int64)
    heads = [row[:HEAD_TOKENS].tolist() for row in tokens]
    texts = corpus.tokenizer.decode_batch(heads, skip_special_tokens=False) if corpus.tokenizer is not None else None
    spans = [order.spans(int(k)) for k in ks]
    dominant: list[str | None] = [None] * ks.size
    if corpus.documents is not None and not order.preshuffled:
        dominant = dominant_sources(order, corpus.documents)(ks)
    out = []
    for i, k in enumerate(ks.tolist()):
        out.append({"slot": i, "sample_index": k, "head_tokens": heads[i], "head_text": texts[i] if texts else None,
                    "spans": None if spans[i] is None else len(spans[i]), "dominant_source": dominant[i],
                    "trained": order.trained(k)})
    return out


def sample(request: Request, step: int, slot: int) -> dict[str, Any]:
    """``/v1/samples/{step}/{slot}`` with each span's own text (the span's tokens decoded alone)."""
    corpus = corpus_of(request)
    rec = answer(sample_routes.get_sample(corpus, step, slot, text=True))
    rec.setdefault("trained", corpus.order.trained(rec["sample_index"]))
    for s in rec["spans"] or []:
        a = s["sample_start"]
        piece = rec["tokens"][a : a + s["doc_end"] - s["doc_start"]]
        s["text"] = corpus.tokenizer.decode(piece, skip_special_tokens=False) if corpus.tokenizer is not None else None
        s["pile_set_name"] = (s.get("metadata") or {}).get("pile_set_name")
    return rec


def dataset_rows(request: Request, sample_index: int) -> list[dict[str, Any]]:
    """Every served dataset's record of this row (``/v1/datasets/{name}/samples/{k}``), with its name."""
    out = []
    for name in answer(dataset_routes.list_datasets(state_of(request))):
        try:
            rec = answer(dataset_routes.get_sample(state_of(request), name, sample_index))
        except NotFoundError:
            continue  # this dataset does not hold the row
        out.append({"name": name, **rec})
    return out


# -- documents


def document(request: Request, doc_id: int, offset: int, limit: int) -> dict[str, Any]:
    return answer(document_routes.get_document(corpus_of(request), doc_id, offset=offset,
                                               limit=limit))


def document_steps(request: Request, doc_id: int) -> tuple[dict[str, Any] | None, str | None]:
    """``/v1/documents/{doc_id}/steps``, or None and the reason the service cannot answer it."""
    try:
        return answer(sample_routes.get_document_steps(corpus_of(request), doc_id)), None
    except PileIndexError as e:  # a preshuffled store, missing inverse files, max_occurrences: said on the page
        return None, str(e)


# -- n-grams


def ngram(request: Request, tokens: str | None, text: str | None, offset: int, limit: int) -> dict[str, Any]:
    """Count, steps summary, one page of occurrences with context and their rows, for one n-gram."""
    corpus, settings = corpus_of(request), settings_of(request)
    count = answer(ngram_routes.get_count(corpus, tokens=tokens, text=text))
    ids = count["tokens"]
    steps, steps_note = None, None
    try:
        steps = answer(ngram_routes.get_steps(corpus, tokens=tokens, text=text, bucket_steps=None))
    except PileIndexError as e:  # no training order, or max_occurrences: the count still shows
        steps_note = str(e)
    page = answer(ngram_routes.get_locate(corpus, tokens=tokens, text=text, offset=offset, limit=limit))
    rows_by_occ: dict[tuple[int, int], list[dict[str, Any]]] = {}
    if steps is not None and page["occurrences"]:
        pairs = occurrence_rows(corpus.ngram, corpus.order, np.asarray(ids, dtype=np.int64),
                                settings.max_occurrences)
        wanted = {(o["doc_id"], o["offset"]) for o in page["occurrences"]}
        for i in range(pairs["doc_id"].size):
            key = (int(pairs["doc_id"][i]), int(pairs["offset"][i]))
            if key in wanted:
                rows_by_occ.setdefault(key, []).append({
                    "step": int(pairs["step"][i]), "slot": int(pairs["slot"][i]),
                    "in_row": bool(pairs["in_row"][i]), "trained": bool(pairs["trained"][i])})
    m = len(ids)
    for o in page["occurrences"]:
        size = int(corpus.store.sizes[o["doc_id"]])
        a, b = max(0, o["offset"] - CONTEXT_TOKENS), min(size, o["offset"] + m + CONTEXT_TOKENS)
        toks = corpus.store.get(o["doc_id"], a, b - a).tolist()
        cut0, cut1 = o["offset"] - a, o["offset"] - a + m
        dec = (lambda t: corpus.tokenizer.decode(t, skip_special_tokens=False)) if corpus.tokenizer is not None else \
            (lambda t: " ".join(map(str, t)))
        o["before"], o["match"], o["after"] = dec(toks[:cut0]), dec(toks[cut0:cut1]), dec(toks[cut1:])
        o["rows"] = sorted(rows_by_occ.get((o["doc_id"], o["offset"]), []), key=lambda r: (r["step"], r["slot"]))
    text_shown = corpus.tokenizer.decode(ids, skip_special_tokens=False) if corpus.tokenizer is not None else None
    return {"count": count, "steps": steps, "steps_note": steps_note, "locate": page, "text": text_shown}


def trace(request: Request, text: str | None, tokens: str | None, min_tokens: int) -> dict[str, Any]:
    """``/v1/ngrams/trace`` of a passage, plus the passage cut into segments at every span boundary (each
    segment's text and the spans covering it), for highlighting."""
    corpus = corpus_of(request)
    res = answer(ngram_routes.get_trace(corpus, tokens=tokens, text=text, min_tokens=min_tokens,
                                        max_count=None, occurrences=1))
    ids, spans = res["tokens"], res["spans"]
    cuts = sorted({0, len(ids), *(s["start"] for s in spans), *(s["end"] for s in spans)})
    dec = (lambda t: corpus.tokenizer.decode(t, skip_special_tokens=False)) if corpus.tokenizer is not None else \
        (lambda t: " ".join(map(str, t)) + " ")
    segments = [{"start": a, "end": b, "text": dec(ids[a:b]),
                 "spans": [i for i, s in enumerate(spans) if s["start"] <= a and b <= s["end"]]}
                for a, b in zip(cuts[:-1], cuts[1:])]
    return {"trace": res, "segments": segments}


# -- datasets


def dataset_names(request: Request) -> list[str]:
    return answer(dataset_routes.list_datasets(state_of(request)))


def dataset(request: Request, name: str) -> dict[str, Any]:
    """``/v1/datasets/{name}/summary`` and ``/checkpoints/{revision}`` for each of its checkpoints."""
    summary = answer(dataset_routes.get_summary(state_of(request), name))
    checkpoints = [answer(dataset_routes.get_checkpoint(state_of(request), name, c["revision"])) for c in summary["checkpoints"]]
    return {"summary": summary, "checkpoints": checkpoints}
