"""The running exporter's state: store reads, probes, baselines, and the snapshot they make.

Reads and probes run in background loops; scrapes only ever read the latest snapshot, so a
hanging PI server can delay nothing but its own data.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from exporter.baseline import BaselineDB
from exporter.config import Config, StoreConfig
from exporter.model import (
    Baseline,
    EntryView,
    ErrorReason,
    ProbeResult,
    StoredEntry,
    StoreRead,
    StoreStatus,
)
from exporter.pairs import PairView, pair_views
from exporter.prime.listing import endpoint_of, parse_listing
from exporter.prime.logs import tofu_failures
from exporter.prime.ssh import PiSession, StoreReadError
from exporter.probe import probe_many
from exporter.subject import common_name
from exporter.verdict import decide

log = logging.getLogger("exporter.service")

# What PI writes when it stores its own certificate. Only these: the rest of 127.0.0.0/8 is
# rare on PI and is how the lab gives each simulated peer its own address.
_SELF_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "127.0.0.1", "::1"}


@functools.lru_cache(maxsize=65536)  # per entry per snapshot; hosts repeat
def is_loopback(host: str) -> bool:
    host = host.lower()
    if host in _SELF_NAMES:
        return True
    try:
        return ipaddress.ip_address(host) == ipaddress.ip_address("::1")
    except ValueError:
        return False


def entry_endpoint(store: StoreConfig, entry: StoredEntry) -> str:
    """Where to probe an entry from here. PI stores itself as 127.0.0.1_8082: that is the
    PI server's own address, not ours."""
    return _endpoint(store.self_address, entry.host, entry.port)


@functools.lru_cache(maxsize=131072)  # every snapshot build asks again for every entry
def _endpoint(self_address: str, host: str, port: int) -> str:
    return endpoint_of((self_address if is_loopback(host) else host).lower(), port)


