"""JSON sidecars: the small JSON files pile-index writes beside its data (the n-gram manifest and shard markers,
the token-statistics cache, completion markers), read back with their required keys and types checked.

A sidecar that is missing a key, holds a string where a count belongs, is cut short, is not UTF-8, nests
without end or is a symlink loop raises one :class:`FormatError` naming the file, the field, what was expected
and the fix, never a ``TypeError`` or ``KeyError`` from the code that uses it. Every reader of a sidecar goes
through :func:`load_sidecar` (or :func:`read_json` where the caller checks the content itself, as the scorer
does for a model's ``config.json`` and weight index).

A spec describes the expected document: a ``dict`` maps keys to specs; a one-element ``list`` means "a list
whose every element matches"; a type or tuple of types is matched with ``isinstance`` (``int`` never matches a
``bool``, ``float`` also accepts an ``int``); :func:`optional` marks a key that may be absent. Keys not in the
spec are allowed (newer writers may add fields).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from .errors import FormatError

MAX_SIDECAR_BYTES = 64 << 20  # the largest sidecar pile-index writes (an n-gram manifest) is well under 1 MB


class optional:  # noqa: N801 - reads as a spec keyword: {"digest": optional(str)}
    """A key that may be absent (when present, its value must match ``spec``)."""

    def __init__(self, spec: Any):
        self.spec = spec


def read_json(path: str | os.PathLike, fix: str = "", *, max_bytes: int = MAX_SIDECAR_BYTES,
              what: str = "pile-index sidecar", constants: bool = False) -> Any:
    """The parsed JSON document at ``path``, or a FormatError naming it (and ``fix``): unreadable (missing, a
    folder, a symlink loop), over ``max_bytes``, not UTF-8, not JSON, nested too deeply for the parser, or
    (unless ``constants``) holding NaN / Infinity. Also the reader of the small JSON inputs the scorer takes
    (a model's ``config.json``, a weight index), with their own ``max_bytes`` and ``what``."""
    p = Path(path)
    tail = f"; {fix}" if fix else ""
    try:
        with open(p, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise FormatError(f"{p}: cannot be read ({e.strerror or e}){tail}") from e
    if len(data) > max_bytes:
        raise FormatError(f"{p}: larger than {max_bytes:,} bytes, too large for a {what}{tail}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FormatError(f"{p}: not valid JSON (not UTF-8 text: {e.reason} at byte {e.start:,}){tail}") from e
    try:
        return json.loads(text) if constants else json.loads(text, parse_constant=_no_constant)
    except RecursionError as e:
        raise FormatError(f"{p}: JSON nested too deeply to be a {what}{tail}") from e
    except ValueError as e:  # JSONDecodeError, NaN / Infinity, integers of more than 4,300 digits
        raise FormatError(f"{p}: not valid JSON ({e}){tail}") from e


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def load_sidecar(path: str | os.PathLike, spec: dict[str, Any], fix: str) -> dict[str, Any]:
    """Read the JSON object at ``path`` and check it against ``spec``; FormatError names the first bad field."""
    doc = read_json(path, fix)
    check(doc, spec, Path(path), fix)
    return doc


def check(value: Any, spec: Any, path: Path, fix: str, field: str = "") -> None:
    """Raise FormatError unless ``value`` matches ``spec`` (see the module docstring)."""
    where = field or "the document"
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            raise FormatError(f"{path}: {where}: expected a JSON object, found {_show(value)}; {fix}")
        for key, sub in spec.items():
            name = f"{field}.{key}" if field else key
            if key not in value:
                if isinstance(sub, optional):
                    continue
                raise FormatError(f"{path}: {name}: expected {_describe(sub)}, found nothing (the key is missing); "
                                  f"{fix}")
            check(value[key], sub.spec if isinstance(sub, optional) else sub, path, fix, name)
        return
    if isinstance(spec, list):
        if not isinstance(value, list):
            raise FormatError(f"{path}: {where}: expected a JSON list, found {_show(value)}; {fix}")
        for i, item in enumerate(value):
            check(item, spec[0], path, fix, f"{field}[{i}]")
        return
    if isinstance(spec, optional):
        check(value, spec.spec, path, fix, field)
        return
    if not _matches(value, spec):
        raise FormatError(f"{path}: {where}: expected {_describe(spec)}, found {_show(value)}; {fix}")


def _matches(value: Any, spec: type | tuple[type, ...]) -> bool:
    types = spec if isinstance(spec, tuple) else (spec,)
    for t in types:
        if t is None or t is type(None):
            if value is None:
                return True
        elif t is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return True
        elif t is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                return True
        elif isinstance(value, t):
            return True
    return False


_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false", dict: "a JSON object",
          list: "a JSON list", type(None): "null"}


def _describe(spec: Any) -> str:
    if isinstance(spec, optional):
        return _describe(spec.spec)
    if isinstance(spec, dict):
        return "a JSON object"
    if isinstance(spec, list):
        return "a JSON list"
    types = spec if isinstance(spec, tuple) else (spec,)
    return " or ".join(_NAMES.get(t if t is not None else type(None), getattr(t, "__name__", str(t))) for t in types)


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a JSON object"
    if isinstance(value, list):
        return "a JSON list"
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
