"""The folder of a resumable job: what its files are of, recorded once, checked on every rerun.

A long job (a dataset build's scoring parts, a Parquet export's files) writes each finished unit atomically
under its final name, so a unit that exists is complete and a rerun skips it (datatrove's completion
markers, with the file itself as the marker). What the units are of (the store, the order, the options) is
recorded in a job file beside them; a rerun with another job is refused, naming the fields that differ,
instead of mixing units of two jobs. ``restart`` deletes the folder's units first.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from .atomic import write_bytes
from .errors import ConfigError, FormatError
from .files import JOB_FILE
from .sidecar import read_json

log = logging.getLogger(__name__)


def job_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The keys whose values differ between two job records, sorted."""
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def claim_folder(folder: Path, job: dict[str, Any], *, job_name: str = JOB_FILE, restart: bool = False,
                 what: str = "job", units: str = "files", shown: Path | None = None, fix: str = "") -> Path:
    """Make ``folder`` hold units of ``job`` only and record it in ``folder/job_name``; returns that path.

    A folder holding files but no readable job file is a FormatError; one recorded for another job a
    ConfigError naming the fields that differ (``units`` names what the folder holds and ``shown`` the path
    the messages name, default ``folder``; ``fix`` ends them). With ``restart`` the folder is deleted first. A job file of an earlier
    layout (no ``job`` key) counts as another job."""
    shown = folder if shown is None else shown
    job_file = folder / job_name
    tail = f"; {fix}" if fix else ""
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{shown}: is a file, not a folder{tail or '; pass a folder'}")
    if restart and folder.exists():
        log.info("restart: deleting %s", folder)
        shutil.rmtree(folder)
    if folder.is_dir() and any(folder.iterdir()):
        try:
            old = read_json(job_file) if job_file.is_file() else None
        except FormatError:
            old = None
        if not isinstance(old, dict):
            raise FormatError(f"{folder}: holds files but no readable {job_name} (not {units} of a {what}, or "
                              f"damaged){tail}")
        if not isinstance(old.get("job"), dict):
            raise ConfigError(f"{shown}: holds {units} in the layout of an earlier pile-index version{tail}")
        if old["job"] != job:
            raise ConfigError(f"{shown}: holds {units} of a different {what} (differs in: "
                              f"{', '.join(job_differences(old['job'], job))}){tail}")
    folder.mkdir(parents=True, exist_ok=True)
    write_bytes(job_file, (json.dumps({"job": job}, sort_keys=True, indent=1) + "\n").encode())
    return job_file
