"""`doc --offset` and `/v1/documents/{id}?offset=` past a document's end: a QueryError naming its length."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import Settings
from cli.main import main
from pile_index import TokenStore, write_indexed
from pile_index.errors import QueryError
from pile_index.sql import document_view


@pytest.fixture()
def prefix(tmp_path):
    write_indexed(tmp_path / "s", [np.arange(256) % 50, np.array([], dtype=np.uint16)], np.uint16)
    return str(tmp_path / "s")


def test_offset_past_the_end_is_refused(prefix, capsys):
    store = TokenStore(prefix)
    assert document_view(store, 0, offset=255).tokens == [255 % 50]
    assert document_view(store, 1, offset=0).tokens == []  # an empty document has offset 0 only
    for doc, offset in ((0, 256), (0, 300), (0, -1), (1, 1)):
        with pytest.raises(QueryError, match=rf"offset {offset:,} is out of range: document {doc} has "):
            document_view(store, doc, offset=offset)

    assert main(["doc", prefix, "0", "--offset", "300", "--json"]) == 2
    err = capsys.readouterr().err
    assert "offset 300 is out of range: document 0 has 256 tokens, so offset must be 0..255" in err
    assert main(["doc", prefix, "0", "--offset", "250", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tokens"] == [t % 50 for t in range(250, 256)]

    with TestClient(create_app(Settings(prefixes=[prefix]))) as client:
        r = client.get("/v1/documents/0", params={"offset": 300})
        assert r.status_code == 400 and r.json()["error"]["type"] == "bad_query"
        assert "document 0 has 256 tokens" in r.json()["error"]["message"]
