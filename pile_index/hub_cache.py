"""Where the Hugging Face hub cache is and how a repository lies in it; no network, no hub client.

huggingface_hub's rules (``huggingface_hub.constants``, read there once at import; read here at each call, so
a changed environment is seen): the cache is ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
``~/.cache/huggingface/hub``; ``HF_HUB_OFFLINE`` set to 1/true/yes/on turns downloads off. A repository is
the folder ``{models|datasets}--ORG--NAME`` holding ``refs/<revision>`` (a commit sha), ``snapshots/<sha>/``
(the files, links into ``blobs/``) and ``blobs/`` (content named by its etag).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

SHA_RE = re.compile(r"^[0-9a-f]{40}$")
_HUB_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?"
_HUB_ID_RE = re.compile(rf"^{_HUB_PART}/{_HUB_PART}$")
REPO_TYPE_PREFIX = {"model": "models", "dataset": "datasets"}


def hub_cache_dir() -> Path:
    """The hub cache folder, by huggingface_hub's rules: $HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path("~/.cache/huggingface/hub").expanduser()


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` is set to a true value: nothing may be downloaded."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def repo_cache_folder(repo_id: str, cache_dir: Path | None = None, repo_type: str = "model") -> Path:
    """``CACHE/{models|datasets}--ORG--NAME``."""
    return (cache_dir or hub_cache_dir()) / (f"{REPO_TYPE_PREFIX[repo_type]}--" + repo_id.replace("/", "--"))


def is_hub_id(repo_id: str) -> bool:
    """``Org/name`` as the hub spells repo ids: letters, digits, ``_ . -``, each part starting and ending with a
    letter, digit or ``_``, no ``--`` or ``..``, at most 96 characters."""
    return (len(repo_id) <= 96 and _HUB_ID_RE.match(repo_id) is not None and "--" not in repo_id
            and ".." not in repo_id)


@contextlib.contextmanager
def quiet_hub_logs() -> Iterator[None]:
    """The hub client logs a warning per retry ('Retrying in 1s [Retry 1/5]'): our one error says it instead."""
    lg = logging.getLogger("huggingface_hub")
    old = lg.level
    lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        lg.setLevel(old)
