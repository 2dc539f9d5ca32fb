"""The baselines: each stored entry's fingerprint as first witnessed (or adopted, or attested),
the stores ever read, and when each endpoint's live fingerprint last changed.

Rows live as long as the entry stays in its store. An entry that disappears loses its
row; when it comes back it is witnessed anew (that is what a deletecert does).
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping

from exporter.core.model import Baseline, BaselineKind
from exporter.store.recovery import DatabaseFile, baseline_count


class Baselines:
    def __init__(self, file: DatabaseFile) -> None:
        self._file = file

    def baselines(self, store: str) -> dict[str, Baseline]:
        def op() -> dict[str, Baseline]:
            rows = self._file.conn.execute(
                "SELECT entry, kind, fingerprint, since FROM baselines WHERE store = ?", (store,)
            )
            # One string per distinct fingerprint: many entries (across stores) hold one cert.
            return {e: Baseline(BaselineKind(k), fp and sys.intern(fp), s) for e, k, fp, s in rows}

        return self._file.guard(op)

    def observe_store(
        self, store: str, entries: Mapping[str, str], now: float | None = None
    ) -> set[str]:
        """Record a successful read: entries is entry key -> endpoint.

        Returns the keys that appeared while we watched (their baseline waits for a probe).
        On the first read of a store ever, everything present is adopted instead.
        Raises StorageError when the read could not be recorded.
        """
        now = time.time() if now is None else now

        def op() -> tuple[tuple[bool, set[str]], int]:
            with self._file.tx() as db:
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
                count = baseline_count(db) if gone or new else -1
            return (first, set(new)), count

        first, new = self._file.guard_counted(op)
        return set() if first else new

    def fill(self, fingerprints: Mapping[str, str]) -> int:
        """Give pending baselines (no fingerprint yet) the live fingerprint of their endpoint."""
        if not fingerprints:
            return 0

        def op() -> int:
            with self._file.tx() as db:
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

        return self._file.guard(op)

    def forget(self, store: str, entries: Iterable[str]) -> None:
        """Drop baselines (remediation deleted these entries: the next sighting is witnessed)."""
        keys = list(entries)

        def op() -> tuple[None, int]:
            with self._file.tx() as db:
                db.executemany(
                    "DELETE FROM baselines WHERE store = ? AND entry = ?",
                    ((store, e) for e in keys),
                )
                return None, baseline_count(db)

        self._file.guard_counted(op)

    def note_fingerprints(self, seen: Mapping[str, str], now: float | None = None) -> None:
        """Remember each endpoint's fingerprint and when it last changed."""
        now = time.time() if now is None else now

        def op() -> None:
            current = dict(self._file.conn.execute(
                "SELECT endpoint, fingerprint FROM endpoints").fetchall())
            changed = [(ep, fp, now) for ep, fp in seen.items() if current.get(ep) != fp]
            if changed:
                with self._file.tx() as db:
                    db.executemany("INSERT OR REPLACE INTO endpoints VALUES (?, ?, ?)", changed)

        self._file.guard(op)

    def prune_endpoints(self) -> int:
        """Drop endpoint rows no baseline names any more (their entries left every store):
        the table is as large as the set of endpoints stored entries name, not every one ever."""
        def op() -> int:
            with self._file.tx() as db:
                cur = db.execute(
                    "DELETE FROM endpoints WHERE endpoint NOT IN (SELECT endpoint FROM baselines)"
                )
            return cur.rowcount

        return self._file.guard(op)  # corruption resets, a full disk is a StorageError, as elsewhere

    def changed_times(self) -> dict[str, float]:
        return self._file.guard(
            lambda: dict(self._file.conn.execute("SELECT endpoint, changed FROM endpoints").fetchall())
        )

    def drop_stores(self, stores: Iterable[str]) -> dict[str, Counter[str]]:
        """Forget stores (another shard owns them now): if one comes back, its entries are
        adopted anew, not trusted on rows nobody kept up to date meanwhile. The audit records
        (attestations, history) stay. Returns store -> baseline kind -> rows dropped, for
        the stores that held any."""
        names = list(stores)

        def op() -> tuple[dict[str, Counter[str]], int]:
            with self._file.tx() as db:
                dropped: dict[str, Counter[str]] = {}
                for s in names:
                    rows = Counter({str(kind): int(n) for kind, n in db.execute(
                        "SELECT kind, COUNT(*) FROM baselines WHERE store = ? GROUP BY kind", (s,))})
                    if rows:
                        dropped[s] = rows
                for table in ("baselines", "stores", "entry_status"):
                    db.executemany(f"DELETE FROM {table} WHERE store = ?", ((s,) for s in names))
                return dropped, baseline_count(db)

        return self._file.guard_counted(op)
