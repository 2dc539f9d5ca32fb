"""The running exporter, as one object for its callers (serve, check, the web app,
remediation, accept): a facade over the parts that do the work, each owning its state.

- context: what the parts share (config, the stores' states, the baseline database).
- state: one store's state; its data (listing, endpoints, baselines, log) one frozen value.
- wiring: the only place naming concrete sources (a store's kind) and probers.
- reader: a store read through its Source, baselines recorded, the new data swapped in.
- prober: probe targets grouped by prober, results kept, fingerprints to the database.
- snapshot: deciding the stores, the snapshot, its one invalidation, the rendered blocks.
- supervisor: loop failures, backoff, health and readiness.
- loops: one pass, the store and probe loops, start and stop.
- reload: this shard's part of a config, and a reload applied store by store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from exporter.config.model import Config, StoreConfig
from exporter.core.model import ProbeResult, StoreRead
from exporter.exposition.writer import BlockCache
from exporter.fleet.shard import ALL, Shard
from exporter.fleet.snapshot import Snapshot
from exporter.service import baselines
from exporter.service.context import Context
from exporter.service.loops import Loops
from exporter.service.prober import ProbeScheduler
from exporter.service.reader import Reader
from exporter.service.reload import Reload, own
from exporter.service.snapshot import Snapshots
from exporter.service.state import StoreState
from exporter.service.supervisor import Supervisor
from exporter.service.wiring import pi_session
from exporter.service.workers import Workers
from exporter.sources.prime.ssh import PiSession
from exporter.store.database import BaselineDB
from exporter.store.reader import Attester, EvidenceReader


def _via(part: str, name: str) -> Any:
    """An attribute of the facade that is a part's own (read and written there)."""
    return property(lambda self: getattr(getattr(self, part), name),
                    lambda self, value: setattr(getattr(self, part), name, value))


class Service:
    def __init__(self, config: Config, storage_path: Path | str, shard: Shard = ALL,
                 drop_others: bool = False) -> None:
        self.storage_path = str(storage_path)  # what `accept` and `history` must be given too
        # Sharded (exporter.fleet.shard): this replica reads, probes, stores and exports only
        # the stores of its shard; every config it is given, at start or reload, is cut down.
        # Only a long-running replica (`serve`) may drop the other shards' rows.
        self.shard, self.drop_others = shard, drop_others
        path = Path(storage_path)
        db = BaselineDB(path if str(storage_path) == ":memory:" else path / "baseline.db")
        workers = Workers()
        config = own(config, shard, drop_others, db)
        stores = {s.name: StoreState(s, workers.run) for s in config.stores}
        self.ctx = Context(config, stores, db, workers, shard)
        self.supervisor = Supervisor(self.invalidate)
        self.prober = ProbeScheduler(self.ctx, self.invalidate)
        self.snapshots = Snapshots(self.ctx, self.prober.probes, self.supervisor)
        self.reader = Reader(self.ctx, self.prober, self.invalidate)
        self.loops = Loops(self.ctx, self.reader, self.prober, self.snapshots, self.supervisor)
        self.reload = Reload(self.ctx, self.loops, drop_others)

    # The parts' own state, under the names callers (web, cli, tests) use.
    db: BaselineDB = _via("ctx", "db")
    config: Config = _via("ctx", "config")
    workers: Workers = _via("ctx", "workers")
    ready: bool = _via("snapshots", "ready")
    config_reload_ok: bool = _via("snapshots", "config_reload_ok")
    blocks: BlockCache = _via("snapshots", "blocks")
    loop_errors = _via("supervisor", "loop_errors")
    backoff_base: float = _via("supervisor", "backoff_base")
    backoff_max: float = _via("supervisor", "backoff_max")
    failure_bound: int = _via("supervisor", "failure_bound")
    stop_deadline: float = _via("loops", "stop_deadline")
    _prune_due: bool = _via("prober", "prune_due")
    _probe_task: asyncio.Task[None] | None = _via("loops", "_probe_task")

    @property
    def evidence(self) -> EvidenceReader:
        """History, baselines and attestations, as the pages, the api and the commands read them."""
        return self.db

    @property
    def attester(self) -> Attester:
        """Where `accept` records an operator's acceptance (all or none)."""
        return self.db

    @property
    def stores(self) -> dict[str, StoreState]:
        return self.ctx.stores

    @property
    def probes(self) -> dict[str, ProbeResult]:
        return self.prober.probes

    # ---- the public state API (remediation, doctor, tests) ---------------------------

    def state(self, name: str) -> StoreState:
        return self.ctx.stores[name]

    def session(self, name: str) -> PiSession:
        """A PI store's SSH session (opened on first use, closed by stop() or a reload)."""
        return pi_session(self.ctx.stores[name].open_source())

    def forget(self, store: str, entries: Iterable[str]) -> None:
        """Remediation deleted these entries: the next sighting is witnessed anew."""
        self.ctx.db.forget(store, entries)

    def reload_failed(self) -> None:
        self.snapshots.set_reload_ok(False)

    def invalidate(self, *moved: StoreState) -> None:
        self.snapshots.invalidate(*moved)

    # ---- reading, probing, deciding ----------------------------------------------------

    async def read_store(self, store: StoreConfig) -> StoreRead:
        return await self.reader.read_store(store)

    def known_endpoints(self, store_names: Iterable[str] | None = None) -> set[str]:
        return self.prober.known_endpoints(store_names)

    async def probe_endpoints(self, endpoints: Iterable[str]) -> None:
        await self.prober.probe_endpoints(endpoints)

    def pickup(self) -> None:
        self.prober.pickup()

    def prune(self) -> None:
        self.prober.prune()

    def snapshot(self) -> Snapshot:
        return self.snapshots.snapshot()

    async def run_once(self, store_names: Iterable[str] | None = None) -> Snapshot:
        return await self.loops.run_once(store_names)

    # ---- running ---------------------------------------------------------------------

    async def start(self) -> None:
        await self.loops.start()

    def launch(self) -> asyncio.Task[None]:
        return self.loops.launch()

    async def stop(self) -> None:
        await self.loops.stop()

    async def apply_config(self, new: Config) -> None:
        await self.reload.apply(new)

    def health(self) -> list[str]:
        return self.supervisor.health(self.ctx.stores)

    def not_ready(self) -> str | None:
        return self.supervisor.not_ready(self.snapshots.ready, self.ctx.storage.why())

    # ---- what tests drive step by step -------------------------------------------------

    async def _decide(self) -> None:
        await self.snapshots.decide()

    async def _probe_step(self) -> None:
        await self.loops.probe_step()

    def _set_baselines(self, state: StoreState) -> None:
        if baselines.refresh(self.ctx.db, state):
            self.invalidate()
