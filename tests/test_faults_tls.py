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
import datetime as dt
import hashlib
import ssl
import time
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
from tests.kit.tls import (
    STOPPING,
    Handler,
    TunedEndpoint,
    anonymous_only,
    black_hole,
    close_at_once,
    crafted,
    flight_then,
    garbage,
    plain_http,
    require_client_cert,
    tls10_only,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

PROBE_TIMEOUT = 1.5


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
