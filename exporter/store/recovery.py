"""Opening the baseline database: integrity checks, schema migration, and recovery of a
broken file. The repositories (baselines.py, history.py, attestations.py) run each operation
through DatabaseFile.guard and DatabaseFile.tx, so a fault anywhere is handled here, once.

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
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from prometheus_client import Counter as PromCounter

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


def _migrate(db: sqlite3.Connection) -> None:
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if version < SCHEMA_VERSION:
        db.executescript(_SCHEMA_1)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")



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



def _connect(path: Path, memory: bool) -> sqlite3.Connection:
    """Open and check the database. On corruption the connection is still open in the
    _Corrupt error: the files must be set aside before it closes, or SQLite would
    checkpoint and delete the WAL that belongs to the damaged file."""
    sides = tuple(s for s in _SIDES if os.path.lexists(f"{path}{s}"))
    if not memory and _bad_header(path):
        raise _Corrupt("file is not a database (bad header)", None, sides)
    if not memory:  # before SQLite opens (and writes) anything
        _check_version(_stored_version(path, sides), path)
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        # Garbage pages in the middle pass the header check; quick_check reads them all
        # (milliseconds for the thousands of rows a deployment holds).
        problems = [r for (r,) in db.execute("PRAGMA quick_check").fetchall() if r != "ok"]
        if problems:
            raise _Corrupt(f"database disk image is malformed: {problems[0]}", db, sides)
        _check_version(db.execute("PRAGMA user_version").fetchone()[0], path)
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


def _ensure_id(db: sqlite3.Connection) -> str:
    row = db.execute("SELECT value FROM meta WHERE key = 'id'").fetchone()
    if row is not None:
        return str(row[0])
    new = secrets.token_hex(8)
    db.execute("INSERT INTO meta VALUES ('id', ?)", (new,))
    return new


def baseline_count(db: sqlite3.Connection) -> int:
    """What the sidecar records: a database that held some and holds none lost them."""
    return int(db.execute("SELECT count(*) FROM baselines").fetchone()[0])


def _set_aside(path: Path, sides: tuple[str, ...] = _SIDES) -> str:
    """Rename the database and its WAL/SHM to `<name>.corrupt-<UTC time>`; never delete.
    `sides`: only these (files SQLite made itself while failing to open are its own)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = Path(f"{path}.corrupt-{stamp}")
    n = 1
    while any(Path(f"{target}{s}").exists() for s in _SIDES):
        n += 1
        target = Path(f"{path}.corrupt-{stamp}-{n}")
    for suffix in sides:
        src = Path(f"{path}{suffix}")
        if src.exists():
            try:
                os.replace(src, f"{target}{suffix}")
            except OSError as e:
                raise StorageError(
                    f"baseline database {path} is corrupt and cannot be set aside: "
                    f"{e.strerror or e}") from None
    return str(target)


