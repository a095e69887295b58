"""``pile-index demo``: the main job on an embedded default corpus, every capability once, no download.

It builds a Pile-style corpus from the Python standard library (sources as "Github", docstrings as
"StdlibDocs"), trains a GPT-NeoX-style byte-level BPE on it (or uses ``--tokenizer``), then runs the same
commands a user would, printing each before it runs: ingest, info, order build and stats, a training row
with its source documents, a document's steps, n-gram count, steps, a batch count and a trace, SQL, a replayed checkpoint series,
scoring, the memorization / influence dataset with its plots, and finally the HTTP API on loopback.
"""

from __future__ import annotations

import argparse
import json
import shlex
import socket
import sys
import threading
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

from pile_index.files import tokenizer_path
from pile_index.order import OrderOptions

from .main import main as cli_main
from .order_options import order_argv


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run every capability on an embedded corpus (no download, no server needed)")
    p.add_argument("--out", default="demo", help="working folder (default ./demo); reruns reuse what is there")
    p.add_argument("--tokenizer", help="a real tokenizer.json or hub id instead of training a small BPE")
    p.add_argument("--docs", type=int, default=1500, help="documents in the embedded corpus")
    p.add_argument("--steps", type=int, default=32, help="training steps to replay for the checkpoint series")
    p.add_argument("--serve", action="store_true", help="keep serving the explorer and the API at the end (Ctrl-C to stop)")
    p.add_argument("--port", type=int, default=8000, help="port for --serve")
    p.set_defaults(func=cmd_demo)


def _run(argv: list[str]) -> None:
    print(f"\n$ pile-index {' '.join(shlex.quote(a) for a in argv)}", flush=True)
    rc = cli_main(argv)
    if rc != 0:
        raise SystemExit(f"demo: `pile-index {argv[0]}` failed with exit code {rc}")


def _captured(argv: list[str]) -> str:
    """Print a command line, run it in this process and return what it printed on stdout."""
    import contextlib
    import io

    print(f"\n$ pile-index {' '.join(shlex.quote(a) for a in argv)}", flush=True)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cli_main(argv)
    if rc != 0:
        raise SystemExit(f"demo: `pile-index {argv[0]}` failed with exit code {rc}")
    return buf.getvalue()


def _json(argv: list[str]) -> dict:
    """Run a command with --json, capture and pretty-print an excerpt of its answer."""
    out = json.loads(_captured(argv))
    text = json.dumps(out, ensure_ascii=False)
    print(text if len(text) <= 900 else text[:900] + " ...")
    return out


def _json_lines(argv: list[str]) -> list[dict]:
    """Run a command that prints JSON lines; print the first few."""
    lines = _captured(argv).splitlines()
    for line in lines[:4]:
        print(line if len(line) <= 300 else line[:300] + " ...")
    return [json.loads(x) for x in lines]


