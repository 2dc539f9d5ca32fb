"""Client profiles: the exporter's ClientHello is a Java client's, read off a real JVM.

A plain TCP listener records the first TLS record each client sends; the JVM's hello and the
exporter's (the plaintext fast path and the full OpenSSL handshake) are parsed and compared
list for list: cipher suites, supported groups, signature algorithms, versions.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from exporter.config.load import load_config
from exporter.config.model import ConfigError
from exporter.probes import jsse, tls12
from exporter.probes import tls as probe
from exporter.service.service import Service
from pilab.pki import make_cert
from tests.kit.lab import offline_config

JAVA_CLIENT = Path(__file__).parent / "jsse" / "LeafFingerprint.java"


def _record_hello(client: Callable[[int], object]) -> bytes:
    """The first TLS record `client(port)` sends to a listener that then hangs up."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    got: list[bytes] = []

    def accept() -> None:
        conn, _ = srv.accept()
        conn.settimeout(10)
        buf = b""
        while len(buf) < 5 or len(buf) < 5 + int.from_bytes(buf[3:5], "big"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            buf += chunk
        got.append(buf)
        conn.close()

    t = threading.Thread(target=accept)
    t.start()
    with contextlib.suppress(Exception):  # every client fails: nobody answers its hello
        client(srv.getsockname()[1])
    t.join(15)
    srv.close()
    return got[0]


def _u16s(data: bytes) -> list[int]:
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def _parse(record: bytes) -> dict[str, object]:
    body = record[9:]  # record header (5), handshake header (4)
    pos = 2 + 32
    pos += 1 + body[pos]
    n = int.from_bytes(body[pos : pos + 2], "big")
    suites = _u16s(body[pos + 2 : pos + 2 + n])
    pos += 2 + n
    pos += 1 + body[pos]
    end = pos + 2 + int.from_bytes(body[pos : pos + 2], "big")
    pos += 2
    exts: dict[int, bytes] = {}
    while pos < end:
        kind, size = _u16s(body[pos : pos + 4])
        exts[kind] = body[pos + 4 : pos + 4 + size]
        pos += 4 + size
    return {
        "suites": suites,
        "groups": _u16s(exts[0x000A][2:]),
        "sigalgs": _u16s(exts[0x000D][2:]),
        "sigalgs_cert": _u16s(exts[0x0032][2:]) if 0x0032 in exts else None,
        "versions": _u16s(exts[0x002B][1:]) if 0x002B in exts else [0x0303],
        "sni": 0x0000 in exts,
        "order": list(exts),
    }


def _jvm_hello(*options: str) -> dict[str, object]:
    java = shutil.which("java")
    if java is None:
        pytest.fail("java missing: scripts/test installs openjdk-17-jdk-headless")
    return _parse(_record_hello(lambda port: subprocess.run(
        [java, *options, str(JAVA_CLIENT), str(port)], capture_output=True, timeout=60)))


def _fast_hello(profile: str) -> dict[str, object]:
    return _parse(tls12.client_hello(None, jsse.PROFILES[profile]))


def _full_hello(profile: str) -> dict[str, object]:
    ctx = probe.profile_context(profile)
    return _parse(_record_hello(
        lambda port: asyncio.run(probe._handshake("127.0.0.1", port, None, ctx))))


def test_jsse11_offers_what_the_jvm_offers() -> None:
    java = _jvm_hello()
    assert java["versions"] == [0x0304, 0x0303] and not java["sni"]
    fast = _fast_hello("jsse11")
    assert fast == java  # every list, the extensions and their order
    full = _full_hello("jsse11")  # the handshake a TLS 1.3 peer gets
    for key in ("suites", "groups", "sigalgs", "versions"):
        assert full[key] == java[key], key


def test_jsse8_offers_java_tls12_without_what_java8_lacks() -> None:
    """Java 8 has no ChaCha20 suites, X25519/X448 or EdDSA; otherwise its enums' order is
    the later JSSE's, which this JVM shows restricted to TLS 1.2."""
    java = _jvm_hello("-Djdk.tls.client.protocols=TLSv1.2")
    newer = {0xCCA8, 0xCCA9, 0xCCAA, 0x001D, 0x001E, 0x0807, 0x0808}
    fast = _fast_hello("jsse8")
    for key in ("suites", "groups", "sigalgs", "sigalgs_cert"):
        want = [v for v in java[key] if v not in newer]  # type: ignore[attr-defined]
        assert fast[key] == want, key
    assert fast["versions"] == [0x0303] and not fast["sni"]
    full = _full_hello("jsse8")
    assert full["suites"] == fast["suites"] and full["sigalgs"] == fast["sigalgs"]
    assert full["versions"] == [0x0303]
    # OpenSSL offers finite-field groups only with TLS 1.3: the EC ones are Java 8's, in order.
    assert full["groups"] == [g for g in fast["groups"] if g < 0x0100]  # type: ignore[attr-defined]


def test_sni_is_sent_where_java_sends_it(tmp_path: Path) -> None:
    assert probe.java_sni("10.0.0.3") is None
    assert probe.java_sni("[2001:db8::1]") is None and probe.java_sni("2001:db8::1") is None
    assert probe.java_sni("localhost") is None  # no dot: Java sends none
    assert probe.java_sni("ise.example.com.") is None
    assert probe.java_sni("ise.example.com") == "ise.example.com"

    bundle = make_cert([("CN", "named")])
    (tmp_path / "c.pem").write_bytes(bundle.cert_pem)
    (tmp_path / "k.pem").write_bytes(bundle.key_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    names: list[str | None] = []
    ctx.sni_callback = lambda _obj, name, _ctx: names.append(name)  # type: ignore[func-returns-value]

    async def run() -> None:
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0, ssl=ctx)
        port = server.sockets[0].getsockname()[1]
        try:
            # The entry names a host; the exporter dials an address (endpoints[].connect).
            named = await probe.probe("ise.example.com:443", 3, connect=f"127.0.0.1:{port}")
            literal = await probe.probe(f"127.0.0.1:{port}", 3)
            assert named.cert is not None and literal.cert is not None
        finally:
            server.close()

    asyncio.run(run())
    assert names == ["ise.example.com", None]


def _write(tmp_path: Path, stores: list[dict[str, object]], defaults: dict[str, object]) -> Path:
    cfg = offline_config(tmp_path)
    data = yaml.safe_load(cfg.read_text())
    data["defaults"].update(defaults)
    data["stores"] = stores
    cfg.write_text(yaml.safe_dump(data))
    return cfg


def test_profile_is_a_validated_store_key_defaulting_to_java8(tmp_path: Path) -> None:
    cfg = _write(tmp_path, [{"name": "a", "host": "192.0.2.1"},
                            {"name": "b", "host": "192.0.2.2", "tls_client_profile": "jsse11"}], {})
    config = load_config(cfg)
    assert [s.tls_client_profile for s in config.stores] == ["jsse8", "jsse11"]

    _write(tmp_path, [{"name": "a", "host": "192.0.2.1"}], {"tls_client_profile": "jsse11"})
    assert load_config(cfg).stores[0].tls_client_profile == "jsse11"

    for bad in ("java8", ["jsse8"], 8):
        _write(tmp_path, [{"name": "a", "host": "192.0.2.1", "tls_client_profile": bad}], {})
        with pytest.raises(ConfigError) as err:
            load_config(cfg)
        assert err.value.problems == ["stores[0].tls_client_profile: must be one of jsse8 | jsse11"]


def test_an_endpoint_is_probed_with_its_stores_profile(tmp_path: Path) -> None:
    cfg = _write(tmp_path, [{"name": "old", "host": "192.0.2.1"},
                            {"name": "new", "host": "192.0.2.2", "tls_client_profile": "jsse11"}], {})
    service = Service(load_config(cfg), tmp_path / "data")
    try:
        service.stores["old"].update(endpoint_set=frozenset({"10.0.0.1:443", "10.0.0.9:443"}))
        service.stores["new"].update(endpoint_set=frozenset({"10.0.0.2:443", "10.0.0.9:443"}))
        groups = service.prober.targets(["10.0.0.1:443", "10.0.0.2:443", "10.0.0.9:443"])
        assert list(groups) == ["tls"]  # both are PI stores: one prober
        targets = {t.endpoint: t.variant for t in groups["tls"]}
        # An endpoint both list goes with the first store in the config (one probe each).
        assert targets == {"10.0.0.1:443": "jsse8", "10.0.0.2:443": "jsse11", "10.0.0.9:443": "jsse8"}
    finally:
        service.db.close()
