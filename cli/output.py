"""Printing results: ``--json`` gives one JSON document on stdout; otherwise a readable text form."""

from __future__ import annotations

import json
import sys
from dataclasses import fields, is_dataclass
from typing import Any

import numpy as np


def to_jsonable(obj: Any) -> Any:
    """The core's typed answers (dataclasses: their fields in order, as ``dataclasses.asdict``, less the
    ``omit_none`` fields that are None) and numpy scalars and arrays to plain Python, recursively (at the output
    edge: json cannot encode numpy types)."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(v) for f in fields(obj)
                if not ((v := getattr(obj, f.name)) is None and f.metadata.get("omit_none"))}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def emit(obj: Any, as_json: bool) -> None:
    """Print ``obj`` (a typed answer, or a dict) as JSON (``--json``) or as ``key: value`` lines."""
    obj = to_jsonable(obj)
    if as_json:
        json.dump(obj, sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)):
                v = json.dumps(v, ensure_ascii=False)
                if len(v) > 200:
                    v = v[:200] + " ..."
            print(f"{k}: {v}")
    else:
        print(obj)


def first(result: Any, *names: str) -> dict[str, Any]:
    """A typed answer as a dict with the fields ``names`` first (the CLI's key order where it predates the
    API's: ``ngram count`` and ``locate`` print ``count`` before ``tokens``)."""
    rec = to_jsonable(result)
    return {**{k: rec[k] for k in names}, **rec}


def add_json_flag(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
