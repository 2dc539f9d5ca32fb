"""Supervision of the service's loops: an unexpected exception in the first pass, a store
loop or the probe loop is logged (with its store), counted (tofu_exporter_loop_errors_total
{loop}) and retried after a bounded exponential backoff; `health()` names what makes the
exporter useless (so /-/healthy fails and an orchestrator restarts it), `not_ready()` why it
is not ready."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable

log = logging.getLogger("exporter.service")

BACKOFF_BASE = 0.2  # seconds before the first retry after an unexpected exception
BACKOFF_MAX = 60.0
# Consecutive failures of the first pass or the probe loop (or of every store loop) after
# which the exporter calls itself unhealthy: restarting it is the remedy left.
FAILURE_BOUND = 5


class Supervisor:
    def __init__(self, changed: Callable[[], None]) -> None:
        self.changed = changed
        self.loop_errors: Counter[str] = Counter()  # unexpected exceptions per loop kind
        # Per loop instance ("start", "probe", "store:<name>"): consecutive failures and the
        # last error; tasks that ended.
        self._failing: dict[str, tuple[int, str]] = {}
        self._dead: dict[str, str] = {}
        self._retired: set[asyncio.Task[None]] = set()  # ended by a reload, on purpose
        self.stopping = False
        self.backoff_base, self.backoff_max, self.failure_bound = BACKOFF_BASE, BACKOFF_MAX, FAILURE_BOUND

    def backoff(self, failures: int) -> float:
        """Bounded exponential: base, 2 x base, 4 x base, ... never more than backoff_max."""
        return float(min(self.backoff_max, self.backoff_base * 2 ** min(failures - 1, 30)))

    async def attempt(self, loop: str, name: str, step: Callable[[], Awaitable[object]],
                      store: str | None = None) -> float | None:
        """Run one step of a loop. None when it went through; after an unexpected exception,
        logged with its store and counted, the seconds to wait before trying again."""
        try:
            await step()
        except Exception as e:  # a bug or a broken dependency must not end the loop
            return self.failed(loop, name, e, store)
        if self._failing.pop(name, None) is not None:
            log.info("loop recovered", extra={"loop": loop, "store": store or "-"})
            self.changed()
        return None

    def failed(self, loop: str, name: str, e: Exception, store: str | None) -> float:
        failures = self._failing.get(name, (0, ""))[0] + 1
        error = f"{type(e).__name__}: {e}"
        self._failing[name] = (failures, error)
        self.loop_errors[loop] += 1
        delay = self.backoff(failures)
        log.error("loop error; retrying", exc_info=e, extra={
            "loop": loop, "store": store or "-", "failures": failures,
            "retry_in_seconds": delay, "error": error})
        self.changed()
        return delay

    def watch(self, task: asyncio.Task[None], name: str, may_return: bool = False) -> asyncio.Task[None]:
        """A loop task must only ever end because stop() or a reload ended it (start's task
        may also simply finish)."""

        def done(t: asyncio.Task[None]) -> None:
            if self.stopping or t in self._retired:
                self._retired.discard(t)
                return
            if may_return and not t.cancelled() and t.exception() is None:
                return
            why = "cancelled" if t.cancelled() else repr(t.exception() or "returned")
            self._dead[name] = why
            log.error("loop task ended; the exporter is unhealthy", extra={"loop": name,
                                                                          "error": why})

        task.add_done_callback(done)
        return task

    def retire(self, task: asyncio.Task[None] | None, name: str) -> None:
        """A reload ends this loop on purpose: not a death."""
        if task is not None:
            self._retired.add(task)
        self._failing.pop(name, None)
        self._dead.pop(name, None)

    def health(self, stores: Iterable[str]) -> list[str]:
        """What makes this process useless, each a line; empty when healthy."""
        bound = self.failure_bound
        out = [f"loop {name} ended ({why})" for name, why in sorted(self._dead.items())]
        for name in ("start", "probe"):
            n, err = self._failing.get(name, (0, ""))
            if n >= bound:
                out.append(f"loop {name} failed {n} times in a row (last: {err})")
        failures = [self._failing.get(f"store:{n}", (0, ""))[0] for n in stores]
        if failures and min(failures) >= bound:
            out.append(f"every store loop failed at least {bound} times in a row")
        return out

    def not_ready(self, ready: bool, storage: str | None) -> str | None:
        """Why the exporter is not ready (None when it is)."""
        if not ready:
            n, err = self._failing.get("start", (0, ""))
            if n:
                return f"first pass over the stores failing ({n} attempts, last: {err})"
            return "first pass over the stores running"
        if storage:
            return f"storage: {storage}"
        return None
