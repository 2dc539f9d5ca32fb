"""SQLite persistence of the fingerprints the exporter witnessed, so a restart loses no evidence.

Rows live as long as the entry stays in its store. An entry that disappears loses its
row; when it comes back it is witnessed anew (that is what a deletecert does).
WAL mode and one transaction per update keep the file consistent across SIGKILL.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from exporter.model import Baseline, BaselineKind

_SCHEMA = """
CREATE TABLE IF NOT EXISTS stores (
    store TEXT PRIMARY KEY,
    first_read REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS baselines (
    store TEXT NOT NULL,
    entry TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    kind TEXT NOT NULL,
    fingerprint TEXT,
    since REAL NOT NULL,
    PRIMARY KEY (store, entry)
);
CREATE TABLE IF NOT EXISTS endpoints (
    endpoint TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    changed REAL NOT NULL
);
"""


class BaselineDB:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def baselines(self, store: str) -> dict[str, Baseline]:
        rows = self._db.execute(
            "SELECT entry, kind, fingerprint, since FROM baselines WHERE store = ?", (store,)
        )
        return {e: Baseline(BaselineKind(k), fp, s) for e, k, fp, s in rows}

    def observe_store(
        self, store: str, entries: Mapping[str, str], now: float | None = None
    ) -> set[str]:
        """Record a successful read: entries is entry key -> endpoint.

        Returns the keys that appeared while we watched (their baseline waits for a probe).
        On the first read of a store ever, everything present is adopted instead.
        """
        now = time.time() if now is None else now
        with self._tx() as db:
            first = db.execute("SELECT 1 FROM stores WHERE store = ?", (store,)).fetchone() is None
            if first:
                db.execute("INSERT INTO stores VALUES (?, ?)", (store, now))
            known = {
                e for (e,) in db.execute("SELECT entry FROM baselines WHERE store = ?", (store,))
            }
            gone = known - entries.keys()
            db.executemany(
                "DELETE FROM baselines WHERE store = ? AND entry = ?", ((store, e) for e in gone)
            )
            new = entries.keys() - known
            kind = BaselineKind.ADOPTED if first else BaselineKind.WITNESSED
            db.executemany(
                "INSERT INTO baselines VALUES (?, ?, ?, ?, NULL, ?)",
                ((store, e, entries[e], kind.value, now) for e in sorted(new)),
            )
        return set() if first else set(new)

    def fill(self, fingerprints: Mapping[str, str]) -> int:
        """Give pending baselines (no fingerprint yet) the live fingerprint of their endpoint."""
        if not fingerprints:
            return 0
        with self._tx() as db:
            pending = db.execute(
                "SELECT store, entry, endpoint FROM baselines WHERE fingerprint IS NULL"
            ).fetchall()
            updates = [
                (fingerprints[ep], st, e) for st, e, ep in pending if ep in fingerprints
            ]
            db.executemany(
                "UPDATE baselines SET fingerprint = ? WHERE store = ? AND entry = ?", updates
            )
        return len(updates)

    def forget(self, store: str, entries: Iterable[str]) -> None:
        """Drop baselines (remediation deleted these entries: the next sighting is witnessed)."""
        with self._tx() as db:
            db.executemany(
                "DELETE FROM baselines WHERE store = ? AND entry = ?",
                ((store, e) for e in entries),
            )

    def note_fingerprints(self, seen: Mapping[str, str], now: float | None = None) -> None:
        """Remember each endpoint's fingerprint and when it last changed."""
        now = time.time() if now is None else now
        current = dict(self._db.execute("SELECT endpoint, fingerprint FROM endpoints").fetchall())
        changed = [(ep, fp, now) for ep, fp in seen.items() if current.get(ep) != fp]
        if changed:
            with self._tx() as db:
                db.executemany("INSERT OR REPLACE INTO endpoints VALUES (?, ?, ?)", changed)

    def prune_endpoints(self) -> int:
        """Drop endpoint rows no baseline names any more (their entries left every store):
        the table is as large as the set of endpoints stored entries name, not every one ever."""
        with self._tx() as db:
            cur = db.execute("DELETE FROM endpoints WHERE endpoint NOT IN (SELECT endpoint FROM baselines)")
        return cur.rowcount

    def changed_times(self) -> dict[str, float]:
        return dict(self._db.execute("SELECT endpoint, changed FROM endpoints").fetchall())
