#!/usr/bin/env python3
"""Web figures with a 20,000-entry snapshot: /metrics size plain and gzip, scrape times, the
landing page, and /-/healthy and /metrics latency while 20 clients load `/` in a loop.

    .venv/bin/python bench/web.py      # from the repository root; about 1-2 minutes

The exporter runs as a real `python -m exporter serve` process against 10 lab PI servers of
2,000 entries each (every entry points at a loopback address where nothing listens, so each
probe is refused at once and the entry is `unreachable`). The 20 page clients run in their
own process, so their work does not slow the process that measures the latencies.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pilab.pki import make_cert  # noqa: E402
from tests.kit.lab import start_pi, write_config  # noqa: E402
from tests.kit.processes import Exporter  # noqa: E402

STORES, PER_STORE, CLIENTS = 10, 2000, 20
LOAD = """
import asyncio, sys, aiohttp
async def client(s, url, stop):
    n = 0
    while not stop.is_set():
        async with s.get(url) as r:
            await r.read()
        n += 1
    return n
async def main():
    stop = asyncio.Event()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        tasks = [asyncio.create_task(client(s, sys.argv[1], stop)) for _ in range(int(sys.argv[2]))]
        await asyncio.sleep(float(sys.argv[3]))
        stop.set()
        print(sum(await asyncio.gather(*tasks)), flush=True)
asyncio.run(main())
"""


async def timed(session: aiohttp.ClientSession, url: str, **kw: object) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    async with session.get(url, **kw) as r:  # type: ignore[arg-type]
        body = await r.read()
        assert r.status == 200, r.status
    return time.perf_counter() - t0, body


def pct(values: list[float], p: float) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * p))]


async def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-web-"))
    cert = make_cert([("CN", "peer")])
    pis = {}
    for s in range(STORES):
        pi = await start_pi(f"pi-{s}", page_lines=0)
        for i in range(PER_STORE):
            pi.add_entry(f"127.{s + 1}.{i // 250}.{i % 250 + 1}_8443", cert)
        pis[f"pi-{s}"] = pi
    config = write_config(work, pis, interval="1h", probe_timeout="2s",
                          store_extra={n: {"max_entries": PER_STORE} for n in pis})
    exporter = Exporter(config, work)
    t0 = time.perf_counter()
    await exporter.start(timeout=600)
    print(f"entries {STORES * PER_STORE}; first pass (ready) {time.perf_counter() - t0:.1f}s")
    url = exporter.url
    async with aiohttp.ClientSession(auto_decompress=False) as s:
        first, plain = await timed(s, url + "/metrics", headers={"Accept-Encoding": "identity"})
        again, _ = await timed(s, url + "/metrics", headers={"Accept-Encoding": "identity"})
        gz_first, packed = await timed(s, url + "/metrics", headers={"Accept-Encoding": "gzip"})
        gz_again, _ = await timed(s, url + "/metrics", headers={"Accept-Encoding": "gzip"})
        page_first, page = await timed(s, url + "/")
        page_again, _ = await timed(s, url + "/")
    print(f"/metrics plain {len(plain) / 1e6:.1f} MB: first {first:.2f}s, repeat {again:.2f}s")
    print(f"/metrics gzip {len(packed) / 1e6:.2f} MB ({len(packed) / len(plain):.1%}): "
          f"first {gz_first:.2f}s, repeat {gz_again:.2f}s")
    print(f"landing page {len(page) / 1e3:.0f} kB: first {page_first:.2f}s, repeat {page_again:.3f}s")

    duration = 20.0
    load = await asyncio.create_subprocess_exec(
        sys.executable, "-c", LOAD, url + "/", str(CLIENTS), str(duration),
        stdout=asyncio.subprocess.PIPE)
    await asyncio.sleep(1.0)
    health: list[float] = []
    metrics: list[float] = []
    metrics_gz: list[float] = []
    deadline = time.monotonic() + duration - 2
    prometheus = {"Accept-Encoding": "gzip", "Accept": "text/plain;version=0.0.4"}
    async with aiohttp.ClientSession(auto_decompress=False) as s:
        while time.monotonic() < deadline:
            health.append((await timed(s, url + "/-/healthy"))[0])
            metrics_gz.append((await timed(s, url + "/metrics", headers=prometheus))[0])
            metrics.append((await timed(s, url + "/metrics",
                                        headers={"Accept-Encoding": "identity"}))[0])
            await asyncio.sleep(0.05)
    out, _ = await load.communicate()
    pages = int(out.strip() or 0)
    print(f"while {CLIENTS} clients loaded / ({pages} pages in {duration:.0f}s, "
          f"{pages / duration:.0f}/s):")
    for name, v in (("/-/healthy", health), ("/metrics gzip (as Prometheus asks)", metrics_gz),
                    ("/metrics plain, 15 MB body", metrics)):
        print(f"  {name}: n={len(v)} p50 {statistics.median(v) * 1000:.1f} ms, "
              f"p95 {pct(v, 0.95) * 1000:.1f} ms, max {max(v) * 1000:.1f} ms")
    await exporter.stop()
    for pi in pis.values():
        await pi.stop()
    print(f"(cpu count {os.cpu_count()}; figures from one run)")


if __name__ == "__main__":
    asyncio.run(main())
