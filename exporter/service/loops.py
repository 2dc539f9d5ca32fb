"""The service's passes and loops: one pass over the stores (run_once, the first pass of
start), each store's refresh loop and the probe loop, started and stopped. Reads and probes
run here, in the background; scrapes only ever read the latest snapshot, so a hanging PI
server can delay nothing but its own data."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from exporter.config.model import StoreConfig
from exporter.fleet.snapshot import Snapshot
from exporter.service.context import Context
from exporter.service.prober import ProbeScheduler
from exporter.service.reader import Reader
from exporter.service.snapshot import Snapshots
from exporter.service.state import STOP_DEADLINE, StoreState, stop_tasks
from exporter.service.supervisor import Supervisor

log = logging.getLogger("exporter.service")


class Loops:
    def __init__(self, ctx: Context, reader: Reader, prober: ProbeScheduler,
                 snapshots: Snapshots, supervisor: Supervisor) -> None:
        self.ctx, self.reader, self.prober = ctx, reader, prober
        self.snapshots, self.supervisor = snapshots, supervisor
        self.stop_deadline = STOP_DEADLINE
        self._start_task: asyncio.Task[None] | None = None
        self._probe_task: asyncio.Task[None] | None = None

    async def run_once(self, store_names: Iterable[str] | None = None) -> Snapshot:
        """One pass: read the stores, probe what they name. Every read is awaited before an
        exception of one of them is raised (none is left running unwatched)."""
        stores = [s for s in self.ctx.config.stores if store_names is None or s.name in store_names]
        return await self._pass(stores, supervised=False)

    async def _first_pass(self) -> Snapshot:
        """run_once for start(): a store whose read raises is logged and counted, and left
        to its loop; the others go on (one bad store never blocks the rest)."""
        return await self._pass(list(self.ctx.config.stores), supervised=True)

    async def _read_all(self, stores: list[StoreConfig], supervised: bool) -> None:
        results = await asyncio.gather(*(self.reader.read_store(s) for s in stores),
                                       return_exceptions=True)
        first: BaseException | None = None
        for store, r in zip(stores, results, strict=True):
            if not isinstance(r, BaseException):
                continue
            if not isinstance(r, Exception):
                raise r  # cancellation, KeyboardInterrupt: not ours to keep
            if supervised:
                self.supervisor.failed("start", f"store:{store.name}", r, store.name)
            else:
                log.error("store read raised", exc_info=r, extra={"store": store.name})
                first = first or r
        if first is not None:
            raise first

    async def _pass(self, stores: list[StoreConfig], supervised: bool) -> Snapshot:
        started, prober = time.time(), self.prober
        await self._read_all(stores, supervised)
        # Entries that appeared were probed during their read, to witness them: not again.
        await prober.probe_endpoints(
            ep for ep in prober.known_endpoints(s.name for s in stores)
            if (r := prober.probes.get(ep)) is None or r.timestamp < started
        )
        if prober.prune_due:
            prober.prune()
        await self.snapshots.decide()
        # A whole pass builds (and keeps) the snapshot here, not through snapshot(): a pass
        # whose snapshot cannot be built (the database cannot be read) failed, and start()
        # retries it.
        whole = len(stores) == len(self.ctx.config.stores)
        return self.snapshots.build(None if whole else {s.name for s in stores})

    async def _store_loop(self, store: StoreConfig) -> None:
        name = f"store:{store.name}"
        while True:
            retry = await self.supervisor.attempt("store", name, lambda: self._store_step(store),
                                                  store.name)
            await asyncio.sleep(store.store_interval if retry is None else retry)

    async def _store_step(self, store: StoreConfig) -> None:
        """One pass of a store's loop: read it, prune, decide."""
        await self.reader.read_store(store)
        if self.prober.prune_due:
            self.prober.prune()
        await self.snapshots.decide()  # now: the history dates a change when it is seen

    def _probe_interval(self) -> float:
        return min((s.probe_interval for s in self.ctx.config.stores), default=60.0)

    async def _probe_loop(self) -> None:
        retry: float | None = None
        while True:
            await asyncio.sleep(self._probe_interval() if retry is None else retry)
            retry = await self.supervisor.attempt("probe", "probe", self.probe_step)

    async def probe_step(self) -> None:
        await self.prober.probe_endpoints(self.prober.known_endpoints())
        await self.snapshots.decide()  # now: the history dates a change when it is seen

    async def start(self) -> None:
        """First pass in the foreground (so `ready` means something), retried until it goes
        through, then the loops."""
        while (retry := await self.supervisor.attempt("start", "start", self._first_pass)) is not None:
            await asyncio.sleep(retry)
        await self.snapshots.prewrite()
        for state in self.ctx.stores.values():
            self.start_loop(state, first_delay=True)
        self._probe_task = self.supervisor.watch(
            asyncio.create_task(self._probe_loop(), name="probes"), "probe")

    def launch(self) -> asyncio.Task[None]:
        """start() in a task of its own, watched like the loops; stop() ends it."""
        self._start_task = self.supervisor.watch(asyncio.create_task(self.start(), name="start"),
                                                 "start", may_return=True)
        return self._start_task

    def start_loop(self, state: StoreState, first_delay: bool) -> None:
        store = state.cfg

        async def loop() -> None:
            if first_delay:
                await asyncio.sleep(store.store_interval)
            await self._store_loop(store)

        state.task = self.supervisor.watch(
            asyncio.create_task(loop(), name=f"store:{store.name}"), f"store:{store.name}")

    async def stop(self) -> None:
        """Cancel and await every task, each within the deadline (stragglers are logged),
        close every store's source within the same deadline, then the database."""
        self.supervisor.stopping = True
        deadline = self.stop_deadline
        tasks = [t for t in (self._start_task, self._probe_task) if t is not None]
        await asyncio.gather(stop_tasks(tasks, deadline),
                             *(s.close(deadline) for s in self.ctx.stores.values()))
        if await self.ctx.workers.drain(deadline):
            # Closing the connection under its transaction would fail the write. Each write is
            # one transaction: whether it ends or the process exits first, the database holds.
            log.warning("a worker thread is still writing the baseline database at the stop "
                        "deadline; not closing it under that write")
            return
        self.ctx.db.close()
