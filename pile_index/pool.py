"""One process-wide pool of threads for leaf work: numba kernels that release the GIL over disjoint slices.

Its tasks never wait on other tasks of the pool, so a caller blocking on results cannot deadlock it, whichever
threads (API workers included) submit at once. :func:`run_blocks` is the one way the core splits a loop over
``n`` independent items across it: the caller and the pool's threads take the blocks as they come, and the
results come back in block order.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

POOL_THREADS = max(2, min(16, os.cpu_count() or 2))  # threads of the pool (and most blocks of run_blocks)

_POOL: ThreadPoolExecutor | None = None
_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """The shared pool, made on first use."""
    global _POOL
    if _POOL is None:
        with _LOCK:
            if _POOL is None:
                _POOL = ThreadPoolExecutor(max_workers=POOL_THREADS, thread_name_prefix="pile-index")
    return _POOL


def block_cuts(n: int, min_block: int, blocks: int = POOL_THREADS) -> list[int]:
    """Cut points of ``range(n)`` into at most ``blocks`` near-equal blocks of at least ``min_block`` items
    (one block when ``n < 2 * min_block``): ``[0, ..., n]``."""
    k = max(1, min(blocks, n // max(1, min_block)))
    return [n * b // k for b in range(k + 1)]


def run_blocks(fn: Callable[[int, int], T], n: int, min_block: int, blocks: int = POOL_THREADS) -> list[T]:
    """``[fn(a, b) for each block [a, b) of block_cuts(n, min_block, blocks)]``, the blocks shared out as they
    come: the calling thread and up to ``POOL_THREADS - 1`` pool threads each take the next block not yet
    taken until none is left, so a thread that starts late or runs slow takes fewer (pass more blocks than
    threads for that). A helper that has not started when the blocks are gone is cancelled, not waited for.
    A block's exception is raised here, after every block ended (the first in block order)."""
    cuts = block_cuts(n, min_block, blocks)
    k = len(cuts) - 1
    if k == 1:
        return [fn(0, n)]
    results: list = [None] * k
    errors: list[BaseException | None] = [None] * k
    claim = itertools.count()  # next() is one C call under the GIL: each block is taken once

    def work() -> None:
        while (i := next(claim)) < k:
            try:
                results[i] = fn(cuts[i], cuts[i + 1])
            except BaseException as e:  # raised by the caller below, after every block ended
                errors[i] = e

    helpers = [_pool().submit(work) for _ in range(min(POOL_THREADS, k) - 1)]
    work()
    for f in helpers:
        if not f.cancel():  # started: it ends with the block it holds
            f.result()
    for e in errors:
        if e is not None:
            raise e
    return results
