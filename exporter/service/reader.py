"""Reading a store through its Source: the baselines of what it lists recorded, the entries
that appeared probed at once (witnessed while their certificate is the one just stored),
the new data swapped in whole. A baseline database that cannot be written fails the read
with reason `storage`; the next read tries again."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from exporter.config.model import StoreConfig
from exporter.core.model import ErrorReason, Listing, StoreRead
from exporter.service import baselines
from exporter.service.context import STORAGE_ERRORS, Bound, Context
from exporter.service.prober import ProbeScheduler
from exporter.service.state import StoreData, StoreState, changed, with_endpoints
from exporter.service.wiring import entry_endpoint
from exporter.sources.seam import Source

log = logging.getLogger("exporter.service")

Observed = tuple[Listing, tuple[str, ...], dict[str, str], set[str]]
# A source's optional log evidence (exporter.sources.prime.source.PiSource.tofu_log): common
# name -> TOFU-failed records, the error when the log could not be read, None without a log.
LogRead = Callable[[], Awaitable[Mapping[str, int] | str | None]]


def endpoints_of(store: StoreConfig, listing: Listing) -> tuple[str, ...]:
    """Where to probe each entry from here, as the store's kind has it (service.wiring)."""
    return tuple(entry_endpoint(store, e) for e in listing.entries)


