"""`accept` records only what the operator was shown (issue 20): a change between the plan
and the "yes" (a certificate witnessed anew by a running exporter, an adopted baseline turned
mismatch, a regenerated certificate) refuses the whole acceptance, exit 2, nothing recorded.

Real parts: the demo lab (SSH PI servers, TLS peers), `accept` as a subprocess on a real
pseudo-terminal, a Service in the test process on the same --storage.path playing the
running `serve`, deciding at the moment the test chooses.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from exporter.config.load import load_config
from exporter.service.service import Service
from pilab.scene import Lab
from tests.kit.processes import EXPORTER, REASON, accept_on_terminal


@pytest.fixture
async def lab_service(demo_lab: tuple[Lab, Path],
                      tmp_path: Path) -> AsyncIterator[tuple[Lab, Path, Path, Service]]:
    """The demo lab with PI's health monitors stopped (the test re-stores entries itself,
    when it chooses), and a Service on the storage path `accept` uses."""
    lab, cfg = demo_lab
    for pi in lab.pis.values():
        await pi.stop_health_monitor()
    data = tmp_path / "data"
    service = Service(load_config(cfg), data)
    try:
        yield lab, cfg, data, service
    finally:
        await service.stop()


def _verdict(service: Service, store: str, key: str) -> tuple[str, str, str | None]:
    v = next(v for v in service.snapshot().views if v.store == store and v.entry.key == key)
    fp = v.probe.cert.fingerprint_sha256 if v.probe and v.probe.cert else None
    return v.verdict.state.value, v.verdict.evidence.value, fp


def _nothing_recorded(service: Service, data: Path, store: str) -> None:
    audit = data / "remediation-audit.jsonl"  # created (empty) when checked after the "yes"
    assert not audit.exists() or audit.read_text() == ""
    assert not [b for b in service.db.baselines(store).values() if b.kind.value == "attested"]
    assert not [c for c in service.db.history(store=store) if c.reason.startswith("accepted by")]


async def test_a_certificate_witnessed_while_accept_waits_is_not_overwritten(
        lab_service: tuple[Lab, Path, Path, Service]) -> None:
    """The issue's case: F1 shown; while accept waits the peer's certificate is regenerated,
    the entry deleted and re-stored, and the running exporter witnesses F2. "yes" must not
    turn the witnessed F2 into an attested F1 (`mismatch (attested)`, then a remediation
    that deletes an entry PI stores correctly)."""
    lab, cfg, data, service = lab_service
    pi, sec = lab.pis["prime-pri"], lab.endpoints["prime-sec"]
    key = f"{sec.host}_{sec.port}"  # prime-pri's entry for prime-sec: unknown (adopted)
    f1 = sec.current.fingerprint_sha256
    f2 = ""

    async def restored_and_witnessed() -> None:
        nonlocal f2
        pi.remove_entry(key)
        await service.run_once(["prime-pri"])  # the entry left: its baseline goes
        f2 = sec.regenerate().fingerprint_sha256
        assert await pi.connect_peers(only=[key]) == {key: "stored"}  # PI stores F2
        await service.run_once(["prime-pri"])
        assert _verdict(service, "prime-pri", key) == ("match", "baseline", f2)

    rc, out = await accept_on_terminal(cfg, data, "yes", "--store", "prime-pri", "--entry", key,
                                       between=restored_and_witnessed)
    assert f"live certificate sha256 {f1}" in out  # what the operator was shown
    assert rc == 2, out
    assert f"refused: {key} on prime-pri changed after it was shown" in out
    assert "state unknown (none) -> match (baseline)" in out
    assert "baseline adopted since " in out and "-> witnessed since " in out
    assert f"live sha256 {f1[:16]}… -> {f2[:16]}…" in out
    assert "nothing recorded" in out

    await service.run_once(["prime-pri"])
    assert _verdict(service, "prime-pri", key) == ("match", "baseline", f2)
    base = service.db.baselines("prime-pri")[key]
    assert (base.kind.value, base.fingerprint_sha256) == ("witnessed", f2)
    _nothing_recorded(service, data, "prime-pri")


async def test_an_adopted_entry_turned_mismatch_while_accept_waits_refuses_all_of_them(
        lab_service: tuple[Lab, Path, Path, Service]) -> None:
    """Three unknown entries shown; prime-pri's certificate is regenerated meanwhile and the
    running exporter decides prime-sec's entry for it `mismatch (baseline)`. "yes" records
    none of the three (all or nothing: the operator confirmed a list, not a part of it)."""
    lab, cfg, data, service = lab_service
    pri = lab.endpoints["prime-pri"]
    key = f"{pri.host}_{pri.port}"  # prime-sec's entry for prime-pri
    f1 = pri.current.fingerprint_sha256
    f2 = ""

    async def regenerated_and_decided() -> None:
        nonlocal f2
        f2 = pri.regenerate().fingerprint_sha256  # PI still stores F1
        await service.run_once(["prime-sec"])
        assert _verdict(service, "prime-sec", key) == ("mismatch", "baseline", f2)

    rc, out = await accept_on_terminal(cfg, data, "yes", "--store", "prime-sec", "--all-unknown",
                                       between=regenerated_and_decided)
    assert "About to record 3 attested baselines on prime-sec" in out
    assert rc == 2, out
    assert f"refused: {key} on prime-sec changed after it was shown" in out
    assert "state unknown (none) -> mismatch (baseline)" in out
    assert f"live sha256 {f1[:16]}… -> {f2[:16]}…" in out
    assert "baseline adopted since" not in out  # the baseline did not change: not reported
    assert out.count("changed after it was shown") == 1  # the other two are unchanged...
    assert "nothing recorded" in out  # ...and not recorded either

    await service.run_once(["prime-sec"])
    assert _verdict(service, "prime-sec", key) == ("mismatch", "baseline", f2)
    _nothing_recorded(service, data, "prime-sec")


async def test_a_certificate_regenerated_while_accept_waits_with_no_exporter_running(
        lab_service: tuple[Lab, Path, Path, Service]) -> None:
    """Nothing else wrote the database: only accept's own probe after the "yes" can see it."""
    lab, cfg, data, service = lab_service
    sec = lab.endpoints["prime-sec"]
    key = f"{sec.host}_{sec.port}"
    f1 = sec.current.fingerprint_sha256
    f2 = ""

    async def regenerated() -> None:
        nonlocal f2
        f2 = sec.regenerate().fingerprint_sha256

    rc, out = await accept_on_terminal(cfg, data, "yes", "--store", "prime-pri", "--entry", key,
                                       between=regenerated)
    assert rc == 2, out
    assert f"live sha256 {f1[:16]}… -> {f2[:16]}…" in out and "state " not in out
    _nothing_recorded(service, data, "prime-pri")


