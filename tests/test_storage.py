"""Storage faults: a bad --storage.path, a corrupt or emptied baseline database, a full or
read-only disk. Real files, real SQLite, real tmpfs mounts; the exporter as a real process."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from exporter.store.database import BaselineDB, StorageError
from tests.kit.lab import free_port, offline_config, start_pi, write_config
from tests.kit.mounts import fill, remount, tmpfs
from tests.kit.processes import Exporter, cli, value


def resets(reason: str) -> float:
    return REGISTRY.get_sample_value("tofu_baseline_db_resets_total", {"reason": reason}) or 0.0


@pytest.fixture(params=["is-a-file", "read-only-mount", "not-creatable"])
def bad_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    if request.param == "is-a-file":
        (tmp_path / "data").write_text("not a directory\n")
        yield tmp_path / "data", "not a directory"
    elif request.param == "read-only-mount":
        with tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
            yield ro, "Read-only file system"
    else:
        (tmp_path / "afile").write_text("")
        yield tmp_path / "afile" / "data", "cannot create"


@pytest.mark.parametrize("command", ["serve", "check", "remediate"])
def test_bad_storage_path_exits_2_with_one_line(
    command: str, bad_storage: tuple[Path, str], tmp_path: Path
) -> None:
    path, reason = bad_storage
    args = [command, "--config.file", str(offline_config(tmp_path)), "--storage.path", str(path)]
    if command == "serve":
        args += ["--web.listen-address", f"127.0.0.1:{free_port()}"]
    done = cli(*args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr  # 1 would mean "mismatch found"
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "--storage.path" in lines[0] and str(path) in lines[0] and reason in lines[0], lines[0]
    assert "Traceback" not in done.stderr and done.stdout == ""


# ---- corrupt database -------------------------------------------------------------------


def _filled(path: Path, n: int = 3000) -> bytes:
    """A real baseline database with enough rows to span many pages; closed cleanly."""
    db = BaselineDB(path)
    db.observe_store("pri", {f"10.0.{i // 250}.{i % 250}_8082": f"10.0.0.{i % 250}:8082"
                             for i in range(n)})
    db.close()
    return path.read_bytes()


def _garbage_header(data: bytes) -> bytes:
    return b"this is not SQLite at all".ljust(100, b"\xff") + data[100:]


def _cut_in_half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _garbage_pages(data: bytes) -> bytes:
    page = 4096
    junk = bytes((i * 131 + 7) % 256 for i in range(page))
    return data[: 2 * page] + junk * 3 + data[5 * page:]


@pytest.mark.parametrize("damage", [_garbage_header, _cut_in_half, _garbage_pages],
                         ids=["garbage-header", "cut-in-half", "garbage-pages"])
def test_corrupt_database_is_set_aside_and_replaced(
    damage: object, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "baseline.db"
    good = _filled(path)
    bad = damage(good)  # type: ignore[operator]
    path.write_bytes(bad)
    before = resets("corrupt"), resets("lost")
    with caplog.at_level(logging.ERROR, logger="exporter.store.database"):
        db = BaselineDB(path)
    assert db.resets == {"corrupt": 1}
    assert (resets("corrupt"), resets("lost")) == (before[0] + 1, before[1])
    kept = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert [p.read_bytes() for p in kept] == [bad], "the damaged file must be kept, unchanged"
    assert [p.name[-3:] for p in kept] != ["wal"]
    assert any(r.levelno == logging.ERROR and "corrupt" in r.getMessage() for r in caplog.records)
    # The fresh database works, and a restart does not count the same damage twice.
    assert db.observe_store("pri", {"a_1": "a:1"}) == set()
    db.close()
    again = BaselineDB(path)
    assert not again.resets and set(again.baselines("pri")) == {"a_1"}
    again.close()


def test_corrupt_wal_and_shm_are_kept_too(tmp_path: Path) -> None:
    path = tmp_path / "baseline.db"
    _filled(path)
    path.write_bytes(_garbage_header(path.read_bytes()))
    Path(f"{path}-wal").write_bytes(b"wal bytes")
    Path(f"{path}-shm").write_bytes(b"shm bytes")
    db = BaselineDB(path)
    names = sorted(p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name)
    assert [n.rsplit("-", 1)[-1] if n.endswith(("-wal", "-shm")) else "db" for n in names] == [
        "db", "shm", "wal"]
    assert Path(f"{tmp_path / names[2]}").read_bytes() == b"wal bytes"
    db.close()


def test_corruption_found_while_running_resets_and_the_write_lands(tmp_path: Path) -> None:
    path = tmp_path / "baseline.db"
    db = BaselineDB(path)
    db.observe_store("pri", {f"h{i}_1": f"h{i}:1" for i in range(3000)})
    db._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with path.open("r+b") as f:  # another process scribbles over the data pages
        f.seek(3 * 4096)
        f.write(b"\xa5" * 4096 * 4)
    db._db.execute("PRAGMA cache_size=1")  # the next read goes to the file, not the cache
    appeared = db.observe_store("pri", {"h1_1": "h1:1", "new_2": "new:2"})
    assert db.resets == {"corrupt": 1}
    assert appeared == set()  # a fresh database: the store is read for the first time
    assert set(db.baselines("pri")) == {"h1_1", "new_2"}
    db.close()


# ---- a database that lost its contents ----------------------------------------------------


def _truncate(path: Path) -> None:
    path.write_bytes(b"")


def _empty_db(path: Path) -> None:
    path.unlink()
    sqlite3.connect(str(path)).close()


@pytest.mark.parametrize("loss", [_truncate, _empty_db], ids=["truncated-to-0", "replaced-by-empty"])
def test_lost_contents_are_detected(loss: object, tmp_path: Path,
                                    caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "baseline.db"
    _filled(path, n=10)
    loss(path)  # type: ignore[operator]
    before = resets("lost")
    with caplog.at_level(logging.ERROR, logger="exporter.store.database"):
        db = BaselineDB(path)
    assert db.resets == {"lost": 1}
    assert resets("lost") == before + 1
    msgs = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("lost" in m for m in msgs), msgs
    db.close()
    assert not BaselineDB(path).resets  # announced once, not at every start


def test_new_volume_with_a_foreign_database_is_detected(tmp_path: Path) -> None:
    """The file is replaced by another exporter's (empty) database: a different id."""
    path = tmp_path / "baseline.db"
    _filled(path, n=10)
    sidecar = Path(f"{path}.identity").read_bytes()
    other = tmp_path / "other"
    other.mkdir()
    BaselineDB(other / "baseline.db").close()
    os.replace(other / "baseline.db", path)
    Path(f"{path}.identity").write_bytes(sidecar)
    assert BaselineDB(path).resets == {"lost": 1}


