"""A baseline database that exists but cannot be opened: on a volume that is read-only now,
or locked by another process. The `--storage.path` pre-check cannot see a lock, and `history`
runs no pre-check: the error shows only when SQLite opens the file. Every command says it in
one line naming --storage.path and the reason, exits 2 (never 1, "mismatch"), no traceback.
Real files, real SQLite locks, a real read-only tmpfs; the exporter as a real process."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from pathlib import Path

import pytest

from exporter.store.database import SCHEMA_VERSION, BaselineDB
from tests.kit.lab import free_port, offline_config
from tests.kit.mounts import remount, tmpfs
from tests.kit.processes import acli


def _existing_database(storage: Path) -> None:
    db = BaselineDB(storage / "baseline.db")
    db.observe_store("pri", {"10.0.0.2_8082": "10.0.0.2:8082"})
    db.close()


def _args(command: str, cfg: Path, storage: Path) -> list[str]:
    args = [command, "--storage.path", str(storage)]
    if command != "history":
        args += ["--config.file", str(cfg)]
    if command == "serve":
        args += ["--web.listen-address", f"127.0.0.1:{free_port()}"]
    if command == "accept":
        args += ["--store", "pri", "--all-unknown", "--reason", "test", "--yes"]
    return args


async def run_exporter(args: list[str], cwd: Path) -> tuple[int, str, str]:
    """A `serve` still running after 60 s started anyway: the failure this test is about."""
    done = await acli(*args, cwd=cwd)
    return done.returncode, done.stdout, done.stderr


def _one_line(done: tuple[int, str, str], storage: Path, reason: str) -> None:
    code, out, err = done
    assert code == 2, err  # 1 would mean "mismatch found"
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"--storage.path {str(storage)!r}: "), lines[0]
    assert reason in lines[0].lower(), lines[0]
    assert "Traceback" not in err and out == ""


@pytest.mark.parametrize("command", ["serve", "check", "history"])
async def test_existing_database_on_a_read_only_volume(command: str, tmp_path: Path) -> None:
    cfg = offline_config(tmp_path)
    with tmpfs(tmp_path / "vol", "size=4m") as vol:
        _existing_database(vol)
        before = {p.name: p.read_bytes() for p in vol.iterdir()}
        remount(vol, "ro")  # after an I/O error, say
        done = await run_exporter(_args(command, cfg, vol), tmp_path)
        _one_line(done, vol, "read-only")
        assert {p.name: p.read_bytes() for p in vol.iterdir()} == before  # nothing moved aside


async def test_database_locked_by_another_process(tmp_path: Path) -> None:
    """Another process holds an exclusive lock (a second exporter in exclusive mode, a
    maintenance shell): SQLite gives up after its busy timeout, at open."""
    cfg, storage = offline_config(tmp_path), tmp_path / "data"
    _existing_database(storage)
    holder = sqlite3.connect(storage / "baseline.db", isolation_level=None)
    try:
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("DELETE FROM meta WHERE 0")  # the lock is taken, and kept
        commands = ["serve", "check", "remediate", "accept", "history"]
        results = await asyncio.gather(*(run_exporter(_args(c, cfg, storage), tmp_path) for c in commands))
    finally:
        holder.close()
    for command, done in zip(commands, results, strict=True):
        try:
            _one_line(done, storage, "locked by another process")
        except AssertionError as e:
            raise AssertionError(f"{command}: {e}") from None


def _newer_database(storage: Path) -> None:
    """What a later version would leave: its schema number, and a column v1 does not have."""
    _existing_database(storage)
    con = sqlite3.connect(storage / "baseline.db", isolation_level=None)
    con.execute("ALTER TABLE history ADD COLUMN operator TEXT")
    con.execute("PRAGMA user_version = 7")
    con.close()  # the last connection: checkpointed, no -wal or -shm left


@pytest.mark.parametrize("command", ["serve", "check", "remediate", "accept", "history"])
async def test_a_database_of_a_newer_version_is_refused_untouched(command: str,
                                                                  tmp_path: Path) -> None:
    """Before: used anyway, and every store failed with 'not writable ... 7 columns but 6
    values' (serve even wrote its schema and identity into the file)."""
    cfg, storage = offline_config(tmp_path), tmp_path / "data"
    _newer_database(storage)
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in storage.iterdir()}
    code, out, err = await run_exporter(_args(command, cfg, storage), tmp_path)
    assert code == 2, err
    assert err.strip().splitlines() == [
        f"--storage.path {str(storage)!r}: baseline database {storage / 'baseline.db'}: written "
        f"by a newer version of the exporter (schema version 7; this version reads up to "
        f"{SCHEMA_VERSION}): run that version, or move the file aside to start afresh"], err
    assert out == ""
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in storage.iterdir()}
    assert after == before  # same files, same bytes, same mtimes: no -wal, -shm or sidecar


async def test_a_newer_schema_still_in_the_wal_is_refused(tmp_path: Path) -> None:
    """The later version migrated and was killed before a checkpoint: the main file's header
    still says our version, the WAL says 7. Refused the same way; neither file is written."""
    cfg, storage = offline_config(tmp_path), tmp_path / "data"
    _existing_database(storage)
    db = storage / "baseline.db"
    killed = (f"import os, sqlite3; c = sqlite3.connect({str(db)!r}, isolation_level=None); "
              "c.execute('PRAGMA wal_autocheckpoint=0'); "
              "c.execute('ALTER TABLE history ADD COLUMN operator TEXT'); "
              "c.execute('PRAGMA user_version = 7'); os._exit(0)")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", killed)
    assert await proc.wait() == 0
    assert db.read_bytes()[60:64] == SCHEMA_VERSION.to_bytes(4, "big")
    kept = [db, storage / "baseline.db-wal"]
    before = [(p.read_bytes(), p.stat().st_mtime_ns) for p in kept]
    code, _, err = await run_exporter(_args("check", cfg, storage), tmp_path)
    assert code == 2 and "written by a newer version of the exporter (schema version 7;" in err
    assert [(p.read_bytes(), p.stat().st_mtime_ns) for p in kept] == before
