"""A baseline database that exists but cannot be opened: on a volume that is read-only now,
or locked by another process. The `--storage.path` pre-check cannot see a lock, and `history`
runs no pre-check: the error shows only when SQLite opens the file. Every command says it in
one line naming --storage.path and the reason, exits 2 (never 1, "mismatch"), no traceback.
Real files, real SQLite locks, a real read-only tmpfs; the exporter as a real process."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from pathlib import Path

import pytest

from exporter.baseline import BaselineDB
from tests.conftest import free_port, offline_config
from tests.exporterkit import ROOT
from tests.mounts import remount, tmpfs

EXPORTER = [sys.executable, "-m", "exporter"]


def _existing_database(storage: Path) -> None:
    db = BaselineDB(storage / "baseline.db")
    db.observe_store("pri", {"10.0.0.2_8082": "10.0.0.2:8082"})
    db.close()


def _args(command: str, cfg: Path, storage: Path) -> list[str]:
    args = [*EXPORTER, command, "--storage.path", str(storage)]
    if command != "history":
        args += ["--config.file", str(cfg)]
    if command == "serve":
        args += ["--web.listen-address", f"127.0.0.1:{free_port()}"]
    if command == "accept":
        args += ["--store", "pri", "--all-unknown", "--reason", "test", "--yes"]
    return args


async def _run(args: list[str], cwd: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=cwd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()  # serve started anyway: the failure this test is about
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


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
        done = await _run(_args(command, cfg, vol), tmp_path)
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
        results = await asyncio.gather(*(_run(_args(c, cfg, storage), tmp_path) for c in commands))
    finally:
        holder.close()
    for command, done in zip(commands, results, strict=True):
        try:
            _one_line(done, storage, "locked by another process")
        except AssertionError as e:
            raise AssertionError(f"{command}: {e}") from None
