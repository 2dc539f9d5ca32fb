"""The plaintext TLS 1.2 certificate read, against real OpenSSL servers."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import ssl
from pathlib import Path

import pytest

from exporter.probes import tls12
from exporter.probes.tls import probe
from pilab.pki import make_cert, pi_subject
from pilab.tls import TlsEndpoint


@pytest.mark.parametrize("key_type", ["ec", "rsa"])
async def test_reads_the_leaf_a_full_handshake_would_show(key_type: str) -> None:
    ep = TlsEndpoint(pi_subject("prime-sec"), key_type=key_type)
    await ep.start()
    try:
        assert await tls12.fetch_leaf(ep.host, ep.port, None) == (ep.current.der, "TLSv1.2")
        ep.regenerate()
        assert await tls12.fetch_leaf(ep.host, ep.port, None) == (ep.current.der, "TLSv1.2")
    finally:
        await ep.stop()


async def _server(tmp_path: Path, tune: object) -> tuple[asyncio.Server, bytes, list[str]]:
    bundle = make_cert([("CN", "modern")])
    (tmp_path / "c.pem").write_bytes(bundle.cert_pem)
    (tmp_path / "k.pem").write_bytes(bundle.key_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    names: list[str] = []
    ctx.sni_callback = lambda _obj, name, _ctx: names.append(name) and None  # type: ignore[func-returns-value]
    if tune == "tls13":
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    return server, bundle.der, names


async def test_tls13_only_server_falls_back_to_a_full_handshake(tmp_path: Path) -> None:
    server, der, _ = await _server(tmp_path, "tls13")
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(tls12.Fallback):
            await tls12.fetch_leaf("127.0.0.1", port, None)
        r = await probe(f"127.0.0.1:{port}", timeout=3)
        assert r.cert is not None and r.cert.fingerprint_sha256 == make_fp(der)
        assert r.tls_version == "TLSv1.3"  # what `doctor` shows: the full handshake's version
    finally:
        server.close()


async def test_sends_sni_when_configured(tmp_path: Path) -> None:
    server, der, names = await _server(tmp_path, None)
    port = server.sockets[0].getsockname()[1]
    try:
        assert (await tls12.fetch_leaf("127.0.0.1", port, "ise.example.com"))[0] == der
        assert names == ["ise.example.com"]
    finally:
        server.close()


def make_fp(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


async def test_reader_handles_a_real_flight_fed_one_byte_at_a_time() -> None:
    ep = TlsEndpoint(pi_subject("ISE-server"), key_type="rsa")
    await ep.start()
    try:
        def capture() -> bytes:
            with socket.create_connection((ep.host, ep.port), timeout=3) as s:
                s.sendall(tls12.client_hello(None))
                data = b""
                while len(data) < 4096:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                    try:
                        if tls12.HandshakeReader().feed(data) is not None:
                            break
                    except tls12.Fallback:
                        continue
                return data

        flight = await asyncio.to_thread(capture)
    finally:
        await ep.stop()
    reader = tls12.HandshakeReader()
    leaf = None
    for i in range(len(flight)):
        leaf = reader.feed(flight[i : i + 1])
        if leaf is not None:
            break
    assert leaf == ep.current.der


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 400 Bad Request\r\n\r\n",  # not TLS
        b"\x15\x03\x03\x00\x02\x02\x46",  # alert: protocol_version
        b"\x16\x03\x03\x00\x04\x0e\x00\x00\x00",  # ServerHelloDone before any certificate
        b"\x16\x03\x03\x00\x07\x0b\x00\x00\x03\x00\x00\x00",  # empty certificate list
    ],
)
def test_anything_unexpected_is_a_fallback_never_a_crash(data: bytes) -> None:
    with pytest.raises(tls12.Fallback):
        tls12.HandshakeReader().feed(data)


@pytest.mark.parametrize("version", ["TLSv1", "TLSv1.2", "TLSv1.3"])
async def test_probe_names_the_version_it_spoke(version: str) -> None:
    """What `doctor` prints per probe: TLS 1.0 and 1.2 from the fast path's ServerHello,
    1.3 from the full handshake the fast path falls back to."""
    from tests.kit.tls import TunedEndpoint, tls10_only

    def tune(ctx: ssl.SSLContext) -> None:
        if version == "TLSv1":
            tls10_only(ctx)
        elif version == "TLSv1.3":
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        else:
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2

    ep = TunedEndpoint(make_cert([("CN", "versioned")]), tune)
    await ep.start()
    try:
        r = await probe(ep.endpoint, timeout=3)
        assert r.cert is not None and r.cert.fingerprint_sha256 == ep.current.fingerprint_sha256
        assert r.tls_version == version
    finally:
        await ep.stop()


def test_version_names_match_what_ssl_objects_say() -> None:
    from exporter.probes.tls import _version_name

    assert _version_name(ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    assert _version_name(ssl.TLSVersion.TLSv1) == "TLSv1"
    assert _version_name(0x1234) == "unknown"
