"""SQLite persistence of the fingerprints the exporter witnessed, so a restart loses no evidence.

BaselineDB is the composition: one file (recovery.py: opening, integrity, recovery of a broken
file, the lock and the transactions) and three repositories on it, one module each:
baselines.py, history.py, attestations.py. Its methods delegate to them under the names the
service calls. The pages, the api and the commands read through store/reader.py's protocols.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from exporter.core.history import Attestation, Change, EntryStatus
from exporter.core.model import Attested, Baseline
from exporter.store.attestations import Attestations, Recorded
from exporter.store.baselines import Baselines
from exporter.store.history import History, Statuses
from exporter.store.recovery import (
    RESET_REASONS,
    RESETS,
    SCHEMA_VERSION,
    DatabaseFile,
    StorageError,
    storage_problem,
)

__all__ = ["RESETS", "RESET_REASONS", "SCHEMA_VERSION", "BaselineDB", "Recorded", "StorageError",
           "storage_problem"]


class BaselineDB:
    def __init__(self, path: Path | str) -> None:
        self.file = DatabaseFile(path)
        self.path = self.file.path
        self.resets: Counter[str] = self.file.resets  # reason -> resets by this instance
        self.baseline_repo = Baselines(self.file)
        self.history_repo = History(self.file)
        self.attestation_repo = Attestations(self.file)

    @property
    def id(self) -> str:
        return self.file.id

    @property
    def _db(self) -> sqlite3.Connection:  # the live connection, for tests that reach under the repositories
        return self.file.conn

    def close(self) -> None:
        self.file.close()

    def data_version(self) -> int:
        return self.file.data_version()

    def changed_elsewhere(self) -> bool:
        return self.file.changed_elsewhere()

    # ---- baselines -------------------------------------------------------------------------

    def baselines(self, store: str) -> dict[str, Baseline]:
        return self.baseline_repo.baselines(store)

    def observe_store(self, store: str, entries: Mapping[str, str],
                      now: float | None = None) -> set[str]:
        return self.baseline_repo.observe_store(store, entries, now)

    def fill(self, fingerprints: Mapping[str, str]) -> int:
        return self.baseline_repo.fill(fingerprints)

    def forget(self, store: str, entries: Iterable[str]) -> None:
        self.baseline_repo.forget(store, entries)

    def note_fingerprints(self, seen: Mapping[str, str], now: float | None = None) -> None:
        self.baseline_repo.note_fingerprints(seen, now)

    def prune_endpoints(self) -> int:
        return self.baseline_repo.prune_endpoints()

    def changed_times(self) -> dict[str, float]:
        return self.baseline_repo.changed_times()

    def drop_stores(self, stores: Iterable[str]) -> dict[str, Counter[str]]:
        return self.baseline_repo.drop_stores(stores)

    # ---- entry status and history ----------------------------------------------------------

    def statuses(self, store: str) -> dict[str, EntryStatus]:
        return self.history_repo.statuses(store)

    def read_statuses(self, store: str) -> Statuses:
        return self.history_repo.read(store)

    def record(self, store: str, base: Statuses, new: Mapping[str, EntryStatus],
               changes: Sequence[Change]) -> bool:
        return self.history_repo.record(store, base, new, changes)

    def prune_history(self, max_age: float, max_records: int, now: float | None = None) -> int:
        return self.history_repo.prune_history(max_age, max_records, now)

    def history(self, store: str | None = None, entry: str | None = None,
                since: float | None = None, limit: int | None = None) -> list[Change]:
        return self.history_repo.history(store, entry, since, limit)

    # ---- attestations ----------------------------------------------------------------------

    def attest(self, items: Sequence[Attestation],
               verify: Callable[[dict[tuple[str, str], Recorded]], None] | None = None,
               ) -> list[Change]:
        return self.attestation_repo.attest(items, verify)

    def attestations(self, store: str) -> dict[str, Attestation]:
        return self.attestation_repo.attestations(store)

    def attested(self, store: str) -> dict[str, Attested]:
        return self.attestation_repo.attested(store)
