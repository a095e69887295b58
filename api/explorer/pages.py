"""The explorer's pages: each route parses its parameters, gathers the API's answers (figures.py) and renders
one template. Routes are plain ``def`` (run in the thread pool: the order and n-gram look-ups run numba
kernels over memmaps) and are left out of the OpenAPI schema: the API is ``/v1``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from pile_index.errors import PileIndexError, QueryError

from ..params import MAX_INT, Id
from ..settings import Settings
from . import charts, figures
from .docs_page import operations
from .render import ExplorerRoute, Palette, error_page, page, status_of

router = APIRouter(route_class=ExplorerRoute, include_in_schema=False, default_response_class=HTMLResponse)

DOC_PAGE_TOKENS = 2048  # tokens of a document per page
OCC_PAGE = 100  # occurrences of a document listed per page
NGRAM_PAGE = 20  # n-gram occurrences (with context) per page
TRACE_MIN_TOKENS = 8  # the trace form's default shortest span (OLMoTrace's)
NO_TRACE = {"tr": None, "trace": "", "trace_tokens": "", "min_tokens": TRACE_MIN_TOKENS}


def _palette(request: Request) -> tuple[Palette, list[dict[str, Any]]]:
    src = figures.sources(request)
    return Palette([s["pile_set_name"] for s in src]), src


def _doc_page(settings: Settings) -> int:
    return max(1, min(DOC_PAGE_TOKENS, settings.max_document_tokens))


def _steps_range(steps: str, train_steps: int) -> tuple[int, int]:
    lo, sep, hi = steps.partition(":")
    try:
        a, b = int(lo), int(hi)
    except ValueError as e:
        raise QueryError(f"steps={steps!r}: expected A:B, e.g. 0:{train_steps}") from e
    return a, b


@router.get("/")
def overview(request: Request, steps: str | None = Query(None, description="A:B: chart these steps"),
             bucket_steps: int | None = Query(None, ge=1, le=MAX_INT)):
    palette, sources = _palette(request)
    corpus = figures.corpus(request)
    info, order_note, comp, comp_note, chart_note = None, None, None, None, None
    try:
        info = figures.order(request)
    except PileIndexError as e:
        order_note = str(e)
    if info is not None and not info["preshuffled"] and sources:
        if steps is not None:
            lo, hi = _steps_range(steps, info["train_steps"])
        else:
            lo, hi = figures.chart_steps(request, info)
            if hi < info["train_steps"]:
                chart_note = (f"steps 0..{hi - 1:,} of {info['train_steps']:,} trained steps: the chart reads at most "
                              f"explorer_max_chart_rows rows (pass ?steps=A:B for another range)")
        try:
            comp = figures.composition(request, lo, hi, bucket_steps)
        except PileIndexError as e:
            comp_note = str(e)
    elif info is not None and info["preshuffled"]:
        comp_note = "a preshuffled store has no document identity, so no composition by source"
    elif info is not None:
        comp_note = "no documents table (PREFIX.documents.parquet), so no composition by source"
    chart = None
    if comp is not None:
        chart = charts.composition_columns(comp["buckets"], [s["pile_set_name"] for s in sources], palette,
                                           "training tokens by source over steps")
    return page("overview.html", title="Overview", nav="overview", corpus=corpus, sources=sources, info=info,
                order_note=order_note, comp=comp, comp_note=comp_note, chart_note=chart_note, chart=chart,
                palette=palette, datasets=figures.dataset_names(request), sql_sources=figures.SOURCES_SQL)


def _box(name: str, value: str | None) -> int | None:
    """A search box's number: empty is None (a form sends a blank box as ``name=``)."""
    if value is None or not value.strip():
        return None
    v = value.strip()
    if not v.isascii() or not v.isdigit() or int(v) > MAX_INT:
        raise QueryError(f"{name}={value!r}: expected a non-negative integer")
    return int(v)


@router.get("/go")
def go(request: Request, step: str | None = Query(None), slot: str | None = Query(None),
       doc_id: str | None = Query(None)):
    """The search boxes: a step (and slot), or a document id."""
    step_n, slot_n, doc_n = _box("step", step), _box("slot", slot), _box("doc_id", doc_id)
    if doc_n is not None:
        return RedirectResponse(f"/documents/{doc_n}", status_code=303)
    if step_n is not None:
        return RedirectResponse(f"/samples/{step_n}/{slot_n}" if slot_n is not None else f"/steps/{step_n}",
                                status_code=303)
    raise QueryError("nothing to go to: give step (and slot), or doc_id")


