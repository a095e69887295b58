"""Atomic file writes: nothing half-written is ever visible under the final name.

Pattern (nanochat download, datatrove executor): write to a temp file in the same folder, flush, fsync,
``os.replace`` onto the final name, fsync the folder. A crash leaves at most a temp file that no reader
opens, named ``.FINAL.tmp-HOST-PID-XXXXXXXX[.suffix]`` so that it says which file and which writer it
belongs to. The first atomic write of a process into a folder removes the temps there whose writer is gone
(same host, pid no longer running) and the unstamped ``.FINAL.tmp-XXXXXXXX`` temps of earlier versions; a
temp of a live writer, or of another host sharing the folder, is left alone.

Test hook (not for production use): with ``PILE_INDEX_KILL_AT=N`` in the environment the process sends
itself SIGKILL at its Nth atomic-write event. Each atomic write has three events, in order: the temp file
is created (empty), the temp file is complete and fsynced (just before the rename), the rename is done.
``tests/test_crash_safety.py`` walks N = 1, 2, ... over ``ingest``, ``order build`` and ``ngram build``
until a run finishes, so every crash point between two writes is taken once, the same on any machine. When
the variable is unset an event costs one environment look-up.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np

from .files import digest_path

KILL_AT_ENV = "PILE_INDEX_KILL_AT"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp alone makes files private (0600)

# mkstemp's random part: 8 characters from this set (no "-", so the fields split from the right).
_TEMP_RE = re.compile(r"^\.(?P<final>.+)\.tmp-(?:(?P<host>.+)-(?P<pid>\d+)-)?(?P<rand>[a-z0-9_]{8})(?P<suffix>.*)$")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname())[:40] or "host"


def _temp_prefix(final: Path) -> str:
    return f".{final.name}.tmp-{_host()}-{os.getpid()}-"


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # running, under another user
        return True
    except OverflowError:  # not a pid this system can have
        return False
    return True


def _is_stale(name: str, host: str) -> bool:
    """Whether ``name`` is a temp of this module whose writer is gone (or an unstamped one of old versions)."""
    m = _TEMP_RE.match(name)
    if m is None or m["suffix"] not in ("", Path(m["final"]).suffix):  # atomic_open: none; atomic_path: final's
        return False
    if m["pid"] is None:  # written before temps carried their writer: no writer of this version is using it
        return True
    return m["host"] == host and int(m["pid"]) != os.getpid() and not _pid_running(int(m["pid"]))


_cleaned: tuple[int, set[str]] = (os.getpid(), set())  # folders cleaned by this process (reset in a fork)


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove the temps under ``folder`` left by writers that are gone; returns the removed paths."""
    folder = Path(folder)
    host, removed = _host(), []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        if e.name.startswith(".") and ".tmp-" in e.name and _is_stale(e.name, host):
            with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
                os.unlink(e.path)
                removed.append(Path(e.path))
    return removed


def _clean_once(folder: Path) -> None:
    global _cleaned
    if _cleaned[0] != os.getpid():
        _cleaned = (os.getpid(), set())
    key = os.path.abspath(folder)
    if key not in _cleaned[1]:
        remove_stale_temps(folder)
        _cleaned[1].add(key)


_events: list[int] = [os.getpid(), 0]  # [pid, atomic-write events seen] for the test hook


def _event() -> None:
    """Test hook: SIGKILL this process at its ``PILE_INDEX_KILL_AT``-th atomic-write event (see module doc)."""
    at = os.environ.get(KILL_AT_ENV)
    if not at:
        return
    if _events[0] != os.getpid():  # a forked child counts its own events
        _events[:] = [os.getpid(), 0]
    _events[1] += 1
    if _events[1] == int(at):
        os.kill(os.getpid(), signal.SIGKILL)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some filesystems do not allow opening folders; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _new_temp(final: Path, suffix: str = "") -> tuple[int, str]:
    final.parent.mkdir(parents=True, exist_ok=True)
    _clean_once(final.parent)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(final), dir=final.parent, suffix=suffix)
    try:
        os.chmod(tmp, _FILE_MODE)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    return fd, tmp


def _forget_digest(final: Path) -> None:
    """Drop ``FILE.sha256`` before FILE is replaced: a digest record never outlives the bytes it describes
    (the writer records the new file's digest once it is in place)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(digest_path(final))


@contextlib.contextmanager
def _replacing(final: Path, suffix: str = "") -> Iterator[tuple[int, str]]:
    """A new temp file beside ``final`` (its fd and name) for the body to fill and fsync; on clean exit it is
    renamed onto ``final``, on an exception removed. The three kill-point events of every atomic write
    (temp created, temp complete, renamed) are raised here."""
    fd, tmp = _new_temp(final, suffix=suffix)
    try:
        _event()  # temp created
        yield fd, tmp
        _event()  # temp complete
        _forget_digest(final)
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _event()  # renamed
    _fsync_dir(final.parent)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temp file beside ``path``; on clean exit fsync it and rename it onto ``path``.

    On an exception the temp file is removed and the exception re-raised; ``path`` is untouched.
    """
    with _replacing(Path(path)) as (fd, _tmp):
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path`` for a library that writes by file name (pyarrow, np.save).

    The temp keeps ``path``'s suffix (some writers choose the format by it). On clean exit the file is
    fsynced and renamed onto ``path``; on an exception it is removed.
    """
    final = Path(path)
    with _replacing(final, suffix=final.suffix) as (fd, tmp):
        os.close(fd)
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """``np.save`` atomically, with the exact bytes ``np.save(path, array, allow_pickle=True)`` writes."""
    with atomic_open(path, "wb") as f:
        np.save(f, array, allow_pickle=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)
