"""Debian's `ssh` against a real `sshd` as the oracle for the known_hosts verdicts.

One sshd on loopback (tests/kit/sshd.py) holds an Ed25519 key with a host certificate from a test
CA and an ECDSA key (no RSA key: a type it does not offer). For each known_hosts file below,
`ssh` (batch mode, strict checking, this file only, HostKeyAlias=web1.example.com) is run pinned
to each entry's type and
once with the default algorithms; `verdict.judge` and `client.default_client`, given what the
sshd offers, must say the same. sshd accepts no authentication: ssh stops at "Permission denied"
once the host key is accepted, and `-v` says which line accepted it.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from exporter.sources.known_hosts import client, entries, match, verdict
from exporter.sources.known_hosts.parse import CA_MARKER
from tests.kit.sshd import SSHD, KeyStore, SshdKit

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (shutil.which("ssh") and SSHD.exists()),
                       reason="needs openssh-client and openssh-server"),
]

HOST = "web1.example.com"
CERT_ALGS = ",".join(a for a in client.DEFAULT_ALGORITHMS if "-cert-" in a)
PINNED = {"ssh-ed25519": "ssh-ed25519", "ecdsa-sha2-nistp256": "ecdsa-sha2-nistp256",
          "ssh-rsa": "rsa-sha2-512"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """(kit, port, `TYPE BASE64` by name): one sshd (tests/kit/sshd.py) with an Ed25519 key, its
    certificate from a CA for HOST, and an ECDSA key; the other keys it never presents."""
    store = KeyStore(tmp_path_factory.getbasetemp() / "sshd-keys")
    kit = SshdKit(store, tmp_path_factory.mktemp("sshd"))
    h_ed = store.key("ssh-ed25519", "web1")
    cert = store.certify(h_ed, "web1", principals=(HOST,))
    server = kit.start(("ssh-ed25519", "ecdsa-sha2-nistp256"), name="web1", certs=(cert,))
    try:
        pubs = {"h_ed": h_ed.public, "h_ec": server.key("ecdsa-sha2-nistp256").public,
                "ca": store.ca("web1").public, "other_ed": store.key("ssh-ed25519", "web1-other").public,
                "other_ca": store.ca("web1-other").public, "rsa": store.key("ssh-rsa", "web1-absent").public,
                "h_ed-cert": " ".join(cert.path.read_text().split()[:2])}
        yield kit, server.port, pubs
    finally:
        kit.stop_all()


def ssh(known: Path, port: int, algorithms: str | None = None) -> str:
    args = ["ssh", "-F", "/dev/null", "-v", "-p", str(port), "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", f"HostKeyAlias={HOST}", "-o", "IdentityAgent=none",
            "-o", "PubkeyAuthentication=no", "-o", "ConnectTimeout=5"]
    if algorithms:
        args += ["-o", f"HostKeyAlgorithms={algorithms}"]
    return subprocess.run([*args, "127.0.0.1", "true"], capture_output=True, text=True, timeout=30).stderr


def accepted_line(out: str) -> tuple[str, int] | None:
    """('key' or 'CA key', line) of the known_hosts line ssh accepted, or None."""
    if "Permission denied" not in out:
        return None
    m = re.search(r"Found (key|CA key) in \S+:(\d+)", out)
    assert m, out
    return m.group(1), int(m.group(2))


def offers(pubs: dict[str, str]) -> dict[str, verdict.Offer]:
    def blob(name: str) -> bytes:
        return base64.b64decode(pubs[name].split()[1])
    return {"ssh-ed25519": verdict.Offer(blob("h_ed")), "ecdsa-sha2-nistp256": verdict.Offer(blob("h_ec")),
            "ssh-ed25519-cert-v01@openssh.com": verdict.Offer(blob("h_ed-cert"), ca_verified=True)}


CASES = {
    "same key": ["web1.example.com {h_ed}"],
    "changed key": ["web1.example.com {other_ed}"],
    "stale type": ["web1.example.com {h_ed}", "web1.example.com {rsa}"],
    "none of the stored types": ["web1.example.com {rsa}"],
    "preferred type changed, other matches": ["web1.example.com {other_ed}", "web1.example.com {h_ec}"],
    "CA": ["@cert-authority *.example.com {ca}"],
    "other CA, plain key": ["@cert-authority *.example.com {other_ca}", "web1.example.com {h_ed}"],
    "revoked CA": ["@cert-authority *.example.com {ca}", "@revoked * {ca}", "web1.example.com {h_ed}"],
    "revoked key": ["@revoked * {h_ed}", "web1.example.com {h_ed}", "web1.example.com {h_ec}"],
    "hashed": ["{hashed} {h_ec}"],
    "pattern with negation": ["*.example.com,!db.example.com {h_ed}", "!web1.example.com,*.com {h_ec}"],
}


@pytest.mark.parametrize("case", list(CASES))
def test_ssh_agrees_with_the_verdict_of_every_entry_and_the_default_client(lab, case, tmp_path):
    _, port, pubs = lab
    text = "\n".join(CASES[case]).format(hashed=match.host_hash(HOST, bytes(range(20))), **pubs) + "\n"
    known = tmp_path / "known_hosts"
    known.write_text(text)
    host_entries = entries.load(text, (HOST,)).for_lookup(HOST)
    offered = offers(pubs)
    verdicts = verdict.judge(host_entries, offered, int(time.time()))
    assert verdicts, "the case names the host"
    default = ssh(known, port)
    default_ok = accepted_line(default) is not None
    for entry in host_entries:
        if not entry.probed:
            continue
        v = verdicts[entry.key]
        out = ssh(known, port, CERT_ALGS if entry.marker == CA_MARKER else PINNED[entry.key_type])
        took = accepted_line(out)
        by_this_entry = took is not None and took[1] in entry.line_numbers and (
            took[0] == "CA key") == (entry.marker == CA_MARKER)
        assert (v.state == "match") == by_this_entry, (entry.key, v, out[-800:])
        if entry.marker == CA_MARKER:
            if v.state == "mismatch":  # ssh trusted no certificate through this CA
                assert took is None or took[0] == "key", (entry.key, v)
        elif entry.key_type not in offered:
            # pinned to a type the host lacks, ssh cannot even exchange keys; whether that line is a
            # harmless stale one or the host is lost shows in what the default client does
            assert "no matching host key type found" in out, (entry.key, out[-400:])
            assert ("stale line" in v.reason) == default_ok, (entry.key, v, default[-400:])
            if v.state == "mismatch":
                assert "Host key verification failed" in default
        elif v.state == "mismatch":
            assert took is None and "Host key verification failed" in out, (entry.key, v, out[-400:])
    outcome = client.default_client(host_entries, offered, int(time.time()))
    assert outcome.connects == default_ok, (outcome, default[-800:])
    negotiated = re.search(r"kex: host key algorithm: (\S+)", default)
    assert negotiated and negotiated.group(1) == outcome.algorithm


def test_no_key_exchange_is_unreachable_to_both(lab, tmp_path):
    kit, _, pubs = lab
    port = kit.unreachable()
    known = tmp_path / "known_hosts"
    known.write_text(f"web1.example.com {pubs['h_ed']}\n")
    assert "Connection refused" in ssh(known, port, "ssh-ed25519")
    host_entries = entries.load(known.read_text(), (HOST,)).for_lookup(HOST)
    got = verdict.judge(host_entries, {"ssh-ed25519": verdict.NO_KEX}, int(time.time()))
    assert got["web1.example.com ssh-ed25519"].state == "unreachable"
