"""The running exporter: store reads, probes, baselines, and the snapshot they make.

Reads and probes run in background loops; scrapes only ever read the latest snapshot, so a
hanging PI server can delay nothing but its own data. Per store state lives in one
StoreState each (exporter.state), in one mapping.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

from exporter.baseline import BaselineDB, StorageError
from exporter.config import Config, StoreConfig
from exporter.endpoint import entry_endpoint as _entry_endpoint
from exporter.history import EntryStatus, diff
from exporter.model import EntryView, ErrorReason, Listing, ProbeResult, StoredEntry, StoreRead, StoreStatus
from exporter.pairs import pair_views
from exporter.prime.listing import parse_listing
from exporter.prime.logs import tofu_failures
from exporter.prime.ssh import PiSession, StoreReadError
from exporter.probe import probe_many
from exporter.snapshot import Snapshot
from exporter.state import StoreState
from exporter.views import store_views

log = logging.getLogger("exporter.service")


def entry_endpoint(store: StoreConfig, entry: StoredEntry) -> str:
    """Where to probe an entry from here (see exporter.endpoint.entry_endpoint)."""
    return _entry_endpoint(store.self_address, entry.host, entry.port)


def _outcome(r: ProbeResult | None) -> tuple[str | None, str | None] | None:
    """What a verdict reads from a probe: a new probe with the same outcome changes nothing."""
    if r is None:
        return None
    return (r.cert.fingerprint_sha256 if r.cert is not None else None, r.error)


def _with_status(v: EntryView, st: EntryStatus | None) -> EntryView:
    if st is None:
        return v
    return dataclasses.replace(v, state_since=st.since, previous_fingerprint=st.previous_fingerprint)


class _Bound:
    """A semaphore whose size follows the config: a reload with a new limit gets a new one."""

    def __init__(self) -> None:
        self._size = 0
        self._sem = asyncio.Semaphore(1)

    def get(self, size: int) -> asyncio.Semaphore:
        if size != self._size:
            self._size, self._sem = size, asyncio.Semaphore(size)
        return self._sem


class Service:
    def __init__(self, config: Config, storage_path: Path | str) -> None:
        self.config = config
        self.storage_path = str(storage_path)  # what `accept` and `history` must be given too
        path = Path(storage_path)
        self.db = BaselineDB(path if str(storage_path) == ":memory:" else path / "baseline.db")
        self.stores: dict[str, StoreState] = {s.name: StoreState(s) for s in config.stores}
        self.probes: dict[str, ProbeResult] = {}  # endpoint -> last probe, only endpoints in use
        self.config_reload_ok = True
        self.ready = False
        self._snapshot: Snapshot | None = None
        self._prune_due = False  # some endpoint may have lost its last entry
        # One bound for all probes in flight and one for all SSH reads: the loops and
        # concurrent /probe requests share them, so N requests do not mean N x the limit.
        self._probe_bound = _Bound()
        self._read_bound = _Bound()
        self._probe_task: asyncio.Task[None] | None = None
        self._history_pruned = 0.0

    # ---- the public state API (remediation, tests) -----------------------------------

    def state(self, name: str) -> StoreState:
        return self.stores[name]

    def session(self, name: str) -> PiSession:
        """The store's SSH session (opened on first use, closed by stop() or a reload)."""
        return self.stores[name].pi_session()

    def forget(self, store: str, entries: Iterable[str]) -> None:
        """Remediation deleted these entries: the next sighting is witnessed anew."""
        self.db.forget(store, entries)

    def reload_failed(self) -> None:
        self.config_reload_ok = False
        self.invalidate()

    # ---- reading stores -------------------------------------------------------------

    async def read_store(self, store: StoreConfig) -> StoreRead:
        """Read one store's list, update baselines, probe entries that just appeared."""
        state = self.stores[store.name]
        session = state.pi_session()
        async with self._read_bound.get(self.config.store_concurrency):
            return await self._read_store(state, session)

    async def _read_store(self, state: StoreState, session: PiSession) -> StoreRead:
        store = state.cfg
        start = time.perf_counter()
        try:
            text = await session.run(store.listcerts_command)
            listing = parse_listing(text)
            if not listing.entries and listing.bad_lines:
                raise StoreReadError(
                    ErrorReason.PARSE, f"{len(listing.bad_lines)} lines, none of them an entry"
                )
        except StoreReadError as e:
            read = StoreRead(
                store.name, False, None, time.perf_counter() - start, time.time(),
                e.reason, e.message,
            )
            state.errors[e.reason.value] += 1
            log.warning("store read failed", extra={"store": store.name, "reason": e.reason.value,
                                                    "error": e.message})
        else:
            read = await self._read_ok(state, session, listing, time.perf_counter() - start)
        state.last = read
        self._snapshot = None
        return read

    def _cap(self, state: StoreState, listing: Listing) -> Listing:
        store = state.cfg
        if listing.bad_lines:
            state.errors[ErrorReason.PARSE.value] += 1
            log.warning("unparseable lines in listing", extra={
                "store": store.name, "count": len(listing.bad_lines),
                "first": listing.bad_lines[0][:200]})
        entries = listing.entries
        state.capped = max(0, len(entries) - store.max_entries)
        if state.capped:
            log.warning("store holds more entries than max_entries; extra entries not shown",
                        extra={"store": store.name, "entries": len(entries),
                               "max_entries": store.max_entries})
            listing = type(listing)(entries[: store.max_entries], listing.bad_lines)
        return listing

    async def _read_ok(self, state: StoreState, session: PiSession, listing: Listing,
                       duration: float) -> StoreRead:
        store = state.cfg
        listing = self._cap(state, listing)
        prev = state.last_success
        if prev is not None and prev.listing == listing:
            listing = prev.listing  # keep one copy of an unchanged list, not one per read
        else:
            self._set_endpoints(state, listing)
        read = StoreRead(store.name, True, listing, duration, time.time())
        endpoints = dict(zip((e.key for e in listing.entries), state.endpoints, strict=True))
        appeared = self.db.observe_store(store.name, endpoints)
        if appeared:
            # Witness the certificate now, while it is the one PI just stored.
            log.info("entries appeared", extra={"store": store.name,
                                                "entries": ",".join(sorted(appeared))})
            await self.probe_endpoints({endpoints[k] for k in appeared})
        state.last_success = read
        self._set_baselines(state)
        if store.log_command:
            await self._read_log(state, session)
        return read

    def _set_endpoints(self, state: StoreState, listing: Listing) -> None:
        eps = tuple(entry_endpoint(state.cfg, e) for e in listing.entries)
        old = state.endpoint_set
        state.endpoints, state.endpoint_set = eps, frozenset(eps)
        self._prune_due = self._prune_due or not old <= state.endpoint_set
        state.bump()

    async def _read_log(self, state: StoreState, session: PiSession) -> None:
        """Note TOFU-failed records that are new since the last read. Records present at the
        first read have no time we can trust, so they are counted but prove nothing."""
        store = state.cfg
        assert store.log_command is not None
        try:
            counts = tofu_failures(await session.run(store.log_command))
        except StoreReadError as e:
            log.warning("log command failed; no log evidence this cycle",
                        extra={"store": store.name, "error": e.message})
            return
        before = state.log_counts
        now = time.time()
        # A record new since the last read was written after that read, maybe long before
        # this one: date it there, so an entry re-stored meanwhile (remediation) is not blamed.
        written = state.log_read_at if state.log_read_at is not None else now
        if before is not None:
            # Fewer records than before means the log rotated: every record left is new to us.
            rotated = sum(counts.values()) < sum(before.values())
            for cn, n in counts.items():
                if rotated or n > before.get(cn, 0):
                    state.log_seen[cn] = written
                    state.bump()
        state.log_counts = counts
        state.log_read_at = now

    # ---- probing --------------------------------------------------------------------

    def _targets(self, endpoints: Iterable[str]) -> list[tuple[str, float, str | None, str | None]]:
        timeout = max((s.probe_timeout for s in self.config.stores), default=5.0)
        out = []
        for ep in endpoints:
            ec = self.config.endpoints.get(ep)
            out.append((ep, timeout, ec.sni if ec else None, ec.connect if ec else None))
        return out

    def known_endpoints(self, store_names: Iterable[str] | None = None) -> set[str]:
        names = set(store_names) if store_names is not None else None
        eps: set[str] = set()
        for name, state in self.stores.items():
            if state.last_success is not None and (names is None or name in names):
                eps.update(state.endpoint_set)
        return eps

    def pickup(self) -> None:
        """Another process (`accept`, `check`, `remediate --apply`) wrote the database: read
        the baselines again, so an attestation counts from this cycle on, without a restart."""
        try:
            moved = self.db.changed_elsewhere()
        except StorageError as e:
            log.error("cannot check the database for other writers", extra={"error": str(e)})
            return
        if moved:
            for state in self.stores.values():
                if state.last_success is not None:
                    self._set_baselines(state)
            self._snapshot = None

    async def probe_endpoints(self, endpoints: Iterable[str]) -> None:
        self.pickup()
        results = await probe_many(
            self._targets(endpoints), self._probe_bound.get(self.config.probe_concurrency)
        )
        changed = {ep for ep, r in results.items() if _outcome(r) != _outcome(self.probes.get(ep))}
        self.probes.update(results)
        if changed:
            for state in self.stores.values():
                if not changed.isdisjoint(state.endpoint_set):
                    state.bump()
        fps = {ep: r.cert.fingerprint_sha256 for ep, r in results.items() if r.cert is not None}
        if fps:
            self.db.note_fingerprints(fps)
            if self.db.fill(fps):
                for state in self.stores.values():
                    if state.last_success is not None:
                        self._set_baselines(state)
        self._snapshot = None

    def prune(self) -> None:
        """Forget probes and endpoint rows no stored entry names any more: a site whose
        endpoints churn must not grow without bound."""
        self._prune_due = False
        keep = self.known_endpoints()
        for ep in [ep for ep in self.probes if ep not in keep]:
            del self.probes[ep]
        self.db.prune_endpoints()

    # ---- one pass, loops ------------------------------------------------------------

    async def run_once(self, store_names: Iterable[str] | None = None) -> Snapshot:
        stores = [s for s in self.config.stores if store_names is None or s.name in store_names]
        started = time.time()
        await asyncio.gather(*(self.read_store(s) for s in stores))
        # Entries that appeared were probed during their read, to witness them: not again.
        await self.probe_endpoints(
            ep for ep in self.known_endpoints(s.name for s in stores)
            if (r := self.probes.get(ep)) is None or r.timestamp < started
        )
        if self._prune_due:
            self.prune()
        if store_names is None:
            return self.snapshot()
        return self._build(only={s.name for s in stores})

    async def _store_loop(self, store: StoreConfig) -> None:
        while True:
            try:
                await self.read_store(store)
                if self._prune_due:
                    self.prune()
                self.snapshot()  # decide now: the history dates a change when it is seen
            except Exception:  # a bug must not silence one store forever
                log.exception("store loop error", extra={"store": store.name})
            await asyncio.sleep(store.store_interval)

    def _probe_interval(self) -> float:
        return min((s.probe_interval for s in self.config.stores), default=60.0)

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(self._probe_interval())
            try:
                await self.probe_endpoints(self.known_endpoints())
                self.snapshot()
            except Exception:
                log.exception("probe loop error")

    async def start(self) -> None:
        """First pass in the foreground (so `ready` means something), then the loops."""
        await self.run_once()
        self.ready = True
        self._snapshot = None
        for state in self.stores.values():
            self._start_loop(state, first_delay=True)
        self._probe_task = asyncio.create_task(self._probe_loop(), name="probes")

    def _start_loop(self, state: StoreState, first_delay: bool) -> None:
        store = state.cfg

        async def loop() -> None:
            if first_delay:
                await asyncio.sleep(store.store_interval)
            await self._store_loop(store)

        state.task = asyncio.create_task(loop(), name=f"store:{store.name}")

    async def stop(self) -> None:
        tasks = [t for s in self.stores.values() if (t := s.task) is not None]
        tasks += [self._probe_task] if self._probe_task else []
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(s.close() for s in self.stores.values()))
        self.db.close()

    async def apply_config(self, new: Config) -> None:
        """Swap in a validated config: untouched stores keep their loop and SSH session, a
        changed store is reconfigured in place, a removed one is dropped whole."""
        old, self.config = self.stores, new
        stores: dict[str, StoreState] = {}
        for cfg in new.stores:
            state = old.get(cfg.name)
            if state is None:
                state = StoreState(cfg)
            elif state.cfg != cfg:
                await state.reconfigure(cfg)
                if state.last_success is not None and state.last_success.listing is not None:
                    self._set_endpoints(state, state.last_success.listing)  # self_address may move
            else:
                state.bump()  # pins and endpoint settings may have changed: decide again
                stores[cfg.name] = state
                continue
            stores[cfg.name] = state
            if self.ready:
                self._start_loop(state, first_delay=False)
        for name, state in old.items():
            if name not in stores:
                await state.close()
                self._prune_due = True
        self.stores = stores
        self.config_reload_ok = True
        if self._prune_due:
            self.prune()
        self._snapshot = None

    # ---- the snapshot ---------------------------------------------------------------

    def invalidate(self) -> None:
        self._snapshot = None

    def snapshot(self) -> Snapshot:
        snap = self._snapshot
        if snap is None or snap.config_reload_ok != self.config_reload_ok:
            snap = self._snapshot = self._build()
        return snap

    def _set_baselines(self, state: StoreState) -> None:
        fresh = self.db.baselines(state.name)
        if fresh != state.baselines:
            state.baselines = fresh
            state.bump()

    def _store_views(self, state: StoreState) -> tuple[EntryView, ...]:
        """One store's views, decided again only when its version moved: a probe cycle that
        saw the same certificates (the usual one) decides nothing again."""
        if state.views_version != state.version:
            ok = state.last_success
            assert ok is not None and ok.listing is not None
            views = store_views(state.name, ok.listing.entries, state.endpoints, self.probes,
                                state.baselines, self.config.pins, state.log_seen)
            state.views = self._record(state.name, views)
            state.views_version = state.version
        return state.views

    def _record(self, store: str, views: tuple[EntryView, ...]) -> tuple[EntryView, ...]:
        """Write what changed to the history; the views learn when their state began. A
        database that cannot be written loses history, never the verdicts."""
        now = time.time()
        try:
            statuses = self.db.record(store, lambda old: diff(store, views, old, now))
            if now - self._history_pruned > 60:
                self._history_pruned = now
                self.db.prune_history(self.config.history.max_age, self.config.history.max_records)
        except (sqlite3.Error, StorageError) as e:
            log.error("cannot record history", extra={"store": store, "error": str(e)})
            return views
        return tuple(_with_status(v, statuses.get(v.entry.key)) for v in views)

    def _with_partners(self, only: set[str] | None) -> set[str] | None:
        if only is None:
            return None
        return only | {n for p in self.config.pairs if only & {p.primary, p.secondary}
                       for n in (p.primary, p.secondary)}

    def _build(self, only: set[str] | None = None) -> Snapshot:
        """`only`: just these stores and their HA partners (pair verdicts need both sides),
        what /probe?target= shows, without deciding every other store's entries."""
        only = self._with_partners(only)
        views: list[EntryView] = []
        stores: dict[str, StoreStatus] = {}
        bad: dict[str, int] = {}
        capped: dict[str, int] = {}
        versions: dict[str, int] = {}
        for name, state in self.stores.items():
            if only is not None and name not in only:
                continue
            ok = state.last_success
            stores[name] = StoreStatus(name, state.last, ok, dict(state.errors))
            if state.capped:
                capped[name] = state.capped
            if ok is None or ok.listing is None:
                continue
            bad[name] = len(ok.listing.bad_lines)
            views.extend(self._store_views(state))
            versions[name] = state.views_version
        known = {v.endpoint for v in views}
        changed = {ep: t for ep, t in self.db.changed_times().items() if ep in known}
        return Snapshot(
            stores, tuple(views), {k: v for k, v in self.probes.items() if k in known},
            changed, capped, bad, self.config_reload_ok, self.ready,
            pair_views(self.config, views), versions,
        )
