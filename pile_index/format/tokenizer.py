"""Loading the tokenizer: a ``tokenizer.json`` path, or a Hugging Face hub id when online.

Pythia uses the GPT-NeoX-20B BPE (``docs/FORMATS.md``, "Tokens and the tokenizer"): ``<|endoftext|>`` = 0 (EOD),
``<|padding|>`` = 1. The product never requires that file: any ``tokenizers`` JSON works.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from ..errors import ConfigError, NotFoundError

EOD_TOKEN = "<|endoftext|>"


@dataclass(frozen=True)
class TokenizerFile:
    """A loaded tokenizer and the exact bytes it was loaded from."""

    tokenizer: Tokenizer
    data: bytes
    """The file's bytes as given; for a hub id, the ``tokenizers`` serialisation (no file is at hand)."""
    source: str
    """The path read, or ``hub:ID`` for a hub id."""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @classmethod
    def of(cls, tokenizer: Tokenizer) -> "TokenizerFile":
        """A tokenizer object given in code: its bytes are the ``tokenizers`` serialisation."""
        return cls(tokenizer, tokenizer.to_str().encode("utf-8"), "(object)")


def read_tokenizer(path_or_hub_id: str | os.PathLike) -> TokenizerFile:
    """Load from a file, a folder holding ``tokenizer.json``, or a hub id (``EleutherAI/pythia-70m``),
    keeping the bytes read so a copy beside a store is that file, byte for byte."""
    p = Path(path_or_hub_id)
    if p.is_dir():
        p = p / "tokenizer.json"
    if p.is_file():
        data = p.read_bytes()
        try:
            tok = Tokenizer.from_str(data.decode("utf-8"))
        except Exception as e:  # tokenizers raises a bare Exception on a bad file
            raise ConfigError(f"`tokenizer` {p}: not a tokenizers JSON file ({e}); pass a tokenizer.json") from e
        return TokenizerFile(tok, data, str(p))
    name = str(path_or_hub_id)
    if os.sep in name.strip("/").replace("/", "", 1) or name.endswith(".json"):
        raise NotFoundError(f"`tokenizer` {name}: no such file; pass a tokenizer.json path or a hub id")
    try:
        tok = Tokenizer.from_pretrained(name)
    except Exception as e:
        raise NotFoundError(
            f"`tokenizer` {name}: not a file and could not be loaded from the hub ({e}); "
            f"offline, pass the path of a tokenizer.json"
        ) from e
    return TokenizerFile(tok, tok.to_str().encode("utf-8"), f"hub:{name}")


def load_tokenizer(path_or_hub_id: str | os.PathLike) -> Tokenizer:
    """Load from a file, a folder holding ``tokenizer.json``, or a hub id (``EleutherAI/pythia-70m``)."""
    return read_tokenizer(path_or_hub_id).tokenizer


def eod_id(tok: Tokenizer) -> int:
    """Id of ``<|endoftext|>``; ConfigError if the tokenizer has none (needed for ``append_eod``)."""
    i = tok.token_to_id(EOD_TOKEN)
    if i is None:
        raise ConfigError(f"the tokenizer has no {EOD_TOKEN} token; `append_eod` needs one")
    return int(i)
