"""TLS fault matrix: misbehaving peers against a real exporter process.

One `python -m exporter serve` reads two lab PI servers over SSH. Store `faulty` holds an
entry for every fault below plus one healthy peer; store `clean` holds two healthy peers.
All faults are live at once, as on a bad day in a real network. Each case asserts what an
operator sees: /metrics answers in under 1 s, the endpoint's `tofu_probe_success`, the
entry's `tofu_certificate_state`, the live fingerprint for certificates that must be
captured, and the reason on the landing page for the ones that cannot be.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import os
import socket
import ssl
import struct
import tempfile
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
import pytest_asyncio
from cryptography import x509

from exporter.store.database import BaselineDB
from pilab.pki import CertBundle, make_cert, pi_subject
from pilab.tls import TlsEndpoint
from tests.kit.lab import free_port, start_pi, write_config
from tests.kit.processes import Exporter, value, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
PROBE_TIMEOUT = 1.5
STOPPING: list[bool] = []  # non-empty once the scene tears down: held connections let go


# ---- purpose-built misbehaving servers ----------------------------------------------


async def read_record(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readexactly(5)
    return head + await reader.readexactly(struct.unpack("!H", head[3:5])[0])


def split_records(data: bytes) -> list[bytes]:
    out = []
    while data:
        n = 5 + struct.unpack("!H", data[3:5])[0]
        out.append(data[:n])
        data = data[n:]
    return out


def server_ctx(bundle: CertBundle, chain: bytes = b"") -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "c").write_bytes(bundle.cert_pem + chain)
        (Path(tmp) / "k").write_bytes(bundle.key_pem)
        ctx.load_cert_chain(Path(tmp) / "c", Path(tmp) / "k")
    return ctx


def server_flight(client_hello: bytes, ctx: ssl.SSLContext) -> list[bytes]:
    """What a real TLS server answers to this ClientHello, as TLS records."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_side=True)
    inc.write(client_hello)
    with contextlib.suppress(ssl.SSLWantReadError):
        obj.do_handshake()
    return split_records(out.read())


def rst(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), not a FIN."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def handshake_record(msg_type: int, body: bytes, version: bytes = b"\x03\x03") -> bytes:
    msg = bytes([msg_type]) + len(body).to_bytes(3, "big") + body
    return b"\x16" + version + struct.pack("!H", len(msg)) + msg


def tls12_hello_with_certificates(cert_list: bytes) -> bytes:
    """A hand-made TLS 1.2 ServerHello, Certificate (with `cert_list`), ServerHelloDone.

    Python's ssl cannot send an empty or zero-length certificate, so these bytes are
    written out: RSA key exchange suite 0x009c, renegotiation_info so OpenSSL 3 goes on
    to read the Certificate message at all.
    """
    hello = (
        b"\x03\x03" + os.urandom(32) + b"\x00" + b"\x00\x9c" + b"\x00"
        + b"\x00\x05" + b"\xff\x01\x00\x01\x00"
    )
    return (
        handshake_record(2, hello)
        + handshake_record(11, len(cert_list).to_bytes(3, "big") + cert_list)
        + handshake_record(14, b"")
    )