def test_no_false_alarm_on_first_start_or_after_entries_went_away(tmp_path: Path) -> None:
    path = tmp_path / "baseline.db"
    db = BaselineDB(path)  # first start ever: nothing was lost
    assert not db.resets
    db.observe_store("pri", {"a_1": "a:1"})
    db.observe_store("pri", {})  # the entry was deleted on PI: 0 baselines, legitimately
    db.close()
    _truncate(path)  # an empty database that held nothing: nothing was lost either
    assert not BaselineDB(path).resets


def test_truncated_while_running_is_detected_at_the_next_write(tmp_path: Path) -> None:
    path = tmp_path / "baseline.db"
    db = BaselineDB(path)
    db.observe_store("pri", {f"h{i}_1": f"h{i}:1" for i in range(50)})
    db._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    os.truncate(path, 0)
    db.observe_store("pri", {"h1_1": "h1:1"})
    assert sum(db.resets.values()) == 1 and db.resets["lost"] + db.resets["corrupt"] == 1
    assert db.resets == {"lost": 1}
    db.close()


def test_replaced_while_running_is_detected_at_the_next_write(tmp_path: Path) -> None:
    path = tmp_path / "baseline.db"
    db = BaselineDB(path)
    db.observe_store("pri", {"a_1": "a:1"})
    path.unlink()
    for side in ("-wal", "-shm"):
        Path(f"{path}{side}").unlink(missing_ok=True)
    assert db.observe_store("pri", {"a_1": "a:1", "b_2": "b:2"}) == set()  # starts again
    assert db.resets == {"lost": 1}
    db.close()
    assert set(BaselineDB(path).baselines("pri")) == {"a_1", "b_2"}  # written to the new file


