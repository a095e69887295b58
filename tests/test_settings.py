"""The limits table (pile_index/settings.py): the README's table is it, the service and ``serve --setting``
are built from it, and the core enforces each limit before the work (the CLI honours the same defaults)."""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import Settings
from cli.main import main
from cli.store_cmds import parse_setting
from pile_index.errors import LimitError
from pile_index.format import TokenStore
from pile_index.ngram import NgramIndex, build_index, locate_page
from pile_index.order import OrderConfig, open_order
from pile_index.settings import SETTINGS, default
from pile_index.sql import row_pieces_table
from tests.stores import sized_store

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_limits_table_is_the_core_table():
    text = README.read_text()
    head = "| setting | default | what it bounds |\n|---|---|---|\n"
    body = text[text.index(head) + len(head):].split("\n\n", 1)[0]
    rows = [re.fullmatch(r"\| `(\w+)` \| ([^|]+?) \| (.+) \|", line).groups() for line in body.splitlines()]
    assert [r[0] for r in rows] == [s.name for s in SETTINGS]
    for (name, cell, help_), s in zip(rows, SETTINGS):
        shown = f"{s.default:,}" if isinstance(s.default, int) else f"{s.default:g}"
        assert cell == shown or cell.startswith(shown + " ("), (name, cell)
        assert help_ == s.help, name


def test_service_settings_come_from_the_table():
    by_name = {f.name: f for f in fields(Settings)}
    for s in SETTINGS:
        assert by_name[s.name].default == s.default and Settings.describe()[s.name] == s.help
        assert parse_setting(s.name, "7") == (7 if isinstance(s.default, int) else 7.0)


SIZES = [40, 0, 1, 300, 7, 129, 64, 2, 90, 500, 33, 12]
OPTS = ["--seed", "5", "--seq-length", "32", "--num-samples", "100", "--batch-size", "4"]
CFG = OrderConfig(seed=5, seq_length=32, num_samples=100, batch_size=4)


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    prefix = str(tmp_path_factory.mktemp("limits") / "raw")
    sized_store(prefix, SIZES)
    open_order(prefix, CFG, build=True)
    return prefix


def test_doc_steps_refuses_before_expanding(raw, capsys, monkeypatch):
    order = open_order(raw, CFG)
    n = len(order.doc_steps(9).occurrences)
    assert n > 3
    with pytest.raises(LimitError, match=f"document 9 sits in {n} rows; max_occurrences=3") as e:
        order.doc_steps(9, max_occurrences=3)
    assert e.value.setting == "max_occurrences"
    assert main(["doc-steps", raw, *OPTS, "9", "--max-occurrences", "3"]) == 2
    assert "max_occurrences=3" in capsys.readouterr().err
    assert main(["doc-steps", raw, *OPTS, "9", "--json"]) == 0  # the table's default (100,000) is far above n
    assert len(json.loads(capsys.readouterr().out)["occurrences"]) == n
    settings = Settings(prefixes=[raw], seed=5, seq_length=32, num_samples=100, batch_size=4, max_occurrences=3)
    with TestClient(create_app(settings)) as client:
        r = client.get("/v1/documents/9/steps")
        assert r.status_code == 413 and r.json()["error"]["setting"] == "max_occurrences"


def test_row_pieces_limit_is_the_setting_max_view_rows(raw):
    order = open_order(raw, CFG)
    assert row_pieces_table(order, 0, 2).num_rows > 0
    with pytest.raises(LimitError, match="max_view_rows=4") as e:
        row_pieces_table(order, 0, 2, max_rows=4)
    assert e.value.setting == "max_view_rows" and default("max_view_rows") == 1 << 24
    settings = Settings(prefixes=[raw], seed=5, seq_length=32, num_samples=100, batch_size=4, max_view_rows=4)
    with TestClient(create_app(settings)) as client:
        r = client.get("/v1/sql", params={"sql": "SELECT count(*) FROM row_pieces", "steps": "0:2"})
        assert r.status_code == 413 and r.json()["error"]["setting"] == "max_view_rows"


def test_locate_page_limit_checked_once_in_the_core(raw, capsys):
    store = TokenStore(raw)
    build_index(store, progress=False)
    idx = NgramIndex(store)
    ids = np.asarray(open_order(raw, CFG).store[0][:1], dtype=np.int64)
    assert locate_page(idx, ids).limit == 100
    with pytest.raises(LimitError, match="max_locate_page=5") as e:
        locate_page(idx, ids, limit=6, max_locate_page=5)
    assert e.value.setting == "max_locate_page"
    big = default("max_locate_page") + 1
    assert main(["ngram", "locate", raw, "--tokens", str(int(ids[0])), "--limit", str(big)]) == 2
    assert "max_locate_page" in capsys.readouterr().err
