"""SQLite persistence of the fingerprints the exporter witnessed, so a restart loses no evidence.

Rows live as long as the entry stays in its store. An entry that disappears loses its
row; when it comes back it is witnessed anew (that is what a deletecert does).
WAL mode and one transaction per update keep the file consistent across SIGKILL.

Storage faults are loud, never fatal:
- a corrupt file (bad header, cut short, garbage pages) is renamed aside with a UTC
  timestamp, never deleted, and a fresh database takes its place (reason "corrupt");
- a database that lost what it held (truncated, replaced by an empty one) is recognised
  through a sidecar file, `<db>.identity`, that records the database's random id and how
  many baselines it held (reason "lost");
- a write that fails (disk full, I/O error, read-only) raises StorageError, and the next
  write tries again: nothing to restart once space is back.
Both resets are logged at error level and counted in tofu_baseline_db_resets_total.

Schema version 1 (PRAGMA user_version) adds, to v0.1's tables, the operator's attestations
(`accept`), each entry's current status and the history of its changes; a v0.1 database is
migrated in place when opened (the new tables start empty, nothing is rewritten). A database
of a later version (a higher user_version) is refused at open and left as it is.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import sqlite3
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from prometheus_client import Counter as PromCounter

from exporter.core.history import Attestation, Change, EntryStatus, Status, accepted, advance
from exporter.core.model import Attested, Baseline, BaselineKind

log = logging.getLogger("exporter.baseline")

_T = TypeVar("_T")

# Process-wide, in the default registry that /metrics appends: a reset happens once per
# database, usually at start-up, before any snapshot exists. Both reasons start at 0.
RESETS = PromCounter(
    "tofu_baseline_db_resets",
    "Times the baseline database was found corrupt (set aside) or emptied (lost) and started afresh",
    ["reason"],
)
RESET_REASONS = ("corrupt", "lost")
for _reason in RESET_REASONS:
    RESETS.labels(_reason)

# Primary SQLite result codes (extended codes carry them in the low byte).
_SQLITE_PERM, _SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY = 3, 5, 6, 8
_SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN = 10, 11, 13, 14
_SQLITE_PROTOCOL, _SQLITE_NOTADB = 15, 26
_CORRUPT = {_SQLITE_CORRUPT, _SQLITE_NOTADB}
_STORAGE = {_SQLITE_PERM, _SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY, _SQLITE_IOERR,
            _SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_PROTOCOL}
_WHY = {_SQLITE_FULL: "disk full", _SQLITE_READONLY: "read-only", _SQLITE_IOERR: "I/O error",
        _SQLITE_CANTOPEN: "cannot open", _SQLITE_BUSY: "locked by another process",
        _SQLITE_LOCKED: "locked", _SQLITE_PERM: "permission denied"}
_SIDES = ("", "-wal", "-shm", "-journal")  # every file SQLite keeps for one database

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
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
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


def _migrate(db: sqlite3.Connection) -> None:
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if version < SCHEMA_VERSION:
        db.executescript(_SCHEMA_1)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _statuses(db: sqlite3.Connection, store: str) -> dict[str, EntryStatus]:
    rows = db.execute(
        "SELECT entry, state, evidence, fingerprint, since, previous_fingerprint "
        "FROM entry_status WHERE store = ?", (store,))
    return {e: EntryStatus(Status(st, ev, fp), since, prev) for e, st, ev, fp, since, prev in rows}


@dataclass(frozen=True)
class Recorded:
    """One entry as the database holds it: its endpoint and baseline, and its last recorded
    status (None before any exporter recorded a verdict for it)."""

    endpoint: str
    baseline: Baseline
    status: Status | None


def _recorded(db: sqlite3.Connection, store: str, entry: str) -> Recorded | None:
    row = db.execute("SELECT endpoint, kind, fingerprint, since FROM baselines "
                     "WHERE store = ? AND entry = ?", (store, entry)).fetchone()
    if row is None:
        return None
    st = db.execute("SELECT state, evidence, fingerprint FROM entry_status "
                    "WHERE store = ? AND entry = ?", (store, entry)).fetchone()
    return Recorded(row[0], Baseline(BaselineKind(row[1]), row[2], row[3]),
                    None if st is None else Status(*st))


def _change(row: tuple[object, ...]) -> Change:
    t, store, entry, sb, eb, fb, sa, ea, fa, reason = row
    return Change(float(t), str(store), str(entry),  # type: ignore[arg-type]
                  _status(sb, eb, fb), _status(sa, ea, fa), str(reason))  # type: ignore[arg-type]


class StorageError(Exception):
    """The baseline database could not be written (or read): disk full, I/O error, read-only.
    The caller must not report the read as a success: its baselines were not recorded."""


def _code(e: sqlite3.Error) -> int:
    return int(getattr(e, "sqlite_errorcode", 0) or 0) & 0xFF


def _is_corrupt(e: sqlite3.Error) -> bool:
    return _code(e) in _CORRUPT or "malformed" in str(e) or "not a database" in str(e)


def _storage_error(e: sqlite3.Error, path: Path) -> StorageError:
    why = _WHY.get(_code(e), "database error")
    return StorageError(f"baseline database {path}: {why} ({e})")


class _Corrupt(Exception):
    def __init__(self, why: str, db: sqlite3.Connection | None, sides: tuple[str, ...]) -> None:
        super().__init__(why)
        self.db = db
        self.sides = sides  # the files that were there before SQLite opened the database


def _bad_header(path: Path) -> bool:
    """A non-empty file that does not start like an SQLite database. SQLite would refuse it
    too, but only after touching its WAL."""
    try:
        with path.open("rb") as f:
            head = f.read(16)
    except FileNotFoundError:
        return False
    except OSError:
        return False  # SQLite will say what is wrong with it
    return bool(head) and head != b"SQLite format 3\x00"


def _stored_version(path: Path, sides: tuple[str, ...]) -> int | None:
    """PRAGMA user_version, read without writing the database. With a WAL left behind (the
    writer stopped without a checkpoint) it may hold a newer page 1: a read-only connection
    reads through it and, unlike ours, does not checkpoint on close. Otherwise the header
    (bytes 60-63, big-endian), read without SQLite: even a read-only connection would create
    -wal and -shm files."""
    if "-wal" in sides:
        try:
            ro = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
        except sqlite3.Error:
            return None
        try:
            return int(ro.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.Error:
            return None  # corrupt: _connect says so
        finally:
            ro.close()
    try:
        with path.open("rb") as f:
            head = f.read(64)
    except OSError:
        return None
    if len(head) < 64 or not head.startswith(b"SQLite format 3\x00"):
        return None
    return int.from_bytes(head[60:64], "big")


def _check_version(version: int | None, path: Path) -> None:
    """A later version's database is neither migrated down nor written: its tables do not fit
    our statements (every store failed with "7 columns but 6 values")."""
    if version is not None and version > SCHEMA_VERSION:
        raise StorageError(
            f"baseline database {path}: written by a newer version of the exporter (schema "
            f"version {version}; this version reads up to {SCHEMA_VERSION}): run that "
            "version, or move the file aside to start afresh")


def storage_problem(storage_path: str | Path) -> str | None:
    """Why `--storage.path` cannot hold the baseline database, in one line, or None.

    Run before anything starts: a directory that is a file, on a read-only mount or not
    creatable is a configuration error, not a crash at the first write."""
    if str(storage_path) == ":memory:":
        return None
    path = Path(storage_path)
    where = f"--storage.path {str(path)!r}"
    if path.exists() and not path.is_dir():
        return f"{where}: is not a directory"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return f"{where}: cannot create the directory: {e.strerror or e}"
    db = path / "baseline.db"
    if db.exists() and not db.is_file():
        return f"{where}: {db.name} is not a regular file"
    # Root ignores permission bits, not a read-only mount: try a real write.
    probe = path / f".write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        return f"{where}: cannot write there: {e.strerror or e}"
    for suffix in _SIDES:
        f = Path(f"{db}{suffix}")
        if f.exists() and not os.access(f, os.R_OK | os.W_OK):
            return f"{where}: cannot write {f.name}"
    return None


class BaselineDB:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._memory = str(path) == ":memory:"
        self.sidecar = Path(f"{self.path}.identity")
        self.resets: Counter[str] = Counter()  # reason -> resets by this instance
        self.id = ""
        self._stamp: tuple[int, int] | None = None  # (dev, inode) of the file we opened
        self._recorded: int | None = None  # baseline count last written to the sidecar
        # One user of the connection at a time: the service runs large stores' writes in
        # worker threads, and a statement from another thread would join their transaction.
        self._lock = threading.RLock()
        if not self._memory:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = self._open()
        self._data_version = self.data_version()

    # ---- opening, identity, resets --------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        """Open and check the database. On corruption the connection is still open in the
        _Corrupt error: the files must be set aside before it closes, or SQLite would
        checkpoint and delete the WAL that belongs to the damaged file."""
        sides = tuple(s for s in _SIDES if os.path.lexists(f"{self.path}{s}"))
        if not self._memory and _bad_header(self.path):
            raise _Corrupt("file is not a database (bad header)", None, sides)
        if not self._memory:  # before SQLite opens (and writes) anything
            _check_version(_stored_version(self.path, sides), self.path)
        db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=5000")
            # Garbage pages in the middle pass the header check; quick_check reads them all
            # (milliseconds for the thousands of rows a deployment holds).
            problems = [r for (r,) in db.execute("PRAGMA quick_check").fetchall() if r != "ok"]
            if problems:
                raise _Corrupt(f"database disk image is malformed: {problems[0]}", db, sides)
            _check_version(db.execute("PRAGMA user_version").fetchone()[0], self.path)
            db.executescript(_SCHEMA)
            _migrate(db)
        except sqlite3.Error as e:
            if _is_corrupt(e):
                raise _Corrupt(str(e), db, sides) from None
            db.close()
            raise
        except BaseException:
            db.close()
            raise
        return db

    def _open(self, reset: bool = False) -> sqlite3.Connection:
        """reset: a reset was just announced, so a fresh database is expected."""
        if self._memory:
            db = self._connect()
            self.id = self._ensure_id(db)
            return db
        recorded = self._read_sidecar()
        try:
            db = self._connect()
        except _Corrupt as e:
            self._discard(e.db, str(e), e.sides)
            reset = True
            try:
                db = self._connect()
            except (sqlite3.Error, _Corrupt) as again:
                raise StorageError(f"baseline database {self.path}: {again}") from None
        except sqlite3.Error as e:
            raise _storage_error(e, self.path) from None
        try:
            self.id = self._ensure_id(db)
            count = self._count(db)
        except sqlite3.Error as e:
            db.close()
            raise _storage_error(e, self.path) from None
        if not reset and recorded is not None:
            old_id, old_count = recorded
            if old_count > 0 and old_id != self.id:
                self._reset("lost", f"{self.sidecar.name} says database {old_id} held {old_count} "
                                    f"baselines; {self.path.name} is database {self.id} with {count}")
        st = os.stat(self.path)
        self._stamp = (st.st_dev, st.st_ino)
        self._recorded = None
        self._write_sidecar(count)
        return db

    def _discard(self, db: sqlite3.Connection | None, why: str,
                 sides: tuple[str, ...] = _SIDES) -> None:
        """Set the damaged files aside (first: see _connect), then let go of them."""
        aside = self._set_aside(sides)
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.close()
        self._reset("corrupt", f"{why}; the damaged file is kept as {aside}")

    @staticmethod
    def _ensure_id(db: sqlite3.Connection) -> str:
        row = db.execute("SELECT value FROM meta WHERE key = 'id'").fetchone()
        if row is not None:
            return str(row[0])
        new = secrets.token_hex(8)
        db.execute("INSERT INTO meta VALUES ('id', ?)", (new,))
        return new

    @staticmethod
    def _count(db: sqlite3.Connection) -> int:
        return int(db.execute("SELECT count(*) FROM baselines").fetchone()[0])

    def _read_sidecar(self) -> tuple[str, int] | None:
        try:
            data = json.loads(self.sidecar.read_text(encoding="utf-8"))
            return str(data["id"]), int(data["baselines"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("baseline identity file unreadable; not used",
                        extra={"file": str(self.sidecar), "error": str(e)})
            return None

    def _write_sidecar(self, count: int) -> None:
        """Best effort: a stale sidecar only weakens loss detection until the next write.
        Callers hold the lock, so the count written is the one their transaction left."""
        if self._memory or count == self._recorded:
            return
        tmp = Path(f"{self.sidecar}.tmp")
        try:
            tmp.write_text(json.dumps({"id": self.id, "baselines": count}) + "\n", encoding="utf-8")
            os.replace(tmp, self.sidecar)
        except OSError as e:
            log.warning("cannot update the baseline identity file",
                        extra={"file": str(self.sidecar), "error": e.strerror or str(e)})
            with contextlib.suppress(OSError):
                tmp.unlink()
            return
        self._recorded = count

    def _set_aside(self, sides: tuple[str, ...] = _SIDES) -> str:
        """Rename the database and its WAL/SHM to `<name>.corrupt-<UTC time>`; never delete.
        `sides`: only these (files SQLite made itself while failing to open are its own)."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = Path(f"{self.path}.corrupt-{stamp}")
        n = 1
        while any(Path(f"{target}{s}").exists() for s in _SIDES):
            n += 1
            target = Path(f"{self.path}.corrupt-{stamp}-{n}")
        for suffix in sides:
            src = Path(f"{self.path}{suffix}")
            if src.exists():
                try:
                    os.replace(src, f"{target}{suffix}")
                except OSError as e:
                    raise StorageError(
                        f"baseline database {self.path} is corrupt and cannot be set aside: "
                        f"{e.strerror or e}") from None
        return str(target)

    def _reset(self, reason: str, detail: str) -> None:
        self.resets[reason] += 1
        RESETS.labels(reason).inc()
        what = {"corrupt": "baseline database corrupt; started a fresh one",
                "lost": "baseline database lost its contents; baselines start again"}[reason]
        log.error(what, extra={"reason": reason, "path": str(self.path), "detail": detail})

    def _check_file(self) -> None:
        """The file we write into must still be the one on disk: replaced or truncated
        underneath us means everything recorded so far is gone at the next start."""
        if self._memory:
            return
        try:
            st = os.stat(self.path)
            same = (st.st_dev, st.st_ino) == self._stamp and st.st_size > 0
        except FileNotFoundError:
            same = False
        except OSError as e:
            raise StorageError(f"baseline database {self.path}: {e.strerror or e}") from None
        if same:
            return
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
        # What is left (a WAL without its database) is not ours to replay into a new one.
        with contextlib.suppress(FileNotFoundError):
            if os.stat(self.path).st_size == 0:
                self._set_aside()
        self._db = self._open()  # the sidecar still names the old database: reason "lost"

    def _guard(self, op: Callable[[], _T]) -> _T:
        """Run one database operation: corruption found mid-run resets the database and the
        operation runs again on the fresh one; a write failure becomes StorageError."""
        with self._lock:
            self._check_file()
            try:
                return op()
            except sqlite3.Error as e:
                if not _is_corrupt(e) or self._memory:
                    raise _storage_error(e, self.path) from None
                self._discard(self._db, str(e))
                self._db = self._open(reset=True)
            try:
                return op()
            except sqlite3.Error as e:
                raise _storage_error(e, self.path) from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # a failed COMMIT may have rolled back
                    db.execute("ROLLBACK")
                raise
            try:
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise

    def baselines(self, store: str) -> dict[str, Baseline]:
        def op() -> dict[str, Baseline]:
            rows = self._db.execute(
                "SELECT entry, kind, fingerprint, since FROM baselines WHERE store = ?", (store,)
            )
            # One string per distinct fingerprint: many entries (across stores) hold one cert.
            return {e: Baseline(BaselineKind(k), fp and sys.intern(fp), s) for e, k, fp, s in rows}

        return self._guard(op)

    def observe_store(
        self, store: str, entries: Mapping[str, str], now: float | None = None
    ) -> set[str]:
        """Record a successful read: entries is entry key -> endpoint.

        Returns the keys that appeared while we watched (their baseline waits for a probe).
        On the first read of a store ever, everything present is adopted instead.
        Raises StorageError when the read could not be recorded.
        """
        now = time.time() if now is None else now

        def op() -> tuple[bool, set[str], int]:
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
                count = self._count(db) if gone or new else -1
            return first, set(new), count

        with self._lock:  # the sidecar's count is the one this transaction left
            first, new, count = self._guard(op)
            if count >= 0:
                self._write_sidecar(count)
        return set() if first else new

    def fill(self, fingerprints: Mapping[str, str]) -> int:
        """Give pending baselines (no fingerprint yet) the live fingerprint of their endpoint."""
        if not fingerprints:
            return 0

        def op() -> int:
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

        return self._guard(op)

    def forget(self, store: str, entries: Iterable[str]) -> None:
        """Drop baselines (remediation deleted these entries: the next sighting is witnessed)."""
        keys = list(entries)

        def op() -> int:
            with self._tx() as db:
                db.executemany(
                    "DELETE FROM baselines WHERE store = ? AND entry = ?",
                    ((store, e) for e in keys),
                )
                return self._count(db)

        with self._lock:
            self._write_sidecar(self._guard(op))

    def note_fingerprints(self, seen: Mapping[str, str], now: float | None = None) -> None:
        """Remember each endpoint's fingerprint and when it last changed."""
        now = time.time() if now is None else now

        def op() -> None:
            current = dict(self._db.execute("SELECT endpoint, fingerprint FROM endpoints").fetchall())
            changed = [(ep, fp, now) for ep, fp in seen.items() if current.get(ep) != fp]
            if changed:
                with self._tx() as db:
                    db.executemany("INSERT OR REPLACE INTO endpoints VALUES (?, ?, ?)", changed)

        self._guard(op)

    def prune_endpoints(self) -> int:
        """Drop endpoint rows no baseline names any more (their entries left every store):
        the table is as large as the set of endpoints stored entries name, not every one ever."""
        def op() -> int:
            with self._tx() as db:
                cur = db.execute(
                    "DELETE FROM endpoints WHERE endpoint NOT IN (SELECT endpoint FROM baselines)"
                )
            return cur.rowcount

        return self._guard(op)  # corruption resets, a full disk is a StorageError, as elsewhere

    def changed_times(self) -> dict[str, float]:
        return self._guard(
            lambda: dict(self._db.execute("SELECT endpoint, changed FROM endpoints").fetchall())
        )

    def drop_stores(self, stores: Iterable[str]) -> dict[str, Counter[str]]:
        """Forget stores (another shard owns them now): if one comes back, its entries are
        adopted anew, not trusted on rows nobody kept up to date meanwhile. The audit records
        (attestations, history) stay. Returns store -> baseline kind -> rows dropped, for
        the stores that held any."""
        names = list(stores)

        def op() -> tuple[dict[str, Counter[str]], int]:
            with self._tx() as db:
                dropped: dict[str, Counter[str]] = {}
                for s in names:
                    rows = Counter({str(kind): int(n) for kind, n in db.execute(
                        "SELECT kind, COUNT(*) FROM baselines WHERE store = ? GROUP BY kind", (s,))})
                    if rows:
                        dropped[s] = rows
                for table in ("baselines", "stores", "entry_status"):
                    db.executemany(f"DELETE FROM {table} WHERE store = ?", ((s,) for s in names))
                return dropped, self._count(db)

        with self._lock:
            dropped, count = self._guard(op)
            self._write_sidecar(count)
        return dropped

    # ---- other processes (`accept`, `check`) on the same database ------------------------

    def data_version(self) -> int:
        """Moves whenever another connection (another process: `accept`, `check`) committed."""
        (v,) = self._guard(lambda: self._db.execute("PRAGMA data_version").fetchone())
        return int(v)

    def changed_elsewhere(self) -> bool:
        """True once after another connection committed: time to re-read baselines."""
        v = self.data_version()
        moved, self._data_version = v != self._data_version, v
        return moved

    # ---- entry status and history (schema 1) ---------------------------------------------

    def statuses(self, store: str) -> dict[str, EntryStatus]:
        return self._guard(lambda: _statuses(self._db, store))

    def record(self, store: str, diff: Callable[[dict[str, EntryStatus]], tuple[
               dict[str, EntryStatus], list[Change]]]) -> dict[str, EntryStatus]:
        """Compare the store's entries with the recorded status and write what changed, in
        one transaction: two processes on one database (serve and `check`) record a change once.
        `diff` maps the recorded statuses to the new ones and the changes (exporter.core.history).
        Raises StorageError when it could not be written."""
        def op() -> dict[str, EntryStatus]:
            with self._tx() as db:
                old = _statuses(db, store)
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

        return self._guard(op)

    def prune_history(self, max_age: float, max_records: int, now: float | None = None) -> int:
        """Keep the history within `max_age` seconds and `max_records` rows (newest kept)."""
        now = time.time() if now is None else now

        def op() -> int:
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
            return int(n)

        return self._guard(op)

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
        return self._guard(lambda: [_change(r) for r in self._db.execute(sql, args)])

    # ---- attestations (`accept`) ----------------------------------------------------------

    def attest(self, items: Sequence[Attestation],
               verify: Callable[[dict[tuple[str, str], Recorded]], None] | None = None,
               ) -> list[Change]:
        """Record an operator's acceptance of the live certificates of some entries, all or
        none: each baseline becomes `attested` with that fingerprint, and the history says who
        and why. `verify` sees each entry as recorded now ((store, entry) -> Recorded; absent:
        no baseline, the entry left its store), inside the write transaction, so nothing
        another process commits can slip between its check and the write; whatever it raises
        propagates and nothing is recorded. Raises ValueError, recording nothing, when an
        entry no longer points at the attestation's endpoint (it left the list or moved since
        it was read); StorageError when the database cannot be written."""
        def op() -> list[Change]:
            with self._tx() as db:  # BEGIN IMMEDIATE: no other writer until COMMIT
                if verify is not None:
                    verify({(a.store, a.entry): r for a in items
                            if (r := _recorded(db, a.store, a.entry)) is not None})
                return [self._attest_one(db, a) for a in items]

        return self._guard(op)

    @staticmethod
    def _attest_one(db: sqlite3.Connection, a: Attestation) -> Change:
        row = db.execute("SELECT endpoint FROM baselines WHERE store = ? AND entry = ?",
                         (a.store, a.entry)).fetchone()
        if row is None or row[0] != a.endpoint:
            raise ValueError(f"entry {a.entry} of {a.store} changed while it was being accepted")
        db.execute("UPDATE baselines SET kind = ?, fingerprint = ?, since = ? "
                   "WHERE store = ? AND entry = ?",
                   (BaselineKind.ATTESTED.value, a.fingerprint_sha256, a.time, a.store, a.entry))
        db.execute("INSERT INTO attestations (store, entry, endpoint, fingerprint, spki, "
                   "operator, reason, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (a.store, a.entry, a.endpoint, a.fingerprint_sha256, a.spki_sha256,
                    a.operator, a.reason, a.time))
        row = db.execute(
            "SELECT state, evidence, fingerprint, since, previous_fingerprint FROM entry_status "
            "WHERE store = ? AND entry = ?", (a.store, a.entry)).fetchone()
        # One row, not the store's every status: `accept --all-unknown` on a large store
        # attests thousands of entries in one transaction.
        old = None if row is None else EntryStatus(Status(*row[:3]), row[3], row[4])
        after = accepted(a.fingerprint_sha256)
        change = Change(a.time, a.store, a.entry, old.status if old else None, after,
                        f"accepted by {a.operator}: {a.reason}")
        st = advance(old, after, a.time)
        db.execute("INSERT OR REPLACE INTO entry_status VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (a.store, a.entry, after.state, after.evidence, after.fingerprint,
                    st.since, st.previous_fingerprint))
        db.execute(f"INSERT INTO history ({_HISTORY_COLUMNS}) VALUES "
                   "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", _change_row(change))
        return change

    def attestations(self, store: str) -> dict[str, Attestation]:
        """The attestation behind each entry of `store` whose baseline is attested now."""
        def op() -> dict[str, Attestation]:
            rows = self._db.execute(
                "SELECT a.entry, a.endpoint, a.fingerprint, a.spki, a.operator, a.reason, a.at "
                "FROM attestations a JOIN baselines b ON b.store = a.store AND b.entry = a.entry "
                "AND b.kind = 'attested' AND b.since = a.at WHERE a.store = ?", (store,))
            return {e: Attestation(store, e, ep, fp, spki, op, why, at)
                    for e, ep, fp, spki, op, why, at in rows}

        return self._guard(op)

    def attested(self, store: str) -> dict[str, Attested]:
        """Who, when and why for each entry of `store` whose baseline is attested now, as the
        views show it. Read when the store's baselines change, never per scrape or request.
        One `accept` records many entries with one operator, time and reason: they share one
        object (a 100,000-entry store attested at once holds one, not 100,000)."""
        def op() -> dict[str, Attested]:
            rows = self._db.execute(
                "SELECT a.entry, a.operator, a.at, a.reason FROM attestations a JOIN baselines b "
                "ON b.store = a.store AND b.entry = a.entry AND b.kind = 'attested' "
                "AND b.since = a.at WHERE a.store = ?", (store,))
            shared: dict[tuple[str, float, str], Attested] = {}
            out = {}
            for entry, by, at, why in rows:
                key = (by, at, why)
                note = shared.get(key)
                if note is None:
                    note = shared[key] = Attested(sys.intern(by), at, why)
                out[entry] = note
            return out

        return self._guard(op)