def _passage(prefix: str, doc: int) -> tuple[str, list[int]]:
    """A passage a model might write (a training document's opening, a phrase the corpus lacks, another
    document's lines) and that document's first 4 token ids."""
    from tokenizers import Tokenizer

    from pile_index.format import TokenStore

    store = TokenStore(prefix)
    tok = Tokenizer.from_file(str(tokenizer_path(prefix)))
    first = store.get(doc, 0, min(48, int(store.sizes[doc]))).tolist()
    other = (doc + 7) % len(store)
    n = int(store.sizes[other])
    second = store.get(other, min(20, n // 2), min(48, n - min(20, n // 2))).tolist()
    return tok.decode(first) + " zqxj vrrk wibble " + tok.decode(second), first[:4]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cmd_demo(args: argparse.Namespace) -> int:
    from ingest.demo_corpus import build_demo_corpus, train_demo_tokenizer

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    print(f"== 1. the embedded corpus: Python standard library sources and docstrings -> {out}/raw")
    files = build_demo_corpus(out / "raw", max_docs=args.docs)
    tok = args.tokenizer
    if tok is None:
        tok = str(out / "tokenizer.json")
        if not Path(tok).is_file():
            print("   training a GPT-NeoX-style byte-level BPE (<|endoftext|> = 0, <|padding|> = 1)")
            train_demo_tokenizer(files, tok, vocab_size=8192)
    prefix = str(out / "corpus")
    print("\n== 2. ingest: jsonl.zst -> GPT-NeoX .bin/.idx + documents table (empty texts skipped, as GPT-NeoX does)")
    _run(["ingest", *map(str, files), "--tokenizer", tok, "--out", prefix, "--append-eod", "--no-progress"])
    info = _json(["info", prefix, "--json"])

    # A small training order in GPT-NeoX's exact algorithm: ~1.5 epochs, so documents repeat, and more samples
    # than trained steps, so never-trained rows exist (as in Pythia: 147,164,160 samples, 143,000 x 1024 trained).
    L, B = 128, 16
    one_epoch = (info["tokens"] - 1) // L
    num_samples = int(one_epoch * 1.5)
    train_steps = min(int(one_epoch * 1.3) // B, num_samples // B - 2)
    order_opts = OrderOptions(seed=1234, seq_length=L, num_samples=num_samples, batch_size=B, train_steps=train_steps)
    order = order_argv(order_opts)
    print("\n== 3. the exact GPT-NeoX v1.0 training order (doc_idx, sample_idx, shuffle_idx + inverse files)")
    _json(["order", "build", prefix, *order, "--json"])
    _json(["order", "stats", prefix, *order, "--json"])
    row = _json(["sample", prefix, *order, "--step", "0", "--slot", "3", "--json"])
    doc = row["spans"][0]["doc_id"]
    _json(["doc-steps", prefix, *order, str(doc), "--json"])

    print("\n== 4. n-grams: count, where, and when training saw them")
    _run(["ngram", "build", prefix, "--no-progress"])
    _json(["ngram", "count", prefix, "--text", " def __init__(self", "--json"])
    _json(["ngram", "steps", prefix, *order, "--text", " def __init__(self", "--json"])
    passage, first_ids = _passage(prefix, doc)
    queries = out / "queries.txt"
    queries.write_text(" def __init__(self\n return None\n import os\n" + ",".join(map(str, first_ids)) + "\n",
                       encoding="utf-8")
    _json_lines(["ngram", "count", prefix, "--file", str(queries), "--json"])  # a batch: one JSON line per query
    _json(["ngram", "trace", prefix, *order, "--text", passage, "--occurrences", "2", "--json"])
    _json(["sql", prefix, "SELECT pile_set_name, count(*) AS docs, sum(n_tokens) AS tokens FROM documents "
           "GROUP BY ALL ORDER BY tokens DESC", "--json"])

    print("\n== 5. a checkpoint series: a small GPT-NeoX trained on this order, saved on Pythia's schedule")
    ckpts = out / "checkpoints"
    if not (ckpts / f"step{args.steps}" / "model.safetensors").is_file():
        _json(["replay", prefix, *order, "--steps", str(args.steps), "--out", str(ckpts), "--json"])
    print("\n== 6. scores: loss, entropy, accuracy, memorization of training rows at two checkpoints")
    _run(["score", prefix, *order, "--model", str(ckpts), "--revision", "step0", "--revision", f"step{args.steps}",
          "--steps", "0:2", "--out", str(out / "scores.parquet")])
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    scores = pq.read_table(out / "scores.parquet")
    for rev in ("step0", f"step{args.steps}"):
        sel = scores.filter(pc.equal(scores["revision"], rev))
        print(f"   {rev}: {sel.num_rows} rows, mean loss {pc.mean(sel['loss']).as_py():.3f}, "
              f"mean accuracy {pc.mean(sel['accuracy']).as_py():.3f}")

    print("\n== 7. a memorization / influence dataset: rows x checkpoints x metrics, treatment effects, plots")
    ds = out / "dataset"
    # The replayed model trained on steps 0 .. steps-1 only: those rows are the treated ones, and every row from
    # there on is a never-trained control. Lesci et al.'s cohorts: R batches per cohort, S rows per batch.
    replayed = order_argv(replace(order_opts, train_steps=args.steps))
    res = _json(["dataset", "build", prefix, *replayed, "--model", str(ckpts), "--revisions", f"pythia:{args.steps}",
                 "--select", "cohort", "--cohort-steps", str(max(1, args.steps // 4)), "--batches-per-cohort", "4",
                 "--rows-per-batch", "4", "--control-rows", "32", "--offline", "--out", str(ds), "--json"])
    eff = res["treatment_effect"]
    print(f"   treatment effect (loss change at the first checkpoint after a row's step, minus the never-trained "
          f"control's): {eff.get('mean_effect'):+.4f} nats/token over {eff.get('n_rows')} rows; plots: {res['plots']}")

    print("\n== 8. the HTTP API on loopback (the same answers over HTTP)")
    _serve_and_query(prefix, order_opts, ds)
    print(f"\ndemo finished in {time.perf_counter() - t0:.0f} s. Serve it yourself with:\n"
          f"  pile-index serve {prefix} {' '.join(order)} --dataset {ds}   # then open http://127.0.0.1:8000/ (explorer; API at /docs)")
    if args.serve:
        _run(["serve", prefix, *order, "--dataset", str(ds), "--port", str(args.port)])
    return 0


def _serve_and_query(prefix: str, order: OrderOptions, ds: Path) -> None:
    import uvicorn

    from api.main import create_app
    from api.settings import Settings, order_settings

    settings = Settings(prefixes=[prefix], datasets=[str(ds)], tokenizer=str(tokenizer_path(prefix)),
                        **order_settings(order))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        for path in ("/v1/corpus", "/v1/samples/0/3", "/v1/ngrams/count?text=%20def%20__init__(self",
                     f"/v1/datasets/{ds.name}/summary", "/v1/documents/999999999"):
            try:
                with urllib.request.urlopen(base + path, timeout=30) as r:
                    status, body = r.status, r.read().decode()
            except urllib.error.HTTPError as e:
                status, body = e.code, e.read().decode()
            print(f"GET {path} -> {status} {body[:300]}{' ...' if len(body) > 300 else ''}")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    sys.stdout.flush()
