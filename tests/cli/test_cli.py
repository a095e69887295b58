"""The ``pile-index`` command as a whole: start-up checks of ``serve``, one output channel (log lines above
progress bars, ``--quiet``), a closed stdout, and strict numbers in options."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cli.main import main
from pile_index import write_indexed

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def store(tmp_path) -> str:
    write_indexed(tmp_path / "s", [np.array([3, 4, 3, 4]), np.array([4, 3]), np.arange(20) % 7], np.uint16)
    return str(tmp_path / "s")


def _tiny_tokenizer(path: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1, "b": 2}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(path))
    return path


def _dataset_folder(folder: Path) -> Path:
    (folder / "summary").mkdir(parents=True)
    for name in ("dataset.parquet", "checkpoints.parquet", "summary/treatment_effects.parquet",
                 "summary/cohort_means.parquet"):
        pq.write_table(pa.table({"x": [1]}), folder / name)
    return folder


# ------------------------------------------------------------------------------------------ serve start-up


@pytest.fixture()
def no_bind(monkeypatch):
    """Fails the test if `serve` reaches the port before its inputs are checked."""
    import api.server

    def refuse(*args, **kwargs):
        raise AssertionError("serve bound its port before checking its inputs")

    monkeypatch.setattr(api.server, "bind_socket", refuse)


def _serve_error(capsys, argv: list[str]) -> str:
    rc = main(["serve", *argv, "--port", "0"])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if not ln.startswith("INFO ")]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("pile-index serve: error: ") and "serving on" not in err
    return lines[0]


def test_serve_refuses_a_missing_store(capsys, no_bind, tmp_path):
    assert "nope.idx" in _serve_error(capsys, [str(tmp_path / "nope")])


def test_serve_refuses_a_bad_tokenizer(capsys, no_bind, store, tmp_path):
    assert "no such file" in _serve_error(capsys, [store, "--tokenizer", str(tmp_path / "nope.json")])
    (tmp_path / "bad.json").write_text("{not a tokenizer")
    assert "not a tokenizers JSON" in _serve_error(capsys, [store, "--tokenizer", str(tmp_path / "bad.json")])


def test_serve_refuses_a_missing_or_ambiguous_dataset(capsys, no_bind, store, tmp_path):
    assert "dataset.parquet: missing" in _serve_error(capsys, [store, "--dataset", str(tmp_path / "nonexistent")])
    a, b = _dataset_folder(tmp_path / "a" / "ds"), _dataset_folder(tmp_path / "b" / "ds")
    assert "both named 'ds'" in _serve_error(capsys, [store, "--dataset", str(a), "--dataset", str(b)])


def test_serve_refuses_an_order_it_cannot_open(capsys, no_bind, store):
    assert "order build" in _serve_error(capsys, [store, "--preset", "pythia"])  # no index maps
    assert "--seq-length" in _serve_error(capsys, [store, "--seed", "1"])  # an incomplete order
    assert "--seq-length" in _serve_error(capsys, [store, "--preshuffled"])


def test_serve_refuses_a_damaged_documents_table(capsys, no_bind, store):
    Path(store + ".documents.parquet").write_bytes(b"PAR1 not really")
    assert "documents.parquet" in _serve_error(capsys, [store])


def test_serve_refuses_bad_settings(capsys, no_bind, store):
    assert "no such setting" in _serve_error(capsys, [store, "--setting", "max_conections", "10"])
    assert "positive integer" in _serve_error(capsys, [store, "--setting", "max_connections", "1_0"])
    assert "positive number" in _serve_error(capsys, [store, "--setting", "header_timeout_s", "nan"])
    assert "ulimit -n" in _serve_error(capsys, [store, "--setting", "max_connections", "999999999999"])


def test_serve_refuses_a_port_in_use(capsys, store):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        rc = main(["serve", store, "--port", str(port)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert f"pile-index serve: error: cannot listen on 127.0.0.1:{port}" in err


# ------------------------------------------------------------------------------------------ output channels


def test_a_closed_stdout_ends_quietly(store):
    """`pile-index ... --json | head`: the reader goes away; no traceback, the status a SIGPIPE would give."""
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "doc", store, "2", "--json"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # before the command writes: its first write meets a pipe with no reader
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert err == ""


@pytest.fixture()
def restore_logging():
    import logging

    from pile_index.progress import set_progress

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    set_progress(True)


def test_log_lines_print_above_the_progress_bar(capsys, store, restore_logging):
    assert main(["ngram", "build", store, "--shard-tokens", "16"]) == 0  # 2 shards, one INFO line per shard
    err = capsys.readouterr().err
    assert "ngram shards" in err  # the bar ran
    logged = re.findall(r"(^|.)INFO pile_index\.ngram: ngram shard (\d)/2", err, re.M)
    # each log line starts a line (after tqdm's clear: "\r"), never glued after a bar's text
    assert [n for _, n in logged] == ["1", "2"] and all(c in ("", "\r", "\n") for c, _ in logged), err


@pytest.mark.parametrize("where", ["before the command", "after it"])
def test_quiet_silences_progress_and_info(capsys, store, restore_logging, where):
    argv = ["ngram", "build", store, "--shard-tokens", "16"]
    assert main(["--quiet", *argv] if where == "before the command" else [*argv, "-q"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "shards: 2" in captured.out


# ------------------------------------------------------------------------------------------ strict numbers


@pytest.fixture()
def indexed(store, restore_logging):
    assert main(["-q", "ngram", "build", store, "--json"]) == 0
    return store


@pytest.mark.parametrize("tokens", ["1_000", "+3", "3 4", "\u0663", "\uff13", "3,,4", "3,"])
def test_cli_tokens_are_ascii_digits_only(capsys, indexed, tokens):
    capsys.readouterr()
    assert main(["ngram", "count", indexed, "--tokens", tokens, "--json"]) == 2  # today: 1000, 3, 34, 3, 3 ...
    err = capsys.readouterr().err
    assert err.startswith("pile-index ngram: error: tokens ") and "ASCII digits" in err


def test_cli_tokens_with_spaces_around_commas_still_count(capsys, indexed):
    capsys.readouterr()
    assert main(["ngram", "count", indexed, "--tokens", "3, 4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"count": 5, "tokens": [3, 4]}  # 2 + 0 + 3


def test_cli_text_with_a_lone_surrogate_is_one_error_line(capsys, indexed, tmp_path):
    tok = _tiny_tokenizer(tmp_path / "tok.json")
    capsys.readouterr()
    # what Python makes of the bytes ED A0 80 in argv (surrogateescape)
    rc = main(["ngram", "count", indexed, "--text", "a \udced\udca0\udc80", "--tokenizer", str(tok)])
    err = capsys.readouterr().err
    assert rc == 2 and "lone surrogate (U+DCED)" in err and "Traceback" not in err


@pytest.mark.parametrize("value", ["1_0", "+1", " 1", "\u0661", "\uff11"])
def test_integer_options_are_ascii_digits_only(capsys, store, value):
    with pytest.raises(SystemExit) as e:
        main(["doc", store, value])  # today: int() reads all of these as 10 or 1
    assert e.value.code == 2
    assert f"argument doc_id: expected an integer in ASCII digits, got {value!r}" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["nan", "inf", "1_0", "\u0661"])
def test_number_options_are_finite_ascii(capsys, store, value):
    with pytest.raises(SystemExit) as e:
        main(["sql", store, "SELECT 1", "--timeout", value])
    assert e.value.code == 2 and "argument --timeout: expected a" in capsys.readouterr().err
