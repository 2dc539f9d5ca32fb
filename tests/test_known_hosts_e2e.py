"""The oracle test of the known_hosts store: `check --output json` against real sshd processes
must agree with Debian's `ssh` on every entry.

The lab (tests/kit/sshd.py) holds every case of issue 22: a host with every key type, a rotated
key, a removed key type (and a host whose every stored type is gone), a hashed line, a pattern
line, a host certificate from a test CA made with `ssh-keygen -s`, one from another CA, an
expired one, a revoked key, a legacy RHEL 6-era sshd (group14-sha1, ssh-rsa) and a refused port.
One known_hosts file names them all; the exporter watches it as a `kind: known_hosts` store. For
each entry `ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=FILE
-o HostKeyAlgorithms=TYPE` (tests.kit.sshd.ssh_verdict) says what a client pinned to the entry's
type does; the exporter's verdict must be the one that answer means:

    match       <- accepted (the host key check passed; login is then refused)
    mismatch    <- changed (HAS CHANGED), revoked, failed (Host key verification failed); when
                   the host offers none of the stored types: no-common-type (a plain entry's
                   type is gone) or failed (a certificate from another CA, no plain line)
    unknown     <- no-common-type while another entry of the host matches (a stale line)
    unreachable <- unreachable

The transcript (entry, check's verdict and reason, ssh's answer) is printed (-s shows it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.kit.sshd import CERT, KEY_TYPES, SshdKit, ssh_verdict

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not shutil.which("ssh"), reason="needs openssh-client (scripts/test installs it)"),
]

EXPORTER = [sys.executable, "-m", "exporter"]
LEGACY_SSH = ("-o", "KexAlgorithms=+diffie-hellman-group14-sha1,diffie-hellman-group-exchange-sha1")
NONE_OFFERED = "offers none of the stored types"


def _hash(name: str, workdir: Path) -> str:
    """A `|1|salt|hash` host field made by `ssh-keygen -H` (the oracle, not our host_hash)."""
    f = workdir / f"hash-{abs(hash(name))}"
    f.write_text(f"{name} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n")
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(f)], check=True, capture_output=True, timeout=30)
    return f.read_text().split()[0]


def _lab(sshd: SshdKit, workdir: Path) -> tuple[list[str], dict[str, tuple[str, int, str, tuple[str, ...]]],
                                                  tuple[str, ...]]:
    """(known_hosts lines, entry key -> (host, port, key type ssh is pinned to, ssh options),
    resolve list)."""
    keys = sshd.keys
    lines: list[str] = ["# automation host known_hosts (test lab)", ""]
    oracle: dict[str, tuple[str, int, str, tuple[str, ...]]] = {}

    def plain(server_host: str, port: int, key_type: str, public: str, written: str | None = None,
              options: tuple[str, ...] = ()) -> None:
        lines.append(f"{written or server_host} {public}")
        oracle[f"{server_host} {key_type}"] = ("127.0.0.1", port, key_type, options)

    every = sshd.every_type()
    for t in KEY_TYPES:
        plain(every.known_hosts_host, every.port, t, every.key(t).public)
    rotated = sshd.rotated()
    plain(rotated.known_hosts_host, rotated.port, "ssh-ed25519", rotated.stale[0].public)
    removed = sshd.removed_type()
    plain(removed.known_hosts_host, removed.port, "ssh-ed25519", removed.key("ssh-ed25519").public)
    plain(removed.known_hosts_host, removed.port, "ecdsa-sha2-nistp256", removed.stale[0].public)
    gone = sshd.start(("ssh-ed25519",), name="all-gone")  # its file holds only a type it dropped
    plain(gone.known_hosts_host, gone.port, "ecdsa-sha2-nistp384",
          keys.key("ecdsa-sha2-nistp384", "all-gone").public)
    hashed = sshd.start(("ssh-ed25519",), name="hashed")
    plain(hashed.known_hosts_host, hashed.port, "ssh-ed25519", hashed.key("ssh-ed25519").public,
          written=_hash(hashed.known_hosts_host, workdir))
    pattern = sshd.start(("ecdsa-sha2-nistp256",), name="pattern")
    plain(pattern.known_hosts_host, pattern.port, "ecdsa-sha2-nistp256",
          pattern.key("ecdsa-sha2-nistp256").public, written=f"[127.0.0.?]:{pattern.port},!bad.example")
    for name, server in (("ca", sshd.certified()), ("other-ca", sshd.certified("other-ca")),
                         ("expired", sshd.certified(validity="20200101:20200102"))):
        lines.append(f"@cert-authority {server.known_hosts_host} {keys.ca('test-ca').public}")
        oracle[f"@cert-authority {server.known_hosts_host} ssh-ed25519"] = (
            "127.0.0.1", server.port, "ssh-ed25519" + CERT, ())
        del name
    revoked = sshd.start(("ssh-ed25519",), name="revoked")
    plain(revoked.known_hosts_host, revoked.port, "ssh-ed25519", revoked.key("ssh-ed25519").public)
    lines.append(f"@revoked * {revoked.key('ssh-ed25519').public}")
    legacy = sshd.legacy()
    plain(legacy.known_hosts_host, legacy.port, "ssh-rsa", legacy.key("ssh-rsa").public, options=LEGACY_SSH)
    refused = sshd.unreachable()
    plain(f"[127.0.0.1]:{refused}", refused, "ssh-ed25519", every.key("ssh-ed25519").public)
    # counted, never probed: a hashed line and a pattern that no resolve name matches
    lines.append(f"{_hash('nobody.example', workdir)} {every.key('ssh-ed25519').public}")
    lines.append(f"*.unlisted.example {every.key('ssh-ed25519').public}")
    lines.append("this line does not parse")
    resolve = (hashed.known_hosts_host, pattern.known_hosts_host, "[127.0.0.1]:1")
    return lines, oracle, resolve


def _agrees(state: str, reason: str, ssh: str) -> bool:
    if state == "mismatch" and NONE_OFFERED in reason:
        return ssh in {"no-common-type", "failed"}
    return ssh in {"match": {"accepted"}, "mismatch": {"changed", "revoked", "failed"},
                   "unknown": {"no-common-type"}, "unreachable": {"unreachable"}}[state]


def test_check_agrees_with_openssh_on_every_entry(sshd: SshdKit, tmp_path: Path) -> None:
    lines, oracle, resolve = _lab(sshd, tmp_path)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("\n".join(lines) + "\n")
    cfg = tmp_path / "c.yml"
    cfg.write_text(yaml.safe_dump({"stores": [{
        "name": "automation", "kind": "known_hosts", "path": str(known_hosts),
        "resolve": list(resolve), "probe_timeout": "5s"}]}))
    done = subprocess.run([*EXPORTER, "check", "--config.file", str(cfg), "--storage.path",
                           str(tmp_path / "d"), "--output", "json"],
                          capture_output=True, text=True, timeout=120)
    rows = {r["entry"]: r for r in json.loads(done.stdout)}
    assert set(rows) == set(oracle), done.stderr
    transcript = []
    for key, (host, port, key_type, options) in oracle.items():
        said, _ = ssh_verdict(known_hosts, host, port, key_type, options)
        r = rows[key]
        assert r["evidence"] == "stored"
        transcript.append((key, r["state"], r["reason"], said, _agrees(r["state"], r["reason"], said)))
    width = max(len(t[0]) for t in transcript)
    print("\n" + "\n".join(f"{k:<{width}}  {s:<11} {said:<14} {'ok' if ok else 'DISAGREE'}  {why}"
                           for k, s, why, said, ok in transcript))
    assert all(t[4] for t in transcript), [t for t in transcript if not t[4]]
    # the rows name the key as ssh-keygen -lf prints it, and the line that holds it
    every = f"[127.0.0.1]:{sshd.running[0].port}"
    row = rows[f"{every} ssh-ed25519"]
    assert row["stored_subject"] == sshd.running[0].key("ssh-ed25519").fingerprint()
    assert row["live_subject"] == row["stored_subject"] and row["key_type"] == "ssh-ed25519"
    assert lines[row["line"] - 1].startswith(f"{every} ssh-ed25519 ")
    assert len(row["stored_fingerprint_sha256"]) == 64
    # lines no verdict covers are shown with their numbers: two unresolved, one unparsed
    n = len(lines)
    assert f"unresolved, not probed: line {n - 2}: |1|" in done.stderr
    assert f"unresolved, not probed: line {n - 1}: *.unlisted.example ssh-ed25519" in done.stderr
    assert f"line does not parse: line {n}: this line does not parse" in done.stderr
    states = {t[0]: t[1] for t in transcript}
    # every verdict occurs: the lab is not all one case
    assert set(states.values()) == {"match", "mismatch", "unknown", "unreachable"}
    assert done.returncode == 1  # mismatches: check's exit code says so
