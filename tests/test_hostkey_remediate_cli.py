"""`prime-tofu-exporter remediate` on the demo's automation host (a `kind: known_hosts` store,
real sshd where the machine has it): the plan names web1's stale line with both fingerprints and
the ssh-keyscan command; without a terminal and without --yes nothing is removed; --apply --yes
removes exactly what `ssh-keygen -R` removes, leaves FILE.old and one audit line; the next plan
has nothing stale. Runs once this build reads known_hosts stores (the kh branch's source)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.cli.demo import prepare

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs Debian's ssh-keygen"),
]


def remediate(cfg: Path, data: Path, *more: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", "remediate", "--config.file", str(cfg),
         "--storage.path", str(data), "--store", "automation", "--log.level", "error", *more],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)


async def test_remediate_a_known_hosts_store(tmp_path: Path) -> None:
    lab, cfg = await prepare(tmp_path / "lab", fixed_ports=False, automation=True)
    try:
        hosts = lab.ssh_hosts
        assert hosts is not None
        kh, web1, data = hosts.known_hosts_file, hosts.hosts["web1"], tmp_path / "data"
        before = kh.read_bytes()

        plan = remediate(cfg, data)
        assert plan.returncode == 0, plan.stderr
        assert f"line 2: 127.0.0.41 port {web1.port} ssh-ed25519" in plan.stdout
        assert f"ssh-keyscan -t ssh-ed25519 -p {web1.port} 127.0.0.41" in plan.stdout
        assert "out of band" in plan.stdout
        assert plan.stdout.count("stored SHA256:") == 1 and "live   SHA256:" in plan.stdout

        refused = remediate(cfg, data, "--apply")  # no terminal, no --yes
        assert refused.returncode == 2 and "refusing" in refused.stderr
        assert kh.read_bytes() == before

        theirs = tmp_path / "theirs"
        theirs.write_bytes(before)
        subprocess.run(["ssh-keygen", "-R", web1.lookup, "-f", str(theirs)], check=True,
                       capture_output=True)
        done = remediate(cfg, data, "--apply", "--yes", "--reason", "web1 reinstalled (INC-7)")
        assert done.returncode == 0, done.stdout + done.stderr
        assert kh.read_bytes() == theirs.read_bytes()
        assert Path(f"{kh}.old").read_bytes() == before
        (record,) = [json.loads(x) for x in (data / "remediation-audit.jsonl").read_text().splitlines()]
        assert (record["line"], record["result"]) == (2, "removed")
        assert record["reason"] == "web1 reinstalled (INC-7)"

        after = remediate(cfg, data)
        assert "no stale host key line" in after.stdout
    finally:
        await lab.stop()
