"""Core errors name fields and parameters in backticks (`to`, `train_steps`); the CLI prints the command's
flag for each (``--to``), the API keeps the field name."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import Settings
from cli.main import FIELD_FLAGS, field_message, main
from pile_index.errors import QueryError
from pile_index.format import write_indexed
from pile_index.order import OrderConfig, open_order

CORE = Path(__file__).resolve().parents[1] / "pile_index"


def test_no_core_message_names_a_cli_flag():
    """Every string literal inside a ``raise`` of the core: no ``--flag`` outside a quoted command to run
    (``pile-index order build ... --seed``, ``huggingface-cli download ... --revision``)."""
    flag = re.compile(r"(?<![\w-])--[a-z][a-z-]*")
    found = []
    for path in sorted(CORE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Raise):
                continue
            text = "".join(c.value for c in ast.walk(node) if isinstance(c, ast.Constant) and isinstance(c.value, str))
            text = re.sub(r"`(pile-index|huggingface-cli) [^`]*`?", "", text)
            if flag.search(text):
                found.append(f"{path.relative_to(CORE)}:{node.lineno}: {text}")
    assert found == []


def test_field_message_uses_the_commands_flags():
    flags = {"to": "--to", "train_steps": "--train-steps", "indices_file": "--indices"}
    assert field_message("`to` 3 is before `step` 5; expected `to` >= `step`", flags) == \
        "--to 3 is before `step` 5; expected --to >= `step`"
    assert field_message("pass `train_steps` <= 4 (`unknown` stays)", flags) == "pass --train-steps <= 4 (`unknown` stays)"
    assert FIELD_FLAGS["indices_file"] == "--indices"


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    prefix = str(tmp_path_factory.mktemp("fields") / "raw")
    rng = np.random.default_rng(9)
    write_indexed(prefix, [rng.integers(2, 50000, n).astype(np.uint16) for n in [40, 300, 129, 500]], np.uint16)
    open_order(prefix, OrderConfig(seed=5, seq_length=32, num_samples=20, batch_size=4), build=True)
    return prefix


def test_to_is_a_field_in_the_core_and_the_api_and_a_flag_in_the_cli(raw, capsys, tmp_path):
    order = open_order(raw, OrderConfig(seed=5, seq_length=32, num_samples=20, batch_size=4))
    with pytest.raises(QueryError, match=r"^`to` 1 is before step 2; expected `to` >= step$"):
        order.batch(2, 1)
    opts = ["--seed", "5", "--seq-length", "32", "--num-samples", "20", "--batch-size", "4"]
    assert main(["batch", raw, *opts, "--step", "2", "--to", "1", "--out", str(tmp_path / "b.npy")]) == 2
    assert "error: --to 1 is before step 2; expected --to >= step" in capsys.readouterr().err
    assert main(["sample", raw, "--seed", "5", "--step", "0", "--slot", "0"]) == 2
    assert "the training order needs --seq-length, --num-samples (or --preset pythia)" in capsys.readouterr().err
    with TestClient(create_app(Settings(prefixes=[raw], seed=5, seq_length=32, num_samples=20, batch_size=4))) as c:
        body = c.get("/v1/batches/2", params={"to": 1}).json()
        assert body["error"]["message"].startswith("`to` 1 is before step 2")
