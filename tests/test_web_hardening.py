"""The web endpoints under abuse and the flags around them, against the real exporter process:
idle and half-sent connections, a descriptor limit, gzip and OpenMetrics, /probe without the
exporter's own series, build info, the telemetry path, repeatable listen addresses, systemd
socket activation, the plain health port and the Kubernetes probes that use it."""

from __future__ import annotations

import asyncio
import gzip
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
import yaml
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families

from exporter.web.sockets import connection_budget
from pilab.pi import PiServer
from pilab.pki import make_cert, pi_subject
from pilab.tls import TlsEndpoint
from tests.kit.lab import free_port, start_pi, write_config
from tests.kit.processes import ROOT, samples, value, wait_for
from tests.kit.web import WebExporter, idle_connections, listening_socket, raise_own_nofile, toolkit_hash

pytestmark = pytest.mark.asyncio(loop_scope="module")


@dataclass
class Lab:
    pi: PiServer
    peers: list[TlsEndpoint]
    config: Path
    workdir: Path


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def lab(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Lab]:
    workdir = tmp_path_factory.mktemp("web-hardening")
    peers = [TlsEndpoint(pi_subject(f"peer-{i}")) for i in range(3)]
    for p in peers:
        await p.start()
    pi = await start_pi("pri", page_lines=0)
    for p in peers:
        pi.add_entry(f"{p.host}_{p.port}", p.current)
    config = write_config(workdir, {"pri": pi}, interval="30s")
    try:
        yield Lab(pi, peers, config, workdir)
    finally:
        await pi.stop()
        for p in peers:
            await p.stop()


async def started(lab: Lab, tmp: Path, *extra: str, **kw: object) -> WebExporter:
    exporter = WebExporter(lab.config, tmp, *extra, **kw)  # type: ignore[arg-type]
    await exporter.start()
    return exporter


# ---- connections ---------------------------------------------------------------------------


async def scrape_like_prometheus(url: str, timeout: float = 10.0) -> str:
    """A fresh connection per scrape, Prometheus' default timeout: success or it raises."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as s, \
            s.get(url, headers={"Accept": "text/plain;version=0.0.4"}) as r:
        assert r.status == 200
        return await r.text()


async def test_idle_connections_beyond_the_descriptor_limit_do_not_stop_a_scrape(
        lab: Lab, tmp_path: Path) -> None:
    """Started with systemd's default RLIMIT_NOFILE (1024 soft and hard), 1,500 idle
    connections: on v0.1 accept() hit EMFILE and the scrape's connection was never served."""
    assert raise_own_nofile(2000)
    exporter = await started(lab, tmp_path, "--web.max-connections", "100", nofile=(1024, 1024))
    held: list[socket.socket] = []
    try:
        held = idle_connections(exporter.port, 1500)
        await asyncio.sleep(0)
        body = await scrape_like_prometheus(exporter.url + "/metrics")
        assert value(body, "tofu_store_up", store="pri") == 1

        async def bounded() -> bool:  # evicted connections really closed: their fds are back
            scraped = await scrape_like_prometheus(exporter.url + "/metrics")
            evicted = value(scraped, "tofu_exporter_http_connections_closed_by_server_total",
                            reason="evicted")
            return bool(evicted) and exporter.open_fds() < 100 + 64
        await wait_for(bounded, 20)
    finally:
        for s in held:
            s.close()
        await exporter.stop()


async def test_idle_and_half_sent_connections_are_closed(lab: Lab, tmp_path: Path) -> None:
    """v0.1 kept a connection that sent nothing, or half a request line, for an hour."""
    exporter = await started(lab, tmp_path, "--web.idle-timeout", "1")
    try:
        idle = socket.create_connection(("127.0.0.1", exporter.port))
        half = socket.create_connection(("127.0.0.1", exporter.port))
        half.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finished
        t0 = time.monotonic()
        for s in (idle, half):
            s.settimeout(10)
            assert s.recv(1024) == b"", "the server sent data instead of closing"
        assert time.monotonic() - t0 < 6
        idle.close()
        half.close()
    finally:
        await exporter.stop()


