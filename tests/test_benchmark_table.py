"""The README's benchmark table is the one `benchmarks/run_all.py` generated, not a hand-edited copy."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run_all():
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "benchmarks" / "run_all.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_holds_the_generated_table():
    run_all = _run_all()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    results = (ROOT / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8")
    section = readme.split(run_all.BEGIN + "\n", 1)[1].split(run_all.END, 1)[0]
    assert section == results
    assert "| ratio (ours / named baseline) |" in section


def test_replace_section_keeps_the_rest_and_refuses_missing_markers():
    run_all = _run_all()
    doc = f"head\n{run_all.BEGIN}\nold\n{run_all.END}\ntail\n"
    assert run_all.replace_section(doc, "new\n") == f"head\n{run_all.BEGIN}\nnew\n{run_all.END}\ntail\n"
    try:
        run_all.replace_section("no markers\n", "new\n")
    except SystemExit as e:
        assert "run_all:begin" in str(e)
    else:
        raise AssertionError("a README without the markers was accepted")
