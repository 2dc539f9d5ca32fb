"""Deciding the stores and building the snapshot scrapes and pages read. The one place a
snapshot is invalidated (`invalidate`, which also moves the version of the stores whose
inputs moved), and the owner of the stores' rendered exposition blocks."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sqlite3
import time
from collections.abc import Mapping

from exporter.core.history import EntryStatus, diff
from exporter.core.model import EntryView, ProbeResult, StoreStatus
from exporter.exposition.writer import BlockCache, render_chunks
from exporter.fleet.pairs import pair_views
from exporter.fleet.snapshot import Snapshot
from exporter.service.context import Context
from exporter.service.state import StoreData, StoreState, StoreValue
from exporter.service.supervisor import Supervisor
from exporter.service.wiring import Inputs, store_views
from exporter.store.database import StorageError

log = logging.getLogger("exporter.service")
RECORD_TRIES = 3  # history writes raced by another process (serve and `check`) in a row


def _with_status(v: EntryView, st: EntryStatus | None) -> EntryView:
    if st is None:
        return v
    return dataclasses.replace(v, state_since=st.since, previous_fingerprint=st.previous_fingerprint)


def _status(name: str, v: StoreValue, data: StoreData | None = None) -> StoreStatus:
    """A store's status: its latest attempt, the success `data` holds (the value's own by
    default) and its failed reads, copied."""
    return StoreStatus(name, v.last, (data or v.data).read, dict(v.errors))


class Snapshots:
    def __init__(self, ctx: Context, probes: Mapping[str, ProbeResult],
                 supervisor: Supervisor) -> None:
        self.ctx, self.probes, self.supervisor = ctx, probes, supervisor
        self.ready = False
        self.config_reload_ok = True
        self.blocks = BlockCache()  # per store: its exposition lines at its version
        self._snapshot: Snapshot | None = None
        self._history_pruned = 0.0

    def invalidate(self, *moved: StoreState) -> None:
        """Something a snapshot shows changed; for the `moved` stores, something their
        verdicts derive from (probe outcomes, config): decide them again."""
        for state in moved:
            state.bump()
        self._snapshot = None

    def set_reload_ok(self, ok: bool) -> None:
        self.config_reload_ok = ok
        self.invalidate()

    async def prewrite(self) -> None:
        """Write the stores' exposition blocks before saying ready, off the loop: the first
        scrape after a start then joins cached blocks instead of writing every series
        (200 stores, 20,000 entries: about 0.3 s of CPU). Best effort: a scrape renders
        whatever is missing."""
        await asyncio.to_thread(render_chunks, self.snapshot(), None, self.blocks)
        self.ready = True
        self.invalidate()

    def snapshot(self) -> Snapshot:
        """The latest snapshot, for scrapes and pages. A build that fails (the baseline
        database cannot be read) is logged and serves the stores' status and the loop
        errors without entries, so /metrics still says what is wrong."""
        snap = self._snapshot
        if snap is None or snap.config_reload_ok != self.config_reload_ok:
            try:
                snap = self.build()
            except Exception:
                log.exception("snapshot build failed; serving the stores' status only")
                snap = self._status_only()
        return snap

    def _status_only(self) -> Snapshot:
        stores = {n: _status(n, s.value) for n, s in self.ctx.stores.items()}
        return Snapshot(stores, (), {}, {}, config_reload_ok=self.config_reload_ok,
                        ready=self.ready, loop_errors=dict(self.supervisor.loop_errors))

    async def decide(self) -> None:
        """Decide and record the stores whose version moved, a large one in a worker thread
        (100,000 entries take over a second of CPU, which would hold every scrape and
        /-/healthy). A snapshot then finds them decided."""
        for state in list(self.ctx.stores.values()):
            v = state.value
            if v.views_at(v.data.version) is None and v.data.listing is not None:
                await self.ctx.workers.run(len(v.data.listing.entries), self._store_views, state)

    def _store_views(self, state: StoreState) -> tuple[StoreData, tuple[EntryView, ...]]:
        """One store's data and its views, decided again only when its version moved: a probe
        cycle that saw the same certificates (the usual one) decides nothing again. The data
        is read once, and only it is decided: its listing with its own endpoints and
        baselines. Deciding and recording are one step per store, so an older decision
        (another loop's, in another thread) is never recorded after a newer one."""
        with state.decide_lock:
            value = state.value  # once: the views decided are only used at their own version
            data, cached = value.data, value.views_at(value.data.version)
            if cached is not None or data.listing is None:
                return data, cached or ()
            views = store_views(state.cfg, data.listing, data.endpoints, self.probes,
                                Inputs(data.baselines, self.ctx.config.pins, data.log.seen,
                                       data.attested))
            if self.supervisor.stopping:  # decided in a worker while stopping: not worth a long write
                return data, views
            recorded = self._record(state.name, views)
            state.swap_value(lambda v: v.deciding(data.version, recorded))
            return data, recorded

    def _record(self, store: str, views: tuple[EntryView, ...]) -> tuple[EntryView, ...]:
        """Write what changed to the history; the views learn when their state began. A
        database that cannot be written loses history, never the verdicts."""
        now, db, history = time.time(), self.ctx.db, self.ctx.config.history
        try:
            # The diff runs here; the database compares and sets (History.record): written
            # over since it was read (another process, `check`), it is read and diffed again.
            for _ in range(RECORD_TRIES):
                base = db.read_statuses(store)
                statuses, changes = diff(store, views, base.entries, now)
                if db.record(store, base, statuses, changes):
                    break
            else:
                raise StorageError(f"history of {store}: recorded elsewhere at each of "
                                   f"{RECORD_TRIES} tries")
            if now - self._history_pruned > 60:
                self._history_pruned = now
                db.prune_history(history.max_age, history.max_records)
        except (sqlite3.Error, StorageError) as e:
            log.error("cannot record history", extra={"store": store, "error": str(e)})
            return views
        return tuple(_with_status(v, statuses.get(v.entry.key)) for v in views)

    def _with_partners(self, only: set[str] | None) -> set[str] | None:
        if only is None:
            return None
        return only | {n for p in self.ctx.config.pairs if only & {p.primary, p.secondary}
                       for n in (p.primary, p.secondary)}

    def build(self, only: set[str] | None = None) -> Snapshot:
        """Every store's snapshot, kept until invalidated: a build that raises (the database
        cannot be read) is not kept. `only`: just these stores and their HA partners (pair
        verdicts need both sides), what /probe?target= shows, without deciding every other
        store's entries; not kept."""
        snap = self._build(self._with_partners(only))
        if only is None:
            self._snapshot = snap
            self.blocks.retain(self.ctx.stores)  # a store a reload removed leaves nothing
        return snap

    def _build(self, only: set[str] | None) -> Snapshot:
        views: list[EntryView] = []
        stores: dict[str, StoreStatus] = {}
        bad: dict[str, int] = {}
        capped: dict[str, int] = {}
        unresolved: dict[str, int] = {}
        versions: dict[str, int] = {}
        for name, state in self.ctx.stores.items():
            if only is not None and name not in only:
                continue
            data, decided = self._store_views(state)
            stores[name] = _status(name, state.value, data)
            if data.capped:
                capped[name] = data.capped
            if data.listing is None:
                continue
            bad[name] = len(data.listing.bad_lines)
            if data.listing.unresolved:
                unresolved[name] = len(data.listing.unresolved)
            views.extend(decided)
            versions[name] = data.version
        known = {v.endpoint for v in views}
        changed = {ep: t for ep, t in self.ctx.db.changed_times().items() if ep in known}
        config = self.ctx.config
        return Snapshot(
            stores, tuple(views), {k: v for k, v in self.probes.items() if k in known},
            changed, capped, bad, self.config_reload_ok, self.ready,
            pair_views(config, views), versions, dict(self.supervisor.loop_errors), self.ctx.shard,
            {n: s.cfg.kind for n, s in self.ctx.stores.items() if n in stores}, unresolved,
        )
