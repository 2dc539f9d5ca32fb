"""Worker threads for a large store's CPU work (parsing, recording, deciding), which would
otherwise hold the event loop for seconds, and which a stop can wait for: cancelling the
await of a thread's result does not stop the thread, and closing the baseline database
under one that is still writing turned a clean stop into a "closed database" error."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any, TypeVar

_T = TypeVar("_T")

# A store this large goes to a thread (about 10 ms of the loop per 1,000 entries
# otherwise); a smaller one runs inline: 200 stores of 100 entries spent 15% more CPU per
# cycle on thread hops than on the work.
THREAD_ABOVE = 2000


class Workers:
    def __init__(self, threads: int = 2) -> None:
        # Two: a large store's work is CPU-bound under one GIL; more threads only share it.
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, "tofu-worker")
        self._running: set[concurrent.futures.Future[Any]] = set()
        self._drained = False

    async def run(self, entries: int, fn: Callable[..., _T], *args: object) -> _T:
        """fn(*args): in a worker thread if `entries` is above THREAD_ABOVE, else inline
        (also once drained: a request that comes in while the exporter stops)."""
        if entries <= THREAD_ABOVE or self._drained:
            return fn(*args)
        job = self._pool.submit(fn, *args)
        self._running.add(job)
        job.add_done_callback(self._running.discard)
        return await asyncio.wrap_future(job)

    async def drain(self, deadline: float) -> int:
        """Wait up to `deadline` seconds for the jobs still running (their awaits may have
        been cancelled), then let the threads go. Returns how many are still running."""
        self._drained = True
        jobs = list(self._running)
        left: set[concurrent.futures.Future[Any]] = set()
        if jobs:
            _, left = await asyncio.to_thread(concurrent.futures.wait, jobs, deadline)
        self._pool.shutdown(wait=False, cancel_futures=True)
        return len(left)
