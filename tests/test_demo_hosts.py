"""The demo's automation host (pilab/hosts.py): three SSH targets and the known_hosts file that
trusts them, on real sshd processes and, where a machine has none, on asyncssh servers.

For each backend: Debian's `ssh` (batch mode, this file only, one key type) says what the scene
promises (web1's ed25519 key changed, db1 no longer offers ecdsa, git's hashed line accepted);
the exporter's own pieces (the host-key probe, the known_hosts core, its verdict) agree, with
git found through the scene's `resolve:` names; and the stale line the verdict proves is removed
by `remediate`'s apply exactly as `ssh-keygen -R` removes it."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from exporter.probes.ssh_hostkey import fetch_host_key
from exporter.remediate.hostkey_apply import remove_stale_lines
from exporter.remediate.hostkey_plan import FilePlan, StaleLine
from exporter.sources.known_hosts import entries, verdict
from pilab.hosts import ASYNCSSH_BACKEND, SSHD, SSHD_BACKEND, AutomationHosts, start_automation_hosts
from tests.kit.sshd import ssh_verdict

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("ssh") is None, reason="needs Debian's ssh as the oracle"),
]

BACKENDS = [
    pytest.param(SSHD_BACKEND, marks=pytest.mark.skipif(not SSHD.exists(), reason="no /usr/sbin/sshd")),
    ASYNCSSH_BACKEND,
]
# (host, key type) -> what ssh says, and the exporter's verdict.
EXPECTED = {
    ("web1", "ssh-ed25519"): ("changed", "mismatch"),
    ("db1", "ssh-ed25519"): ("accepted", "match"),
    ("db1", "ecdsa-sha2-nistp256"): ("no-common-type", "unknown"),
    ("git", "ssh-ed25519"): ("accepted", "match"),
}


async def judged(lab: AutomationHosts) -> dict[tuple[str, str], verdict.Verdict]:
    """What the exporter's pieces decide: the file's entries (with the scene's resolve names),
    each host's offers from the host-key probe, the known_hosts verdict."""
    store = entries.load(lab.known_hosts_file.read_bytes(), tuple(lab.resolve))
    by_lookup = {h.lookup: name for name, h in lab.hosts.items()}
    out = {}
    for lookup, name in by_lookup.items():
        h = lab.hosts[name]
        group = store.for_lookup(lookup)
        offers = {}
        for e in group:
            got = await fetch_host_key(h.host, h.port, e.key_type, 5.0)
            if got.blob is not None:
                offers[e.key_type] = verdict.Offer(got.blob)
            elif got.offered:
                offers[e.key_type] = verdict.NOT_OFFERED
            else:
                offers[e.key_type] = verdict.NO_KEX
        for key, v in verdict.judge(group, offers, int(time.time())).items():
            typ = key.rsplit(" ", 1)[1]
            out[(name, typ)] = v
    return out


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_scene_is_what_ssh_and_the_exporter_say(tmp_path: Path, backend: str) -> None:
    lab = await start_automation_hosts(tmp_path, fixed_ports=False, backend=backend)
    try:
        assert lab.backend == backend
        said = {}
        for name, typ in EXPECTED:
            h = lab.hosts[name]
            said[(name, typ)] = (await asyncio.to_thread(
                ssh_verdict, lab.known_hosts_file, h.host, h.port, typ))[0]
        ours = await judged(lab)
        assert {k: (said[k], ours[k].state) for k in EXPECTED} == EXPECTED
        assert all(v.evidence == "stored" for v in ours.values())
    finally:
        await lab.stop()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_remediate_removes_the_demo_stale_line_as_ssh_keygen_R(tmp_path: Path, backend: str) -> None:
    lab = await start_automation_hosts(tmp_path / "lab", fixed_ports=False, backend=backend)
    try:
        ours = await judged(lab)
    finally:
        await lab.stop()
    store = entries.load(lab.known_hosts_file.read_bytes(), tuple(lab.resolve))
    web1 = lab.hosts["web1"]
    (entry,) = [e for e in store.entries if e.key == f"{web1.lookup} ssh-ed25519"]
    assert ours[("web1", "ssh-ed25519")].state == "mismatch"
    (line,) = entry.lines
    stale = StaleLine("automation", entry.key, line.number, web1.host, web1.port, entry.key_type,
                      hashlib.sha256(line.key.blob).hexdigest(), ours[("web1", "ssh-ed25519")].live,
                      ours[("web1", "ssh-ed25519")].reason)
    theirs = tmp_path / "theirs"
    shutil.copy(lab.known_hosts_file, theirs)
    subprocess.run(["ssh-keygen", "-R", web1.lookup, "-f", str(theirs)], check=True,
                   capture_output=True)
    before = lab.known_hosts_file.read_bytes()
    assert remove_stale_lines(FilePlan("automation", str(lab.known_hosts_file), (stale,))).ok
    assert lab.known_hosts_file.read_bytes() == theirs.read_bytes()
    assert Path(f"{lab.known_hosts_file}.old").read_bytes() == before
    assert stale.keyscan == f"ssh-keyscan -t ssh-ed25519 -p {web1.port} 127.0.0.41"


async def test_demo_prepare_runs_the_automation_host_and_stops_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`demo` starts the automation host next to the PI scene and names its backend; the config
    gets the store (kind known_hosts, its file, the resolve names) once this build reads such
    stores, and not before (the config would not load)."""
    from exporter.cli import demo
    from exporter.config.load import load_config

    lab, cfg = await demo.prepare(tmp_path, fixed_ports=False, automation=True)
    try:
        # The written config loads and names the automation host's file as a known_hosts store.
        names = [s.name for s in load_config(cfg).stores]
        assert "automation" in names
        hosts = lab.ssh_hosts
        assert hosts is not None and hosts.known_hosts_file.exists()
        demo._say_automation(hosts)
        said = capsys.readouterr().out
        assert ("real sshd processes" if SSHD.exists() else "asyncssh servers") in said
        assert f"SSH web1: {hosts.hosts['web1'].lookup}" in said
        stores = demo.demo_config(lab)["stores"]
        assert stores[-1] == {"name": "automation", "kind": "known_hosts",
                              "path": str(hosts.known_hosts_file), "resolve": hosts.resolve}
    finally:
        await lab.stop()
    procs = [h.process for h in hosts.hosts.values() if h.process is not None]
    assert all(p.poll() is not None for p in procs)  # no sshd left behind
    for h in hosts.hosts.values():
        assert await asyncio.to_thread(
            lambda h=h: subprocess.run(["ssh-keyscan", "-T", "2", "-p", str(h.port), h.host],
                                       capture_output=True, text=True).stdout) == ""