@pytest.mark.slow
async def test_two_clients_of_10500_idle_connections_do_not_stop_a_scrape(
        lab: Lab, tmp_path: Path) -> None:
    """2 x 10,500 idle connections held by one client (two processes, each below this
    machine's per-process limit); the exporter starts at 1024 descriptors."""
    exporter = await started(lab, tmp_path, nofile=(1024, 20000))
    code = (
        "import resource, socket, sys, time\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (11000, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))\n"
        "socks = []\n"
        "for _ in range(10500):\n"
        "    s = socket.socket(); s.setblocking(False); s.connect_ex(('127.0.0.1', int(sys.argv[1])))\n"
        "    socks.append(s)\n"
        "print('held', flush=True); time.sleep(120)\n"
    )
    clients = []
    try:
        for _ in range(2):
            p = await asyncio.create_subprocess_exec(
                "python3", "-c", code, str(exporter.port), stdout=asyncio.subprocess.PIPE)
            clients.append(p)
        for p in clients:
            assert p.stdout is not None
            assert (await asyncio.wait_for(p.stdout.readline(), 120)).strip() == b"held"
        t0 = time.perf_counter()
        body = await scrape_like_prometheus(exporter.url + "/metrics")
        took = time.perf_counter() - t0
        assert value(body, "tofu_store_up", store="pri") == 1

        async def bounded() -> bool:
            return exporter.open_fds() < 512 + 128 + 64  # clients + accept backlog + own
        await wait_for(bounded, 10)
        print(f"scrape with 21,000 idle connections held: {took:.2f}s, "
              f"exporter fds {exporter.open_fds()}")
    finally:
        for p in clients:
            p.kill()
            await p.wait()
        await exporter.stop()


# ---- exposition ----------------------------------------------------------------------------


async def test_metrics_gzip_openmetrics_and_build_info(lab: Lab, tmp_path: Path) -> None:
    exporter = await started(lab, tmp_path)
    try:
        async with aiohttp.ClientSession(auto_decompress=False) as s:
            async with s.get(exporter.url + "/metrics",
                             headers={"Accept-Encoding": "identity"}) as r:
                plain = await r.read()
                assert "Content-Encoding" not in r.headers
            async with s.get(exporter.url + "/metrics", headers={"Accept-Encoding": "gzip"}) as r:
                assert r.headers["Content-Encoding"] == "gzip"
                packed = await r.read()
        text = gzip.decompress(packed).decode()  # one gzip member: every client decodes it
        assert len(packed) < len(plain) / 2  # a tiny body; the 20,000-entry one: bench/run.py
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        assert {s.labels["store"]: s.value for s in fams["tofu_store_up"].samples} == {"pri": 1.0}
        info = fams["tofu_exporter_build_info"].samples
        assert len(info) == 1 and info[0].value == 1
        assert set(info[0].labels) == {"version", "revision", "pythonversion", "asyncssh",
                                       "cryptography"}
        # Only the process chunk changes between two scrapes of one snapshot: still valid.
        _, again, _ = await exporter.get("/metrics")
        assert samples(again, "tofu_entry_info") == samples(text, "tofu_entry_info")

        async with aiohttp.ClientSession() as s, s.get(
                exporter.url + "/metrics",
                headers={"Accept": "application/openmetrics-text;version=1.0.0,"
                                   "text/plain;version=0.0.4;q=0.5"}) as r:
            assert r.headers["Content-Type"].startswith("application/openmetrics-text")
            om = await r.text()
        assert om.endswith("# EOF\n")
        om_fams = {f.name: f for f in om_parse(om)}
        assert om_fams["tofu_store_read_errors"].type == "counter"
        entries = {tuple(sorted(s.labels.items())) for s in om_fams["tofu_entry_info"].samples}
        assert entries == set(samples(text, "tofu_entry_info"))
    finally:
        await exporter.stop()


