"""Each entry's current status and the history of its changes (schema 1).

The database only stores: the caller computes the new statuses and the changes
(exporter.core.history.diff) from what statuses() read, and hands them to record().
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from exporter.core.history import Change, EntryStatus, Status
from exporter.store.recovery import DatabaseFile

HISTORY_COLUMNS = (
    "time, store, entry, state_before, evidence_before, fingerprint_before, "
    "state_after, evidence_after, fingerprint_after, reason"
)
INSERT_CHANGE = f"INSERT INTO history ({HISTORY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


def _side(s: Status | None) -> tuple[str | None, str | None, str | None]:
    return (None, None, None) if s is None else (s.state, s.evidence, s.fingerprint)


def _status(state: str | None, evidence: str | None, fp: str | None) -> Status | None:
    return None if state is None or evidence is None else Status(state, evidence, fp)


def change_row(c: Change) -> tuple[object, ...]:
    return (c.time, c.store, c.entry, *_side(c.before), *_side(c.after), c.reason)


def _change(row: tuple[object, ...]) -> Change:
    t, store, entry, sb, eb, fb, sa, ea, fa, reason = row
    return Change(float(t), str(store), str(entry),  # type: ignore[arg-type]
                  _status(sb, eb, fb), _status(sa, ea, fa), str(reason))  # type: ignore[arg-type]


def _statuses(db: sqlite3.Connection, store: str) -> dict[str, EntryStatus]:
    rows = db.execute(
        "SELECT entry, state, evidence, fingerprint, since, previous_fingerprint "
        "FROM entry_status WHERE store = ?", (store,))
    return {e: EntryStatus(Status(st, ev, fp), since, prev) for e, st, ev, fp, since, prev in rows}


@dataclass(frozen=True)
class Statuses:
    """A store's recorded statuses (entry -> status), and the database's write mark when they
    were read (DatabaseFile.written): the base History.record compares against."""

    entries: dict[str, EntryStatus]
    mark: tuple[int, int]


class History:
    def __init__(self, file: DatabaseFile) -> None:
        self._file = file

    def statuses(self, store: str) -> dict[str, EntryStatus]:
        return self._file.guard(lambda: _statuses(self._file.conn, store))

    def read(self, store: str) -> Statuses:
        """The base to diff from and record() on: the mark first, so a commit that lands
        during the read moves it."""
        def op() -> Statuses:
            mark = self._file.written()
            return Statuses(_statuses(self._file.conn, store), mark)

        return self._file.guard(op)

    def record(self, store: str, base: Statuses,
               new: Mapping[str, EntryStatus], changes: Sequence[Change]) -> bool:
        """Write the store's new statuses and its changes, computed by the caller from `base`
        (what read() returned), in one transaction. False, writing nothing, when the recorded
        statuses are no longer `base`: the caller reads and diffs again.

        Compare and set, so two processes on one database (serve and `check`) record a change
        once: inside the write transaction (BEGIN IMMEDIATE: no other writer, in any process,
        until COMMIT) the base is checked, and the write happens only on the statuses the
        caller diffed from. That is the guarantee one transaction around read, diff and write
        gave, without holding the write lock while the caller diffs. The check is the write
        mark (nothing committed since the read: the usual case, one PRAGMA), else the statuses
        read again and compared. Raises StorageError when it could not be written."""
        old = base.entries

        def op() -> bool:
            with self._file.tx() as db:
                if self._file.written() != base.mark and _statuses(db, store) != old:
                    return False
                db.executemany(
                    "DELETE FROM entry_status WHERE store = ? AND entry = ?",
                    ((store, e) for e in old.keys() - new.keys()))
                db.executemany(
                    "INSERT OR REPLACE INTO entry_status VALUES (?, ?, ?, ?, ?, ?, ?)",
                    ((store, e, s.status.state, s.status.evidence, s.status.fingerprint, s.since,
                      s.previous_fingerprint) for e, s in new.items() if old.get(e) != s))
                db.executemany(INSERT_CHANGE, map(change_row, changes))
            return True

        return self._file.guard(op)

    def prune_history(self, max_age: float, max_records: int, now: float | None = None) -> int:
        """Keep the history within `max_age` seconds and `max_records` rows (newest kept)."""
        now = time.time() if now is None else now

        def op() -> int:
            with self._file.tx() as db:
                n = db.execute("DELETE FROM history WHERE time < ?", (now - max_age,)).rowcount
                n += db.execute(
                    "DELETE FROM history WHERE id <= (SELECT id FROM history ORDER BY id DESC "
                    "LIMIT 1 OFFSET ?)", (max_records,)).rowcount
                # Attestations no attested baseline refers to any more, once older than max_age.
                db.execute(
                    "DELETE FROM attestations WHERE at < ? AND NOT EXISTS (SELECT 1 FROM baselines b "
                    "WHERE b.store = attestations.store AND b.entry = attestations.entry "
                    "AND b.kind = 'attested' AND b.since = attestations.at)", (now - max_age,))
            return int(n)

        return self._file.guard(op)

    def history(self, store: str | None = None, entry: str | None = None,
                since: float | None = None, limit: int | None = None) -> list[Change]:
        """Changes, newest first."""
        where, args = [], []
        for clause, value in (("store = ?", store), ("entry = ?", entry), ("time >= ?", since)):
            if value is not None:
                where.append(clause)
                args.append(value)
        sql = f"SELECT {HISTORY_COLUMNS} FROM history"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY time DESC, id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self._file.guard(lambda: [_change(r) for r in self._file.conn.execute(sql, args)])
