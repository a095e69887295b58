"""Independent tasks run here, in order, or fanned out as Ray tasks: one executor for every parallel job.

:func:`fan_out` calls ``fn(*args)`` for each task: in this process, one after another, or, with
``ray_address`` ("local" starts a Ray instance here, "auto" or an address joins a running cluster), as Ray
tasks (datatrove's ``executor/local.py`` and ``executor/ray.py``, behind one call). Either way:

- ``on_done(i, result)`` runs in this process as task ``i`` ends (in task order here, in completion order on
  Ray), so the caller writes its completion markers (:mod:`pile_index.jobs`, the n-gram build's run markers)
  in one process, and a task killed midway leaves nothing marked; resuming is the caller's: it passes only
  the tasks whose markers are missing (``done_before`` counts the others on the progress bar);
- the results come back in task order (with ``on_done``, what it returned for each);
- an error raised by a task is raised here as that error (a :class:`~pile_index.errors.PileIndexError` of
  the same class and message, not Ray's wrapper and remote traceback); a task that Ray lost (its worker
  died, it ran out of memory) is a ``PileIndexError`` naming the task.

Ray is imported only when ``ray_address`` is given, started only when there are tasks and it is not running
already, and shut down only if started here. Arguments travel to Ray workers pickled: a
:class:`~pile_index.format.store.TokenStore` pickles as its prefixes and is reopened by the worker, so the
store must be on a filesystem every worker sees.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .errors import ConfigError, PileIndexError
from .progress import progress_bar

log = logging.getLogger(__name__)

T = TypeVar("T")


def require_ray() -> Any:
    """The ``ray`` module, or a ConfigError naming `ray` (called before any work, so a build fails first)."""
    try:
        import ray
    except ImportError as e:
        raise ConfigError("`ray` needs Ray: pip install 'pile-index[ray]'") from e
    return ray


def fan_out(fn: Callable[..., T], tasks: Sequence[tuple], *, on_done: Callable[[int, T], Any] | None = None,
            ray_address: str | None = None, ray_num_cpus: int | None = None, num_gpus: float = 0,
            desc: str = "tasks", unit: str = "task", progress: bool = True, done_before: int = 0) -> list[Any]:
    """``[fn(*args) for args in tasks]``, here or on Ray (module docstring); ``on_done(i, result)`` as each ends.

    With ``on_done``, the list holds what it returns instead (a caller that writes each result away keeps
    none of them in memory).

    ``num_gpus``: GPUs each Ray task asks for (Ray places it on a node that has them; else one CPU each).
    ``ray_num_cpus``: the CPUs of a Ray instance started here (``ray_address="local"``). The progress bar
    counts ``done_before`` finished tasks plus these."""
    results: list[Any] = [None] * len(tasks)
    with progress_bar(total=done_before + len(tasks), initial=done_before, desc=desc, unit=unit,
                      enabled=progress) as bar:

        def finish(i: int, result: Any) -> None:
            results[i] = result if on_done is None else on_done(i, result)
            bar.update(1)

        if ray_address:
            _on_ray(fn, tasks, finish, ray_address, ray_num_cpus, num_gpus, desc)
        else:
            for i, args in enumerate(tasks):
                finish(i, fn(*args))
    return results


def _on_ray(fn: Callable, tasks: Sequence[tuple], finish: Callable[[int, Any], None], address: str,
            num_cpus: int | None, num_gpus: float, desc: str) -> None:
    ray = require_ray()
    if not tasks:
        return
    started = not ray.is_initialized()
    if started:
        try:
            if address == "local":
                ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except Exception as e:  # Ray's own ConnectionError / ValueError / RuntimeError for a bad address
            raise ConfigError(f"`ray` {address!r}: Ray did not start ({type(e).__name__}: {e}); expected 'local' "
                              f"(start Ray here), 'auto' or the address of a running Ray cluster") from e
    pending: dict[Any, int] = {}
    try:
        remote = ray.remote(num_gpus=num_gpus)(fn)
        pending = {remote.remote(*args): i for i, args in enumerate(tasks)}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                i = pending.pop(ref)
                finish(i, _get(ray, ref, i, len(tasks), desc))
    finally:
        for ref in pending:  # a failure (or Ctrl-C) here: the other tasks are not wanted any more
            try:
                ray.cancel(ref)
            except Exception:  # best effort: a task that already ended cannot be cancelled
                pass
        if started:
            ray.shutdown()


def _get(ray: Any, ref: Any, i: int, n: int, desc: str) -> Any:
    """``ray.get(ref)``, with a task's own error raised as itself and Ray's losses as a PileIndexError."""
    from ray.exceptions import RayError, RayTaskError

    try:
        return ray.get(ref)
    except RayTaskError as e:
        cause = e.cause
        if isinstance(cause, PileIndexError):
            raise cause from None  # the error the task raised, as it would be raised here
        if isinstance(cause, BaseException):
            raise cause from e  # a bug: the worker's traceback stays in the chain
        raise
    except RayError as e:
        raise PileIndexError(f"{desc}: Ray task {i + 1:,} of {n:,} did not finish ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else 'no message'}); the finished tasks are "
                             f"kept: rerun to resume") from e
