"""What the service's parts share. Each field has one writer and is replaced whole, never
patched: `config` and `stores` by a reload (exporter.service.reload), `db` at construction.
Everything else a part holds is its own (exporter.service.service lists the parts)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from exporter.config.model import Config
from exporter.fleet.shard import Shard
from exporter.service.state import StoreState
from exporter.service.workers import Workers
from exporter.store.database import BaselineDB, StorageError

log = logging.getLogger("exporter.service")

# What a BaselineDB write raises when the database cannot record (disk full, I/O error,
# read-only file system). Reads (baselines, changed_times) are not caught: a database that
# cannot even be read fails the loop, which the supervisor retries and counts.
STORAGE_ERRORS: tuple[type[Exception], ...] = (StorageError,)


class Bound:
    """A semaphore whose size follows the config: a reload with a new limit gets a new one."""

    def __init__(self) -> None:
        self._size = 0
        self._sem = asyncio.Semaphore(1)

    def get(self, size: int) -> asyncio.Semaphore:
        if size != self._size:
            self._size, self._sem = size, asyncio.Semaphore(size)
        return self._sem


class StorageFailures:
    """Baseline writes that failed ("store:<name>", "probes", "prune" -> error): the reason
    /-/ready gives, each cleared by the next write of the same kind that succeeds."""

    def __init__(self) -> None:
        self._failures: dict[str, str] = {}

    def failed(self, what: str, e: Exception) -> str:
        error = self._failures[what] = f"baseline database not writable: {e}"
        return error

    def ok(self, what: str) -> None:
        self._failures.pop(what, None)

    def problem(self, what: str, e: Exception) -> None:
        """A write of `what` failed: noted and logged; the caller goes on without it."""
        self.failed(what, e)
        log.error("baseline database not writable", extra={"what": what, "error": str(e)})

    def why(self) -> str | None:
        if not self._failures:
            return None
        return "; ".join(f"{k}: {v}" for k, v in sorted(self._failures.items()))


@dataclass(eq=False)
class Context:
    config: Config  # this replica's part of the config (exporter.fleet.shard)
    stores: dict[str, StoreState]  # store name -> its state, in config order
    db: BaselineDB
    workers: Workers  # a large store's parsing, recording and deciding
    shard: Shard
    storage: StorageFailures = field(default_factory=StorageFailures)
