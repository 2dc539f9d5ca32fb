"""Everything the exporter holds about one PI server, in one object.

The service keeps one StoreState per configured store in one mapping: adding, removing or
reloading a store is one operation on that mapping, and a removed store leaves nothing
behind. `version` changes whenever anything the store's entry views derive from changes
(its listing, baselines, log evidence, the probe outcomes of its endpoints, the config);
the views and the rendered blocks of the store are cached under (store, version).
Versions come from one process-wide counter, so no two states ever share one.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from exporter.config import StoreConfig
from exporter.model import Attested, Baseline, EntryView, StoreRead
from exporter.prime.ssh import PiSession

_VERSIONS = itertools.count(1)
# How long a stopped task may take to finish: a read stuck in an SSH timeout must not hold
# up a reload or a shutdown (SIGTERM ends `serve` within 2 s).
STOP_DEADLINE = 1.0

log = logging.getLogger("exporter.state")


async def stop_tasks(tasks: Iterable[asyncio.Task[None]], deadline: float = STOP_DEADLINE) -> None:
    """Cancel `tasks` and wait for them, at most `deadline` seconds; log any straggler (it
    is left behind, still cancelled: it ends at its next await that honours cancellation)."""
    pending = [t for t in tasks if not t.done()]
    for t in pending:
        t.cancel()
    if not pending:
        return
    _, late = await asyncio.wait(pending, timeout=deadline)
    for t in late:
        log.error("task did not stop within its deadline; left behind",
                  extra={"task": t.get_name(), "deadline_seconds": deadline})


def next_version() -> int:
    return next(_VERSIONS)


@dataclass(eq=False)
class StoreState:
    cfg: StoreConfig
    session: PiSession | None = None
    task: asyncio.Task[None] | None = None  # the store's refresh loop
    last: StoreRead | None = None  # latest attempt
    last_success: StoreRead | None = None
    errors: Counter[str] = field(default_factory=Counter)  # failed reads by reason
    capped: int = 0  # entries beyond max_entries in the last read
    baselines: dict[str, Baseline] = field(default_factory=dict)
    # Entry key -> who attested it, when, why: only entries whose baseline is attested,
    # read with the baselines when they change (exporter.baseline.BaselineDB.attested).
    attested: dict[str, Attested] = field(default_factory=dict)
    # The endpoint of each entry of last_success, in order: the probes this store needs.
    endpoints: tuple[str, ...] = ()
    endpoint_set: frozenset[str] = frozenset()
    log_counts: Counter[str] | None = None  # CN -> TOFU-failed records seen so far
    log_seen: dict[str, float] = field(default_factory=dict)  # CN -> newest record seen at
    log_read_at: float | None = None  # when the log was last read
    version: int = field(default_factory=next_version)
    views: tuple[EntryView, ...] = ()
    views_version: int = 0  # the version `views` were decided at

    @property
    def name(self) -> str:
        return self.cfg.name

    def bump(self) -> None:
        self.version = next_version()

    def pi_session(self) -> PiSession:
        if self.session is None:
            self.session = PiSession(self.cfg)
        return self.session

    async def reconfigure(self, cfg: StoreConfig, deadline: float = STOP_DEADLINE) -> None:
        """A reload changed this store: its loop and session go (they used the old settings);
        what it read stays until the next read replaces it."""
        await self.close(deadline)
        self.cfg = cfg
        self.bump()

    async def close(self, deadline: float = STOP_DEADLINE) -> None:
        """Stop the loop (awaited, but never longer than `deadline`: a read stuck in its
        timeout must not hold up a reload) and close the SSH session."""
        task, self.task = self.task, None
        session, self.session = self.session, None
        # Together: closing the session also ends a read stuck on it.
        await asyncio.gather(stop_tasks([task] if task else [], deadline),
                             self._close_session(session, deadline))

    async def _close_session(self, session: PiSession | None, deadline: float) -> None:
        if session is None:
            return
        try:
            async with asyncio.timeout(deadline):
                await session.close()
        except TimeoutError:
            log.error("SSH session did not close within its deadline",
                      extra={"store": self.name, "deadline_seconds": deadline})
