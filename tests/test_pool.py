"""The shared pool's block runner: every block once, results in block order, errors after every block ended,
and no deadlock when many threads share the pool at once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from pile_index.pool import block_cuts, run_blocks


def test_blocks_cover_the_range_once_in_order():
    seen: list[tuple[int, int]] = []
    lock = threading.Lock()

    def fn(a: int, b: int) -> tuple[int, int]:
        with lock:
            seen.append((a, b))
        return a, b

    for n, min_block, blocks in [(1000, 10, 8), (7, 10, 8), (1000, 1, 3), (0, 1, 4), (64, 16, 4)]:
        seen.clear()
        got = run_blocks(fn, n, min_block, blocks)
        cuts = block_cuts(n, min_block, blocks)
        assert got == list(zip(cuts, cuts[1:]))
        assert sorted(seen) == got  # each block ran once
        assert len(got) <= max(1, blocks)


def test_the_first_error_in_block_order_after_every_block_ended():
    ran: set[int] = set()
    lock = threading.Lock()

    def fn(a: int, b: int) -> int:
        with lock:
            ran.add(a)
        if a in (30, 60):
            raise ValueError(f"block {a}")
        return a

    with pytest.raises(ValueError, match="block 30"):
        run_blocks(fn, 100, 10, 10)
    assert ran == set(range(0, 100, 10))


def test_many_threads_at_once_share_the_pool_without_deadlock():
    def fn(a: int, b: int) -> int:
        return sum(range(a, b))

    with ThreadPoolExecutor(16) as callers:
        sums = list(callers.map(lambda n: sum(run_blocks(fn, n, 5, 8)), range(100, 400)))
    assert sums == [n * (n - 1) // 2 for n in range(100, 400)]