async def hold(writer: asyncio.StreamWriter, seconds: float = 30.0) -> None:
    """Keep the connection open and silent until `seconds` pass or the scene stops."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end and not writer.transport.is_closing() and not STOPPING:
        await asyncio.sleep(0.1)
    writer.transport.abort()


async def black_hole(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await hold(writer)  # accepts, never reads, never writes


async def plain_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(4096)
    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 11\r\n\r\nplain http\n")
    await writer.drain()
    writer.close()


async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(4096)
    writer.write(os.urandom(2048))
    await writer.drain()
    await hold(writer, 5)


def flight_then(action: str, bundle: CertBundle) -> Handler:
    ctx = server_ctx(bundle)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            records = server_flight(await read_record(reader), ctx)
        except (asyncio.IncompleteReadError, ssl.SSLError, OSError):
            writer.transport.abort()
            return
        if action == "stall":  # ServerHello only, then silence
            writer.write(records[0])
            await writer.drain()
            await hold(writer)
        else:  # ServerHello and half the rest, then RST
            rest = b"".join(records[1:])
            writer.write(records[0] + rest[: len(rest) // 2])
            await writer.drain()
            await asyncio.sleep(0.05)
            rst(writer)

    return handle


def crafted(cert_list: bytes) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await read_record(reader)
            writer.write(tls12_hello_with_certificates(cert_list))
            await writer.drain()
            await asyncio.wait_for(reader.read(4096), 2)
        writer.transport.abort()

    return handle


class TunedEndpoint(TlsEndpoint):
    """The lab's TlsEndpoint with its SSLContext adjusted (versions, client certs, chain)."""

    def __init__(
        self, bundle: CertBundle, tune: Callable[[ssl.SSLContext], None], chain: bytes = b""
    ) -> None:
        self._tune, self._chain = tune, chain
        super().__init__([("CN", "tuned")], bundle=bundle)

    def _context(self, bundle: CertBundle) -> ssl.SSLContext:
        ctx = server_ctx(bundle, self._chain)
        ctx.sni_callback = self._pick_context
        self._tune(ctx)
        return ctx


def require_client_cert(version: ssl.TLSVersion, ca: CertBundle) -> Callable[[ssl.SSLContext], None]:
    def tune(ctx: ssl.SSLContext) -> None:
        ctx.minimum_version = ctx.maximum_version = version
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=ca.cert_pem.decode())

    return tune


def tls10_only(ctx: ssl.SSLContext) -> None:
    # OpenSSL 3 refuses TLS 1.0 below SECLEVEL 0 on either side.
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1


def anonymous_only(ctx: ssl.SSLContext) -> None:
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("aNULL:@SECLEVEL=0")


# ---- the matrix ---------------------------------------------------------------------


@dataclass
class Case:
    name: str
    captured: bool  # the certificate must be captured (probe success, fingerprint shown)
    error: str = ""  # for failures: what the landing page must say
    bundle: CertBundle | None = None  # what a captured case must show
    sni: str | None = None
    endpoint: str = ""
    stop: Callable[[], Awaitable[None]] | None = field(default=None, repr=False)


def _past(days: int) -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(days=days)


CAPTURED = [
    "self-signed", "expired", "not-yet-valid", "wrong-host", "chain-100",
    "tls1.0-only", "client-cert-tls1.3", "client-cert-tls1.2",
]
FAILING = {
    "refused": "connection refused",
    "black-hole": "timeout",
    "plain-http": "tls handshake failed",
    "reset-mid-handshake": "connection reset",
    "stall-after-serverhello": "timeout",
    "empty-chain": "tls handshake failed",
    "zero-byte-cert": "tls handshake failed",
    "no-certificate-anon": "no certificate sent",
    "close-at-once": "connection reset",  # the server hangs up before the handshake (README)
    "garbage": "tls handshake failed",
}
HEALTHY = ["healthy-faulty-store", "healthy-clean-1", "healthy-clean-2"]


