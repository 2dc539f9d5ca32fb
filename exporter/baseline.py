"""SQLite persistence of the fingerprints the exporter witnessed, so a restart loses no evidence.

Rows live as long as the entry stays in its store. An entry that disappears loses its
row; when it comes back it is witnessed anew (that is what a deletecert does).
WAL mode and one transaction per update keep the file consistent across SIGKILL.

Schema version 1 (PRAGMA user_version) adds, to v0.1's tables, the operator's attestations
(`accept`), each entry's current status and the history of its changes; a v0.1 database is
migrated in place when opened (the new tables start empty, nothing is rewritten).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from exporter.history import Attestation, Change, EntryStatus, Status, accepted, advance
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

SCHEMA_VERSION = 1
# Version 1: attestations, entry status and history (issue 13). Additive: CREATE ... IF NOT
# EXISTS, so a v0.1 database (user_version 0) gains the tables and keeps every row.
_SCHEMA_1 = """
CREATE TABLE IF NOT EXISTS attestations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    store TEXT NOT NULL,
    entry TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    spki TEXT NOT NULL,
    operator TEXT NOT NULL,
    reason TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS entry_status (
    store TEXT NOT NULL,
    entry TEXT NOT NULL,
    state TEXT NOT NULL,
    evidence TEXT NOT NULL,
    fingerprint TEXT,
    since REAL NOT NULL,
    previous_fingerprint TEXT,
    PRIMARY KEY (store, entry)
);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    store TEXT NOT NULL,
    entry TEXT NOT NULL,
    state_before TEXT, evidence_before TEXT, fingerprint_before TEXT,
    state_after TEXT, evidence_after TEXT, fingerprint_after TEXT,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS history_time ON history (time);
