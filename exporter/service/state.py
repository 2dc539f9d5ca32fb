"""Everything the exporter holds about one PI server, in one object.

The service keeps one StoreState per configured store in one mapping: adding, removing or
reloading a store is one operation on that mapping, and a removed store leaves nothing
behind.

A store's state is one frozen value, StoreValue, never patched: every change builds a new
value from the current one and swaps it in under the store's one swap lock
(StoreState.swap_value, which every write goes through), so concurrent writers (the loop and
worker threads) lose nothing and a reader that takes `state.value` once sees one consistent
whole. It holds:

- `data` (StoreData), what the store's verdicts derive from: its last successful read with
  the listing, the endpoint of each entry, the baselines and attestations of those entries,
  the log evidence. A decision reads `state.data` once and uses only that, so it sees a
  listing with its own endpoints and baselines, never the old listing with the new
  endpoints of a read still probing (issue 20). `data.version` moves whenever anything the
  entry views derive from changes (the listing, baselines, log evidence, the probe outcomes
  of its endpoints, the config); the views and the rendered blocks of the store are cached
  under (store, version). Versions come from one process-wide counter, so no two values
  ever share one unless nothing a view reads differs.
- the progress around it, which moves no version: the latest read attempt, the failed reads
  by reason, the listing the baseline database was last told of and the endpoints of a read
  not swapped in yet, and the views decided (a cache, valid only at the version it names).

StoreState itself keeps only the store's config and its resources, handles rather than
values: where its CPU work runs, the Source with its SSH session, the loop's task, the locks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
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
        return changed(self, log.seen != self.log.seen, log=log)


def changed(data: StoreData, bump: bool = True, **changes: object) -> StoreData:
    """`data` with `changes` (StoreData's fields), a new version when `bump`."""
    return dataclasses.replace(data, version=next_version() if bump else data.version,
                               **changes)  # type: ignore[arg-type]


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


@dataclass(frozen=True, slots=True, eq=False)
class StoreValue:
    """A store's whole state, as one value: never patched, replaced whole
    (StoreState.swap_value). Only `data` moves the version; the rest is progress around it."""

    data: StoreData = field(default_factory=StoreData)  # a version of its own
    last: StoreRead | None = None  # the latest read attempt
    # Failed reads by reason, read-only (with_error makes the next counts).
    errors: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    # The listing the baseline database was last told of (BaselineDB.observe_store). While a
    # read probes the entries that appeared, the database is ahead of `data`: its baselines
    # belong to the new listing and are not kept for the old one (service.baselines.refresh).
    observed: Listing | None = None
    # The endpoints of a read that observed its listing but has not swapped it in yet: their
    # probes are in use (ProbeScheduler.prune keeps them).
    incoming: frozenset[str] = frozenset()
    decided: Decided = Decided()  # the views of the latest data decided, a cache

    def with_error(self, reason: str) -> StoreValue:
        errors = MappingProxyType({**self.errors, reason: self.errors.get(reason, 0) + 1})
        return dataclasses.replace(self, errors=errors)

    def observing(self, listing: Listing, eps: Iterable[str]) -> StoreValue:
        """The database was told of `listing`: it is ahead of `data` until the read swaps in."""
        return dataclasses.replace(self, observed=listing, incoming=frozenset(eps))

    def read_in(self, data: StoreData) -> StoreValue:
        """A read swapped its data in: its endpoints are no longer incoming."""
        return dataclasses.replace(self, data=data, incoming=frozenset())

    def deciding(self, version: int, views: tuple[EntryView, ...]) -> StoreValue:
        """The views decided at data `version`; an older decision never replaces a newer one
        (versions only grow), so a late writer cannot bring back stale views."""
        if version < self.decided.version:
            return self
        return dataclasses.replace(self, decided=Decided(version, views))

    def views_at(self, version: int) -> tuple[EntryView, ...] | None:
        """The views decided for data `version`, None when not decided at it."""
        return self.decided.views if self.decided.version == version else None


@dataclass(eq=False, slots=True)
class StoreState:
    """One store's config and resources (handles, not values), and its state as one frozen
    value (`value`), which only swap_value replaces. Slotted: assigning a state attribute
    (`state.last = ...`) raises instead of leaving a stray copy beside the value."""

    cfg: StoreConfig
    offload: Offload  # where the source's CPU work runs (exporter.service.workers)
    source: Source | None = None  # opened on first use, dropped by close()
    task: asyncio.Task[None] | None = None  # the store's refresh loop
    # `evidence_lock` orders this store's baseline rows with the data made from them (the
    # loop and worker threads both read and swap); `decide_lock` makes deciding and recording
    # one step, so an older decision is never recorded after a newer one; `_swap_lock`
    # guards the assignment of `_value` alone, held for no I/O.
    evidence_lock: threading.Lock = field(default_factory=threading.Lock)
    decide_lock: threading.Lock = field(default_factory=threading.Lock)
    _swap_lock: threading.Lock = field(default_factory=threading.Lock)
    _value: StoreValue = field(default_factory=StoreValue, init=False)

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def value(self) -> StoreValue:
        """The store's state now: read it once to see one consistent whole."""
        return self._value

    @property
    def data(self) -> StoreData:
        return self._value.data

    @property
    def last_success(self) -> StoreRead | None:
        return self._value.data.read

    def swap_value(self, change: Callable[[StoreValue], StoreValue]) -> StoreValue:
        """Replace the state with change(state), atomic against every other swap (the loop
        and worker threads both make them), so none is lost: the one way the state changes.
        `change` builds the new value from the one it is given; it does no I/O (the lock is
        held meanwhile). Returns the new value."""
        with self._swap_lock:
            self._value = change(self._value)
            return self._value

    def swap(self, change: Callable[[StoreData], StoreData]) -> StoreData:
        """Replace `data` with change(data), with a new version when anything a view reads
        moved (swap_value). Returns the new data."""
        return self.swap_value(lambda v: dataclasses.replace(v, data=change(v.data))).data

    def update(self, bump: bool = True, **changes: object) -> StoreData:
        """Swap in the data with `changes` (StoreData's fields), a new version when `bump`."""
        return self.swap(lambda d: changed(d, bump, **changes))

    def bump(self) -> None:
        self.update()

    def count_error(self, reason: str) -> None:
        """One more failed read for `reason` (a large store's parse errors are counted in a
        worker thread while a scrape copies them)."""
        self.swap_value(lambda v: v.with_error(reason))

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
