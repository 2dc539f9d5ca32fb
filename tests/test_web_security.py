"""--web.config.file: TLS and bcrypt basic auth on the exporter's own endpoints, tested with
a verifying TLS client against `python -m exporter serve`."""

from __future__ import annotations

import asyncio
import base64
import ssl
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import bcrypt
import pytest
import pytest_asyncio
import yaml

from pilab.pi import PiServer
from pilab.pki import make_cert, pi_subject
from pilab.tls import TlsEndpoint
from tests.conftest import free_port, start_pi, write_config
from tests.exporterkit import ROOT, Exporter

pytestmark = pytest.mark.asyncio(loop_scope="module")

USER, SECRET = "prometheus", "Scrape-Me-N0t!"
PROTECTED = [
    ("GET", "/metrics"),
    ("GET", "/"),
    ("GET", "/probe?target=pri"),
    ("GET", "/-/ready"),
    ("POST", "/-/reload"),
    ("GET", "/api/v1/entries"),
    ("GET", "/api/v1/history"),
]


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def toolkit_hash(password: str) -> str:
    """What `htpasswd -nBC 10` writes, the exporter-toolkit's documented way: $2y$."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(10)).decode().replace("$2b$", "$2y$", 1)


@dataclass
class Secured:
    exporter: Exporter
    client_ssl: ssl.SSLContext
    workdir: Path


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def secured(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Secured]:
    workdir = tmp_path_factory.mktemp("web-security")
    peer = TlsEndpoint(pi_subject("ise"))
    await peer.start()
    pi = await start_pi("pri", page_lines=0)
    pi.add_entry(f"{peer.host}_{peer.port}", peer.current)
    config = write_config(workdir, {"pri": pi}, interval="30s")
    server = make_cert([("CN", "exporter")], sans=["127.0.0.1", "localhost"])
    (workdir / "web.crt").write_bytes(server.cert_pem)
    (workdir / "web.key").write_bytes(server.key_pem)
    (workdir / "web.yml").write_text(yaml.safe_dump({
        "tls_server_config": {"cert_file": "web.crt", "key_file": "web.key"},
        "basic_auth_users": {USER: toolkit_hash(SECRET)},
    }))
    client_ssl = ssl.create_default_context(cadata=server.cert_pem.decode())  # verifies host
    exporter = Exporter(config, workdir, web_config=workdir / "web.yml", client_ssl=client_ssl)
    try:
        await exporter.start(ready=False)  # /-/healthy: the one open endpoint
        yield Secured(exporter, client_ssl, workdir)
    finally:
        await exporter.stop()
        await pi.stop()
        await peer.stop()


async def request(
    s: Secured, method: str, path: str, auth: dict[str, str] | None = None
) -> tuple[int, str, dict[str, str]]:
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=s.client_ssl)
    ) as session, session.request(method, s.exporter.url + path, headers=auth) as r:
        return r.status, await r.text(), dict(r.headers)


@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_protected_endpoint(secured: Secured, method: str, path: str) -> None:
    for auth in (
        None,
        basic(USER, "wrong"),
        basic("intruder", SECRET),
        basic(USER, SECRET + "x"),
        basic(USER, ""),
    ):
        status, body, headers = await request(secured, method, path, auth)
        assert status == 401, (auth, body)
        assert headers.get("WWW-Authenticate", "").startswith("Basic ")
        assert "tofu_" not in body and "prime-tofu-exporter" not in body.replace("realm", "")
    status, body, _ = await request(secured, method, path, basic(USER, SECRET))
    if path == "/-/ready":  # the first pass may still run; either answer is not a 401
        assert status in (200, 503)
    else:
        assert status == 200, body
    if path in ("/metrics", "/probe?target=pri"):
        assert "tofu_store_up" in body
    if path.startswith("/api/"):
        assert '"status": "success"' in body


async def test_garbled_authorization_headers_are_401(secured: Secured) -> None:
    for header in ("Basic", "Basic !!!notbase64", "Bearer abc",
                   "Basic " + base64.b64encode(b"no-colon").decode(),
                   "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode()):
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=secured.client_ssl)
        ) as session, session.get(secured.exporter.url + "/metrics",
                                  headers={"Authorization": header}) as r:
            assert r.status == 401, header


async def test_healthy_is_open(secured: Secured) -> None:
    status, body, _ = await request(secured, "GET", "/-/healthy")
    assert status == 200 and "Healthy" in body


async def test_plain_http_is_refused(secured: Secured) -> None:
    url = f"http://127.0.0.1:{secured.exporter.port}/metrics"
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.get(url, headers=basic(USER, SECRET)) as r:
                await r.read()


async def test_untrusted_certificate_is_refused_by_a_verifying_client(secured: Secured) -> None:
    other = ssl.create_default_context(cadata=make_cert([("CN", "x")]).cert_pem.decode())
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=other)) as session:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            async with session.get(secured.exporter.url + "/-/healthy") as r:
                await r.read()


async def test_wrong_password_flood_does_not_stall_scrapes(secured: Secured) -> None:
    """Each wrong password costs a bcrypt check; 40 of them at once must not block the loop."""
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=secured.client_ssl, limit=0)
    ) as session:
        ok = basic(USER, SECRET)
        async with session.get(secured.exporter.url + "/metrics", headers=ok) as r:
            assert r.status == 200  # the right password is now cached

        async def wrong(i: int) -> int:
            async with session.get(secured.exporter.url + "/metrics",
                                   headers=basic(USER, f"guess-{i}")) as r:
                return r.status

        flood = [asyncio.create_task(wrong(i)) for i in range(40)]
        await asyncio.sleep(0.2)
        t0 = time.perf_counter()
        async with session.get(secured.exporter.url + "/metrics", headers=ok) as r:
            assert r.status == 200
            await r.read()
        took = time.perf_counter() - t0
        assert set(await asyncio.gather(*flood)) == {401}
    assert took < 1.0, f"/metrics took {took:.2f}s during a wrong-password flood"


async def test_credentials_never_logged(secured: Secured) -> None:
    assert SECRET not in secured.exporter.log()
    assert base64.b64encode(f"{USER}:{SECRET}".encode()).decode() not in secured.exporter.log()


# ---- a bad web config: exit 2, one clear message, nothing listening -----------------


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def good_config(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Path]:
    workdir = tmp_path_factory.mktemp("web-bad")
    pi: PiServer = await start_pi("pri")
    try:
        yield write_config(workdir, {"pri": pi})
    finally:
        await pi.stop()


def _mismatched(d: Path) -> dict[str, object]:
    a, b = make_cert([("CN", "a")]), make_cert([("CN", "b")])
    (d / "a.crt").write_bytes(a.cert_pem)
    (d / "b.key").write_bytes(b.key_pem)
    return {"tls_server_config": {"cert_file": "a.crt", "key_file": "b.key"}}


BAD = {
    "missing-file": (None, "cannot read"),
    "yaml-syntax": ("basic_auth_users: [unclosed\n", "cannot read"),
    "not-bcrypt": ({"basic_auth_users": {"u": "plaintext"}}, "basic_auth_users.u: must be a bcrypt"),
    "unknown-key": ({"tls_server_config": {"cert": "x"}}, "tls_server_config.cert: unknown key"),
    "cert-without-key": (
        {"tls_server_config": {"cert_file": "web.yml"}}, "cert_file and key_file go together"),
    "missing-cert-file": (
        {"tls_server_config": {"cert_file": "nope.crt", "key_file": "nope.key"}},
        "tls_server_config.cert_file: cannot read"),
    "key-does-not-fit": ("mismatch", "cannot load certificate/key"),
    "bad-min-version": ({"tls_server_config": {"min_version": "SSL3"}}, "min_version: one of"),
}


@pytest.mark.parametrize("case", list(BAD))
async def test_bad_web_config_exits_2(good_config: Path, tmp_path: Path, case: str) -> None:
    content, expected = BAD[case]
    web = tmp_path / "web.yml"
    if content == "mismatch":
        content = _mismatched(tmp_path)
    if isinstance(content, dict):
        web.write_text(yaml.safe_dump(content))
    elif isinstance(content, str):
        web.write_text(content)
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", "serve", "--config.file", str(good_config),
        "--web.config.file", str(web), "--web.listen-address", f"127.0.0.1:{port}",
        "--storage.path", str(tmp_path / "data"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=str(ROOT),
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    text = err.decode()
    assert proc.returncode == 2, text
    assert str(web) in text and expected in text, text
    assert "Traceback" not in text
    assert not (tmp_path / "data").exists()  # nothing started
