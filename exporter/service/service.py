"""The running exporter: store reads, probes, baselines, and the snapshot they make.

Reads and probes run in background loops; scrapes only ever read the latest snapshot, so a
hanging PI server can delay nothing but its own data. Per store state lives in one
StoreState each (exporter.service.state), in one mapping.

The loops are supervised: an unexpected exception in the first pass, a store loop or the
probe loop is logged (with its store), counted (tofu_exporter_loop_errors_total{loop}) and
retried after a bounded exponential backoff; `health()` names what makes the exporter
useless (so /-/healthy fails and an orchestrator restarts it), `not_ready()` why it is not
ready. A baseline database that cannot be written (disk full, I/O error) is not an
exception: the read that could not record its baselines fails with reason `storage`, and the
next one tries again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path

from prometheus_client import Counter as PromCounter

from exporter.config.model import Config, StoreConfig
from exporter.core.history import EntryStatus, diff
from exporter.core.model import (
    Attested,
    Baseline,
    BaselineKind,
    EntryView,
    ErrorReason,
    Listing,
    ProbeResult,
    StoredEntry,
    StoreRead,
    StoreStatus,
)
from exporter.exposition.writer import render_chunks
from exporter.fleet.pairs import pair_views
from exporter.fleet.shard import ALL, Shard, select
from exporter.fleet.snapshot import Snapshot
from exporter.probes.jsse import DEFAULT as _DEFAULT_PROFILE
from exporter.service import kinds
from exporter.service.state import (
    STOP_DEADLINE,
    Decided,
    StoreData,
    StoreState,
    next_version,
    stop_tasks,
    with_endpoints,
)
from exporter.service.workers import Workers
from exporter.sources.prime.listing import cli_error, parse_capped
from exporter.sources.prime.ssh import PiSession, StoreReadError
from exporter.sources.prime.tofu_log import tofu_failures
from exporter.store.database import BaselineDB, StorageError
from exporter.store.reader import Attester, EvidenceReader

log = logging.getLogger("exporter.service")

# What a BaselineDB write raises when the database cannot record (disk full, I/O error,
# read-only file system). Reads (baselines, changed_times) are not caught: a database that
# cannot even be read fails the loop, which the supervisor retries and counts.
STORAGE_ERRORS: tuple[type[Exception], ...] = (StorageError,)
RECORD_TRIES = 3  # history writes raced by another process (serve and `check`) in a row
BACKOFF_BASE = 0.2  # seconds before the first retry after an unexpected exception
BACKOFF_MAX = 60.0
# Consecutive failures of the first pass or the probe loop (or of every store loop) after
# which the exporter calls itself unhealthy: restarting it is the remedy left.
FAILURE_BOUND = 5

# Process-wide, in the default registry that /metrics appends (as tofu_baseline_db_resets):
# evidence a replica dropped because another shard owns its store (docs/sharding.md).
ROWS_DROPPED = PromCounter(
    "tofu_baseline_rows_dropped",
    "Baseline rows of stores another shard owns, dropped by this replica at start or reload, "
    "by the baseline's kind",
    ["kind"],
)
for _kind in BaselineKind:
    ROWS_DROPPED.labels(_kind.value)


def entry_endpoint(store: StoreConfig, entry: StoredEntry) -> str:
    """Where to probe an entry from here (by the store's kind: exporter.service.kinds)."""
    return kinds.entry_endpoint(store, entry)


def _no_entries(listing: Listing, text: str) -> None:
    """A listing without entries is an empty store only when nothing in it says otherwise:
    taken for one, an error would drop every baseline, and the entries, listed again, would
    be witnessed anew with whatever certificate their peers present then."""
    if listing.bad_lines:
        raise StoreReadError(
            ErrorReason.PARSE, f"{len(listing.bad_lines)} lines, none of them an entry"
        )
    if (error := cli_error(text)) is not None:
        raise StoreReadError(
            ErrorReason.COMMAND, f"the CLI answered with an error, not a listing: {error[:200]}"
        )


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
    def __init__(self, config: Config, storage_path: Path | str, shard: Shard = ALL,
                 drop_others: bool = False) -> None:
        self.storage_path = str(storage_path)  # what `accept` and `history` must be given too
        # Sharded (exporter.fleet.shard): this replica reads, probes, stores and exports only the
        # stores of its shard; every config it is given, at start or reload, is cut down here.
        # Only a long-running replica (`serve`) may drop the other shards' rows (_own).
        self.shard, self.drop_others = shard, drop_others
        path = Path(storage_path)
        self.db = BaselineDB(path if str(storage_path) == ":memory:" else path / "baseline.db")
        config = self.config = self._own(config)
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
        self.workers = Workers()  # large stores' parsing, recording and deciding
        self._start_task: asyncio.Task[None] | None = None
        # Supervision: unexpected exceptions per loop kind; consecutive failures and the last
        # error per loop instance ("start", "probe", "store:<name>"); tasks that ended.
        self.loop_errors: Counter[str] = Counter()
        self._failing: dict[str, tuple[int, str]] = {}
        self._dead: dict[str, str] = {}
        self._stopping = False
        self._retired: set[asyncio.Task[None]] = set()  # ended by a reload, on purpose
        # Baseline writes that failed (key "store:<name>", "probes", "prune" -> error): the
        # reason /-/ready gives, cleared by the next write of the same kind that succeeds.
        self.storage_failures: dict[str, str] = {}
        self.backoff_base, self.backoff_max, self.failure_bound = BACKOFF_BASE, BACKOFF_MAX, FAILURE_BOUND
        self.stop_deadline = STOP_DEADLINE

    @property
    def evidence(self) -> EvidenceReader:
        """History, baselines and attestations, as the pages, the api and the commands read them."""
        return self.db

    @property
    def attester(self) -> Attester:
        """Where `accept` records an operator's acceptance (all or none)."""
        return self.db

    def _own(self, config: Config) -> Config:
        """This replica's part of a config. A long-running replica (`drop_others`: `serve`)
        drops the rows of stores another shard owns, logged and counted: a store that moves
        back later is adopted anew, not trusted on rows nobody kept up to date. A one-shot
        command (`check --shard`) drops nothing: that evidence is not its own."""
        mine = select(config, self.shard)
        if mine is not config and self.drop_others:
            self._drop({s.name for s in config.stores} - {s.name for s in mine.stores})
        return mine

    def _drop(self, stores: set[str]) -> None:
        for store, rows in sorted(self.db.drop_stores(stores).items()):
            log.warning("dropped the baselines of a store another shard owns", extra={
                "store": store, "rows": sum(rows.values()), "shard": self.shard.index,
                "total_shards": self.shard.total, **{k.value: rows[k.value] for k in BaselineKind}})
            for kind, n in rows.items():
                ROWS_DROPPED.labels(kind).inc(n)

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
        session = state.pi_session() if store.remote else None
        async with self._read_bound.get(self.config.store_concurrency):
            if not kinds.is_pi(store):
                return await self._read_source(state, session)
            assert session is not None
            return await self._read_store(state, session)

    async def _read_source(self, state: StoreState, session: PiSession | None) -> StoreRead:
        """A store of another kind than PI (exporter.service.kinds): its Source reads it; the
        baselines, probes of appeared entries and the swap are the same as for PI."""
        read, capped = await kinds.read(state.cfg, session)
        if read.ok and read.listing is not None:
            read = await self._read_ok(state, None, read.listing, capped, read.duration_seconds)
        else:
            reason = read.error_reason.value if read.error_reason else "unknown"
            state.errors[reason] += 1
            log.warning("store read failed", extra={"store": state.name, "reason": reason,
                                                    "error": read.error})
        state.last = read
        self._snapshot = None
        return read

    async def _read_store(self, state: StoreState, session: PiSession) -> StoreRead:
        store = state.cfg
        start = time.perf_counter()
        try:
            text = await session.run(store.listcerts_command)
            # Cap while parsing: entries beyond max_entries are counted, never held. A
            # listing takes about 100 characters per entry; 100,000 entries parse in 0.7 s.
            listing, beyond = await self.workers.run(len(text) // 100, parse_capped, text,
                                             store.max_entries)
            if not listing.entries:
                _no_entries(listing, text)
            del text  # a multi-MB listing need not live through the probes below
        except StoreReadError as e:
            read = StoreRead(
                store.name, False, None, time.perf_counter() - start, time.time(),
                e.reason, e.message,
            )
            state.errors[e.reason.value] += 1
            log.warning("store read failed", extra={"store": store.name, "reason": e.reason.value,
                                                    "error": e.message})
        else:
            read = await self._read_ok(state, session, listing, beyond,
                                       time.perf_counter() - start)
        state.last = read
        self._snapshot = None
        return read

    def _note_listing(self, state: StoreState, listing: Listing, capped: int) -> None:
        store = state.cfg
        if listing.bad_lines:
            state.errors[ErrorReason.PARSE.value] += 1
            log.warning("unparseable lines in listing", extra={
                "store": store.name, "count": len(listing.bad_lines),
                "first": listing.bad_lines[0][:200]})
        if capped:
            log.warning("store holds more entries than max_entries; extra entries not shown",
                        extra={"store": store.name, "entries": len(listing.entries) + capped,
                               "max_entries": store.max_entries})

    def _storage_failed(self, state: StoreState, duration: float, e: Exception) -> StoreRead:
        """The list was read but its baselines could not be recorded: not a success."""
        error = f"baseline database not writable: {e}"
        self.storage_failures[f"store:{state.name}"] = error
        state.errors[ErrorReason.STORAGE.value] += 1
        log.error("store read not recorded: baseline database not writable", extra={
            "store": state.name, "reason": ErrorReason.STORAGE.value, "error": str(e)})
        return StoreRead(state.name, False, None, duration, time.time(), ErrorReason.STORAGE, error)

    def _observe(self, state: StoreState, listing: Listing, capped: int
                 ) -> tuple[Listing, tuple[str, ...], dict[str, str], set[str]]:
        """Record a parsed listing in the baseline database: the listing kept (the previous
        one when unchanged), its endpoints, entry key -> endpoint, and the keys that
        appeared. From here until the read swaps its data in (_swap_read) the database is
        ahead of the store's data. Runs in a worker thread for a large store."""
        self._note_listing(state, listing, capped)
        data = state.data
        if data.listing is not None and data.listing == listing:
            listing, eps = data.listing, data.endpoints  # one copy of an unchanged list
        else:
            eps = tuple(entry_endpoint(state.cfg, e) for e in listing.entries)
        endpoints = dict(zip((e.key for e in listing.entries), eps, strict=True))
        with state.evidence_lock:  # the database and `observed` move together
            before, state.observed = state.observed, listing
            try:
                appeared = self.db.observe_store(state.name, endpoints)
            except BaseException:
                state.observed = before  # rolled back: the database holds what it held
                raise
            state.incoming = frozenset(eps)
        return listing, eps, endpoints, appeared

    async def _read_ok(self, state: StoreState, session: PiSession | None, listing: Listing,
                       capped: int, duration: float) -> StoreRead:
        store = state.cfg
        try:
            listing, eps, endpoints, appeared = await self.workers.run(
                len(listing.entries), self._observe, state, listing, capped)
        except STORAGE_ERRORS as e:  # nothing of this read is kept: the next one tries again
            return self._storage_failed(state, duration, e)
        self.storage_failures.pop(f"store:{store.name}", None)
        read = StoreRead(store.name, True, listing, duration, time.time())
        if appeared:
            # Witness the certificate now, while it is the one PI just stored. Decisions
            # meanwhile see the old data whole: the new listing is not swapped in yet.
            log.info("entries appeared", extra={"store": store.name,
                                                "entries": ",".join(sorted(appeared))})
            await self.probe_endpoints({endpoints[k] for k in appeared})
        await self.workers.run(len(listing.entries), self._swap_read, state, read, eps, capped)
        if store.log_command and session is not None:
            await self._read_log(state, session)
        return read

    def _swap_read(self, state: StoreState, read: StoreRead, eps: tuple[str, ...],
                   capped: int) -> None:
        """Swap in what one read made, in one assignment: its listing, the endpoints, the
        capped count and the baselines the database holds for that listing."""
        with state.evidence_lock:
            if state.observed is not read.listing:
                return  # a newer read of this store told the database of its listing: it swaps
            old = state.data
            if old.listing is read.listing:
                eps = old.endpoints  # unchanged list: keep the endpoints (a reload may have moved them)
            baselines, attested = self._fresh_baselines(state, old)
            moved = (old.listing is not read.listing or eps != old.endpoints
                     or baselines is not old.baselines)
            new = state.update(moved, read=read, capped=capped, baselines=baselines,
                               attested=attested, **with_endpoints(eps))
            state.incoming = frozenset()
        if not old.endpoint_set <= new.endpoint_set:
            self._prune_due = True  # some endpoint may have lost its last entry
        self._snapshot = None

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
        now = time.time()
        state.swap(lambda data: data.with_log(data.log.after(counts, now)))
        self._snapshot = None

    # ---- probing --------------------------------------------------------------------

    def _targets(
        self, endpoints: Iterable[str]
    ) -> list[tuple[str, float, str | None, str | None, str]]:
        timeout = max((s.probe_timeout for s in self.config.stores), default=5.0)
        profiles = {s.tls_client_profile for s in self.config.stores}
        same = profiles.pop() if len(profiles) == 1 else None  # nearly every site
        out = []
        for ep in endpoints:
            ec = self.config.endpoints.get(ep)
            out.append((ep, timeout, ec.sni if ec else None, ec.connect if ec else None,
                        same or self._profile(ep)))
        return out

    def _profile(self, endpoint: str) -> str:
        """The TLS client profile of the first store (in config order) listing `endpoint`:
        one probe per endpoint, so stores whose Java differs share the first one's view."""
        for state in self.stores.values():
            if endpoint in state.data.endpoint_set or endpoint in state.incoming:
                return state.cfg.tls_client_profile
        return _DEFAULT_PROFILE

    def known_endpoints(self, store_names: Iterable[str] | None = None) -> set[str]:
        names = set(store_names) if store_names is not None else None
        eps: set[str] = set()
        for name, state in self.stores.items():
            if names is None or name in names:
                data = state.data
                if data.read is not None:
                    eps.update(data.endpoint_set)
                eps.update(state.incoming)  # a read in flight probes these
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
                self._set_baselines(state)
            self._snapshot = None

    async def probe_endpoints(self, endpoints: Iterable[str]) -> None:
        self.pickup()
        tls, hostkey = kinds.split(endpoints)
        timeout = max((s.probe_timeout for s in self.config.stores), default=5.0)
        results = await kinds.probe(self._targets(tls), [(ep, timeout) for ep in hostkey],
                                    self._probe_bound.get(self.config.probe_concurrency))
        changed = {ep for ep, r in results.items() if _outcome(r) != _outcome(self.probes.get(ep))}
        self.probes.update(results)
        if changed:
            for state in self.stores.values():
                if not changed.isdisjoint(state.data.endpoint_set):
                    state.bump()
        fps = {ep: r.cert.fingerprint_sha256 for ep, r in results.items() if r.cert is not None}
        if fps:
            try:
                self.db.note_fingerprints(fps)
                filled = self.db.fill(fps)
            except STORAGE_ERRORS as e:  # the probes stand; pending baselines wait a cycle
                self._storage_problem("probes", e)
                filled = 0
            else:
                self.storage_failures.pop("probes", None)
            if filled:
                for state in self.stores.values():
                    self._set_baselines(state)
        self._snapshot = None

    def _storage_problem(self, what: str, e: Exception) -> None:
        self.storage_failures[what] = f"baseline database not writable: {e}"
        log.error("baseline database not writable", extra={"what": what, "error": str(e)})

    def prune(self) -> None:
        """Forget probes and endpoint rows no stored entry names any more: a site whose
        endpoints churn must not grow without bound."""
        self._prune_due = False
        keep = self.known_endpoints()
        for ep in [ep for ep in self.probes if ep not in keep]:
            del self.probes[ep]
        try:
            self.db.prune_endpoints()
        except STORAGE_ERRORS as e:
            self._prune_due = True  # again next time
            self._storage_problem("prune", e)
        else:
            self.storage_failures.pop("prune", None)

    # ---- one pass, loops ------------------------------------------------------------

    async def run_once(self, store_names: Iterable[str] | None = None) -> Snapshot:
        """One pass: read the stores, probe what they name. Every read is awaited before an
        exception of one of them is raised (none is left running unwatched)."""
        stores = [s for s in self.config.stores if store_names is None or s.name in store_names]
        return await self._pass(stores, supervised=False)

    async def _first_pass(self) -> Snapshot:
        """run_once for start(): a store whose read raises is logged and counted, and left
        to its loop; the others go on (one bad store never blocks the rest)."""
        return await self._pass(list(self.config.stores), supervised=True)

    async def _read_all(self, stores: list[StoreConfig], supervised: bool) -> None:
        results = await asyncio.gather(*(self.read_store(s) for s in stores),
                                       return_exceptions=True)
        first: BaseException | None = None
        for store, r in zip(stores, results, strict=True):
            if not isinstance(r, BaseException):
                continue
            if not isinstance(r, Exception):
                raise r  # cancellation, KeyboardInterrupt: not ours to keep
            if supervised:
                self._failed("start", f"store:{store.name}", r, store.name)
            else:
                log.error("store read raised", exc_info=r, extra={"store": store.name})
                first = first or r
        if first is not None:
            raise first

    async def _pass(self, stores: list[StoreConfig], supervised: bool) -> Snapshot:
        started = time.time()
        await self._read_all(stores, supervised)
        # Entries that appeared were probed during their read, to witness them: not again.
        await self.probe_endpoints(
            ep for ep in self.known_endpoints(s.name for s in stores)
            if (r := self.probes.get(ep)) is None or r.timestamp < started
        )
        if self._prune_due:
            self.prune()
        await self._decide()
        if len(stores) == len(self.config.stores):
            # Built here, not through snapshot(): a pass whose snapshot cannot be built
            # (the database cannot be read) failed, and start() retries it.
            snap = self._snapshot = self._build()
            return snap
        return self._build(only={s.name for s in stores})

    # ---- supervision ----------------------------------------------------------------

    def _backoff(self, failures: int) -> float:
        """Bounded exponential: base, 2 x base, 4 x base, ... never more than backoff_max."""
        return float(min(self.backoff_max, self.backoff_base * 2 ** min(failures - 1, 30)))

    async def _attempt(self, loop: str, name: str, step: Callable[[], Awaitable[object]],
                       store: str | None = None) -> float | None:
        """Run one step of a loop. None when it went through; after an unexpected exception,
        logged with its store and counted, the seconds to wait before trying again."""
        try:
            await step()
        except Exception as e:  # a bug or a broken dependency must not end the loop
            return self._failed(loop, name, e, store)
        if self._failing.pop(name, None) is not None:
            log.info("loop recovered", extra={"loop": loop, "store": store or "-"})
            self._snapshot = None
        return None

    def _failed(self, loop: str, name: str, e: Exception, store: str | None) -> float:
        failures = self._failing.get(name, (0, ""))[0] + 1
        error = f"{type(e).__name__}: {e}"
        self._failing[name] = (failures, error)
        self.loop_errors[loop] += 1
        delay = self._backoff(failures)
        log.error("loop error; retrying", exc_info=e, extra={
            "loop": loop, "store": store or "-", "failures": failures,
            "retry_in_seconds": delay, "error": error})
        self._snapshot = None
        return delay

    def _watch(self, task: asyncio.Task[None], name: str, may_return: bool = False) -> asyncio.Task[None]:
        """A loop task must only ever end because stop() or a reload ended it (start's task
        may also simply finish)."""

        def done(t: asyncio.Task[None]) -> None:
            if self._stopping or t in self._retired:
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

    def health(self) -> list[str]:
        """What makes this process useless, each a line; empty when healthy."""
        bound = self.failure_bound
        out = [f"loop {name} ended ({why})" for name, why in sorted(self._dead.items())]
        for name in ("start", "probe"):
            n, err = self._failing.get(name, (0, ""))
            if n >= bound:
                out.append(f"loop {name} failed {n} times in a row (last: {err})")
        stores = [self._failing.get(f"store:{n}", (0, ""))[0] for n in self.stores]
        if stores and min(stores) >= bound:
            out.append(f"every store loop failed at least {bound} times in a row")
        return out

    def not_ready(self) -> str | None:
        """Why the exporter is not ready (None when it is)."""
        if not self.ready:
            n, err = self._failing.get("start", (0, ""))
            if n:
                return f"first pass over the stores failing ({n} attempts, last: {err})"
            return "first pass over the stores running"
        if self.storage_failures:
            what = "; ".join(f"{k}: {v}" for k, v in sorted(self.storage_failures.items()))
            return f"storage: {what}"
        return None

    # ---- the loops ------------------------------------------------------------------

    async def _store_loop(self, store: StoreConfig) -> None:
        name = f"store:{store.name}"
        while True:
            retry = await self._attempt("store", name, lambda: self._store_step(store), store.name)
            await asyncio.sleep(store.store_interval if retry is None else retry)

    async def _store_step(self, store: StoreConfig) -> None:
        """One pass of a store's loop: read it, prune, decide."""
        await self.read_store(store)
        if self._prune_due:
            self.prune()
        await self._decide()  # now: the history dates a change when it is seen

    def _probe_interval(self) -> float:
        return min((s.probe_interval for s in self.config.stores), default=60.0)

    async def _probe_loop(self) -> None:
        retry: float | None = None
        while True:
            await asyncio.sleep(self._probe_interval() if retry is None else retry)
            retry = await self._attempt("probe", "probe", self._probe_step)

    async def _probe_step(self) -> None:
        await self.probe_endpoints(self.known_endpoints())
        await self._decide()  # now: the history dates a change when it is seen

    async def start(self) -> None:
        """First pass in the foreground (so `ready` means something), retried until it goes
        through, then the loops."""
        while (retry := await self._attempt("start", "start", self._first_pass)) is not None:
            await asyncio.sleep(retry)
        # Write the stores' exposition blocks before saying ready, off the loop: the first
        # scrape after a start then joins cached blocks instead of writing every series
        # (200 stores, 20,000 entries: about 0.3 s of CPU). Best effort: a scrape renders
        # whatever is missing.
        snap = self.snapshot()
        await asyncio.to_thread(render_chunks, snap)
        self.ready = True
        self._snapshot = None
        for state in self.stores.values():
            self._start_loop(state, first_delay=True)
        self._probe_task = self._watch(asyncio.create_task(self._probe_loop(), name="probes"),
                                       "probe")

    def launch(self) -> asyncio.Task[None]:
        """start() in a task of its own, watched like the loops; stop() ends it."""
        self._start_task = self._watch(asyncio.create_task(self.start(), name="start"), "start",
                                       may_return=True)
        return self._start_task

    def _start_loop(self, state: StoreState, first_delay: bool) -> None:
        store = state.cfg

        async def loop() -> None:
            if first_delay:
                await asyncio.sleep(store.store_interval)
            await self._store_loop(store)

        state.task = self._watch(asyncio.create_task(loop(), name=f"store:{store.name}"),
                                 f"store:{store.name}")

    async def stop(self) -> None:
        """Cancel and await every task, each within the deadline (stragglers are logged),
        close every SSH session within the same deadline, then the database."""
        self._stopping = True
        tasks = [t for t in (self._start_task, self._probe_task) if t is not None]
        await asyncio.gather(stop_tasks(tasks, self.stop_deadline),
                             *(s.close(self.stop_deadline) for s in self.stores.values()))
        if await self.workers.drain(self.stop_deadline):
            # Closing the connection under its transaction would fail the write. Each write is
            # one transaction: whether it ends or the process exits first, the database holds.
            log.warning("a worker thread is still writing the baseline database at the stop "
                        "deadline; not closing it under that write")
            return
        self.db.close()

    def _retire(self, state: StoreState) -> None:
        """A reload ends this store's loop on purpose: not a death."""
        if state.task is not None:
            self._retired.add(state.task)
        self._failing.pop(f"store:{state.name}", None)
        self._dead.pop(f"store:{state.name}", None)

    async def apply_config(self, new: Config) -> None:
        """Swap in a validated config: untouched stores keep their loop and SSH session, a
        changed store is reconfigured in place, a removed one is dropped whole."""
        new = self._own(new)
        old, self.config = self.stores, new
        stores: dict[str, StoreState] = {}
        for cfg in new.stores:
            state = old.get(cfg.name)
            if state is None:
                state = StoreState(cfg)
            elif state.cfg != cfg:
                self._retire(state)
                await state.reconfigure(cfg, self.stop_deadline)
                self._move_endpoints(state)  # self_address may have moved
            else:
                state.bump()  # pins and endpoint settings may have changed: decide again
                stores[cfg.name] = state
                continue
            stores[cfg.name] = state
            if self.ready:
                self._start_loop(state, first_delay=False)
        for name, state in old.items():
            if name not in stores:
                self._retire(state)
                self.storage_failures.pop(f"store:{name}", None)
                await state.close(self.stop_deadline)
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
        """The latest snapshot, for scrapes and pages. A build that fails (the baseline
        database cannot be read) is logged and serves the stores' status and the loop
        errors without entries, so /metrics still says what is wrong."""
        snap = self._snapshot
        if snap is None or snap.config_reload_ok != self.config_reload_ok:
            try:
                snap = self._snapshot = self._build()
            except Exception:
                log.exception("snapshot build failed; serving the stores' status only")
                snap = self._status_only()
        return snap

    def _status_only(self) -> Snapshot:
        stores = {n: StoreStatus(n, s.last, s.data.read, dict(s.errors))
                  for n, s in self.stores.items()}
        return Snapshot(stores, (), {}, {}, config_reload_ok=self.config_reload_ok,
                        ready=self.ready, loop_errors=dict(self.loop_errors))

    def _set_baselines(self, state: StoreState) -> None:
        """Keep the baselines the database holds now, if they belong to the store's listing:
        while a read probes the entries that appeared, the database already holds the new
        listing's rows (a departed entry's are gone), and the read swaps them in with that
        listing. Under the store's evidence lock: a worker thread (a large store's read) and
        the loop (pickup, a probe that filled baselines) can both run this, and without it
        the older read could be kept last, stale until the store's next read."""
        with state.evidence_lock:
            data = state.data
            if data.read is None or data.listing is not state.observed:
                return
            baselines, attested = self._fresh_baselines(state, data)
            if baselines is not data.baselines:
                state.update(baselines=baselines, attested=attested)
                self._snapshot = None

    def _fresh_baselines(self, state: StoreState, data: StoreData
                         ) -> tuple[Mapping[str, Baseline], Mapping[str, Attested]]:
        """The store's baselines and attestations in the database (`data`'s own objects when
        unchanged). Who attested, when, why: read only when the baselines changed (an
        `accept` changes them), so scrapes and pages never query the database for it."""
        fresh = self.db.baselines(state.name)
        if fresh == data.baselines:
            return data.baselines, data.attested
        any_attested = any(b.kind is BaselineKind.ATTESTED for b in fresh.values())
        return fresh, self.db.attested(state.name) if any_attested else {}

    def _move_endpoints(self, state: StoreState) -> None:
        """The config changed: the endpoints of the store's entries again, in one swap."""
        old = state.data

        def move(data: StoreData) -> StoreData:
            if data.listing is None:
                return data
            eps = tuple(entry_endpoint(state.cfg, e) for e in data.listing.entries)
            return dataclasses.replace(data, version=next_version(), **with_endpoints(eps))

        if not old.endpoint_set <= state.swap(move).endpoint_set:
            self._prune_due = True

    async def _decide(self) -> None:
        """Decide and record the stores whose version moved, a large one in a worker thread
        (100,000 entries take over a second of CPU, which would hold every scrape and
        /-/healthy). A snapshot then finds them decided."""
        for state in list(self.stores.values()):
            data = state.data
            if state.decided.version != data.version and data.listing is not None:
                await self.workers.run(len(data.listing.entries), self._store_views, state)

    def _store_views(self, state: StoreState) -> tuple[StoreData, tuple[EntryView, ...]]:
        """One store's data and its views, decided again only when its version moved: a probe
        cycle that saw the same certificates (the usual one) decides nothing again. The data
        is read once, and only it is decided: its listing with its own endpoints and
        baselines. Deciding and recording are one step per store, so an older decision
        (another loop's, in another thread) is never recorded after a newer one."""
        with state.decide_lock:
            data = state.data
            decided = state.decided
            if decided.version == data.version or data.listing is None:
                return data, decided.views
            views = kinds.store_views(state.cfg, data.listing, data.endpoints, self.probes,
                                      data.baselines, self.config.pins, data.log.seen,
                                      data.attested)
            if self._stopping:  # decided in a worker while stopping: not worth a long write
                return data, views
            state.decided = Decided(data.version, self._record(state.name, views))
            return data, state.decided.views

    def _record(self, store: str, views: tuple[EntryView, ...]) -> tuple[EntryView, ...]:
        """Write what changed to the history; the views learn when their state began. A
        database that cannot be written loses history, never the verdicts."""
        now = time.time()
        try:
            # The diff runs here; the database compares and sets (History.record): written
            # over since it was read (another process, `check`), it is read and diffed again.
            for _ in range(RECORD_TRIES):
                base = self.db.read_statuses(store)
                statuses, changes = diff(store, views, base.entries, now)
                if self.db.record(store, base, statuses, changes):
                    break
            else:
                raise StorageError(f"history of {store}: recorded elsewhere at each of "
                                   f"{RECORD_TRIES} tries")
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
        unresolved: dict[str, int] = {}
        versions: dict[str, int] = {}
        for name, state in self.stores.items():
            if only is not None and name not in only:
                continue
            data, decided = self._store_views(state)
            stores[name] = StoreStatus(name, state.last, data.read, dict(state.errors))
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
        changed = {ep: t for ep, t in self.db.changed_times().items() if ep in known}
        return Snapshot(
            stores, tuple(views), {k: v for k, v in self.probes.items() if k in known},
            changed, capped, bad, self.config_reload_ok, self.ready,
            pair_views(self.config, views), versions, dict(self.loop_errors), self.shard,
            {n: s.cfg.kind for n, s in self.stores.items() if n in stores}, unresolved,
        )