async def test_probe_answers_with_the_target_only(lab: Lab, tmp_path: Path) -> None:
    """v0.1's /probe also carried the exporter's own build and reload series."""
    exporter = await started(lab, tmp_path)
    try:
        status, body, _ = await exporter.get("/probe?target=pri")
        assert status == 200
        names = {f.name for f in text_string_to_metric_families(body)}
        assert "tofu_store_up" in names
        assert not {n for n in names if n.startswith(("tofu_exporter_", "process_", "python_"))}
    finally:
        await exporter.stop()


# ---- flags ----------------------------------------------------------------------------------


async def test_telemetry_path_and_repeated_listen_addresses(lab: Lab, tmp_path: Path) -> None:
    second = free_port()
    exporter = await started(lab, tmp_path, "--web.telemetry-path", "/internal/metrics",
                             "--web.listen-address", f"127.0.0.1:{second}")
    try:
        status, body, _ = await exporter.get("/internal/metrics")
        assert status == 200 and "tofu_store_up" in body
        assert (await exporter.get("/metrics"))[0] == 404
        async with aiohttp.ClientSession() as s, \
                s.get(f"http://127.0.0.1:{second}/internal/metrics") as r:
            assert r.status == 200
        page = (await exporter.get("/"))[1]
        assert "href='/internal/metrics'" in page
    finally:
        await exporter.stop()


async def test_systemd_socket_activation(lab: Lab, tmp_path: Path) -> None:
    sock = listening_socket()
    exporter = WebExporter(lab.config, tmp_path, "--web.systemd-socket", listen_sock=sock)
    try:
        await exporter.start()
        sock.close()  # the exporter holds its own copy (fd 3)
        status, body, _ = await exporter.get("/metrics")
        assert status == 200 and "tofu_store_up" in body
    finally:
        await exporter.stop()


async def test_systemd_socket_without_sockets_is_a_clear_error(lab: Lab, tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", "serve", "--config.file", str(lab.config),
        "--storage.path", str(tmp_path / "data"), "--web.systemd-socket",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=str(ROOT))
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2, out
    assert b"LISTEN_PID/LISTEN_FDS unset" in out


# ---- the probe port and the shipped Kubernetes probes ---------------------------------------

DEPLOYMENT = ROOT / "deploy" / "kubernetes" / "base" / "deployment.yaml"