CREATE INDEX IF NOT EXISTS history_entry ON history (store, entry, time);
"""

_HISTORY_COLUMNS = (
    "time, store, entry, state_before, evidence_before, fingerprint_before, "
    "state_after, evidence_after, fingerprint_after, reason"
)


def _side(s: Status | None) -> tuple[str | None, str | None, str | None]:
    return (None, None, None) if s is None else (s.state, s.evidence, s.fingerprint)


def _status(state: str | None, evidence: str | None, fp: str | None) -> Status | None:
    return None if state is None or evidence is None else Status(state, evidence, fp)


def _change_row(c: Change) -> tuple[object, ...]:
    return (c.time, c.store, c.entry, *_side(c.before), *_side(c.after), c.reason)


def _change(row: tuple[object, ...]) -> Change:
    t, store, entry, sb, eb, fb, sa, ea, fa, reason = row
    return Change(float(t), str(store), str(entry),  # type: ignore[arg-type]
                  _status(sb, eb, fb), _status(sa, ea, fa), str(reason))  # type: ignore[arg-type]


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
        self._migrate()
        self._data_version = self.data_version()

    def _migrate(self) -> None:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version < SCHEMA_VERSION:
            self._db.executescript(_SCHEMA_1)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def data_version(self) -> int:
        """Moves whenever another connection (another process: `accept`, `check`) committed."""
        (v,) = self._db.execute("PRAGMA data_version").fetchone()
        return int(v)

    def changed_elsewhere(self) -> bool:
        """True once after another connection committed: time to re-read baselines."""
        v = self.data_version()
        moved, self._data_version = v != self._data_version, v
        return moved

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

    # ---- entry status and history (schema 1) ---------------------------------------------

    def statuses(self, store: str) -> dict[str, EntryStatus]:
        rows = self._db.execute(
            "SELECT entry, state, evidence, fingerprint, since, previous_fingerprint "
            "FROM entry_status WHERE store = ?", (store,))
        return {e: EntryStatus(Status(st, ev, fp), since, prev)
                for e, st, ev, fp, since, prev in rows}

    def record(self, store: str, diff: Callable[[dict[str, EntryStatus]], tuple[
               dict[str, EntryStatus], list[Change]]]) -> dict[str, EntryStatus]:
        """Compare the store's entries with the recorded status and write what changed, in
        one transaction: two processes on one database (serve and `check`) record a change once.
        `diff` maps the recorded statuses to the new ones and the changes (exporter.history)."""
        with self._tx() as db:
            old = self.statuses(store)
            new, changes = diff(old)
            db.executemany(
                "DELETE FROM entry_status WHERE store = ? AND entry = ?",
                ((store, e) for e in old.keys() - new.keys()))
            db.executemany(
                "INSERT OR REPLACE INTO entry_status VALUES (?, ?, ?, ?, ?, ?, ?)",
                ((store, e, s.status.state, s.status.evidence, s.status.fingerprint, s.since,
                  s.previous_fingerprint) for e, s in new.items() if old.get(e) != s))
            db.executemany(f"INSERT INTO history ({_HISTORY_COLUMNS}) VALUES "
                           "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", map(_change_row, changes))
        return new

    def prune_history(self, max_age: float, max_records: int, now: float | None = None) -> int:
        """Keep the history within `max_age` seconds and `max_records` rows (newest kept)."""
        now = time.time() if now is None else now
        with self._tx() as db:
            n = db.execute("DELETE FROM history WHERE time < ?", (now - max_age,)).rowcount
            n += db.execute(
                "DELETE FROM history WHERE id <= (SELECT id FROM history ORDER BY id DESC "
                "LIMIT 1 OFFSET ?)", (max_records,)).rowcount
            # Attestations no attested baseline refers to any more, once older than max_age.
            db.execute(
                "DELETE FROM attestations WHERE at < ? AND NOT EXISTS (SELECT 1 FROM baselines b "
                "WHERE b.store = attestations.store AND b.entry = attestations.entry "
                "AND b.kind = 'attested' AND b.since = attestations.at)", (now - max_age,))
        return n

    def history(self, store: str | None = None, entry: str | None = None,
                since: float | None = None, limit: int | None = None) -> list[Change]:
        """Changes, newest first."""
        where, args = [], []
        for clause, value in (("store = ?", store), ("entry = ?", entry), ("time >= ?", since)):
            if value is not None:
                where.append(clause)
                args.append(value)
        sql = f"SELECT {_HISTORY_COLUMNS} FROM history"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY time DESC, id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [_change(r) for r in self._db.execute(sql, args)]

    # ---- attestations (`accept`) ----------------------------------------------------------

    def attest(self, items: Sequence[Attestation]) -> list[Change]:
        """Record an operator's acceptance of the live certificates of some entries, all or
        none: each baseline becomes `attested` with that fingerprint, and the history says who
        and why. Raises ValueError, recording nothing, when an entry no longer points at the
        attestation's endpoint (it left the list or moved since it was read)."""
        changes = []
        with self._tx() as db:
            for a in items:
                row = db.execute("SELECT endpoint FROM baselines WHERE store = ? AND entry = ?",
                                 (a.store, a.entry)).fetchone()
                if row is None or row[0] != a.endpoint:
                    raise ValueError(f"entry {a.entry} of {a.store} changed while it was being accepted")
                db.execute("UPDATE baselines SET kind = ?, fingerprint = ?, since = ? "
                           "WHERE store = ? AND entry = ?",
                           (BaselineKind.ATTESTED.value, a.fingerprint_sha256, a.time, a.store,
                            a.entry))
                db.execute("INSERT INTO attestations (store, entry, endpoint, fingerprint, spki, "
                           "operator, reason, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           (a.store, a.entry, a.endpoint, a.fingerprint_sha256, a.spki_sha256,
                            a.operator, a.reason, a.time))
                old = self.statuses(a.store).get(a.entry)
                after = accepted(a.fingerprint_sha256)
                change = Change(a.time, a.store, a.entry, old.status if old else None, after,
                                f"accepted by {a.operator}: {a.reason}")
                st = advance(old, after, a.time)
                db.execute("INSERT OR REPLACE INTO entry_status VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (a.store, a.entry, after.state, after.evidence, after.fingerprint,
                            st.since, st.previous_fingerprint))
                db.execute(f"INSERT INTO history ({_HISTORY_COLUMNS}) VALUES "
                           "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", _change_row(change))
                changes.append(change)
        return changes

    def attestations(self, store: str) -> dict[str, Attestation]:
        """The attestation behind each entry of `store` whose baseline is attested now."""
        rows = self._db.execute(
            "SELECT a.entry, a.endpoint, a.fingerprint, a.spki, a.operator, a.reason, a.at "
            "FROM attestations a JOIN baselines b ON b.store = a.store AND b.entry = a.entry "
            "AND b.kind = 'attested' AND b.since = a.at WHERE a.store = ?", (store,))
        return {e: Attestation(store, e, ep, fp, spki, op, why, at)
                for e, ep, fp, spki, op, why, at in rows}