async def start_case(name: str) -> Case:
    subject = pi_subject(name)
    if name == "refused":
        return Case(name, False, FAILING[name], endpoint=f"127.0.0.1:{free_port()}")
    if name in FAILING:
        bundle = make_cert(subject)
        handlers: dict[str, Handler] = {
            "black-hole": black_hole,
            "plain-http": plain_http,
            "reset-mid-handshake": flight_then("reset", bundle),
            "stall-after-serverhello": flight_then("stall", bundle),
            "empty-chain": crafted(b""),
            "zero-byte-cert": crafted(b"\x00\x00\x00"),
            "close-at-once": close_at_once,
            "garbage": garbage,
        }
        if name == "no-certificate-anon":
            ep = TunedEndpoint(bundle, anonymous_only)
            await ep.start()
            return Case(name, False, FAILING[name], endpoint=ep.endpoint, stop=ep.stop)
        server = await asyncio.start_server(handlers[name], "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]

        async def stop() -> None:
            server.close()

        return Case(name, False, FAILING[name], endpoint=f"127.0.0.1:{port}", stop=stop)
    sni = None
    chain = b""
    tune: Callable[[ssl.SSLContext], None] = lambda ctx: None  # noqa: E731
    if name == "expired":
        bundle = make_cert(subject, not_before=_past(400), not_after=_past(35))
    elif name == "not-yet-valid":
        start = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
        bundle = make_cert(subject, not_before=start, not_after=start + dt.timedelta(days=365))
    elif name == "wrong-host":
        bundle = make_cert(subject, sans=["other.example.net"])
        sni = "ise.example.com"
    elif name == "chain-100":
        bundle = make_cert(subject, key_type="rsa")
        chain = b"".join(make_cert([("CN", f"intermediate-{i}")]).cert_pem for i in range(99))
    elif name == "tls1.0-only":
        bundle = make_cert(subject)
        tune = tls10_only
    elif name.startswith("client-cert"):
        bundle = make_cert(subject)
        version = ssl.TLSVersion.TLSv1_3 if name.endswith("1.3") else ssl.TLSVersion.TLSv1_2
        tune = require_client_cert(version, make_cert([("CN", "client-ca")]))
    else:
        bundle = make_cert(subject)
    ep = TunedEndpoint(bundle, tune, chain)
    await ep.start()
    return Case(name, True, bundle=bundle, sni=sni, endpoint=ep.endpoint, stop=ep.stop)


@dataclass
class Scene:
    exporter: Exporter
    cases: dict[str, Case]
    healthy: dict[str, TlsEndpoint]
    entries: dict[str, str]  # case/healthy name -> entry key
    workdir: Path


def entry_key(endpoint: str) -> str:
    host, _, port = endpoint.rpartition(":")
    return f"{host}_{port}"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def scene(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scene]:
    workdir = tmp_path_factory.mktemp("tls-faults")
    cases = {c.name: c for c in await asyncio.gather(*(start_case(n) for n in [*CAPTURED, *FAILING]))}
    healthy = {n: TlsEndpoint(pi_subject(n)) for n in HEALTHY}
    for ep in healthy.values():
        await ep.start()
    faulty = await start_pi("faulty", page_lines=0)
    clean = await start_pi("clean", page_lines=0)
    entries: dict[str, str] = {}
    for c in cases.values():
        entries[c.name] = entry_key(c.endpoint)
        faulty.add_entry(entries[c.name], c.bundle or make_cert(pi_subject(c.name)))
    for n, ep in healthy.items():
        entries[n] = entry_key(ep.endpoint)
        (faulty if n == "healthy-faulty-store" else clean).add_entry(entries[n], ep.current)
    config = write_config(
        workdir, {"faulty": faulty, "clean": clean}, probe_timeout=f"{PROBE_TIMEOUT}s",
        extra={"endpoints": [{"endpoint": c.endpoint, "sni": c.sni} for c in cases.values() if c.sni]},
    )
    exporter = Exporter(config, workdir)
    try:
        await exporter.start()
        yield Scene(exporter, cases, healthy, entries, workdir)
    finally:
        await exporter.stop()
        STOPPING.append(True)
        await asyncio.sleep(0.3)
        for c in cases.values():
            if c.stop is not None:
                await c.stop()
        for ep in healthy.values():
            await ep.stop()
        await faulty.stop()
        await clean.stop()


class Rows(HTMLParser):
    """Landing page table rows as lists of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag == "td":
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


@pytest.mark.parametrize("name", [*CAPTURED, *FAILING])
async def test_fault(scene: Scene, name: str) -> None:
    case = scene.cases[name]
    entry = scene.entries[name]
    body, took = await scene.exporter.metrics()
    assert took < 1.0, f"/metrics took {took:.3f}s during {name}"
    success = value(body, "tofu_probe_success", endpoint=case.endpoint)
    state = {
        lbl: v
        for lbl in ("match", "mismatch", "unknown", "unreachable")
        if (v := value(body, "tofu_certificate_state", store="faulty", entry=entry, state=lbl))
    }
    if case.captured:
        assert case.bundle is not None
        assert success == 1.0, f"{name}: certificate not captured"
        assert list(state) == ["unknown"], state  # stored == live, adopted: proves nothing
        assert value(
            body, "tofu_live_certificate_info", endpoint=case.endpoint,
            fingerprint_sha256=case.bundle.fingerprint_sha256,
        ) == 1.0
        not_after = value(body, "tofu_live_certificate_not_after_timestamp_seconds",
                          endpoint=case.endpoint)
        expiry = x509.load_der_x509_certificate(case.bundle.der).not_valid_after_utc
        assert not_after == expiry.timestamp()
    else:
        assert success == 0.0, f"{name}: probe reported success"
        assert list(state) == ["unreachable"], state
        assert value(body, "tofu_live_certificate_info", endpoint=case.endpoint) is None
        status, page, _ = await scene.exporter.get("/")
        assert status == 200
        parser = Rows()
        parser.feed(page)
        row = next(r for r in parser.rows if r and r[0] == entry)
        assert row[2] == "unreachable"
        assert "no live certificate: " in row[3]
        reason = row[3].split("no live certificate: ", 1)[1]
        assert reason and "not probed" not in reason
        assert case.error and case.error in reason, f"{name}: reason {reason!r}"
        assert "Error" not in reason  # a sentence, not an exception class dump


async def test_metrics_fast_and_others_fresh_during_faults(scene: Scene) -> None:
    """While every fault is live: 20 scrapes all under 1 s; a healthy peer regenerating its
    certificate shows up within a probe cycle; both stores keep reading."""
    ex = scene.exporter
    body, _ = await ex.metrics()
    before = {s: value(body, "tofu_store_last_success_timestamp_seconds", store=s)
              for s in ("faulty", "clean")}
    worst = 0.0
    for _ in range(20):
        _, took = await ex.metrics()
        worst = max(worst, took)
        await asyncio.sleep(0.1)
    print(f"\n20 scrapes during {len(scene.cases)} live faults: slowest {worst * 1000:.0f} ms")
    assert worst < 1.0, f"slowest /metrics {worst:.3f}s"
    target = scene.healthy["healthy-clean-1"]
    new = target.regenerate()

    async def seen() -> bool:
        b, took = await ex.metrics()
        assert took < 1.0
        return value(b, "tofu_live_certificate_info", endpoint=target.endpoint,
                     fingerprint_sha256=new.fingerprint_sha256) == 1.0

    # One probe cycle: interval (1 s) + the slowest fault (the probe timeout) + slack.
    t0 = time.monotonic()
    await wait_for(seen, 1.0 + 2 * PROBE_TIMEOUT + 2.0)
    print(f"regenerated healthy peer visible after {time.monotonic() - t0:.1f} s")
    body, _ = await ex.metrics()
    for store, t in before.items():
        assert value(body, "tofu_store_up", store=store) == 1.0
        now = value(body, "tofu_store_last_success_timestamp_seconds", store=store)
        assert t is not None and now is not None and now > t, f"{store} went stale"
    for n, ep in scene.healthy.items():
        assert value(body, "tofu_probe_success", endpoint=ep.endpoint) == 1.0, n
    assert "Traceback" not in ex.log()


async def test_no_baseline_lost(scene: Scene) -> None:
    """Every entry keeps its baseline row; captured certificates have their fingerprint."""
    db = BaselineDB(scene.workdir / "data" / "baseline.db")
    try:
        faulty = db.baselines("faulty")
        clean = db.baselines("clean")
    finally:
        db.close()
    assert set(faulty) == {scene.entries[n] for n in [*CAPTURED, *FAILING, "healthy-faulty-store"]}
    assert set(clean) == {scene.entries["healthy-clean-1"], scene.entries["healthy-clean-2"]}
    for n in CAPTURED:
        bundle = scene.cases[n].bundle
        assert bundle is not None
        assert faulty[scene.entries[n]].fingerprint_sha256 == bundle.fingerprint_sha256, n
    for n in FAILING:
        assert faulty[scene.entries[n]].fingerprint_sha256 is None, n
    assert clean[scene.entries["healthy-clean-2"]].fingerprint_sha256 == hashlib.sha256(
        scene.healthy["healthy-clean-2"].current.der).hexdigest()