@router.get("/steps/{step}")
def step_page(request: Request, step: Id):
    corpus = figures.corpus_of(request)
    palette, _ = _palette(request)
    order = corpus.order
    rows = figures.step_rows(request, step)
    bar, bar_note, comp = None, None, None
    if corpus.documents is not None and not order.preshuffled:
        comp = figures.composition(request, step, step + 1, 1)
        parts = [(r["pile_set_name"], r["tokens"]) for b in comp["buckets"] for r in b["parts"]]
        bar = charts.share_bar(parts, palette, f"tokens of step {step:,} by source")
    else:
        bar_note = "no composition: " + ("a preshuffled store has no documents" if order.preshuffled
                                         else "no documents table")
    last = order.full_steps - 1
    return page("step.html", title=f"Step {step:,}", nav="step", step=step, rows=rows, bar=bar, bar_note=bar_note,
                comp=comp, palette=palette, last_step=last, train_steps=order.train_steps,
                trained=step < order.train_steps, batch_size=order.batch_size)


@router.get("/samples/{step}/{slot}")
def sample_page(request: Request, step: Id, slot: Id):
    corpus, settings = figures.corpus_of(request), figures.settings_of(request)
    palette, _ = _palette(request)
    rec = figures.sample(request, step, slot)
    sets = figures.dataset_rows(request, rec["sample_index"])
    for d in sets:
        cps = d["checkpoints"]
        labels = [c["revision"] for c in cps]
        marks = [(i, "treatment") for i, c in enumerate(cps) if c["checkpoint_step"] == d["treatment_step"]]
        d["chart"] = charts.lines(labels, [{"name": "loss", "color": "#0072b2", "values": [c["loss"] for c in cps]}],
                                  f"loss of this row by checkpoint in dataset {d['name']}", "loss_by_checkpoint", marks)
    order = corpus.order
    return page("sample.html", title=f"Sample {step:,}/{slot:,}", nav="sample", rec=rec, palette=palette,
                sets=sets, batch_size=order.batch_size, page_tokens=_doc_page(settings), last_step=order.full_steps - 1)


@router.get("/documents/{doc_id}")
def document_page(request: Request, doc_id: Id, offset: int = Query(0, ge=0, le=MAX_INT),
                  occ: int = Query(0, ge=0, le=MAX_INT, description="first occurrence listed")):
    corpus, settings = figures.corpus_of(request), figures.settings_of(request)
    palette, _ = _palette(request)
    cap = _doc_page(settings)
    doc = figures.document(request, doc_id, offset, cap)
    steps, steps_note = figures.document_steps(request, doc_id)
    timeline = None
    if steps is not None:
        timeline = charts.timeline([o["step"] for o in steps["occurrences"]], corpus.order.train_steps,
                                   f"training steps that saw document {doc_id:,}")
    meta = doc.get("metadata") or {}
    return page("document.html", title=f"Document {doc_id:,}", nav="document", doc=doc, meta=meta, steps=steps,
                steps_note=steps_note, timeline=timeline, palette=palette, page_tokens=cap, occ=occ,
                occ_page=OCC_PAGE, n_items=len(corpus.store), train_steps=corpus.order.train_steps if steps else 0)


@router.get("/ngrams")
def ngram_page(request: Request, text: str | None = Query(None, description="the n-gram as text"),
               tokens: str | None = Query(None, description="comma-separated token ids"),
               offset: int = Query(0, ge=0, le=MAX_INT),
               trace: str | None = Query(None, description="a passage (text) to trace to its maximal spans"),
               trace_tokens: str | None = Query(None, description="a passage as comma-separated token ids"),
               min_tokens: int = Query(TRACE_MIN_TOKENS, ge=1, le=MAX_INT, description="shortest span shown")):
    corpus, settings = figures.corpus_of(request), figures.settings_of(request)
    palette, _ = _palette(request)
    if trace or trace_tokens:
        tr = figures.trace(request, None if trace_tokens else trace, trace_tokens or None, min_tokens)
        return page("ngrams.html", title="trace", nav="ngrams", q=None, text="", tokens="", tr=tr,
                    trace=trace or "", trace_tokens=trace_tokens or "", min_tokens=min_tokens,
                    has_tokenizer=corpus.tokenizer is not None, palette=palette)
    if not text and not tokens:
        return page("ngrams.html", title="n-grams", nav="ngrams", q=None, text=text or "", tokens=tokens or "",
                    has_tokenizer=corpus.tokenizer is not None, palette=palette, **NO_TRACE)
    q = figures.ngram(request, tokens or None, None if tokens else text, offset, NGRAM_PAGE)
    hist = None
    if q["steps"] is not None:
        st = q["steps"]
        hist = charts.histogram(st["histogram"], st["bucket_steps"], st["train_steps"],
                                "occurrences in trained rows by step")
    return page("ngrams.html", title="n-grams", nav="ngrams", q=q, text=text or "", tokens=tokens or "",
                has_tokenizer=corpus.tokenizer is not None, hist=hist, palette=palette, page_size=NGRAM_PAGE,
                page_tokens=_doc_page(settings), **NO_TRACE)