class _Sidecar:
    """`<db>.identity`: the database's id and how many baselines it held when last written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._written: int | None = None  # baseline count last written

    def read(self) -> tuple[str, int] | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return str(data["id"]), int(data["baselines"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("baseline identity file unreadable; not used",
                        extra={"file": str(self.path), "error": str(e)})
            return None

    def forget(self) -> None:
        """A database was (re)opened: the next write goes to the file whatever it holds."""
        self._written = None

    def write(self, db_id: str, count: int) -> None:
        """Best effort: a stale sidecar only weakens loss detection until the next write.
        Callers hold the lock, so the count written is the one their transaction left."""
        if count == self._written:
            return
        tmp = Path(f"{self.path}.tmp")
        try:
            tmp.write_text(json.dumps({"id": db_id, "baselines": count}) + "\n", encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as e:
            log.warning("cannot update the baseline identity file",
                        extra={"file": str(self.path), "error": e.strerror or str(e)})
            with contextlib.suppress(OSError):
                tmp.unlink()
            return
        self._written = count


class DatabaseFile:
    """The one connection to the baseline database, and what keeps it sound: the checks at
    open, the reset of a corrupt or lost file, the lock, the transactions."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._memory = str(path) == ":memory:"
        self.sidecar = _Sidecar(Path(f"{self.path}.identity"))
        self.resets: Counter[str] = Counter()  # reason -> resets by this instance
        self.id = ""
        self._stamp: tuple[int, int] | None = None  # (dev, inode) of the file we opened
        self._writes = 0  # commits on this connection, and (re)opens: see written()
        # One user of the connection at a time: the service runs large stores' writes in
        # worker threads, and a statement from another thread would join their transaction.
        self.lock = threading.RLock()
        if not self._memory:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = self._open()
        self._data_version = self.data_version()

    def _open(self, reset: bool = False) -> sqlite3.Connection:
        """reset: a reset was just announced, so a fresh database is expected."""
        self._writes += 1  # a new connection: its data_version starts anew
        if self._memory:
            db = _connect(self.path, True)
            self.id = _ensure_id(db)
            return db
        recorded = self.sidecar.read()
        try:
            db = _connect(self.path, False)
        except _Corrupt as e:
            self._discard(e.db, str(e), e.sides)
            reset = True
            try:
                db = _connect(self.path, False)
            except (sqlite3.Error, _Corrupt) as again:
                raise StorageError(f"baseline database {self.path}: {again}") from None
        except sqlite3.Error as e:
            raise _storage_error(e, self.path) from None
        try:
            self.id = _ensure_id(db)
            count = baseline_count(db)
        except sqlite3.Error as e:
            db.close()
            raise _storage_error(e, self.path) from None
        if not reset and recorded is not None:
            old_id, old_count = recorded
            if old_count > 0 and old_id != self.id:
                self._reset("lost", f"{self.sidecar.path.name} says database {old_id} held "
                                    f"{old_count} baselines; {self.path.name} is database "
                                    f"{self.id} with {count}")
        st = os.stat(self.path)
        self._stamp = (st.st_dev, st.st_ino)
        self.sidecar.forget()
        self.sidecar.write(self.id, count)
        return db

    def _discard(self, db: sqlite3.Connection | None, why: str,
                 sides: tuple[str, ...] = _SIDES) -> None:
        """Set the damaged files aside (first: see _connect), then let go of them."""
        aside = _set_aside(self.path, sides)
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.close()
        self._reset("corrupt", f"{why}; the damaged file is kept as {aside}")

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
            self.conn.close()
        # What is left (a WAL without its database) is not ours to replay into a new one.
        with contextlib.suppress(FileNotFoundError):
            if os.stat(self.path).st_size == 0:
                _set_aside(self.path)
        self.conn = self._open()  # the sidecar still names the old database: reason "lost"

    def guard(self, op: Callable[[], _T]) -> _T:
        """Run one database operation: corruption found mid-run resets the database and the
        operation runs again on the fresh one; a write failure becomes StorageError. `op`
        reads `self.conn` when it runs: a reset replaces it."""
        with self.lock:
            self._check_file()
            try:
                return op()
            except sqlite3.Error as e:
                if not _is_corrupt(e) or self._memory:
                    raise _storage_error(e, self.path) from None
                self._discard(self.conn, str(e))
                self.conn = self._open(reset=True)
            try:
                return op()
            except sqlite3.Error as e:
                raise _storage_error(e, self.path) from None

    def guard_counted(self, op: Callable[[], tuple[_T, int]]) -> _T:
        """guard() for a write that changes how many baselines there are: `op` also returns
        the count its transaction left (negative: unchanged), and the sidecar records it
        under the same lock, so it is that transaction's count."""
        with self.lock:
            result, count = self.guard(op)
            if count >= 0 and not self._memory:
                self.sidecar.write(self.id, count)
        return result

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT: no other writer, in any process, until it ends."""
        with self.lock:
            db = self.conn
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
            self._writes += 1

    def written(self) -> tuple[int, int]:
        """Moves with every commit, by this connection or another (another process), and at
        each reopen: equal values mean nothing was written in between. Call it inside guard()
        or tx() (under the lock), so no commit of this process slips between it and a read."""
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0]), self._writes

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    # ---- other processes (`accept`, `check`) on the same database ------------------------

    def data_version(self) -> int:
        """Moves whenever another connection (another process: `accept`, `check`) committed."""
        (v,) = self.guard(lambda: self.conn.execute("PRAGMA data_version").fetchone())
        return int(v)

    def changed_elsewhere(self) -> bool:
        """True once after another connection committed: time to re-read baselines."""
        v = self.data_version()
        moved, self._data_version = v != self._data_version, v
        return moved
