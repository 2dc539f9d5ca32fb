#!/usr/bin/env python3
"""Benchmark: one PI store with 100,000 entries and `max_entries: 100000`.

    python3 bench/large_store.py                 # this tree, about 2-4 minutes
    python3 bench/large_store.py --tree ../old   # the same measurement of another checkout

A simulated PI server (bench/lab_proc.py, its own process) holds N entries; every entry
names its own loopback address on a port nobody listens on, so each probe is a real
connection attempt that is refused at once (N probes without N TLS servers). The exporter
runs as `python -m exporter serve` from --tree; figures are from /proc/<pid>/status VmHWM
(peak resident set) at each step: the first read and probe pass (/-/ready), the first and
a repeat /metrics scrape (gzip, as Prometheus asks) and a plain one, and one landing page
request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from run import PASSWORD, free_port, start_lab, status_kb, stop, wait_http  # noqa: E402

from pilab.pki import make_cert, pi_subject  # noqa: E402


def hwm_mb(pid: int) -> float:
    return status_kb(pid, "VmHWM") / 1024


def entries(n: int, port: int, subjects: int) -> list[tuple[str, str]]:
    """Distinct loopback addresses (never 127.0.0.1, PI's own-address key), certificates
    (subjects) taken in turn from `subjects` distinct ones."""
    return [(f"127.{20 + i // 62500}.{i // 250 % 250}.{i % 250 + 2}_{port}", f"c{i % subjects}")
            for i in range(n)]


def write_config(work: Path, lab_stores: dict[str, dict[str, object]], n: int, mode: str) -> Path:
    (work / "pi-password").write_text(PASSWORD)
    (work / "pi-password").chmod(0o600)
    kh = work / "known_hosts"
    kh.write_text("".join(f"{s['known_hosts']}\n" for s in lab_stores.values()))
    cfg = {
        "defaults": {
            "username": "admin", "password_file": str(work / "pi-password"),
            "known_hosts": str(kh), "cli_mode": mode, "connect_timeout": "20s",
            "command_timeout": "300s", "probe_timeout": "5s",
            "store_interval": "1h", "probe_interval": "1h", "max_entries": n,
        },
        "stores": [{"name": name, "host": s["host"], "port": s["port"]}
                   for name, s in lab_stores.items()],
        "probe_concurrency": 64,
    }
    path = work / "exporter.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


async def timed_get(session: aiohttp.ClientSession, url: str,
                    encoding: str = "gzip") -> tuple[float, int, int]:
    t = time.perf_counter()
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=600),
                           headers={"Accept-Encoding": encoding}) as r:
        body = await r.read()
        return time.perf_counter() - t, r.status, len(body)


async def poll_health(url: str, done: asyncio.Event) -> list[float]:
    """Answer times of /-/healthy, asked every 50 ms until `done`: the longest is how long
    the exporter's event loop was held (a liveness probe waits exactly that long)."""
    times: list[float] = []
    async with aiohttp.ClientSession() as s:
        while not done.is_set():
            t = time.perf_counter()
            async with s.get(url, timeout=aiohttp.ClientTimeout(total=60)) as r:
                await r.read()
            times.append(time.perf_counter() - t)
            await asyncio.sleep(0.05)
    return times


async def measure(args: argparse.Namespace) -> None:
    tree = Path(args.tree).resolve()
    with tempfile.TemporaryDirectory(prefix="tofu-large-") as tmp:
        work = Path(tmp)
        certs = {}
        for i in range(args.subjects):
            certs[f"c{i}"] = work / f"c{i}.der"
            certs[f"c{i}"].write_bytes(make_cert(pi_subject(f"peer-{i:05d}.example.com")).der)
        t = time.monotonic()
        lab = start_lab(work, "large", certs,
                        [("pi-large", entries(args.entries, free_port(), args.subjects))])
        print(f"lab with {args.entries} entries up in {time.monotonic() - t:.0f} s", flush=True)
        cfg = write_config(work, lab.stores, args.entries, args.cli_mode)
        port = free_port()
        log = (work / "exporter.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "exporter", "serve", "--config.file", str(cfg),
             "--web.listen-address", f"127.0.0.1:{port}", "--storage.path", str(work / "data"),
             "--log.level", "warn"],
            cwd=tree, stderr=log, env={**os.environ, "PYTHONPATH": str(tree)},
        )
        base = f"http://127.0.0.1:{port}"
        try:
            t0 = await wait_http(f"{base}/-/healthy", proc, 60, 0.05)
            done = asyncio.Event()
            poller = asyncio.create_task(poll_health(f"{base}/-/healthy", done))
            t1 = await wait_http(f"{base}/-/ready", proc, 1800, 0.2)
            figures: dict[str, float] = {"ready_s": t1 - t0, "rss_ready_mb": hwm_mb(proc.pid)}
            async with aiohttp.ClientSession() as s:
                for k, encoding in (("first", "gzip"), ("repeat", "gzip"), ("plain", "identity")):
                    took, status, size = await timed_get(s, f"{base}/metrics", encoding)
                    assert status == 200, status
                    figures[f"metrics_{k}_s"] = took
                    figures["metrics_mb"] = size / 1e6
                figures["rss_scraped_mb"] = hwm_mb(proc.pid)
                took, status, size = await timed_get(s, f"{base}/")
                figures.update(landing_s=took, landing_mb=size / 1e6,
                               rss_landing_mb=hwm_mb(proc.pid))
            done.set()
            health = sorted(await poller)
            figures.update(health_max_s=health[-1], health_p99_s=health[int(len(health) * 0.99)],
                           health_over_100ms=sum(h > 0.1 for h in health), health_n=len(health))
        finally:
            stop(proc)
            stop(lab.proc)
            log.close()
        errors = [ln for ln in (work / "exporter.log").read_text(errors="replace").splitlines()
                  if "level=error" in ln]
    print(f"tree: {tree}  ({args.entries} entries, max_entries {args.entries}, "
          f"cli_mode {args.cli_mode}, {args.subjects} distinct subjects)")
    print(f"  first read + probe pass (/-/healthy -> /-/ready): {figures['ready_s']:.1f} s")
    print(f"  peak RSS (VmHWM) after the first pass:   {figures['rss_ready_mb']:.0f} MB")
    print(f"  /metrics (gzip, as Prometheus asks) first scrape {figures['metrics_first_s']:.2f} s, "
          f"repeat {figures['metrics_repeat_s']:.2f} s; plain {figures['metrics_plain_s']:.2f} s; "
          f"{figures['metrics_mb']:.1f} MB uncompressed")
    print(f"  peak RSS after the scrapes:              {figures['rss_scraped_mb']:.0f} MB")
    print(f"  landing page {figures['landing_s']:.2f} s, {figures['landing_mb']:.1f} MB")
    print(f"  peak RSS after the landing page:         {figures['rss_landing_mb']:.0f} MB")
    print(f"  /-/healthy asked every 50 ms throughout: {figures['health_n']:.0f} answers, "
          f"longest {figures['health_max_s'] * 1000:.0f} ms, p99 {figures['health_p99_s'] * 1000:.0f} ms, "
          f"{figures['health_over_100ms']:.0f} over 100 ms")
    if errors:
        print(f"  exporter logged {len(errors)} errors, first: {errors[0][:300]}")
    if args.json:
        print(json.dumps(figures))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--entries", type=int, default=100_000)
    p.add_argument("--subjects", type=int, default=1000,
                   help="distinct certificates (subjects) among the entries")
    p.add_argument("--cli-mode", choices=["shell", "exec"], default="shell")
    p.add_argument("--tree", default=str(ROOT), help="checkout whose exporter is measured")
    p.add_argument("--json", action="store_true", help="also print the figures as JSON")
    asyncio.run(measure(p.parse_args()))


if __name__ == "__main__":
    main()
