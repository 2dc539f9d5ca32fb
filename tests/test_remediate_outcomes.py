"""`remediate --apply` outcomes the docs promise, against the real lab over SSH and through the
real command line: `re-stored` (PI confirmed the delete and had already stored the live
certificate again when we re-listed), `still present` (no confirmed delete: a failure, the
baseline kept), `not verified` (the deletes ran, the baseline database failed) and exit code 1
after a failed command, with the later servers untouched."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from exporter.core.model import Baseline
from exporter.store.database import BaselineDB
from pilab.pi import CliSession
from pilab.scene import Lab
from tests.kit.faults import FaultyCli, faults
from tests.kit.lab import DELETE, deletes, keys, one_pass
from tests.kit.mounts import fill, tmpfs
from tests.kit.processes import acli


@pytest.fixture
async def lab(demo_lab: tuple[Lab, Path], tmp_path: Path) -> tuple[Lab, Path]:
    """The seed's scene, prime-sec re-keyed after one pass adopted the baselines; the health
    monitors stopped, so only the knob under test decides what PI's store holds."""
    lab, cfg = demo_lab
    first = await one_pass(cfg, tmp_path / "data")
    await first.stop()
    lab.regenerate("prime-sec")  # same subject, new key: only the baseline can tell
    for pi in lab.pis.values():
        await pi.stop_health_monitor()
    return lab, cfg


def baselines(storage: Path, store: str) -> dict[str, Baseline]:
    db = BaselineDB(storage / "baseline.db")
    try:
        return db.baselines(store)
    finally:
        db.close()


