"""Everything the exporter holds about one PI server, in one object.

The service keeps one StoreState per configured store in one mapping: adding, removing or
reloading a store is one operation on that mapping, and a removed store leaves nothing
behind.

What the store's verdicts derive from (its last successful read with the listing, the
endpoint of each entry, the baselines and attestations of those entries, the log evidence)
is one frozen value, StoreData, built whole and swapped in with one assignment
(StoreState.update): a decision reads `state.data` once and uses only that, so it sees a
listing with its own endpoints and baselines, never the old listing with the new endpoints
of a read still probing (issue 20). `version` moves whenever anything the entry views
derive from changes (the listing, baselines, log evidence, the probe outcomes of its
endpoints, the config); the views and the rendered blocks of the store are cached under
(store, version). Versions come from one process-wide counter, so no two values ever share
one unless nothing a view reads differs. The runtime bits (the loop's task, the SSH
source with its session, the error counters, the latest attempt) stay on StoreState,
outside that value.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypedDict

from exporter.config.model import StoreConfig
from exporter.core.model import Attested, Baseline, EntryView, Listing, StoreRead
from exporter.service.wiring import open_source
from exporter.sources.seam import Offload, Source

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


@dataclass(frozen=True, slots=True)
class LogEvidence:
    """What the store's TOFU-failed log records said so far."""

    counts: Mapping[str, int] | None = None  # CN -> records seen so far (None: never read)
    seen: Mapping[str, float] = field(default_factory=dict)  # CN -> newest record seen at
    read_at: float | None = None  # when the log was last read

    def after(self, counts: Mapping[str, int], now: float) -> LogEvidence:
        """The evidence once the log held `counts` at `now`. A record new since the last read
        was written after that read, maybe long before this one: it is dated there, so an
        entry re-stored meanwhile (remediation) is not blamed. Fewer records than before
        means the log rotated: every record left is new to us."""
        seen = self.seen
        if self.counts is not None:
            before = self.counts
            written = self.read_at if self.read_at is not None else now
            rotated = sum(counts.values()) < sum(before.values())
            new = {cn: written for cn, n in counts.items() if rotated or n > before.get(cn, 0)}
            if new:
                seen = {**seen, **new}
        return LogEvidence(counts, seen, now)


@dataclass(frozen=True, slots=True, eq=False)
class StoreData:
    """Everything a store's verdicts derive from, as one value: never patched, replaced
    whole (StoreState.update). `endpoints` pairs with `read.listing.entries`, `baselines`
    and `attested` were read for that listing."""

    read: StoreRead | None = None  # the last successful read: its listing, its time
    endpoints: tuple[str, ...] = ()  # the endpoint of each entry of the listing, in order
    endpoint_set: frozenset[str] = frozenset()  # the probes this store needs
    capped: int = 0  # entries beyond max_entries in that read
    baselines: Mapping[str, Baseline] = field(default_factory=dict)
    # Entry key -> who attested it, when, why: only entries whose baseline is attested,
    # read with the baselines when they change (exporter.store.database.BaselineDB.attested).
    attested: Mapping[str, Attested] = field(default_factory=dict)
    log: LogEvidence = LogEvidence()
    version: int = field(default_factory=next_version)

    @property
    def listing(self) -> Listing | None:
        return self.read.listing if self.read is not None else None

    def with_log(self, log: LogEvidence) -> StoreData:
        """This data with new log evidence: a new version when what the views read moved."""
        moved = log.seen != self.log.seen
        return dataclasses.replace(self, log=log, version=next_version() if moved else self.version)


class EndpointFields(TypedDict):
    endpoints: tuple[str, ...]
    endpoint_set: frozenset[str]


def with_endpoints(eps: tuple[str, ...]) -> EndpointFields:
    """The fields an endpoint list sets: the list and its set, always together."""
    return {"endpoints": eps, "endpoint_set": frozenset(eps)}


@dataclass(frozen=True, slots=True)
class Decided:
    """A store's views and the data version they were decided (and recorded) at."""

    version: int = 0
    views: tuple[EntryView, ...] = ()


