"""The embedded demo corpus: real text every machine has, as Pile-style ``.jsonl.zst`` files.

Documents are the Python standard library's own sources (``pile_set_name`` "Github", like the Pile's code
subset) and their module docstrings ("StdlibDocs"), read with ``ast`` (nothing is imported). Empty modules
(``__init__.py`` files with no text) stay in as empty texts, so the demo shows GPT-NeoX's skip rule: item
index != line number. The selection and order depend only on the Python version, ``seed`` and the limits.

``train_demo_tokenizer`` trains a GPT-NeoX-style byte-level BPE on those files in a few seconds: NFC
normalizer, ByteLevel pre-tokenizer without prefix space, ByteLevel decoder, ``<|endoftext|>`` = 0 and
``<|padding|>`` = 1, as in the GPT-NeoX-20B tokenizer (docs/FORMATS.md, tokenizer section). Pass a real tokenizer
to ingest instead when you have one.
"""

from __future__ import annotations

import ast
import json
import os
import random
import sysconfig
from collections.abc import Iterable, Iterator
from pathlib import Path

import zstandard
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from pile_index.atomic import atomic_open, write_bytes
from pile_index.errors import ConfigError

from .readers import LineReader, ProblemLog, parse_block

SPECIAL_TOKENS = ["<|endoftext|>", "<|padding|>"]  # ids 0 and 1
_SKIP_DIRS = {"site-packages", "dist-packages", "__pycache__", "test", "tests", "idle_test"}


def stdlib_sources(root: str | os.PathLike | None = None) -> list[Path]:
    """The standard library's ``.py`` files (no tests, no site-packages), sorted by relative path."""
    base = Path(root) if root is not None else Path(sysconfig.get_paths()["stdlib"])
    out = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for f in filenames:
            if f.endswith(".py"):
                out.append(Path(dirpath) / f)
    return sorted(out, key=lambda p: p.relative_to(base).as_posix())


def _module_name(rel: str) -> str:
    mod = rel[:-3].replace("/", ".")
    return mod[: -len(".__init__")] if mod.endswith(".__init__") else mod


def _docstrings(src: str, module: str) -> list[tuple[str, str]]:
    """``(qualified name, docstring)`` of the module and its classes and functions, in source order."""
    try:
        tree = ast.parse(src)
    except (SyntaxError, ValueError):
        return []
    out = []
    doc = ast.get_docstring(tree, clean=True)
    if doc:
        out.append((module, doc))

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}.{child.name}"
                d = ast.get_docstring(child, clean=True)
                if d and len(d) >= MIN_DOCSTRING_CHARS:
                    out.append((name, d))
                visit(child, name)

    visit(tree, module)
    return out


MIN_DOCSTRING_CHARS = 80  # shorter docstrings ("Return self.") make poor documents


def demo_documents(max_docs: int = 3000, max_bytes: int = 6_000_000, seed: int = 0,
                   root: str | os.PathLike | None = None) -> list[dict]:
    """Pile-style records ``{"text", "meta": {"pile_set_name", ...}}``, shuffled with ``seed``.

    Modules are drawn in a seeded order until ``max_docs`` documents or ``max_bytes`` of text; each gives
    its source ("Github") and its docstrings: the module's, and each class's and function's of at least
    80 characters ("StdlibDocs"). The empty modules (empty texts, skipped by ingest) are always in.
    """
    if max_docs < 1 or max_bytes < 1:
        raise ConfigError(f"max_docs={max_docs:,}, max_bytes={max_bytes:,}: expected positive limits")
    base = Path(root) if root is not None else Path(sysconfig.get_paths()["stdlib"])
    files = stdlib_sources(base)
    docs: list[dict] = []
    empty = [p for p in files if p.stat().st_size == 0][:MAX_EMPTY]
    for p in empty:
        docs.append({"text": "", "meta": {"pile_set_name": "Github", "path": f"Lib/{p.relative_to(base).as_posix()}"}})
    random.Random(seed).shuffle(files)
    used = 0
    for p in files:
        if len(docs) >= max_docs or used >= max_bytes:
            break
        if p in empty:
            continue
        try:
            src = p.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue  # not a UTF-8 text file: not a document
        rel = p.relative_to(base).as_posix()
        docs.append({"text": src, "meta": {"pile_set_name": "Github", "path": f"Lib/{rel}"}})
        used += len(src)
        for name, doc in _docstrings(src, _module_name(rel)):
            if len(docs) >= max_docs:
                break
            docs.append({"text": doc, "meta": {"pile_set_name": "StdlibDocs", "name": name}})
            used += len(doc)
    random.Random(seed + 1).shuffle(docs)
    return docs


MAX_EMPTY = 3


def build_demo_corpus(out_dir: str | os.PathLike, max_docs: int = 3000, seed: int = 0, n_files: int = 2,
                      max_bytes: int = 6_000_000) -> list[Path]:
    """Write the demo corpus as ``00.jsonl.zst`` .. (Pile naming) under ``out_dir``; returns the paths."""
    if n_files < 1:
        raise ConfigError(f"n_files={n_files}: expected >= 1")
    docs = demo_documents(max_docs=max_docs, max_bytes=max_bytes, seed=seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    per = -(-len(docs) // n_files)
    paths = []
    cctx = zstandard.ZstdCompressor(level=3)  # one thread: the same bytes on every run
    for i in range(n_files):
        part = docs[i * per : (i + 1) * per]
        data = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in part).encode("utf-8")
        path = out / f"{i:02}.jsonl.zst"
        with atomic_open(path, "wb") as f:
            f.write(cctx.compress(data))
        paths.append(path)
    return paths


def iter_texts(files: Iterable[str | os.PathLike], text_key: str = "text") -> Iterator[str]:
    """Non-empty texts of Pile-style files, in order (problem lines are skipped here)."""
    problems = ProblemLog()
    for f in files:
        counters = {"empty": 0}
        for first, lines in LineReader(f).blocks():
            for d in parse_block(os.fspath(f), first, lines, text_key, problems, counters):
                yield d.text


def new_demo_tokenizer() -> Tokenizer:
    """An untrained GPT-NeoX-style byte-level BPE pipeline (NFC, ByteLevel without prefix space)."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def train_demo_tokenizer(files: Iterable[str | os.PathLike], out_path: str | os.PathLike,
                         vocab_size: int = 8192) -> Tokenizer:
    """Train the demo BPE on ``files`` and save it to ``out_path`` (atomically); returns it.

    Deterministic for the same files and vocab_size: the BPE trainer's merges depend only on pair counts.
    """
    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise ConfigError(f"vocab_size={vocab_size:,}: expected at least {256 + len(SPECIAL_TOKENS)} (bytes + specials)")
    tok = new_demo_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(iter_texts(list(files)), trainer=trainer)
    for i, t in enumerate(SPECIAL_TOKENS):
        if tok.token_to_id(t) != i:
            raise ConfigError(f"trained tokenizer has {t} = {tok.token_to_id(t)}, expected {i}")
    write_bytes(out_path, tok.to_str().encode("utf-8"))
    return tok