def audit_lines(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_restored_entries_drop_the_baseline_and_are_witnessed_anew(
    lab: tuple[Lab, Path], tmp_path: Path
) -> None:
    lab_, cfg = lab
    k = keys(lab_)
    storage, audit = tmp_path / "data", tmp_path / "audit.jsonl"
    common = ["--config.file", str(cfg), "--storage.path", str(storage), "--log.level", "warn"]
    for pi in lab_.pis.values():
        faults(pi).restore_on_delete = True  # PI reconnects before deletecert returns to the prompt
    # (store, entry) -> the peer whose live certificate PI stores again
    # In the plan's order: the primary's entries, then the secondary's, each in listing order.
    peer = {("prime-pri", k["sec"]): "prime-sec", ("prime-pri", k["ise"]): "ise",
            ("prime-sec", k["sec_self"]): "prime-sec", ("prime-sec", k["sec"]): "prime-sec"}
    live = {key: lab_.endpoints[name].current for key, name in peer.items()}
    old = baselines(storage, "prime-pri")[k["sec"]]
    assert old.kind.value == "adopted"
    assert old.fingerprint_sha256 != live[("prime-pri", k["sec"])].fingerprint_sha256
    started = time.time()

    res = await acli("remediate", *common, "--apply", "--yes", "--reason", "CHG-1",
                    "--audit.file", str(audit))

    assert res.returncode == 0, res.stdout + res.stderr
    assert deletes(lab_) == [(s, f"{DELETE} {e}") for s, e in peer]
    for (store, entry), cert in live.items():
        # PI holds the live certificate again: the delete was real and so was the re-store.
        assert lab_.pis[store].entries()[entry].der == cert.der
        fp = cert.fingerprint_sha256
        line = (f"  ok   {store} {entry}: re-stored; PI confirmed the delete and has already "
                f"reconnected and stored the certificate it sees now; witnessed live sha256 "
                f"{fp[:16]}…, state match")
        assert line in res.stdout.splitlines(), res.stdout
        # The old baseline is gone; the new one was witnessed when PI re-stored the entry.
        b = baselines(storage, store)[entry]
        assert (b.kind.value, b.fingerprint_sha256) == ("witnessed", fp), b
        assert b.since >= started
    assert "FAIL" not in res.stdout
    for x in audit_lines(audit):
        assert (x["result"], x["verified"]) == ("deleted", "re-stored"), x
        assert x["live_fingerprint_sha256"] == live[(x["store"], x["entry"])].fingerprint_sha256
    assert len(audit_lines(audit)) == 4

    # The next sighting: match, by the baseline witnessed at the re-store.
    res = await acli("check", *common, "--output", "json")
    after = {(r["store"], r["entry"]): r for r in json.loads(res.stdout)}
    for key in peer:
        assert (after[key]["state"], after[key]["evidence"], after[key]["baseline"]) == (
            "match", "baseline", "witnessed"), after[key]


@pytest.mark.parametrize("reply", ["", "% Certificate store busy, {key} not deleted"],
                         ids=["silent", "percent-error"])
async def test_unconfirmed_delete_fails_keeps_the_baseline_and_exits_1(
    lab: tuple[Lab, Path], tmp_path: Path, reply: str
) -> None:
    """prime-pri answers deletecert without deleting (silently, or with a `%` error); the entry
    is listed again. A failure: baseline kept, audit says so, prime-sec untouched, exit 1."""
    lab_, cfg = lab
    k = keys(lab_)
    storage, audit = tmp_path / "data", tmp_path / "audit.jsonl"
    pri, sec = lab_.pis["prime-pri"], lab_.pis["prime-sec"]
    faults(pri).deletecert_reply = reply
    before = {s: baselines(storage, s) for s in ("prime-pri", "prime-sec")}
    held = {s: lab_.pis[s].entries() for s in ("prime-pri", "prime-sec")}

    res = await acli("remediate", "--config.file", str(cfg), "--storage.path",
                    str(storage), "--log.level", "warn", "--apply", "--yes",
                    "--audit.file", str(audit))

    assert res.returncode == 1, res.stdout + res.stderr
    out = res.stdout.splitlines()
    if reply:  # an error line stops that server's remaining commands
        ran = [k["sec"]]
        assert f"  FAIL prime-pri {k['sec']}: still present; deletecert reported an error" in out
        assert (f"  FAIL prime-pri {k['ise']}: not run; an earlier command on this server "
                f"failed") in out
    else:  # no error, but no confirmation either: each one listed again, each a failure
        ran = [k["sec"], k["ise"]]
        for entry in ran:
            assert (f"  FAIL prime-pri {entry}: still present; listed again and PI did not "
                    f"confirm a delete; baseline kept") in out, res.stdout
    assert deletes(lab_) == [("prime-pri", f"{DELETE} {e}") for e in ran]
    # The later server is untouched: nothing sent, its entries as they were.
    assert not [c for c in sec.commands if c.startswith(DELETE)]
    assert sec.entries() == held["prime-sec"] and pri.entries() == held["prime-pri"]
    for entry in (k["sec"], k["sec_self"]):
        assert f"  FAIL prime-sec {entry}: not run; an earlier server failed" in out
    assert " ok   " not in res.stdout
    # Baselines kept: the mismatch evidence survives for the next attempt.
    assert {s: baselines(storage, s) for s in before} == before
    lines = audit_lines(audit)
    assert [(x["store"], x["entry"], x["result"], x["verified"]) for x in lines] == [
        ("prime-pri", e, "failed", "still present") for e in ran]


@dataclass
class LockAfterDelete(FaultyCli):
    """deletecert as PI does it; then another process (this one) takes the write lock of the
    remediating exporter's baseline database and keeps it, so dropping the baseline fails."""

    db: Path = Path()
    held: list[sqlite3.Connection] = field(default_factory=list)

    async def deletecert(self, session: CliSession, key: str) -> int:
        status = await super().deletecert(session, key)
        if not self.held:
            lock = sqlite3.connect(self.db, isolation_level=None)
            lock.execute("BEGIN IMMEDIATE")
            self.held.append(lock)
        return status


async def test_storage_failure_after_the_deletes_is_a_failed_step_not_a_config_error(
    lab: tuple[Lab, Path], tmp_path: Path
) -> None:
    """PI deletes both of prime-pri's stale entries, then the exporter cannot drop their
    baselines (its database is locked past its busy timeout). What happened on PI is reported
    and audited: each step FAIL, not verified, the error named, prime-sec untouched, exit 1
    (exit 2 means nothing was done: bad configuration, or storage before any delete)."""
    lab_, cfg = lab
    k = keys(lab_)
    storage, audit = tmp_path / "data", tmp_path / "audit.jsonl"
    pri, sec = lab_.pis["prime-pri"], lab_.pis["prime-sec"]
    before = {s: baselines(storage, s) for s in ("prime-pri", "prime-sec")}
    held = sec.entries()
    pri.cli = locker = LockAfterDelete(db=storage / "baseline.db")
    try:
        res = await acli("remediate", "--config.file", str(cfg), "--storage.path",
                        str(storage), "--log.level", "warn", "--apply", "--yes",
                        "--audit.file", str(audit))
    finally:
        for lock in locker.held:
            lock.rollback()
            lock.close()
    assert locker.held, "the lab never took the lock"

    assert res.returncode == 1, res.stdout + res.stderr
    out = res.stdout.splitlines()
    ran = [k["sec"], k["ise"]]
    assert deletes(lab_) == [("prime-pri", f"{DELETE} {e}") for e in ran]  # done on PI
    for entry in ran:
        line = next((ln for ln in out if ln.startswith(f"  FAIL prime-pri {entry}: ")), "")
        assert line.startswith(f"  FAIL prime-pri {entry}: not verified; ") and \
            "baseline database" in line and "locked" in line, res.stdout
    assert not [c for c in sec.commands if c.startswith(DELETE)] and sec.entries() == held
    for entry in (k["sec"], k["sec_self"]):
        assert f"  FAIL prime-sec {entry}: not run; an earlier server failed" in out
    assert {s: baselines(storage, s) for s in before} == before  # nothing dropped
    lines = audit_lines(audit)
    assert [(x["store"], x["entry"], x["result"], x["verified"]) for x in lines] == [
        ("prime-pri", e, "failed", "not verified") for e in ran]
    assert all("deleted" in x["output"].lower() for x in lines)  # PI's confirmation kept


# ---- the audit log ------------------------------------------------------------------------


async def test_an_audit_log_that_cannot_be_opened_stops_remediate_before_any_delete(
    lab: tuple[Lab, Path], tmp_path: Path
) -> None:
    lab_, cfg = lab
    (tmp_path / "not-a-dir").write_text("")
    res = await acli("remediate", "--config.file", str(cfg), "--storage.path",
                    str(tmp_path / "data"), "--log.level", "warn", "--apply", "--yes",
                    "--audit.file", str(tmp_path / "not-a-dir" / "audit.jsonl"))
    assert res.returncode == 2, res.stdout + res.stderr
    assert "--audit.file" in res.stderr and "nothing deleted" in res.stderr
    assert "Traceback" not in res.stderr
    assert deletes(lab_) == []


async def test_a_full_disk_under_the_audit_log_loses_no_record_and_stops_later_servers(
    lab: tuple[Lab, Path], tmp_path: Path
) -> None:
    """The audit log sits on a real tmpfs that is full: the log can be created (an inode),
    not written. prime-pri's deletes ran and are verified; their records are printed on
    stderr instead, ASCII-escaped; prime-sec is not touched; exit 1."""
    lab_, cfg = lab
    k = keys(lab_)
    sec = lab_.pis["prime-sec"]
    held = sec.entries()
    with tmpfs(tmp_path / "audit", "size=64k") as mnt:
        fill(mnt / "filler")
        res = await acli("remediate", "--config.file", str(cfg), "--storage.path",
                        str(tmp_path / "data"), "--log.level", "warn", "--apply", "--yes",
                        "--audit.file", str(mnt / "audit.jsonl"))
        assert (mnt / "audit.jsonl").read_text() == ""
    assert res.returncode == 1, res.stdout + res.stderr
    ran = [k["sec"], k["ise"]]
    assert deletes(lab_) == [("prime-pri", f"{DELETE} {e}") for e in ran]
    out = res.stdout.splitlines()
    for entry in ran:
        assert any(ln.startswith(f"  ok   prime-pri {entry}: ") for ln in out), res.stdout
    for entry in (k["sec"], k["sec_self"]):
        assert f"  FAIL prime-sec {entry}: not run; the audit log could not be written" in out
    assert not [c for c in sec.commands if c.startswith(DELETE)] and sec.entries() == held
    assert "No space left on device" in res.stderr and "keep it" in res.stderr
    kept = [json.loads(ln) for ln in res.stderr.splitlines() if ln.startswith("  {")]
    assert [(x["store"], x["entry"], x["result"]) for x in kept] == [
        ("prime-pri", e, "deleted") for e in ran]
    assert all(ln.isascii() for ln in res.stderr.splitlines())
    assert "audit log: " not in res.stdout  # no claim that it was written
