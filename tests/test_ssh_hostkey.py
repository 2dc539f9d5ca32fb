"""The live SSH host key probe against Debian's sshd, with ssh-keygen and ssh-keyscan as the oracle,
and against peers that lie: a replayed key exchange, junk, resets, silence, hostile text."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from exporter.core.text import visible
from exporter.probes import ssh_kex
from exporter.probes.ssh_hostkey import ASYNCSSH, EPHEMERAL_KEYS, READER, fetch_host_key
from tests.kit.sshd import CERT, KEY_TYPES, SshdKit, ssh_verdict

pytestmark = pytest.mark.integration
LOOP = "127.0.0.1"


def one_line_of_data(text: str) -> bool:
    """No control, bidi or line-separator character survives into an error (visible() ran)."""
    return re.search("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]", text) is None


async def test_every_key_type_matches_ssh_keygen_on_one_server(sshd: SshdKit) -> None:
    server = sshd.every_type()
    for key_type in KEY_TYPES:
        r = await fetch_host_key(LOOP, server.port, key_type, 5)
        assert r.error is None, (key_type, r.error)
        assert (r.fingerprint, r.blob) == (server.key(key_type).fingerprint(), server.key(key_type).blob)
        assert r.path == READER and r.kex == "curve25519-sha256"
        assert r.banner is not None and r.banner.startswith("SSH-2.0-OpenSSH_")
        # OpenSSH 8.8+ offers an RSA key as rsa-sha2-512/256 only (no SHA-1 ssh-rsa by default)
        assert {*KEY_TYPES, "rsa-sha2-512", "rsa-sha2-256"} - {"ssh-rsa"} <= set(r.offered)
    # Each check ends with our DISCONNECT: the host logs a clean goodbye, not a dropped connection.
    said = "Received disconnect from 127.0.0.1 port "
    for _ in range(100):
        if server.log.read_text().count(said) == len(KEY_TYPES):
            break
        await asyncio.sleep(0.05)
    assert server.log.read_text().count(":11: host key read [preauth]") == len(KEY_TYPES)


@pytest.mark.parametrize("key_type", KEY_TYPES)
async def test_key_equals_what_ssh_keyscan_returns(sshd: SshdKit, key_type: str) -> None:
    # One key per server: `ssh-keyscan -t ecdsa` takes whichever ECDSA key a server prefers.
    server = sshd.start((key_type,), name="every")
    r = await fetch_host_key(LOOP, server.port, key_type, 5)
    assert r.error is None
    assert f"{key_type} {base64.b64encode(r.blob or b'').decode()}" == server.keyscan(key_type)
    assert r.fingerprint == server.key(key_type).fingerprint()
    assert r.algorithm == ("rsa-sha2-512" if key_type == "ssh-rsa" else key_type)


@pytest.mark.parametrize("kex", ssh_kex.KEX_METHODS)
async def test_each_key_exchange_method_the_reader_speaks(sshd: SshdKit, kex: str) -> None:
    # A wrong exchange hash fails the signature check, so a match proves the method end to end.
    server = sshd.start(("ssh-ed25519",), name="every", kex=(kex,))
    r = await fetch_host_key(LOOP, server.port, "ssh-ed25519", 5)
    assert (r.error, r.path, r.kex) == (None, READER, kex)
    assert r.fingerprint == server.key("ssh-ed25519").fingerprint()


@pytest.mark.parametrize("algorithm", ["rsa-sha2-256", "ssh-rsa"])
async def test_rsa_key_read_with_whichever_signature_the_server_allows(sshd: SshdKit, algorithm: str) -> None:
    server = sshd.start(("ssh-rsa",), name="every", host_key_algorithms=(algorithm,))
    r = await fetch_host_key(LOOP, server.port, "ssh-rsa", 5)
    assert (r.error, r.algorithm) == (None, algorithm)
    assert r.fingerprint == server.key("ssh-rsa").fingerprint()


@pytest.mark.parametrize(("ca", "validity"), [("test-ca", "-1d:+3650d"), ("other-ca", "-1d:+3650d"),
                                              ("test-ca", "20200101:20200102")])
async def test_certificate_returned_whole_whoever_signed_it(sshd: SshdKit, ca: str, validity: str) -> None:
    """Valid, from another CA, expired: the probe returns the certificate; the CA check is the
    caller's. Its fingerprint is the certified key's, as `ssh-keygen -lf CERT` prints it."""
    server = sshd.certified(ca, validity)
    cert = server.certs[0]
    r = await fetch_host_key(LOOP, server.port, cert.type, 5)
    assert r.error is None and r.path == READER
    assert r.blob == cert.blob
    assert f"{cert.type} {base64.b64encode(cert.blob).decode()}" == server.keyscan(cert.type, cert=True)
    assert r.fingerprint == cert.fingerprint() == cert.key.fingerprint()
    plain = await fetch_host_key(LOOP, server.port, "ssh-ed25519", 5)
    assert plain.blob == cert.key.blob


async def test_rsa_certificate(sshd: SshdKit) -> None:
    server = sshd.certified(key_type="ssh-rsa")
    r = await fetch_host_key(LOOP, server.port, "ssh-rsa" + CERT, 5)
    assert (r.error, r.algorithm) == (None, "rsa-sha2-512" + CERT)
    assert r.blob == server.certs[0].blob


async def test_rotated_key_and_removed_type(sshd: SshdKit) -> None:
    rotated = sshd.rotated("ssh-ed25519")
    r = await fetch_host_key(LOOP, rotated.port, "ssh-ed25519", 5)
    assert r.fingerprint == rotated.key("ssh-ed25519").fingerprint() != rotated.stale[0].fingerprint()

    removed = sshd.removed_type(kept="ssh-ed25519", removed="ecdsa-sha2-nistp256")
    r = await fetch_host_key(LOOP, removed.port, "ecdsa-sha2-nistp256", 5)
    assert (r.fingerprint, r.blob) == (None, None)
    assert r.error == "host does not offer ecdsa-sha2-nistp256"
    assert "ssh-ed25519" in r.offered and "ecdsa-sha2-nistp256" not in r.offered


async def test_legacy_rhel6_sshd_read_by_the_reader(sshd: SshdKit) -> None:
    server = sshd.legacy()
    r = await fetch_host_key(LOOP, server.port, "ssh-rsa", 5)
    assert (r.error, r.path, r.kex, r.algorithm) == (None, READER, "diffie-hellman-group14-sha1", "ssh-rsa")
    assert r.offered == ("ssh-rsa",)
    assert r.fingerprint == server.key("ssh-rsa").fingerprint()


async def test_group_exchange_only_sshd_read_by_asyncssh(sshd: SshdKit) -> None:
    server = sshd.legacy(kex=("diffie-hellman-group-exchange-sha1",))
    r = await fetch_host_key(LOOP, server.port, "ssh-rsa", 5)
    assert (r.error, r.path) == (None, ASYNCSSH)
    assert r.fingerprint == server.key("ssh-rsa").fingerprint()
    assert r.blob == server.key("ssh-rsa").blob


async def test_dsa_key_read_by_asyncssh(sshd: SshdKit) -> None:
    """ssh-dss is beyond the reader: asyncssh reads it, with its signature checked."""
    server = sshd.start(("ssh-dss",), name="dsa", host_key_algorithms=("ssh-dss",))
    r = await fetch_host_key(LOOP, server.port, "ssh-dss", 5)
    assert (r.error, r.path) == (None, ASYNCSSH)
    assert (r.fingerprint, r.blob) == (server.key("ssh-dss").fingerprint(), server.key("ssh-dss").blob)
    assert r.offered == ("ssh-dss",)  # what the reader saw before handing over


async def test_unreachable_port(sshd: SshdKit) -> None:
    r = await fetch_host_key(LOOP, sshd.unreachable(), "ssh-ed25519", 5)
    assert (r.error, r.fingerprint, r.banner) == ("connection refused", None, None)


async def test_openssh_oracle_agrees_with_the_probe(sshd: SshdKit, tmp_path: Path) -> None:
    """`ssh` trusting a known_hosts file accepts the key the probe reads, calls a rotated key
    changed, trusts a test-CA certificate but not one from another CA or an expired one."""
    kh = tmp_path / "known_hosts"
    every, rotated = sshd.every_type(), sshd.rotated("ssh-ed25519")
    certs = {name: sshd.certified(ca, validity) for name, (ca, validity) in
             {"valid": ("test-ca", "-1d:+3650d"), "other": ("other-ca", "-1d:+3650d"),
              "expired": ("test-ca", "20200101:20200102")}.items()}
    ca = sshd.keys.ca("test-ca").public
    kh.write_text("".join(f"{every.known_hosts_host} {every.key(t).public}\n" for t in KEY_TYPES)
                  + f"{rotated.known_hosts_host} {rotated.stale[0].public}\n"
                  + f"@cert-authority [127.0.0.1]:* {ca}\n")
    for t in KEY_TYPES:
        r = await fetch_host_key(LOOP, every.port, t, 5)
        assert r.fingerprint == every.key(t).fingerprint()
        assert ssh_verdict(kh, LOOP, every.port, t)[0] == "accepted", t
    r = await fetch_host_key(LOOP, rotated.port, "ssh-ed25519", 5)
    assert r.fingerprint != rotated.stale[0].fingerprint()
    assert ssh_verdict(kh, LOOP, rotated.port, "ssh-ed25519")[0] == "changed"
    cert_type = "ssh-ed25519" + CERT
    assert {name: ssh_verdict(kh, LOOP, s.port, cert_type)[0] for name, s in certs.items()} == {
        "valid": "accepted", "other": "failed", "expired": "failed"}
    assert ssh_verdict(kh, LOOP, sshd.unreachable(), "ssh-ed25519")[0] == "unreachable"


# ---- peers that lie ------------------------------------------------------------------------

def capture(port: int, key_type: str) -> bytes:
    """Everything a real sshd sent in one verified exchange (version line, KEXINIT, reply),
    made with the probe's own ephemeral keys: a replay then differs only by our fresh cookie."""
    ex = ssh_kex.HostKeyExchange(key_type, EPHEMERAL_KEYS)
    seen = bytearray()
    with socket.create_connection((LOOP, port), 5) as s:
        s.sendall(ex.start())
        while ex.outcome is None:
            data = s.recv(65536)
            assert data, "sshd closed"
            seen += data
            s.sendall(ex.feed(data))
        s.sendall(ssh_kex.disconnect())
    return bytes(seen)


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def peer(handler: Handler) -> AsyncIterator[int]:
    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await handler(reader, writer)
        writer.close()

    server = await asyncio.start_server(guarded, LOOP, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def _drain(reader: asyncio.StreamReader) -> None:
    while await reader.read(4096):
        pass


@pytest.mark.parametrize("key_type", ["ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp384"])
async def test_replayed_key_exchange_is_not_accepted(sshd: SshdKit, key_type: str) -> None:
    """A peer that replays a real sshd's key exchange (the right key, but without its private
    half it cannot sign our exchange hash) gets no fingerprint: the signature check fails."""
    server = sshd.start((key_type,), name="every")
    recorded = capture(server.port, key_type)

    async def replay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(4096)
        writer.write(recorded)
        await _drain(reader)

    async with peer(replay) as port:
        r = await fetch_host_key(LOOP, port, key_type, 5)
    assert (r.fingerprint, r.blob) == (None, None)
    assert r.error == "host key signature does not verify: the server does not hold this key"
    genuine = await fetch_host_key(LOOP, server.port, key_type, 5)
    assert genuine.fingerprint == server.key(key_type).fingerprint()


def _first_packet_end(recorded: bytes) -> int:
    start = recorded.index(b"\n") + 1
    return start + 4 + int(struct.unpack("!I", recorded[start : start + 4])[0])


async def test_appliance_that_drops_what_follows_the_version_line(sshd: SshdKit) -> None:
    """Some appliance SSH servers read the client's version line with one recv() and drop the
    rest. In front of a real sshd, such a server still gives the probe its key: our KEXINIT
    waits for the server's version line, as OpenSSH's client's does."""
    server = sshd.start(("ssh-ed25519",), name="every")

    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await src.read(65536):
                dst.write(data)
        dst.close()

    async def appliance(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(LOOP, server.port)
        first = await reader.read(65536)
        up_writer.write(first[: first.index(b"\n") + 1])  # the version line; the rest is lost
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async with peer(appliance) as port:
        r = await fetch_host_key(LOOP, port, "ssh-ed25519", 3)
    assert (r.error, r.fingerprint) == (None, server.key("ssh-ed25519").fingerprint())


async def test_junk_reset_and_silence_get_clear_errors(sshd: SshdKit) -> None:
    server = sshd.start(("ssh-ed25519",), name="every")
    recorded = capture(server.port, "ssh-ed25519")
    version_and_kexinit = recorded[: _first_packet_end(recorded)]

    async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    async def garbage_packet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n" + b"\xff" * 64)
        await _drain(reader)

    async def binary(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(bytes(range(256)) * 8)
        await _drain(reader)

    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(4096)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _drain(reader)

    async def hang_after_kexinit(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(version_and_kexinit)
        await _drain(reader)

    expected = {
        http: "not an SSH server (first line: 'HTTP/1.1 400 Bad Request')",
        garbage_packet: "not an SSH packet (length 4294967295, padding 255)",
        binary: "not an SSH server (first line: '\\x00\\x01",
        reset: "connection reset by the server while waiting for the server's version line",
        silent: "timeout waiting for the server's version line",
        hang_after_kexinit: "timeout waiting for the server's key exchange reply",
    }
    for handler, error in expected.items():
        async with peer(handler) as port:
            async with asyncio.timeout(10):  # the probe's own timeout ends it long before
                r = await fetch_host_key(LOOP, port, "ssh-ed25519", 0.5)
        assert r.error is not None and r.error.startswith(error), (handler.__name__, r.error)
        assert r.fingerprint is None and one_line_of_data(r.error)
        assert r.elapsed < 5


async def test_hostile_banner_and_disconnect_text_stay_data() -> None:
    evil = "SSH-2.0-Evil\x1b[2J\u202e\x07 comment"
    reason = "bye\r\nSSH-2.0-forged \x1b]0;title\x07"

    async def hostile(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"\x1b[31mred\r\n" + evil.encode() + b"\r\n")
        body = bytes([1]) + struct.pack("!I", 2) + struct.pack("!I", len(reason)) + reason.encode()
        writer.write(ssh_kex.packet(body + b"\0\0\0\0"))
        await _drain(reader)

    async with peer(hostile) as port:
        r = await fetch_host_key(LOOP, port, "ssh-ed25519", 2)
    assert r.banner == evil  # kept exactly as sent, for the caller to show through visible()
    assert visible(r.banner) == "SSH-2.0-Evil\\x1b[2J\\u202e\\x07 comment"
    assert r.error == "server disconnected (2): " + visible(reason)
    assert one_line_of_data(r.error) and r.fingerprint is None
