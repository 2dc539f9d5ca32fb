"""A PI store with 100,000 entries (`max_entries: 100000`) through a real exporter process:
every entry is exported, the gzip scrape Prometheus makes and a plain scrape carry the same
series (the store's exposition is kept deflated between scrapes), the landing page stays
small and links to the full JSON, and a small store beside it is not hidden. Slow (about
half a minute); the memory and time figures are bench/large_store.py's."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from pilab.pki import make_cert, pi_subject
from pilab.tls import TlsEndpoint
from tests.kit.lab import free_port, start_pi, write_config
from tests.kit.processes import Exporter

pytestmark = pytest.mark.slow

N = 100_000
SAMPLE = re.compile(rb"^tofu_(entry_info|certificate_\w+|store_\w+)\{.*$", re.M)


@pytest.fixture
async def config(tmp_path: Path) -> AsyncIterator[Path]:
    """A config for the big store and a small one beside it, both served by lab PIs."""
    certs = [make_cert(pi_subject(f"peer-{i:03d}.example.com")) for i in range(50)]
    refused = free_port()  # nothing listens there: every big-store probe is refused at once
    big = await start_pi("big", page_lines=0)
    for i in range(N):
        big.add_entry(f"127.{20 + i // 62500}.{i // 250 % 250}.{i % 250 + 2}_{refused}",
                      certs[i % len(certs)])
    peer = TlsEndpoint(pi_subject("ise.example.com"))
    await peer.start()
    small = await start_pi("small", entries={f"{peer.host}_{peer.port}": peer})
    try:
        yield write_config(tmp_path, {"big": big, "small": small}, interval="1h",
                           extra={"probe_concurrency": 64},
                           store_extra={"big": {"max_entries": N, "command_timeout": "300s"}})
    finally:
        await big.stop()
        await small.stop()
        await peer.stop()


@pytest.fixture
async def exporter(config: Path, tmp_path: Path) -> AsyncIterator[Exporter]:
    exp = Exporter(config, tmp_path)
    try:
        await exp.start(timeout=600)
        yield exp
    finally:
        await exp.stop()


async def _get(url: str, encoding: str) -> tuple[dict[str, str], bytes]:
    async with aiohttp.ClientSession() as s, s.get(
            url, headers={"Accept-Encoding": encoding},
            timeout=aiohttp.ClientTimeout(total=300)) as r:
        assert r.status == 200
        return dict(r.headers), await r.read()  # aiohttp decodes gzip, checks its trailer


async def test_a_100000_entry_store_is_exported_whole_and_the_page_stays_small(
        exporter: Exporter) -> None:
    zipped_headers, zipped = await _get(exporter.url + "/metrics", "gzip")
    plain_headers, plain = await _get(exporter.url + "/metrics", "identity")
    assert zipped_headers["Content-Encoding"] == "gzip"
    assert "Content-Encoding" not in plain_headers
    assert len(plain) > 50_000_000  # about 1 kB of series per entry
    # The same series either way, and the packed slices joined in the right order.
    assert SAMPLE.findall(zipped) == SAMPLE.findall(plain)
    lines = plain.splitlines()
    assert sum(ln.startswith(b'tofu_entry_info{') and b'store="big"' in ln for ln in lines) == N
    assert b'tofu_store_entries_dropped{store="big"} 0.0' in lines
    assert b'tofu_store_entries{store="big"} 100000.0' in lines
    big_states = [ln for ln in lines if ln.startswith(b'tofu_certificate_state{')
                  and b'store="big"' in ln and ln.endswith(b" 1.0")]
    assert len(big_states) == N and all(b'state="unreachable"' in ln for ln in big_states)
    small = [ln for ln in lines if ln.startswith(b'tofu_certificate_state{')
             and b'store="small"' in ln and ln.endswith(b" 1.0")]
    assert len(small) == 1 and b'state="unknown"' in small[0]  # a first read: no baseline yet

    status, page, _ = await exporter.get("/")
    assert status == 200 and len(page) < 1_000_000
    assert "100000 entries (<a href='/api/v1/entries?store=big'>all as JSON</a>)" in page
    assert "99900 more entries, worst first above" in page
    assert "<h2 id='store-small'>small</h2>" in page


def _worker_running(pid: int) -> bool:
    """A thread other than the event loop's is on a CPU and has used over 0.3 s of it: a
    store being parsed, recorded, decided or rendered off the loop."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        if int(task.name) == pid:
            continue
        with contextlib.suppress(OSError):  # the thread ended meanwhile
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] == "R" and int(fields[11]) / os.sysconf("SC_CLK_TCK") > 0.3:
                return True
    return False


async def test_healthy_answers_within_a_second_throughout_the_first_pass(
        config: Path, tmp_path: Path) -> None:
    """Parsing, recording and deciding 100,000 entries takes seconds of CPU: on the event loop
    it held /-/healthy (a liveness probe) and every scrape for over 2 s at a time. In worker
    threads, the loop answers within a second from start to ready."""
    exp = Exporter(config, tmp_path)
    try:
        await exp.start(ready=False, timeout=60)
        assert exp.proc is not None and exp.session is not None
        deadline = time.monotonic() + 300
        slowest, workers_seen, ready = 0.0, 0, False
        while not ready:
            assert time.monotonic() < deadline and exp.proc.returncode is None, exp.log()
            workers_seen += _worker_running(exp.proc.pid)
            t = time.monotonic()
            async with exp.session.get(exp.url + "/-/healthy",
                                       timeout=aiohttp.ClientTimeout(total=30)) as r:
                assert r.status == 200
            slowest = max(slowest, time.monotonic() - t)
            async with exp.session.get(exp.url + "/-/ready") as r:
                ready = r.status == 200
            await asyncio.sleep(0.02)
    finally:
        await exp.stop()
    assert workers_seen > 0, "the big store was never seen worked on off the loop"
    assert slowest < 1.0, f"/-/healthy took {slowest:.2f} s during the first pass"


async def test_sigterm_while_a_worker_decides_the_big_store_ends_serve_cleanly_within_2_s(
        config: Path, tmp_path: Path) -> None:
    """SIGTERM while a worker thread records and decides the big store (the event loop is
    free, the thread is not): serve ends within 2 s, with status 0 and no error logged. The
    first busy stretch is the parse; after the probes (seconds with no worker busy) comes
    the decision, which writes the database: closing it under that worker used to log
    `cannot record history ... closed database`."""
    exp = Exporter(config, tmp_path)
    await exp.start(ready=False, timeout=60)
    assert exp.proc is not None and exp.session is not None
    deadline = time.monotonic() + 300
    stretches, last_busy = 0, 0.0
    while True:
        assert time.monotonic() < deadline and exp.proc.returncode is None, exp.log()
        if _worker_running(exp.proc.pid):
            if time.monotonic() - last_busy > 1.0:
                stretches += 1
            last_busy = time.monotonic()
            if stretches == 2:
                break
        async with exp.session.get(exp.url + "/-/ready") as r:
            assert r.status == 503, "ready before the decision was ever seen in a worker"
        await asyncio.sleep(0.02)
    t0 = time.monotonic()
    exp.signal(signal.SIGTERM)
    code = await asyncio.wait_for(exp.proc.wait(), 30)
    took = time.monotonic() - t0
    await exp.session.close()
    log = exp.log()
    assert code == 0 and took < 2.0, (code, took, log[-2000:])
    assert not [ln for ln in log.splitlines() if "level=error" in ln], log[-3000:]
