"""Service settings: one object, every limit a named setting with a default and help (datasette's SETTINGS).

The limits are the core's table (``pile_index/settings.py``), the order settings are generated from
:class:`pile_index.order.OrderOptions` (``preset`` is served as ``order_preset``). An error that hits a limit names the setting (``LimitError(..., setting=NAME)``).
"""

from __future__ import annotations

from dataclasses import field, fields, make_dataclass
from typing import Any

from pile_index.order import OrderOptions
from pile_index.order.options import setting_name
from pile_index.settings import SETTINGS

_SERVICE_FIELDS = [
    ("prefixes", "list[str]", field(default_factory=list, metadata={"help": "token store prefixes (PREFIX.bin/.idx)"})),
    ("tokenizer", "str | None", field(default=None, metadata={"help": "tokenizer.json path or hub id, for text"})),
]
_ORDER_FIELDS = [(setting_name(f), f.type, field(default=f.default, metadata={"help": f.metadata["help"]}))
                 for f in fields(OrderOptions)]
_DATASET_FIELDS = [
    ("datasets", "list[str]", field(default_factory=list, metadata={"help": "dataset folders (dataset build --out) to serve"})),
]
_LIMIT_FIELDS = [(s.name, type(s.default).__name__, field(default=s.default, metadata={"help": s.help}))
                 for s in SETTINGS]


def _describe(cls) -> dict[str, str]:
    """Setting name -> help text, for docs and the /v1/settings route."""
    return {f.name: f.metadata.get("help", "") for f in fields(cls)}


def _order_options(self) -> OrderOptions:
    """The training-order options these settings name."""
    return OrderOptions(**{f.name: getattr(self, setting_name(f)) for f in fields(OrderOptions)})


Settings = make_dataclass(
    "Settings", [*_SERVICE_FIELDS, *_ORDER_FIELDS, *_DATASET_FIELDS, *_LIMIT_FIELDS],
    namespace={"__doc__": "Everything the service needs to start; limits are per request.",
               "__module__": __name__, "describe": classmethod(_describe), "order_options": _order_options})


def order_settings(opts: OrderOptions) -> dict[str, Any]:
    """The :class:`Settings` fields of order options ``opts`` (``Settings(**order_settings(opts), ...)``)."""
    return {setting_name(f): getattr(opts, f.name) for f in fields(OrderOptions)}