# ---- the audit log and the operator --------------------------------------------------------

HOSTILE = "HA page ok\u2028forged: line\u202eevil\u009b2Jdone"


async def _accept_yes(cfg: Path, data: Path, *args: str, reason: str = REASON,
                      env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = await asyncio.create_subprocess_exec(
        *EXPORTER, "accept", "--config.file", str(cfg), "--storage.path", str(data),
        "--log.level", "warn", "--reason", reason, "--yes", *args, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return subprocess.CompletedProcess([], proc.returncode or 0, out.decode(), err.decode())


async def test_the_audit_log_is_ascii_escaped_json_lines(
        lab_service: tuple[Lab, Path, Path, Service]) -> None:
    """A reason with a line separator, a bidi override and a C1 CSI: none of them reaches
    the file raw (an editor or `tail` would act on them); each line decodes to the reason."""
    _, cfg, data, _ = lab_service
    got = await _accept_yes(cfg, data, "--store", "prime-sec", "--all-unknown", reason=HOSTILE)
    assert got.returncode == 0, got.stdout + got.stderr
    raw = (data / "remediation-audit.jsonl").read_bytes()
    assert raw.isascii(), raw
    lines = raw.decode().splitlines()
    assert len(lines) == 3 and all(json.loads(ln)["reason"] == HOSTILE for ln in lines)
    assert "\\u2028" in lines[0] and "\\u202e" in lines[0] and "\\u009b" in lines[0]


async def test_an_audit_log_that_is_a_symbolic_link_is_refused_and_nothing_recorded(
        lab_service: tuple[Lab, Path, Path, Service], tmp_path: Path) -> None:
    _, cfg, data, service = lab_service
    target = tmp_path / "elsewhere.txt"
    target.write_text("not yours\n")
    data.mkdir(exist_ok=True)
    (data / "remediation-audit.jsonl").symlink_to(target)
    got = await _accept_yes(cfg, data, "--store", "prime-sec", "--all-unknown")
    assert got.returncode == 2, got.stdout + got.stderr
    assert "is a symbolic link" in got.stderr and "nothing recorded" in got.stderr
    assert "Traceback" not in got.stderr
    assert target.read_text() == "not yours\n"
    assert (data / "remediation-audit.jsonl").is_symlink()
    assert not [b for b in service.db.baselines("prime-sec").values() if b.kind.value == "attested"]


async def test_the_operator_is_the_real_uid_s_account_not_user_or_logname(
        lab_service: tuple[Lab, Path, Path, Service]) -> None:
    """`USER=alice LOGNAME=alice accept --yes` run by root records root; sudo's SUDO_USER is
    kept as "via sudo by", never as the operator."""
    _, cfg, data, service = lab_service
    me = pwd.getpwuid(os.getuid()).pw_name
    env = {**os.environ, "USER": "alice", "LOGNAME": "alice", "SUDO_USER": "bob"}
    got = await _accept_yes(cfg, data, "--store", "prime-sec", "--all-unknown", env=env)
    assert got.returncode == 0, got.stdout + got.stderr
    assert f"(operator {me} (via sudo by bob), reason" in got.stdout
    recs = [json.loads(ln) for ln in (data / "remediation-audit.jsonl").read_text().splitlines()]
    assert len(recs) == 3
    assert {(r["operator"], r["via_sudo_by"]) for r in recs} == {(me, "bob")}
    assert {a.operator for a in service.db.attestations("prime-sec").values()} == {me}
    reasons = [c.reason for c in service.db.history(store="prime-sec")]
    assert reasons and all(r.startswith(f"accepted by {me}: ") for r in reasons), reasons
    assert "alice" not in got.stdout + json.dumps(recs)
