"""Loading the tokenizer: a ``tokenizer.json`` path, or a Hugging Face hub id when online.

Pythia uses the GPT-NeoX-20B BPE (``docs/FORMATS.md``, "Tokens and the tokenizer"): ``<|endoftext|>`` = 0 (EOD),
``<|padding|>`` = 1. The product never requires that file: any ``tokenizers`` JSON works.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tokenizers import Tokenizer

from .errors import ConfigError, NotFoundError

EOD_TOKEN = "<|endoftext|>"


def load_tokenizer(path_or_hub_id: str | os.PathLike) -> Tokenizer:
    """Load from a file, a folder holding ``tokenizer.json``, or a hub id (``EleutherAI/pythia-70m``)."""
    p = Path(path_or_hub_id)
    if p.is_dir():
        p = p / "tokenizer.json"
    if p.is_file():
        try:
            return Tokenizer.from_file(str(p))
        except Exception as e:  # tokenizers raises a bare Exception on a bad file
            raise ConfigError(f"--tokenizer {p}: not a tokenizers JSON file ({e}); pass a tokenizer.json") from e
    name = str(path_or_hub_id)
    if os.sep in name.strip("/").replace("/", "", 1) or name.endswith(".json"):
        raise NotFoundError(f"--tokenizer {name}: no such file; pass a tokenizer.json path or a hub id")
    try:
        return Tokenizer.from_pretrained(name)
    except Exception as e:
        raise NotFoundError(
            f"--tokenizer {name}: not a file and could not be loaded from the hub ({e}); "
            f"offline, pass the path of a tokenizer.json"
        ) from e


def eod_id(tok: Tokenizer) -> int:
    """Id of ``<|endoftext|>``; ConfigError if the tokenizer has none (needed for --append-eod)."""
    i = tok.token_to_id(EOD_TOKEN)
    if i is None:
        raise ConfigError(f"the tokenizer has no {EOD_TOKEN} token; --append-eod needs one")
    return int(i)


def tokenizer_fingerprint(tok: Tokenizer) -> str:
    """sha256 of the tokenizer's JSON serialisation: identifies it in reports and store metadata."""
    return hashlib.sha256(tok.to_str().encode()).hexdigest()
