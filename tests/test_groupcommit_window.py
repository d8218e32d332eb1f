"""How long the group commit waits for more callers: the gathering window bounds it, and a batch
stops waiting once it is as large as the largest recent one, so a lone caller at low load is not
held for the window and callers that arrive together are written together."""

from __future__ import annotations

import asyncio
import time
from contextlib import nullcontext

from supplychain.evidence.groupcommit import GroupCommit

WINDOW = 0.6


def write(_handle: None, items: list[int]) -> list[int]:
    return items


async def timed(group: GroupCommit[None, int, int], count: int) -> float:
    """Seconds until ``count`` callers submitting together are all answered."""
    start = time.monotonic()
    await asyncio.gather(*(group.submit(n) for n in range(count)))
    return time.monotonic() - start


def test_a_batch_waits_for_as_many_callers_as_recent_batches_had_and_no_longer() -> None:
    group: GroupCommit[None, int, int] = GroupCommit(nullcontext, write, window=WINDOW)
    try:
        first = asyncio.run(timed(group, 1))  # nothing known yet: the window is waited out
        lone = asyncio.run(timed(group, 1))  # recent batches held one caller: no wait
        assert first >= WINDOW * 0.9 and lone < WINDOW / 3
        four = asyncio.run(timed(group, 4))  # as many as arrived: written at once
        assert four < WINDOW / 3
        two = asyncio.run(timed(group, 2))  # fewer than a recent batch: wait for the others
        assert two >= WINDOW * 0.9
        # the largest recent batch counts, not the last: callers split over two batches
        # would otherwise stay split, each half paying a commit
        again = asyncio.run(timed(group, 2))
        assert again >= WINDOW * 0.9
    finally:
        group.close()
