"""One process-wide pool of threads for leaf work: numba kernels that release the GIL over disjoint slices.

Its tasks never wait on other tasks of the pool, so a caller blocking on results cannot deadlock it, whichever
threads (API workers included) submit at once. :func:`run_blocks` is the one way the core splits a loop over
``n`` independent items across it: the caller runs the first block itself, the pool the others, and the
results come back in block order.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

POOL_THREADS = max(2, min(16, os.cpu_count() or 2))  # threads of the pool (and most blocks of run_blocks)

_POOL: ThreadPoolExecutor | None = None
_LOCK = threading.Lock()


def pool() -> ThreadPoolExecutor:
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
    """``[fn(a, b) for each block [a, b) of block_cuts(n, min_block, blocks)]``: the first block in the calling
    thread, the rest on the pool at the same time. A block's exception is raised here, after every block ended."""
    cuts = block_cuts(n, min_block, blocks)
    if len(cuts) == 2:
        return [fn(0, n)]
    futures = [pool().submit(fn, a, b) for a, b in zip(cuts[1:-1], cuts[2:])]
    try:
        first = fn(cuts[0], cuts[1])
    finally:
        rest = [f.exception() for f in futures]  # wait for every block: none may still write after we return
    for e in rest:
        if e is not None:
            raise e
    return [first, *(f.result() for f in futures)]