class Reader:
    def __init__(self, ctx: Context, prober: ProbeScheduler,
                 changed: Callable[..., None]) -> None:
        self.ctx, self.prober, self.changed = ctx, prober, changed
        # One bound for all SSH reads: the loops and concurrent /probe requests share it.
        self._bound = Bound()

    async def read_store(self, store: StoreConfig) -> StoreRead:
        """Read one store's list, update baselines, probe entries that just appeared."""
        state = self.ctx.stores[store.name]
        source = state.open_source()
        async with self._bound.get(self.ctx.config.store_concurrency):
            got = await source.read()
            read = await self._read_ok(state, source, got) if got.ok else self._failed(state, got)
            state.swap_value(lambda v: dataclasses.replace(v, last=read))
            self.changed()
            return read

    def _failed(self, state: StoreState, read: StoreRead) -> StoreRead:
        reason = read.error_reason or ErrorReason.COMMAND
        state.count_error(reason.value)
        log.warning("store read failed", extra={"store": state.name, "reason": reason.value,
                                                "error": read.error})
        return read

    def _note_listing(self, state: StoreState, listing: Listing, capped: int) -> None:
        store = state.cfg
        if listing.bad_lines:
            state.count_error(ErrorReason.PARSE.value)
            log.warning("unparseable lines in listing", extra={
                "store": store.name, "count": len(listing.bad_lines),
                "first": listing.bad_lines[0][:200]})
        if capped:
            log.warning("store holds more entries than max_entries; extra entries not shown",
                        extra={"store": store.name, "entries": len(listing.entries) + capped,
                               "max_entries": store.max_entries})

    def _storage_failed(self, state: StoreState, duration: float, e: Exception) -> StoreRead:
        """The list was read but its baselines could not be recorded: not a success."""
        error = self.ctx.storage.failed(f"store:{state.name}", e)
        state.count_error(ErrorReason.STORAGE.value)
        log.error("store read not recorded: baseline database not writable", extra={
            "store": state.name, "reason": ErrorReason.STORAGE.value, "error": str(e)})
        return StoreRead(state.name, False, None, duration, time.time(), ErrorReason.STORAGE, error)

    def _observe(self, state: StoreState, listing: Listing, capped: int) -> Observed:
        """Record a parsed listing in the baseline database: the listing kept (the previous
        one when unchanged), its endpoints, entry key -> endpoint, and the keys that
        appeared. From here until the read swaps its data in (_swap_read) the database is
        ahead of the store's data. Runs in a worker thread for a large store."""
        self._note_listing(state, listing, capped)
        data = state.data
        if data.listing is not None and data.listing == listing:
            listing, eps = data.listing, data.endpoints  # one copy of an unchanged list
        else:
            eps = endpoints_of(state.cfg, listing)
        endpoints = dict(zip((e.key for e in listing.entries), eps, strict=True))
        with state.evidence_lock:  # the database and `observed` move together
            # Swapped in only once the database took the listing: one that raised rolled
            # back and holds what it held, so `observed` stays the listing before. The
            # evidence lock hides the moment between from every reader of `observed`.
            appeared = self.ctx.db.observe_store(state.name, endpoints)
            state.swap_value(lambda v: v.observing(listing, eps))
        return listing, eps, endpoints, appeared

    async def _read_ok(self, state: StoreState, source: Source, got: StoreRead) -> StoreRead:
        assert got.listing is not None
        store, workers, capped = state.cfg, self.ctx.workers, got.beyond
        try:
            listing, eps, endpoints, appeared = await workers.run(
                len(got.listing.entries), self._observe, state, got.listing, capped)
        except STORAGE_ERRORS as e:  # nothing of this read is kept: the next one tries again
            return self._storage_failed(state, got.duration_seconds, e)
        self.ctx.storage.ok(f"store:{store.name}")
        read = StoreRead(store.name, True, listing, got.duration_seconds, time.time())
        if appeared:
            # Witness the certificate now, while it is the one PI just stored. Decisions
            # meanwhile see the old data whole: the new listing is not swapped in yet.
            log.info("entries appeared", extra={"store": store.name,
                                                "entries": ",".join(sorted(appeared))})
            await self.prober.probe_endpoints({endpoints[k] for k in appeared})
        await workers.run(len(listing.entries), self._swap_read, state, read, eps, capped)
        if (tofu_log := getattr(source, "tofu_log", None)) is not None:
            await self._read_log(state, tofu_log)
        return read

    def _swap_read(self, state: StoreState, read: StoreRead, eps: tuple[str, ...],
                   capped: int) -> None:
        """Swap in what one read made, in one assignment: its listing, the endpoints, the
        capped count and the baselines the database holds for that listing."""
        with state.evidence_lock:
            if state.value.observed is not read.listing:
                return  # a newer read of this store told the database of its listing: it swaps
            old = state.data
            if old.listing is read.listing:
                eps = old.endpoints  # unchanged list: keep the endpoints (a reload may have moved them)
            got, attested = baselines.fresh(self.ctx.db, state, old)
            moved = old.listing is not read.listing or eps != old.endpoints or got is not old.baselines
            # The data and its endpoints no longer incoming, in one swap: a prune reading the
            # value finds the read's endpoints in one or the other, never in neither.
            new = state.swap_value(lambda v: v.read_in(changed(
                v.data, moved, read=read, capped=capped, baselines=got, attested=attested,
                **with_endpoints(eps)))).data
        if not old.endpoint_set <= new.endpoint_set:
            self.prober.prune_due = True  # some endpoint may have lost its last entry
        self.changed()

    async def _read_log(self, state: StoreState, tofu_log: LogRead) -> None:
        """Note TOFU-failed records that are new since the last read. Records present at the
        first read have no time we can trust, so they are counted but prove nothing."""
        counts = await tofu_log()
        if counts is None:
            return
        if isinstance(counts, str):
            log.warning("log command failed; no log evidence this cycle",
                        extra={"store": state.name, "error": counts})
            return
        now = time.time()
        state.swap(lambda data: data.with_log(data.log.after(counts, now)))
        self.changed()

    def move_endpoints(self, state: StoreState) -> None:
        """The config changed: the endpoints of the store's entries again, in one swap."""
        old = state.data

        def move(data: StoreData) -> StoreData:
            if data.listing is None:
                return data
            return changed(data, **with_endpoints(endpoints_of(state.cfg, data.listing)))

        if not old.endpoint_set <= state.swap(move).endpoint_set:
            self.prober.prune_due = True