@dataclass(frozen=True)
class Snapshot:
    stores: Mapping[str, StoreStatus]
    views: tuple[EntryView, ...]
    probes: Mapping[str, ProbeResult]
    changed: Mapping[str, float]  # endpoint -> when its fingerprint last changed
    capped: Mapping[str, int] = field(default_factory=dict)  # store -> entries not shown
    bad_lines: Mapping[str, int] = field(default_factory=dict)
    config_reload_ok: bool = True
    ready: bool = False
    pairs: tuple[PairView, ...] = ()

    def for_store(self, name: str) -> Snapshot:
        views = tuple(v for v in self.views if v.store == name)
        eps = {v.endpoint for v in views}
        return Snapshot(
            {k: v for k, v in self.stores.items() if k == name},
            views,
            {k: v for k, v in self.probes.items() if k in eps},
            {k: v for k, v in self.changed.items() if k in eps},
            {k: v for k, v in self.capped.items() if k == name},
            {k: v for k, v in self.bad_lines.items() if k == name},
            self.config_reload_ok,
            self.ready,
            tuple(p for p in self.pairs if name in (p.primary, p.secondary)),
        )


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
        path = Path(storage_path)
        self.db = BaselineDB(path if str(storage_path) == ":memory:" else path / "baseline.db")
        self.sessions: dict[str, PiSession] = {}
        self.last: dict[str, StoreRead] = {}
        self.last_success: dict[str, StoreRead] = {}
        self.errors: dict[str, Counter[str]] = {}
        self.probes: dict[str, ProbeResult] = {}
        self.baselines: dict[str, dict[str, Baseline]] = {}
        self.capped: dict[str, int] = {}
        self.config_reload_ok = True
        self.ready = False
        self._snapshot: Snapshot | None = None
        # One bound for all probes in flight and one for all SSH reads: the loops and
        # concurrent /probe requests share them, so N requests do not mean N x the limit.
        self._probe_bound = _Bound()
        self._read_bound = _Bound()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._probe_task: asyncio.Task[None] | None = None
        # Per store: what its views were built from, and the views (see _store_views).
        self._views_cache: dict[str, tuple[object, ...]] = {}
        self._versions: Counter[str] = Counter()  # bumped when baselines or log evidence change
        self._log_counts: dict[str, Counter[str]] = {}  # store -> CN -> records seen so far
        self._log_seen: dict[str, dict[str, float]] = {}  # store -> CN -> newest record seen at
        self._log_read_at: dict[str, float] = {}  # store -> when its log was last read

    # ---- reading stores -------------------------------------------------------------

    def _session(self, store: StoreConfig) -> PiSession:
        s = self.sessions.get(store.name)
        if s is None or s.cfg != store:
            s = self.sessions[store.name] = PiSession(store)
        return s

    async def read_store(self, store: StoreConfig) -> StoreRead:
        """Read one store's list, update baselines, probe entries that just appeared."""
        session = self._session(store)
        async with self._read_bound.get(self.config.store_concurrency):
            return await self._read_store(store, session)

    async def _read_store(self, store: StoreConfig, session: PiSession) -> StoreRead:
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
            self.errors.setdefault(store.name, Counter())[e.reason.value] += 1
            log.warning("store read failed", extra={"store": store.name, "reason": e.reason.value,
                                                    "error": e.message})
        else:
            if listing.bad_lines:
                self.errors.setdefault(store.name, Counter())[ErrorReason.PARSE.value] += 1
                log.warning("unparseable lines in listing", extra={
                    "store": store.name, "count": len(listing.bad_lines),
                    "first": listing.bad_lines[0][:200]})
            entries = listing.entries
            if len(entries) > store.max_entries:
                self.capped[store.name] = len(entries) - store.max_entries
                log.warning("store holds more entries than max_entries; extra entries not shown",
                            extra={"store": store.name, "entries": len(entries),
                                   "max_entries": store.max_entries})
                entries = entries[: store.max_entries]
                listing = type(listing)(entries, listing.bad_lines)
            else:
                self.capped.pop(store.name, None)
            prev = self.last_success.get(store.name)
            if prev is not None and prev.listing == listing:
                listing = prev.listing  # keep one copy of an unchanged list, not one per read
            read = StoreRead(store.name, True, listing, time.perf_counter() - start, time.time())
            endpoints = {e.key: entry_endpoint(store, e) for e in entries}
            appeared = self.db.observe_store(store.name, endpoints)
            if appeared:
                # Witness the certificate now, while it is the one PI just stored.
                log.info("entries appeared", extra={"store": store.name,
                                                    "entries": ",".join(sorted(appeared))})
                await self.probe_endpoints({endpoints[k] for k in appeared})
            self.last_success[store.name] = read
            self._set_baselines(store.name)
            if store.log_command:
                await self._read_log(store, session)
        self.last[store.name] = read
        self._snapshot = None
        return read

    async def _read_log(self, store: StoreConfig, session: PiSession) -> None:
        """Note TOFU-failed records that are new since the last read. Records present at the
        first read have no time we can trust, so they are counted but prove nothing."""
        assert store.log_command is not None
        try:
            counts = tofu_failures(await session.run(store.log_command))
        except StoreReadError as e:
            log.warning("log command failed; no log evidence this cycle",
                        extra={"store": store.name, "error": e.message})
            return
        before = self._log_counts.get(store.name)
        seen = self._log_seen.setdefault(store.name, {})
        now = time.time()
        # A record new since the last read was written after that read, maybe long before
        # this one: date it there, so an entry re-stored meanwhile (remediation) is not blamed.
        written = self._log_read_at.get(store.name, now)
        if before is not None:
            # Fewer records than before means the log rotated: every record left is new to us.
            rotated = sum(counts.values()) < sum(before.values())
            for cn, n in counts.items():
                if rotated or n > before.get(cn, 0):
                    seen[cn] = written
                    self._versions[store.name] += 1
        self._log_counts[store.name] = counts
        self._log_read_at[store.name] = now

    def _logged_failure(self, store: str, entry: StoredEntry, unique_cns: set[str],
                        base: Baseline | None, probe: ProbeResult | None) -> bool:
        seen = self._log_seen.get(store)
        if not seen:
            return False
        since = base.since if base is not None else 0.0
        names = {common_name(entry.subject)}
        if probe is not None and probe.cert is not None:
            names.add(common_name(probe.cert.subject))
        # The log names a CN, not a host: only trust it where that CN is unique in the store.
        return any(n in unique_cns and seen.get(n, 0.0) > since for n in names if n)

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
        by_name = {s.name: s for s in self.config.stores}
        for name, read in self.last_success.items():
            st = by_name.get(name)
            if st is None or read.listing is None or (names is not None and name not in names):
                continue
            eps.update(entry_endpoint(st, e) for e in read.listing.entries)
        return eps

    async def probe_endpoints(self, endpoints: Iterable[str]) -> None:
        results = await probe_many(
            self._targets(endpoints), self._probe_bound.get(self.config.probe_concurrency)
        )
        self.probes.update(results)
        fps = {ep: r.cert.fingerprint_sha256 for ep, r in results.items() if r.cert is not None}
        if fps:
            self.db.note_fingerprints(fps)
            if self.db.fill(fps):
                for name in self.last_success:
                    self._set_baselines(name)
        self._snapshot = None

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
        if store_names is None:
            return self.snapshot()
        return self._build(only={s.name for s in stores})

    async def _store_loop(self, store: StoreConfig) -> None:
        while True:
            try:
                await self.read_store(store)
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
            except Exception:
                log.exception("probe loop error")

    async def start(self) -> None:
        """First pass in the foreground (so `ready` means something), then the loops."""
        await self.run_once()
        self.ready = True
        self._snapshot = None
        for store in self.config.stores:
            self._start_loop(store, first_delay=True)
        self._probe_task = asyncio.create_task(self._probe_loop(), name="probes")

    def _start_loop(self, store: StoreConfig, first_delay: bool) -> None:
        async def loop() -> None:
            if first_delay:
                await asyncio.sleep(store.store_interval)
            await self._store_loop(store)

        self._tasks[store.name] = asyncio.create_task(loop(), name=f"store:{store.name}")

    async def stop(self) -> None:
        tasks = [*self._tasks.values(), *([self._probe_task] if self._probe_task else [])]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        await asyncio.gather(*(s.close() for s in self.sessions.values()))
        self.db.close()

    async def apply_config(self, new: Config) -> None:
        """Swap in a validated config: untouched stores keep their loop and SSH session."""
        old = {s.name: s for s in self.config.stores}
        fresh = {s.name: s for s in new.stores}
        self.config = new
        for name, st in old.items():
            if fresh.get(name) != st:
                task = self._tasks.pop(name, None)
                if task:
                    task.cancel()
                session = self.sessions.pop(name, None)
                if session:
                    await session.close()
                if name not in fresh:
                    self.last.pop(name, None)
                    self.last_success.pop(name, None)
                    self.errors.pop(name, None)
                    self.baselines.pop(name, None)
                    self.capped.pop(name, None)
                    self._views_cache.pop(name, None)
        for name, st in fresh.items():
            if old.get(name) != st and self.ready:
                self._start_loop(st, first_delay=False)
        self._snapshot = None

    # ---- the snapshot ---------------------------------------------------------------

    def invalidate(self) -> None:
        self._snapshot = None

    def snapshot(self) -> Snapshot:
        snap = self._snapshot
        if snap is None or snap.config_reload_ok != self.config_reload_ok:
            snap = self._snapshot = self._build()
        return snap

    def _set_baselines(self, store: str) -> None:
        fresh = self.db.baselines(store)
        if fresh != self.baselines.get(store):
            self.baselines[store] = fresh
            self._versions[store] += 1

    def _store_views(self, st: StoreConfig, ok: StoreRead) -> tuple[EntryView, ...]:
        """One store's views, reused while nothing they depend on changed: a probe cycle
        that saw the same certificates (the usual one) decides nothing again."""
        assert ok.listing is not None
        cached = self._views_cache.get(st.name)
        # A re-read that printed the same list counts as the same read.
        same_read = cached is not None and cached[1] is self.config and cached[0] == ok.listing
        eps: list[str] = (
            cached[5] if cached is not None and same_read  # type: ignore[assignment]
            else [entry_endpoint(st, e) for e in ok.listing.entries]
        )
        probes = self.probes
        sig = tuple(
            (r.cert.fingerprint_sha256 if r.cert is not None else None, r.error)
            if (r := probes.get(ep)) is not None else None
            for ep in eps
        )
        version = self._versions[st.name]
        if cached is not None and same_read and cached[2] == version and cached[3] == sig:
            return cached[4]  # type: ignore[return-value]
        baselines = self.baselines.get(st.name, {})
        unique: set[str] = set()
        if self._log_seen.get(st.name):  # only log evidence needs the CN census
            cns = Counter(common_name(e.subject) for e in ok.listing.entries)
            unique = {cn for cn, n in cns.items() if n == 1 and cn}
        views = []
        for entry, ep in zip(ok.listing.entries, eps, strict=True):
            pin = self.config.pins.get(ep)
            probe = probes.get(ep)
            base = baselines.get(entry.key)
            logged = self._logged_failure(st.name, entry, unique, base, probe)
            views.append(EntryView(
                st.name, entry, ep, decide(entry, probe, base, pin, logged), probe, base, pin
            ))
        result = tuple(views)
        self._views_cache[st.name] = (ok.listing, self.config, version, sig, result, eps)
        return result

    def _build(self, only: set[str] | None = None) -> Snapshot:
        """`only`: just these stores and their HA partners (pair verdicts need both sides),
        what /probe?target= shows, without deciding every other store's entries."""
        if only is not None:
            only = only | {n for p in self.config.pairs if only & {p.primary, p.secondary}
                           for n in (p.primary, p.secondary)}
        views: list[EntryView] = []
        stores: dict[str, StoreStatus] = {}
        bad: dict[str, int] = {}
        for st in self.config.stores:
            if only is not None and st.name not in only:
                continue
            ok = self.last_success.get(st.name)
            stores[st.name] = StoreStatus(
                st.name, self.last.get(st.name), ok, dict(self.errors.get(st.name, {}))
            )
            if ok is None or ok.listing is None:
                continue
            bad[st.name] = len(ok.listing.bad_lines)
            views.extend(self._store_views(st, ok))
        known = {v.endpoint for v in views}
        changed = {ep: t for ep, t in self.db.changed_times().items() if ep in known}
        return Snapshot(
            stores, tuple(views), {k: v for k, v in self.probes.items() if k in known},
            changed, dict(self.capped), bad, self.config_reload_ok, self.ready,
            pair_views(self.config, views),
        )
