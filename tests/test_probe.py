"""TLS probe against real TLS servers with certificates made by cryptography."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import socket

from exporter.probes.seam import Target
from exporter.probes.tls import probe, probe_many
from pilab.pki import make_cert, pi_subject
from pilab.tls import TlsEndpoint


async def test_captures_self_signed_leaf_with_all_fields() -> None:
    ep = TlsEndpoint(pi_subject("ISE-server"))
    await ep.start()
    try:
        r = await probe(ep.endpoint, timeout=3)
        assert r.success and r.error is None
        c = r.cert
        assert c is not None
        assert c.fingerprint_sha256 == hashlib.sha256(ep.current.der).hexdigest()
        assert c.subject[-1] == ("CN", "ISE-server")
        assert c.subject_text == "/C=US/ST=CA/L=SJ/O=Cisco Systems/OU=Prime Infra/CN=ISE-server"
        assert c.issuer_text == c.subject_text  # self-signed
        assert c.not_after > c.not_before
        assert len(c.spki_sha256) == 64
    finally:
        await ep.stop()


async def test_expired_certificate_is_still_captured() -> None:
    past = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    bundle = make_cert(pi_subject("old"), not_before=past, not_after=past + dt.timedelta(days=1))
    ep = TlsEndpoint(pi_subject("old"), bundle=bundle)
    await ep.start()
    try:
        r = await probe(ep.endpoint, timeout=3)
        assert r.cert is not None and r.cert.not_after < 1600000000
    finally:
        await ep.stop()


async def test_regenerated_certificate_has_new_fingerprint_same_subject() -> None:
    ep = TlsEndpoint(pi_subject("prime-sec"))
    await ep.start()
    try:
        first = await probe(ep.endpoint, timeout=3)
        ep.regenerate()
        second = await probe(ep.endpoint, timeout=3)
        assert first.cert and second.cert
        assert first.cert.fingerprint_sha256 != second.cert.fingerprint_sha256
        assert first.cert.spki_sha256 != second.cert.spki_sha256
        assert first.cert.subject == second.cert.subject
    finally:
        await ep.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_refused_and_black_hole_are_failures_not_exceptions() -> None:
    refused = await probe(f"127.0.0.1:{_free_port()}", timeout=2)
    assert not refused.success and refused.error == "connection refused"

    # Accepts TCP, never speaks TLS: the timeout must bound the probe.
    server = await asyncio.start_server(lambda r, w: asyncio.sleep(3600), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        r = await probe(f"127.0.0.1:{port}", timeout=0.5)
        assert not r.success and r.error == "timeout" and r.duration_seconds < 1.5
    finally:
        server.close()


async def test_probe_many_probes_each_endpoint_once_and_isolates_failures() -> None:
    eps = [TlsEndpoint([("CN", f"peer-{i}")]) for i in range(5)]
    for ep in eps:
        await ep.start()
    try:
        dead = f"127.0.0.1:{_free_port()}"
        targets = [Target(ep, 2.0, "jsse8") for ep in [*(ep.endpoint for ep in eps)] * 3 + [dead]]
        results = await probe_many(targets, concurrency=2)
        assert set(results) == {ep.endpoint for ep in eps} | {dead}
        assert all(results[ep.endpoint].success for ep in eps)
        assert not results[dead].success
    finally:
        for ep in eps:
            await ep.stop()
