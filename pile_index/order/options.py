"""The training-order options a user gives, written once: the CLI's order flags and the service's order
settings are generated from the fields of :class:`OrderOptions`.

A preset and/or explicit fields (explicit ones win) make an :class:`~.index_maps.OrderConfig`; a preshuffled
store's row count stands in for ``num_samples``. Each field's metadata carries its help (with its unit) and,
where the service names it differently, its setting name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..format.store import TokenStore
from .index_maps import PRESETS, OrderConfig, order_config


def _opt(help: str, **extra: Any) -> dict[str, Any]:
    return {"help": help, **extra}


@dataclass(frozen=True)
class OrderOptions:
    """The options that name a training order (None = not given: the preset's value, or the default)."""

    preset: str | None = field(default=None, metadata=_opt(
        "named order: pythia = seed 1234, seq-length 2048, num-samples 147,164,160, name train_0, batch 1024, "
        "143,000 steps", choices=tuple(sorted(PRESETS)), setting="order_preset"))
    seed: int | None = field(default=None, metadata=_opt("GPT-NeoX seed of the order"))
    seq_length: int | None = field(default=None, metadata=_opt("sequence length L in tokens (rows have L + 1 tokens)"))
    num_samples: int | None = field(default=None, metadata=_opt(
        "num_samples GPT-NeoX was asked for, in rows (in the cache file names)"))
    name: str | None = field(default=None, metadata=_opt("dataset name in the cache file names (default train_0)"))
    batch_size: int | None = field(default=None, metadata=_opt("rows per step (default 1024)"))
    train_steps: int | None = field(default=None, metadata=_opt(
        "steps counted as trained (default num_samples // batch size)"))
    preshuffled: bool = field(default=False, metadata=_opt(
        "the store is a preshuffled store (item k = sample k) instead of raw documents + index maps"))

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.type == "bool":
                if not isinstance(v, (bool, np.bool_)):
                    raise ConfigError(f"`{f.name}`: expected true or false, found {v!r}")
            elif v is not None and f.type == "int | None" and (
                    isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer))):
                raise ConfigError(f"`{f.name}`: expected an integer, found {v!r}")
            elif v is not None and f.type == "str | None" and not isinstance(v, str):
                raise ConfigError(f"`{f.name}`: expected a string, found {v!r}")
        if self.preset is not None and self.preset not in PRESETS:
            raise ConfigError(f"order preset {self.preset!r} is unknown; expected one of {sorted(PRESETS)}")

    @property
    def given(self) -> bool:
        """Whether any option is given (a service without any answers every question but order ones)."""
        return any(v is not None and v is not False for v in (getattr(self, f.name) for f in fields(self)))

    def config(self, n_items: int | None = None) -> OrderConfig:
        """The validated :class:`OrderConfig` (a preshuffled store's ``n_items`` rows stand in for
        num_samples)."""
        return order_config(self.preset, seed=self.seed, seq_length=self.seq_length, num_samples=self.num_samples,
                            name=self.name, batch_size=self.batch_size, train_steps=self.train_steps,
                            preshuffled_items=n_items if self.preshuffled else None)

    def spec(self) -> Callable[[TokenStore], OrderConfig]:
        """The options as a function of the store, for :meth:`Corpus.open` (called on first use of the order,
        so missing options refuse only order questions)."""
        return lambda store: self.config(len(store))


def setting_name(f) -> str:
    """The service's setting name of an :class:`OrderOptions` field."""
    return f.metadata.get("setting", f.name)