@router.get("/datasets")
def datasets_page(request: Request):
    return page("datasets.html", title="Datasets", nav="datasets", names=figures.dataset_names(request))


@router.get("/datasets/{name}")
def dataset_page(request: Request, name: str):
    d = figures.dataset(request, name)
    revs = [c["checkpoint"]["revision"] for c in d["checkpoints"]]
    groups: dict[tuple[str, int], dict[int, dict]] = {}
    for i, c in enumerate(d["checkpoints"]):
        for m in c["means"]:
            groups.setdefault((m["group"], m["cohort"]), {})[i] = m
    colors = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#d55e00", "#56b4e9", "#8c6d31", "#7b4fa0"]
    series_loss, series_mem = [], []
    for j, ((group, cohort), by_i) in enumerate(sorted(groups.items(), key=lambda kv: (kv[0][0] != "control", kv[0]))):
        label = "control" if group == "control" else f"treated cohort {cohort}"
        color = "#555555" if group == "control" else colors[j % len(colors)]
        series_loss.append({"name": label, "color": color,
                            "values": [by_i.get(i, {}).get("mean_loss") for i in range(len(revs))]})
        series_mem.append({"name": label, "color": color,
                           "values": [by_i.get(i, {}).get("memorized_share") for i in range(len(revs))]})
    loss_chart = charts.lines(revs, series_loss, "mean loss of treated cohorts and control by checkpoint",
                              "mean_loss_by_checkpoint")
    mem_chart = charts.lines(revs, series_mem, "memorized share by checkpoint", "memorized_share_by_checkpoint",
                             y_range=(0.0, max([v for s in series_mem for v in s["values"] if v is not None] + [0.05])))
    return page("dataset.html", title=f"Dataset {name}", nav="datasets", name=name, d=d, revs=revs,
                series=series_loss, series_mem=series_mem, loss_chart=loss_chart, mem_chart=mem_chart)


EXAMPLE_SQL = figures.SOURCES_SQL


@router.get("/sql")
def sql_page(request: Request, sql: str | None = Query(None), steps: str | None = Query(None),
             ngram_text: str | None = Query(None), ngram_tokens: str | None = Query(None),
             bucket_steps: int | None = Query(None, ge=1, le=MAX_INT), max_rows: int | None = Query(None, ge=0, le=MAX_INT)):
    form = {"sql": sql if sql is not None else EXAMPLE_SQL, "steps": steps or "", "ngram_text": ngram_text or "",
            "ngram_tokens": ngram_tokens or "", "bucket_steps": bucket_steps, "max_rows": max_rows}
    res, err, status = None, None, 200
    if sql is not None:
        try:
            res = figures.sql(request, sql, steps=steps or None, ngram_tokens=ngram_tokens or None,
                              ngram_text=ngram_text or None, bucket_steps=bucket_steps, max_rows=max_rows)
        except PileIndexError as e:
            status, kind = status_of(e)
            err = {"error": {"type": kind, "message": str(e), "setting": getattr(e, "setting", None)}}
    return page("sql.html", status=status, title="SQL", nav="sql", form=form, res=res, err=err, code=status)


@router.get("/docs")
def docs_page(request: Request):
    return page("docs.html", title="API documentation", nav="docs", ops=operations(request.app.openapi()),
                app_title=request.app.title, version=request.app.version, description=request.app.description)


def not_found_page(path: str) -> HTMLResponse:
    return error_page(404, "not_found", f"there is no page at {path}; the explorer's pages start at / "
                      f"(steps, samples, documents, n-grams, datasets, SQL) and the API at /v1 (see /docs)")