async def test_kubernetes_probes_work_with_basic_auth_and_client_certificates(
        lab: Lab, tmp_path: Path) -> None:
    """The shipped probes, run as the kubelet runs them (plain HTTP GET, no credentials),
    against the exporter started with the deployment's own flags and a web config that
    requires basic auth and a client certificate. v0.1's probe got 401."""
    container = yaml.safe_load(DEPLOYMENT.read_text())["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    health_flag = next(a for a in container["args"] if a.startswith("--web.health-address="))
    health_port = int(health_flag.rpartition(":")[2])
    server, client = make_cert([("CN", "exporter")], sans=["127.0.0.1"]), make_cert([("CN", "c")])
    for name, data in (("web.crt", server.cert_pem), ("web.key", server.key_pem),
                       ("client.crt", client.cert_pem)):
        (tmp_path / name).write_bytes(data)
    (tmp_path / "web.key").chmod(0o600)
    (tmp_path / "web.yml").write_text(yaml.safe_dump({
        "tls_server_config": {"cert_file": "web.crt", "key_file": "web.key",
                              "client_auth_type": "RequireAndVerifyClientCert",
                              "client_ca_file": "client.crt"},
        "basic_auth_users": {"prometheus": toolkit_hash("pw")},
    }))
    probe_port = free_port()
    exporter = WebExporter(lab.config, tmp_path, f"--web.health-address=127.0.0.1:{probe_port}",
                           web_config=tmp_path / "web.yml")
    exporter.url_override = f"http://127.0.0.1:{probe_port}"  # start() polls the probe port
    main_port = exporter.port
    try:
        await exporter.start()
        async with aiohttp.ClientSession() as s:
            for probe in ("readinessProbe", "livenessProbe"):
                get = container[probe]["httpGet"]
                port = ports[get["port"]] if isinstance(get["port"], str) else get["port"]
                assert port == health_port, f"{probe} must use the health port"
                assert get.get("scheme", "HTTP") == "HTTP"
                async with s.get(f"http://127.0.0.1:{probe_port}{get['path']}") as r:
                    assert r.status == 200, (probe, await r.text())
            async with s.get(f"http://127.0.0.1:{probe_port}/metrics") as r:
                assert r.status == 404  # nothing else on the plain port
        with pytest.raises(aiohttp.ClientError):  # the main port still wants TLS + client cert
            async with aiohttp.ClientSession() as s, \
                    s.get(f"https://127.0.0.1:{main_port}/-/ready", ssl=False) as r:
                await r.read()
    finally:
        await exporter.stop()


async def test_health_port_flag_answers_plain(lab: Lab, tmp_path: Path) -> None:
    port = free_port()
    exporter = await started(lab, tmp_path, f"--web.health-address=127.0.0.1:{port}")
    try:
        async def ready() -> bool:
            async with aiohttp.ClientSession() as s, \
                    s.get(f"http://127.0.0.1:{port}/-/ready") as r:
                return r.status == 200
        assert await wait_for(ready, 10)
    finally:
        await exporter.stop()


# ---- the systemd units ---------------------------------------------------------------------

SYSTEMD = ROOT / "deploy" / "systemd"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
async def test_socket_unit_and_descriptor_limit(tmp_path: Path) -> None:
    service = (SYSTEMD / "prime-tofu-exporter.service").read_text()
    socket_unit = (SYSTEMD / "prime-tofu-exporter.socket").read_text()
    binary = re.search(r"^ExecStart=(\S+)", service, re.M)
    assert binary
    (tmp_path / "prime-tofu-exporter.service").write_text(
        service.replace(binary.group(1), sys.executable))
    (tmp_path / "prime-tofu-exporter.socket").write_text(socket_unit)
    r = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "prime-tofu-exporter.socket")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
    assert re.search(r"^ListenStream=9877$", socket_unit, re.M)
    # The documented budget: one SSH connection per store, the probes, the clients, our own.
    limit = int(re.search(r"^LimitNOFILE=(\d+)$", service, re.M).group(1))  # type: ignore[union-attr]
    assert connection_budget(512, limit, 10_000, 64) == 512


# ---- the landing page with many entries ----------------------------------------------------


async def test_big_store_page_is_bounded_and_health_answers_while_loaded(tmp_path: Path) -> None:
    """2,000 entries in one store: the page shows the worst 100 with a link to the JSON
    (v0.1 printed every row, per request, on the event loop); /-/healthy and /metrics keep
    answering while 20 clients load `/` in a loop (timings: bench/web.py)."""
    cert = make_cert([("CN", "peer")])
    pi = await start_pi("big", page_lines=0)
    for i in range(2000):  # nothing listens there: each probe is refused at once
        pi.add_entry(f"127.9.{i // 250}.{i % 250 + 1}_8443", cert)
    config = write_config(tmp_path, {"big": pi}, interval="1h",
                          store_extra={"big": {"max_entries": 5000}})
    exporter = WebExporter(config, tmp_path)
    stop = asyncio.Event()
    try:
        await exporter.start(timeout=120)
        _, page, _ = await exporter.get("/")
        assert page.count("<tr><td class='key'>127.<wbr>9.") == 100
        assert "1900 more entries" in page and "/api/v1/entries?store=big" in page
        _, body, _ = await exporter.get("/api/v1/entries?store=big")
        assert body.count('"entry"') == 2000

        async def load() -> int:
            n = 0
            async with aiohttp.ClientSession() as s:
                while not stop.is_set():
                    async with s.get(exporter.url + "/") as r:
                        assert r.status == 200
                        await r.read()
                    n += 1
            return n
        clients = [asyncio.create_task(load()) for _ in range(20)]
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as s:
            for _ in range(10):
                for path in ("/-/healthy", "/metrics"):
                    async with s.get(exporter.url + path) as r:
                        assert r.status == 200
                        await r.read()
        stop.set()
        assert sum(await asyncio.gather(*clients)) > 20
    finally:
        stop.set()
        await exporter.stop()
        await pi.stop()