# ---- a disk that fills up, a volume that turns read-only ----------------------------------


def _fill(where: Path) -> Path:
    filler = where / "filler"
    fill(filler)
    return filler


def test_disk_full_raises_storage_error_then_recovers(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", "size=2m") as vol:
        db = BaselineDB(vol / "baseline.db")
        db.observe_store("pri", {"a_1": "a:1"})
        filler = _fill(vol)
        many = {f"host-{i:05d}.example.com_8443": f"host-{i:05d}.example.com:8443"
                for i in range(3000)}
        with pytest.raises(StorageError, match=r"disk full|I/O error"):
            db.observe_store("pri", many)
        assert set(db.baselines("pri")) == {"a_1"}, "a failed write must leave the old state"
        filler.unlink()
        assert db.observe_store("pri", many) == set(many) - {"a_1"}  # space is back: resumes
        assert not db.resets
        db.close()


def test_pruning_on_a_full_disk_is_a_storage_error_then_recovers(tmp_path: Path) -> None:
    """The probe loop catches StorageError only: a raw sqlite3 error from pruning escaped it
    as a loop error instead of 'baseline database not writable'."""
    with tmpfs(tmp_path / "vol", "size=2m") as vol:
        db = BaselineDB(vol / "baseline.db")
        eps = {f"h{i:05d}.example.com_443": f"h{i:05d}.example.com:443" for i in range(3000)}
        db.observe_store("pri", eps)
        db.note_fingerprints({ep: f"FP{ep}" for ep in eps.values()})
        db.forget("pri", list(eps)[1:])  # 2,999 endpoints are named by no baseline now
        with contextlib.closing(sqlite3.connect(vol / "baseline.db")) as other:
            other.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # an empty WAL must grow to delete
        filler = _fill(vol)
        with pytest.raises(StorageError, match=r"disk full|I/O error"):
            db.prune_endpoints()
        filler.unlink()
        assert db.prune_endpoints() == 2999
        assert list(db.changed_times()) == ["h00000.example.com:443"]
        db.close()


def test_existing_database_on_a_read_only_volume_is_a_storage_error_not_corruption(
    tmp_path: Path,
) -> None:
    """A volume that turned read-only (remounted after an I/O error, say): a clear
    StorageError, and nothing on it is mistaken for corruption and moved aside."""
    with tmpfs(tmp_path / "vol", "size=4m") as vol:
        db = BaselineDB(vol / "baseline.db")
        db.observe_store("pri", {"a_1": "a:1"})
        db.close()
        before = sorted(p.name for p in vol.iterdir())
        remount(vol, "ro")
        with pytest.raises(StorageError, match=r"read-only|cannot open|I/O error"):
            BaselineDB(vol / "baseline.db")
        assert sorted(p.name for p in vol.iterdir()) == before


# ---- the whole exporter -------------------------------------------------------------------


async def test_exporter_starts_on_a_corrupt_database_and_says_so(tmp_path: Path) -> None:
    pi = await start_pi("prime-pri")
    try:
        cfg = write_config(tmp_path, {"pri": pi}, interval="1h")
        data = tmp_path / "data"
        data.mkdir()
        (data / "baseline.db").write_bytes(b"\x00garbage, not a database" * 400)
        ex = Exporter(cfg, tmp_path)
        try:
            await ex.start()
            body, _ = await ex.metrics()
            assert value(body, "tofu_baseline_db_resets_total", reason="corrupt") == 1
            assert value(body, "tofu_baseline_db_resets_total", reason="lost") == 0
        finally:
            await ex.stop()
        assert "level=error" in ex.log() and "corrupt" in ex.log()
        assert [p.name for p in data.iterdir() if ".corrupt-" in p.name]
        # A second start on the fresh database: no crash loop, no new reset.
        ex = Exporter(cfg, tmp_path)
        try:
            await ex.start()
            body, _ = await ex.metrics()
            assert value(body, "tofu_baseline_db_resets_total", reason="corrupt") == 0
        finally:
            await ex.stop()
    finally:
        await pi.stop()
