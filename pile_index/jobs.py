"""The folder of a resumable job: what its files are of, recorded once, checked on every rerun.

A long job (a dataset build's scoring parts, a Parquet export's files) writes each finished unit atomically
under its final name, so a unit that exists is complete and a rerun skips it (datatrove's completion
markers, with the file itself as the marker). What the units are of (the store, the order, the options) is
recorded in a job file beside them; a rerun with another job is refused, naming the fields that differ,
instead of mixing units of two jobs. ``restart`` deletes the folder's units first.

Two shapes share the record format (``{"job": ...}``, sorted keys, atomic) and the refusal of another job:
:func:`claim_folder`, where a unit's file is its own marker (dataset parts, Parquet exports), and
:class:`JobRecord`, a record that also lists each finished unit with its size (a score run's
``OUT.parts/manifest.json``).
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from .atomic import write_bytes
from .errors import ConfigError, FormatError
from .files import JOB_FILE
from .sidecar import load_sidecar, read_json

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
        refuse_other_job(old["job"], job, shown=shown, what=what, units=units, fix=fix)
    folder.mkdir(parents=True, exist_ok=True)
    _save(job_file, {"job": job})
    return job_file


def refuse_other_job(old: dict[str, Any], job: dict[str, Any], *, shown: Path, what: str = "job",
                     units: str = "files", fix: str = "") -> None:
    """ConfigError naming the fields that differ unless ``old`` is ``job``: ``shown`` holds ``units`` of another."""
    if old != job:
        raise ConfigError(f"{shown}: holds {units} of a different {what} (differs in: "
                          f"{', '.join(job_differences(old, job))}){'; ' + fix if fix else ''}")


def _save(path: Path, data: dict[str, Any]) -> None:
    write_bytes(path, (json.dumps(data, sort_keys=True, indent=1) + "\n").encode())


class JobRecord:
    """A job record that also lists its finished units: ``{"job": ..., UNITS: {name: {"bytes": n, ...}}, ...}``.

    Opened on ``path``: an existing record is checked against ``spec`` (:func:`~pile_index.sidecar.load_sidecar`,
    FormatError naming the bad field, ending with ``damaged_fix``, default ``fix``) and against ``job`` (:func:`refuse_other_job`); a new one starts from
    ``empty``. A unit is done when it is recorded and its file in the record's folder has the recorded size,
    so a unit written but not yet recorded (a crash between the two) is computed again."""

    def __init__(self, path: Path, job: dict[str, Any], *, spec: dict[str, Any], empty: dict[str, Any],
                 units_key: str = "parts", what: str = "job", units: str = "parts", shown: Path | None = None,
                 fix: str = "", damaged_fix: str | None = None):
        self.path, self.folder, self.units_key = path, path.parent, units_key
        if path.is_file():
            data = load_sidecar(path, spec, fix if damaged_fix is None else damaged_fix)
            refuse_other_job(data.get("job") or {}, job, shown=path.parent if shown is None else shown,
                             what=what, units=units, fix=fix)
            self.data = data
        else:
            self.data = {**copy.deepcopy(empty), "job": job, units_key: {}}

    def done(self, name: str) -> bool:
        """Unit ``name`` is recorded and its file is there with the recorded size."""
        entry = self.data[self.units_key].get(name)
        unit = self.folder / name
        return entry is not None and unit.is_file() and unit.stat().st_size == entry["bytes"]

    def finish(self, name: str, **facts: Any) -> None:
        """Record unit ``name`` (written under the folder) with its size and ``facts``, and save the record."""
        self.data[self.units_key][name] = {**facts, "bytes": (self.folder / name).stat().st_size}
        self.save()

    def save(self) -> None:
        """Write the record atomically."""
        _save(self.path, self.data)
