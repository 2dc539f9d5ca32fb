"""The known_hosts store on the seams: config, the Source, the Prober adapter, the judge, the
service and its metrics. The OpenSSH oracle over every case is tests/test_known_hosts_e2e.py.

Unit tests feed real keys (cryptography) through the pure parts; the integration tests talk to
Debian's sshd (tests/kit/sshd.py): the probe against ssh-keygen's own fingerprints, the remote
file over SFTP and over `cat`, a whole service cycle and its /metrics text.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from exporter.config.load import parse_config
from exporter.config.model import ConfigError
from exporter.core.endpoint import ANY_CERTIFICATE
from exporter.core.model import LiveCert, ProbeResult, StoreRead
from exporter.sources.known_hosts import judge
from exporter.sources.known_hosts.source import entry_endpoint, listing_of
from exporter.sources.known_hosts.verdict import NO_KEX

ED = [ed25519.Ed25519PrivateKey.generate() for _ in range(3)]


def pub(i: int) -> str:
    return ED[i].public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()


def _problems(doc: dict[str, Any], base: Path) -> list[str]:
    try:
        parse_config(doc, "t.yml", base)
    except ConfigError as e:
        return e.problems
    return []


# ---- config -------------------------------------------------------------------------------

@pytest.mark.unit
def test_a_local_known_hosts_store_needs_only_a_path(tmp_path: Path) -> None:
    (tmp_path / "kh").write_text("")
    cfg = parse_config({"stores": [{"name": "auto", "kind": "known_hosts", "path": "kh",
                                    "resolve": ["web1", "[10.0.0.5]:2222"]}]}, "t.yml", tmp_path)
    store = cfg.stores[0]
    assert (store.kind, store.path, store.resolve, store.remote) == (
        "known_hosts", str(tmp_path / "kh"), ("web1", "[10.0.0.5]:2222"), False)
    # a PI store is still the default kind, and still needs its host and credentials
    assert _problems({"stores": [{"name": "pi"}]}, tmp_path) == [
        "stores[0].host: is required",
        "stores[0]: no credentials: set password_file, password_env or private_key_file",
        "stores[0].known_hosts: is required: the exporter never trusts SSH host keys on first use"]


@pytest.mark.unit
@pytest.mark.parametrize(("store", "problem"), [
    ({"kind": "known_hosts"}, "stores[0].path: is required (the known_hosts file to watch)"),
    ({"kind": "known_hosts", "path": "missing"}, "stores[0].path: cannot read {tmp}/missing"),
    ({"kind": "ssh", "path": "kh"}, "stores[0].kind: must be one of pi | known_hosts"),
    ({"kind": "known_hosts", "path": "kh", "cli_mode": "exec"},
     "stores[0].cli_mode: applies only to kind: pi"),
    ({"kind": "known_hosts", "path": "kh", "resolve": "web1"},
     "stores[0].resolve: must be a non-empty list of host names, addresses or [host]:port"),
    ({"kind": "known_hosts", "path": "kh", "resolve": ["[web1]:22"]},
     "stores[0].resolve: item 1: write port 22 as the bare host web1, as known_hosts does"),
    ({"kind": "known_hosts", "path": "kh", "resolve": ["ok", "two words"]},
     "stores[0].resolve: item 2: must be a host name, an address or [host]:port (port 1-65535), "
     "without spaces or commas"),
    ({"kind": "known_hosts", "path": "kh", "resolve": ["[web1]:70000"]},
     "stores[0].resolve: item 1: must be a host name, an address or [host]:port (port 1-65535), "
     "without spaces or commas"),
    ({"host": "pi1", "password_env": "HOME", "known_hosts": "kh", "path": "kh"},
     "stores[0].path: applies only to kind: known_hosts"),
])
def test_known_hosts_config_errors_name_the_key(tmp_path: Path, store: dict[str, Any], problem: str) -> None:
    (tmp_path / "kh").write_text("")
    assert problem.format(tmp=tmp_path) in _problems({"stores": [{"name": "s", **store}]}, tmp_path)


@pytest.mark.unit
def test_a_remote_known_hosts_store_is_checked_like_a_pi_session(tmp_path: Path) -> None:
    problems = _problems({"stores": [{"name": "jump", "kind": "known_hosts", "host": "jump",
                                      "path": "/etc/ssh/ssh_known_hosts"}]}, tmp_path)
    assert "stores[0]: no credentials: set password_file, password_env or private_key_file" in problems
    assert any(p.startswith("stores[0].known_hosts: is required") for p in problems)
    assert not any(".path" in p for p in problems)  # the remote path is not looked for here


# ---- the Source's listing --------------------------------------------------------------------

@pytest.mark.unit
def test_listing_has_one_entry_per_host_and_type_with_line_and_key_fingerprint() -> None:
    text = "\n".join([
        "# comment",
        f"web1,10.0.0.1 {pub(0)}",
        f"[10.0.0.5]:2222 {pub(1)}",
        "web1 ssh-ed25519 !!!notbase64",
        f"*.example.com {pub(2)}",
        f"@revoked * {pub(2)}",
        f"web2 {pub(2)}",
    ]) + "\n"
    listing, capped = listing_of(text.encode(), ("db.example.com",), 3)
    keys = [e.key for e in listing.entries]
    assert keys == ["web1 ssh-ed25519", "10.0.0.1 ssh-ed25519", "[10.0.0.5]:2222 ssh-ed25519"]
    assert capped == 2  # db.example.com (the pattern) and web2; the @revoked entry is never listed
    first = listing.entries[0]
    blob = base64.b64decode(pub(0).split()[1])
    assert first.stored_fingerprint == hashlib.sha256(blob).hexdigest()
    digest = hashlib.sha256(blob).digest()
    assert first.subject_text == "SHA256:" + base64.b64encode(digest).decode().rstrip("=")
    assert (first.line, first.key_type, listing.entries[2].port) == (2, "ssh-ed25519", 2222)
    assert listing.bad_lines == ("line 4: web1 ssh-ed25519 !!!notbase64 (key is not base64)",)
    assert listing.unresolved == ()  # the * of @revoked matched db.example.com
    assert [entry_endpoint(e) for e in listing.entries] == [
        "web1:22 ssh-ed25519", "10.0.0.1:22 ssh-ed25519", "10.0.0.5:2222 ssh-ed25519"]


@pytest.mark.unit
def test_hashed_lines_and_patterns_no_resolve_name_matches_are_listed_as_unresolved() -> None:
    hashed = "|1|" + base64.b64encode(b"s" * 20).decode() + "|" + base64.b64encode(b"h" * 20).decode()
    text = f"{hashed} {pub(0)}\n*.internal {pub(1)}\n@cert-authority *.example.com {pub(2)}\n"
    listing, _ = listing_of(text.encode(), ("web1.example.com",), 100)
    assert [e.key for e in listing.entries] == ["@cert-authority web1.example.com ssh-ed25519"]
    assert [entry_endpoint(e) for e in listing.entries] == [f"web1.example.com:22 {ANY_CERTIFICATE}"]
    assert listing.unresolved == (
        f"line 1: {hashed} ssh-ed25519 (hashed host matches no name of the resolve list)",
        "line 2: *.internal ssh-ed25519 (pattern matches no name of the resolve list)")


# ---- what a probe tells the verdict ------------------------------------------------------------

def _probe(error: str | None, offered: tuple[str, ...], cert: LiveCert | None = None) -> ProbeResult:
    return ProbeResult("h:22 ssh-ed25519", cert, error, 0.01, 0.0, offered=offered)


@pytest.mark.unit
def test_a_failed_probe_is_not_offered_only_when_the_server_named_its_algorithms_without_the_type() -> None:
    assert judge.offer_of(_probe("no common host key algorithm", ("ssh-ed25519",)), "ssh-rsa") is None
    assert judge.offer_of(_probe("timeout", ("rsa-sha2-512",)), "ssh-rsa") == ("ssh-rsa", NO_KEX)
    assert judge.offer_of(_probe("connection refused", ()), "ssh-rsa") == ("ssh-rsa", NO_KEX)
    assert judge.offer_of(None, "ssh-rsa") == ("ssh-rsa", NO_KEX)
    cert_type = "ssh-ed25519-cert-v01@openssh.com"
    assert judge.offer_of(_probe("x", ("ssh-ed25519",)), ANY_CERTIFICATE) is None
    assert judge.offer_of(_probe("x", (cert_type,)), ANY_CERTIFICATE) == (cert_type, NO_KEX)
    live = LiveCert("ab", "ab", (), "SHA256:x", "", "", 0.0, 1.0, key_type=cert_type, blob=b"c")
    key_type, offer = judge.offer_of(_probe(None, (cert_type,), live), ANY_CERTIFICATE) or ("", NO_KEX)
    assert (key_type, offer.blob, offer.ca_verified) == (cert_type, b"c", True)


# ---- against Debian's sshd ----------------------------------------------------------------------

needs_ssh = pytest.mark.skipif(not shutil.which("ssh-keygen"), reason="needs openssh-client")


@pytest.mark.integration
@needs_ssh
async def test_probe_target_reports_the_key_as_ssh_keygen_prints_it(sshd) -> None:
    from exporter.probes.seam import Target
    from exporter.probes.ssh_hostkey import probe_target

    server = sshd.start(("ssh-ed25519", "ecdsa-sha2-nistp256"), name="probe")
    certified = sshd.certified()
    where = f"127.0.0.1:{server.port}"
    # the endpoint names the key type: a scheduler's other variant (a TLS profile) is not it
    got = await probe_target(Target(f"{where} ecdsa-sha2-nistp256", 5.0, "jsse8"))
    key = server.key("ecdsa-sha2-nistp256")
    assert got.cert is not None and got.error is None
    assert got.cert.subject_text == key.fingerprint()  # ssh-keygen -lf
    assert got.cert.fingerprint_sha256 == hashlib.sha256(key.blob).hexdigest()
    assert got.cert.blob == key.blob and got.endpoint == f"{where} ecdsa-sha2-nistp256"
    gone = await probe_target(Target(f"{where} ssh-rsa", 5.0, "ssh-rsa"))
    assert gone.cert is None and "ssh-ed25519" in gone.offered and "rsa-sha2-512" not in gone.offered
    cert = await probe_target(Target(f"127.0.0.1:{certified.port} certificate", 5.0, ANY_CERTIFICATE))
    assert cert.cert is not None, cert.error
    assert cert.cert.blob == certified.certs[0].blob  # the certificate whole
    assert cert.cert.subject_text == certified.certs[0].fingerprint()
    assert cert.cert.issuer_text == f"CA {sshd.keys.ca('test-ca').fingerprint()}"


@pytest.mark.integration
@needs_ssh
def test_a_certificate_whose_ca_signature_was_altered_does_not_verify(sshd) -> None:
    from exporter.probes import ssh_kex

    cert = sshd.keys.certify(sshd.keys.key("ssh-ed25519", "tamper"), "test-ca")
    blob = cert.blob
    assert ssh_kex.check_certificate(blob, cert.type).ca_fingerprint == sshd.keys.ca("test-ca").fingerprint()
    bad = blob[:-1] + bytes([blob[-1] ^ 1])  # last byte of the CA's Ed25519 signature
    with pytest.raises(ssh_kex.KexError, match="CA signature does not verify"):
        ssh_kex.check_certificate(bad, cert.type)


def _login_sshd(sshd, tmp_path: Path, sftp: bool):
    """A kit sshd one can log into as this user with a key (and with or without SFTP)."""
    client = sshd.keys.key("ssh-ed25519", "client")
    auth = tmp_path / f"authorized_keys-{sftp}"
    auth.write_text(client.pub.read_text())
    extra = ["PubkeyAuthentication yes", f"AuthorizedKeysFile {auth}", "PermitRootLogin prohibit-password"]
    if sftp:
        extra.append("Subsystem sftp internal-sftp")
    server = sshd.start(("ssh-ed25519",), name=f"login-{sftp}", extra=tuple(extra))
    known = tmp_path / f"known-{sftp}"
    known.write_text(f"[127.0.0.1]:{server.port} {server.key('ssh-ed25519').public}\n")
    return server, client, known


@pytest.mark.integration
@needs_ssh
@pytest.mark.skipif(os.geteuid() != 0, reason="the kit's sshd logs in the user running it only as root")
@pytest.mark.parametrize("sftp", [True, False], ids=["sftp", "cat"])
async def test_a_remote_file_is_read_over_ssh(sshd, tmp_path: Path, sftp: bool) -> None:
    import getpass

    from exporter.sources.known_hosts.source import KnownHostsSource

    server, client, known = _login_sshd(sshd, tmp_path, sftp)
    watched = tmp_path / "watched known_hosts"  # a space: the cat path is quoted
    watched.write_bytes(f"web1 {pub(0)}\nnot a line\n".encode())
    cfg = parse_config({"stores": [{
        "name": "jump", "kind": "known_hosts", "host": "127.0.0.1", "port": server.port,
        "username": getpass.getuser(), "private_key_file": str(client.path), "known_hosts": str(known),
        "path": str(watched)}]}, "t.yml", tmp_path).stores[0]

    async def read_once(**changes: object) -> StoreRead:
        source = KnownHostsSource(dataclasses.replace(cfg, **changes))
        try:
            return await source.read()
        finally:
            await source.close()

    read = await read_once()
    assert read.ok, read.error
    assert read.listing is not None
    assert [e.key for e in read.listing.entries] == ["web1 ssh-ed25519"]
    assert read.listing.bad_lines == ("line 2: not a line (unknown key type)",)
    failed = await read_once(path=str(tmp_path / "nope"))
    assert not failed.ok and failed.error_reason is not None
    assert failed.error_reason.value == "command" and "nope" in (failed.error or "")
    # A "file" without end is cut off at the cap (64 MiB), not buffered until the timeout.
    cut = await read_once(path="/dev/zero", command_timeout=60.0)
    assert not cut.ok and cut.error_reason is not None
    assert cut.error_reason.value == "parse" and "larger than 64 MiB" in (cut.error or "")
    log = Path(server.log).read_text()
    assert ("Starting session: subsystem 'sftp'" in log) == sftp  # which way the file came
    assert ("Starting session: command" in log) == (not sftp)


@pytest.mark.integration
@needs_ssh
async def test_service_cycle_exports_the_kind_and_the_unresolved_lines(sshd, tmp_path: Path) -> None:
    from exporter.exposition.writer import render_text
    from exporter.service.service import Service

    server = sshd.start(("ssh-ed25519",), name="svc")
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{server.port} {server.key('ssh-ed25519').public}\n"
                  f"*.nowhere {pub(0)}\n")
    config = parse_config({"stores": [{"name": "auto", "kind": "known_hosts", "path": str(kh)}]},
                          "t.yml", tmp_path)
    service = Service(config, ":memory:")
    try:
        snap = await service.run_once()
    finally:
        await service.stop()
    (view,) = snap.views
    assert (view.verdict.state.value, view.verdict.evidence.value) == ("match", "stored")
    text = render_text(snap).decode()
    assert 'tofu_store_info{kind="known_hosts",store="auto"} 1.0' in text
    assert 'tofu_store_unresolved_lines{store="auto"} 1.0' in text
    entry = f"[127.0.0.1]:{server.port} ssh-ed25519"
    assert f'tofu_certificate_evidence_info{{entry="{entry}",evidence="stored",store="auto"}} 1.0' in text
    assert "tofu_live_certificate_not_after_timestamp_seconds{" not in text  # a plain key never expires


# ---- the judge over a whole store ------------------------------------------------------------------

def _live(i: int, endpoint: str) -> ProbeResult:
    blob = base64.b64decode(pub(i).split()[1])
    fp = hashlib.sha256(blob).hexdigest()
    return ProbeResult(endpoint, LiveCert(fp, fp, (), "SHA256:x", "", "", 0.0, float("inf"),
                                          key_type="ssh-ed25519", blob=blob),
                       None, 0.01, 0.0, offered=("ssh-ed25519",))


@pytest.mark.unit
def test_a_revoked_pattern_applies_to_hosts_the_file_names_literally() -> None:
    """`@revoked * KEY` revokes KEY for every host; resolved against the resolve list only, it
    missed web1 (written literally) and check said match where ssh says REVOKED HOST KEY."""
    text = f"web1 {pub(0)}\nweb2 {pub(1)}\n@revoked * {pub(0)}\n"
    listing, _ = listing_of(text.encode(), ("db.example.com",), 100)
    eps = [entry_endpoint(e) for e in listing.entries]
    probes = {"web1:22 ssh-ed25519": _live(0, "web1:22 ssh-ed25519"),
              "web2:22 ssh-ed25519": _live(1, "web2:22 ssh-ed25519")}
    views = {v.entry.key: v.verdict for v in judge.store_views("s", listing, eps, probes, 0.0)}
    assert (views["web1 ssh-ed25519"].state.value, views["web1 ssh-ed25519"].reason) == (
        "mismatch", "the host's key is listed @revoked")
    assert views["web2 ssh-ed25519"].state.value == "match"
    assert {v.evidence.value for v in views.values()} == {"stored"}


@pytest.mark.unit
def test_an_entry_not_probed_yet_is_unreachable_with_the_reason() -> None:
    listing, _ = listing_of(f"web1 {pub(0)}\n".encode(), (), 100)
    (view,) = judge.store_views("s", listing, ["web1:22 ssh-ed25519"], {}, 0.0)
    assert (view.verdict.state.value, view.verdict.reason) == (
        "unreachable", "no key exchange: not probed yet")


@pytest.mark.integration
@needs_ssh
def test_doctor_shows_a_known_hosts_store_line_by_line(sshd, tmp_path: Path) -> None:
    """doctor on a known_hosts store: the file, its unparsed and unresolved lines, each entry's
    stored key and line and the host key probed (it died of time.gmtime(inf) on a plain key)."""
    import io

    from exporter.cli.doctor import run

    server = sshd.removed_type()
    kh = tmp_path / "known_hosts"
    kh.write_text(f"{server.known_hosts_host} {server.key('ssh-ed25519').public}\n"
                  f"{server.known_hosts_host} {server.stale[0].public}\n*.x {pub(0)}\nbad\n")
    config = parse_config({"stores": [{"name": "auto", "kind": "known_hosts", "path": str(kh)}]},
                          "t.yml", tmp_path)
    out = io.StringIO()
    assert run(config, "auto", out) == 3  # unknown left: the stale ecdsa line
    text = out.getvalue()
    assert f"store auto: known_hosts file {kh} (local)" in text
    assert "line 4: bad (truncated before key type)" in text
    assert "line 3: *.x ssh-ed25519 (pattern matches no name of the resolve list)" in text
    live = server.key("ssh-ed25519").fingerprint()
    assert f"stored key {live} (line 1)" in text and f"host key ssh-ed25519 {live}" in text
    assert "verdict: unknown (evidence stored): this key type no longer offered" in text
    # The exit line's advice fits the kind: a stale line is deleted, never pinned or accepted.
    last = text.rstrip().splitlines()[-1]
    assert last.startswith("exit 3: entries are left unknown (lines of a key type the host no longer")
    assert "pin" not in last and "accept" not in last


@pytest.mark.unit
def test_each_hashed_line_resolves_to_exactly_the_name_it_hashes() -> None:
    """The resolve walk's HMAC (keyed SHA-1 states) against match.host_hash's (hmac.new), which
    the oracle tests hold to `ssh-keygen -H`: 200 lines x 200 names, one match each."""
    from exporter.sources.known_hosts.match import host_hash

    names = [f"host{i}.example" if i % 2 else f"[10.0.0.{i}]:2222" for i in range(200)]
    text = "".join(f"{host_hash(n.lower() if n[0] != '[' else n, os.urandom(20))} {pub(0)}\n"
                   for n in names)
    listing, _ = listing_of(text.encode(), tuple(reversed(names)), 1000)
    assert [e.key for e in listing.entries] == [f"{n} ssh-ed25519" for n in names]
    assert [e.line for e in listing.entries] == list(range(1, 201))
