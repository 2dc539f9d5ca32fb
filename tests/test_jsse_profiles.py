"""The live certificate is the one PI's Java client gets, on servers holding two certificates.

Dual-certificate (RSA and ECDSA) nginx servers choose one by the client's offer. For every
server variant (server- or client-preferred order; RSA GCM, CBC-SHA384 or DHE suites first;
TLS 1.2 only or 1.2 and 1.3; one more that forces a HelloRetryRequest) and every client
profile, a real JVM (Debian's OpenJDK, running tests/jsse/LeafFingerprint.java with that
profile's settings) and the exporter's probe must read the same leaf. `jsse8` is emulated
on the JVM with -Djdk.tls.client.protocols=TLSv1.2 (Java 8 offers TLS 1.2 only by default).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from exporter.probes import jsse
from exporter.probes.tls import probe
from pilab.pki import make_cert
from tests.kit.lab import free_port

JAVA_CLIENT = Path(__file__).parent / "jsse" / "LeafFingerprint.java"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
# A JVM option per profile: the JSSE defaults of that Java generation on this JVM.
JVM_OPTIONS = {"jsse8": ["-Djdk.tls.client.protocols=TLSv1.2"], "jsse11": []}

# Server preference lists that put RSA first, so that a client whose offer differs from
# Java's (another suite list, no DHE, no SHA-384 CBC, TLS 1.2 only) is served the other key.
FIRST = {
    "gcm": "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:"
           "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256",
    "cbc": "ECDHE-RSA-AES256-SHA384:ECDHE-ECDSA-AES256-SHA384:ECDHE-RSA-AES128-SHA256:"
           "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384",
    "dhe": "DHE-RSA-AES256-GCM-SHA384:DHE-RSA-AES128-GCM-SHA256:"
           "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384",
}
PROTOCOLS = {"tls12": "TLSv1.2", "tls13": "TLSv1.2 TLSv1.3"}


@dataclass(frozen=True)
class Server:
    name: str
    port: int
    prefer_server: bool
    first: str
    protocols: str
    curve: str = "auto"


def _variants() -> list[tuple[bool, str, str]]:
    return [(p, f, v) for p in (True, False) for f in FIRST for v in PROTOCOLS]


def _nginx_conf(tmp: Path, servers: list[Server]) -> str:
    blocks = "".join(f"""
    server {{
        listen 127.0.0.1:{s.port} ssl;
        ssl_certificate {tmp}/rsa.pem;      ssl_certificate_key {tmp}/rsa.key;
        ssl_certificate {tmp}/ecdsa.pem;    ssl_certificate_key {tmp}/ecdsa.key;
        ssl_dhparam {tmp}/dh.pem;
        ssl_protocols {PROTOCOLS[s.protocols]};
        ssl_ciphers {FIRST[s.first]};
        ssl_prefer_server_ciphers {"on" if s.prefer_server else "off"};
        ssl_ecdh_curve {s.curve};
        return 204;
    }}""" for s in servers)
    return f"""
daemon off;
master_process on;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi; uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
    {blocks}
}}
"""


def _ffdhe2048(path: Path) -> None:
    """RFC 7919 group parameters for DHE (nginx offers no DHE suite without them)."""
    subprocess.run(["openssl", "genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt",
                    "group:ffdhe2048", "-out", str(path)], check=True, capture_output=True)


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[Server], dict[str, str]]]:
    if not os.path.exists(NGINX):
        pytest.fail("nginx missing: scripts/test installs it (Debian package nginx)")
    tmp = tmp_path_factory.mktemp("nginx")
    fingerprints = {}
    for kind in ("rsa", "ecdsa"):
        bundle = make_cert([("CN", f"dual-{kind}")], key_type="rsa" if kind == "rsa" else "ec")
        (tmp / f"{kind}.pem").write_bytes(bundle.cert_pem)
        (tmp / f"{kind}.key").write_bytes(bundle.key_pem)
        fingerprints[hashlib.sha256(bundle.der).hexdigest()] = kind.upper()
    _ffdhe2048(tmp / "dh.pem")
    servers = [Server(f"{'server' if p else 'client'}-pref {f} {v}", free_port(), p, f, v)
               for p, f, v in _variants()]
    # Only P-384: no key share Java (X25519, P-256) or the exporter sends fits, so TLS 1.3
    # starts with a HelloRetryRequest, which the fast path must hand over, not wait on.
    servers.append(Server("server-pref gcm tls13 P-384", free_port(), True, "gcm", "tls13", "secp384r1"))
    (tmp / "nginx.conf").write_text(_nginx_conf(tmp, servers))
    proc = subprocess.Popen([NGINX, "-p", str(tmp), "-c", str(tmp / "nginx.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_listening(proc, servers, tmp)
        yield servers, fingerprints
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)  # graceful stop: the worker exits too
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_listening(proc: subprocess.Popen[bytes], servers: list[Server], tmp: Path) -> None:
    import socket

    deadline = time.monotonic() + 20
    for s in servers:
        while True:
            if proc.poll() is not None:
                log = (tmp / "error.log").read_text() if (tmp / "error.log").exists() else ""
                pytest.fail(f"nginx exited {proc.returncode}: {log[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", s.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"nginx not listening on {s.port}")
                time.sleep(0.05)


def _jvm_leaves(profile: str, servers: list[Server]) -> dict[int, str]:
    """Port -> the leaf's SHA-256 (or 'error ...') as a real JVM with the profile's settings
    sees it: one JVM run for all servers (a JVM start costs about a second)."""
    java = shutil.which("java")
    if java is None:
        pytest.fail("java missing: scripts/test installs openjdk-17-jdk-headless")
    out = subprocess.run(
        [java, *JVM_OPTIONS[profile], str(JAVA_CLIENT), *(str(s.port) for s in servers)],
        check=True, capture_output=True, text=True, timeout=90,
    ).stdout
    leaves = {}
    for line in out.splitlines():
        port, rest = line.split(" ", 1)
        leaves[int(port)] = rest
    return leaves


async def _exporter_leaves(profile: str, servers: list[Server]) -> dict[int, str]:
    results = await asyncio.gather(*(probe(f"127.0.0.1:{s.port}", 10, profile=profile)
                                     for s in servers))
    return {s.port: r.cert.fingerprint_sha256 if r.cert else f"error {r.error}"
            for s, r in zip(servers, results, strict=True)}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("profile", list(jsse.PROFILES))
async def test_exporter_reads_the_certificate_java_gets(
    profile: str, nginx: tuple[list[Server], dict[str, str]]
) -> None:
    servers, kinds = nginx
    java = await asyncio.to_thread(_jvm_leaves, profile, servers)
    ours = await _exporter_leaves(profile, servers)
    rows, differ = [], []
    for s in servers:
        jvm_fp, jvm_proto, jvm_suite = [*java[s.port].split(" "), "", ""][:3]
        got = ours[s.port]
        same = jvm_fp == got
        rows.append(f"{profile:7} {s.name:28} java {kinds.get(jvm_fp, jvm_fp):5} {jvm_proto:7} "
                    f"{jvm_suite:40} exporter {kinds.get(got, got):5} {'equal' if same else 'DIFFERENT'}")
        if not same:
            differ.append(s.name)
    print("\n" + "\n".join(rows))
    assert all(java[s.port].split(" ")[0] in kinds for s in servers), java  # the JVM connected
    assert not differ, f"{profile}: exporter and JVM read different certificates on {differ}"
    # The variants discriminate: each profile meets both keys across the servers.
    assert {kinds[ours[s.port]] for s in servers} == {"RSA", "ECDSA"}