@dataclass(eq=False)
class StoreState:
    cfg: StoreConfig
    offload: Offload  # where the source's CPU work runs (exporter.service.workers)
    data: StoreData = field(default_factory=StoreData)
    source: Source | None = None  # opened on first use, dropped by close()
    task: asyncio.Task[None] | None = None  # the store's refresh loop
    last: StoreRead | None = None  # latest attempt
    errors: Mapping[str, int] = field(default_factory=dict)  # failed reads by reason (count_error)
    decided: Decided = Decided()  # the views of the latest data decided, a cache
    # The listing the baseline database was last told of (BaselineDB.observe_store). While a
    # read probes the entries that appeared, the database is ahead of `data`: its baselines
    # belong to the new listing and are not kept for the old one (service.baselines.refresh).
    observed: Listing | None = None
    # The endpoints of a read that observed its listing but has not swapped it in yet: their
    # probes are in use (ProbeScheduler.prune keeps them).
    incoming: frozenset[str] = frozenset()
    # `evidence_lock` orders this store's baseline rows with the data made from them (the
    # loop and worker threads both read and swap); `decide_lock` makes deciding and recording
    # one step, so an older decision is never recorded after a newer one; `_swap_lock`
    # guards the assignment of `data` alone, held for no I/O.
    evidence_lock: threading.Lock = field(default_factory=threading.Lock)
    decide_lock: threading.Lock = field(default_factory=threading.Lock)
    _swap_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def last_success(self) -> StoreRead | None:
        return self.data.read

    def swap(self, change: Callable[[StoreData], StoreData]) -> StoreData:
        """Replace `data` with change(data), atomic against every other swap (the loop and
        worker threads both make them), so none is lost. `change` builds the new value from
        the one it is given, with a new version when anything a view reads moved; it does
        no I/O (the lock is held meanwhile). Returns the new value."""
        with self._swap_lock:
            self.data = change(self.data)
            return self.data

    def update(self, bump: bool = True, **changes: object) -> StoreData:
        """Swap in the data with `changes` (StoreData's fields), a new version when `bump`."""
        return self.swap(lambda d: dataclasses.replace(
            d, version=next_version() if bump else d.version, **changes))  # type: ignore[arg-type]

    def bump(self) -> None:
        self.update()

    def count_error(self, reason: str) -> None:
        """One more failed read for `reason`: the counts replaced whole (a large store's
        parse errors are counted in a worker thread while a scrape copies them)."""
        with self._swap_lock:
            self.errors = {**self.errors, reason: self.errors.get(reason, 0) + 1}

    def open_source(self) -> Source:
        """The store's Source (exporter.service.wiring picks it by the store's kind)."""
        if self.source is None:
            self.source = open_source(self.cfg, self.offload)
        return self.source

    @property
    def prober(self) -> str:
        return self.open_source().prober

    async def reconfigure(self, cfg: StoreConfig, deadline: float = STOP_DEADLINE) -> None:
        """A reload changed this store: its loop and session go (they used the old settings);
        what it read stays until the next read replaces it (decided again: the caller
        invalidates it)."""
        await self.close(deadline)
        self.cfg = cfg

    async def close(self, deadline: float = STOP_DEADLINE) -> None:
        """Stop the loop (awaited, but never longer than `deadline`: a read stuck in its
        timeout must not hold up a reload) and close the source (its SSH session)."""
        task, self.task = self.task, None
        source, self.source = self.source, None
        # Together: closing the session also ends a read stuck on it.
        await asyncio.gather(stop_tasks([task] if task else [], deadline),
                             self._close_source(source, deadline))

    async def _close_source(self, source: Source | None, deadline: float) -> None:
        if source is None:
            return
        try:
            async with asyncio.timeout(deadline):
                await source.close()
        except TimeoutError:
            log.error("SSH session did not close within its deadline",
                      extra={"store": self.name, "deadline_seconds": deadline})
