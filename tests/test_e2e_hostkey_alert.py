"""TofuHostKeyMismatch end to end: the demo's automation host (web1 reinstalled, on real sshd
where the machine has it), the exporter, real Prometheus with the shipped rules and real
Alertmanager delivering to a webhook. The alert arrives with the line, the stored and live
SHA256: fingerprints (as `ssh-keygen -lf` prints them), the ssh-keyscan command and the removal;
TofuCertificateMismatch (PI's deletecert) never fires for the known_hosts store. Runs once this
build reads known_hosts stores (the kh branch's source)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.kit.monitoring import MISSING, SKIP_REASON, running_stack, wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(MISSING, reason=SKIP_REASON),
]


def keygen_l(line: str, tmp: Path) -> str:
    """`ssh-keygen -lf` of one public key line: its SHA256: fingerprint."""
    pub = tmp / "one.pub"
    pub.write_text(line + "\n")
    return subprocess.run(["ssh-keygen", "-lf", str(pub)], check=True, capture_output=True,
                          text=True).stdout.split()[1]


def test_a_reinstalled_host_pages_with_the_line_fingerprints_and_keyscan(tmp_path: Path) -> None:
    with running_stack(tmp_path, automation=True) as stack:
        hosts = stack.lab.ssh_hosts
        assert hosts is not None
        web1 = hosts.hosts["web1"]
        entry = f"{web1.lookup} ssh-ed25519"
        try:
            (_, alert), *_ = wait_until(
                lambda: stack.webhook.alerts("TofuHostKeyMismatch", "firing", store="automation",
                                             entry=entry), 60, "TofuHostKeyMismatch at the webhook")
        except AssertionError:
            print(stack.process_logs())
            raise
        notes = alert["annotations"]
        stored = keygen_l(web1.line("ssh-ed25519", stale=True).split(" ", 1)[1], tmp_path)
        live = keygen_l(web1.line("ssh-ed25519").split(" ", 1)[1], tmp_path)
        assert notes["line"] == "2"
        assert notes["stored_fingerprint"] == stored and notes["live_fingerprint"] == live
        assert notes["command"] == f"ssh-keyscan -t ssh-ed25519 -p {web1.port} 127.0.0.41"
        assert notes["remove"] == (f"prime-tofu-exporter remediate --store automation --entry"
                                   f" '{entry}' --apply")
        assert "on line 2 that the host" in notes["description"]
        assert set(alert["labels"]) == {"alertname", "severity", "job", "instance", "store", "entry"}
        assert not stack.webhook.alerts("TofuCertificateMismatch", "firing", store="automation")
        assert not stack.query('ALERTS{alertname="TofuCertificateMismatch",store="automation"}')
