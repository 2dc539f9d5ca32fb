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
from collections import Counter
from dataclasses import dataclass, field

from exporter.config import StoreConfig
from exporter.model import Baseline, EntryView, StoreRead
from exporter.prime.ssh import PiSession

_VERSIONS = itertools.count(1)


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

    async def reconfigure(self, cfg: StoreConfig) -> None:
        """A reload changed this store: its loop and session go (they used the old settings);
        what it read stays until the next read replaces it."""
        await self.close()
        self.cfg = cfg
        self.bump()

    async def close(self) -> None:
        task, self.task = self.task, None
        if task is not None:
            task.cancel()  # not awaited: a read stuck in its timeout must not hold up a reload
        session, self.session = self.session, None
        if session is not None:
            await session.close()
