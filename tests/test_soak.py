"""Soak: 500 refresh cycles in which entries come and go and endpoints change address.

Real parts: two lab PI servers over SSH, one TLS listener on every loopback address (so each
127.a.b.c:port is a distinct endpoint, as after a re-addressing), the real Service and its
SQLite database. The cycle is driven directly (Service.run_once) instead of by the loops'
timers, so 500 cycles take seconds.

The bounds, derived rather than tuned:
- rows: `baselines` holds exactly one row per entry the stores hold now (STORES x LIVE),
  `endpoints` and the in-memory probe results at most one per endpoint those entries name
  (<= STORES x LIVE), whatever the number of cycles; before the redesign both grew by every
  endpoint ever seen (CYCLES x STORES x CHURN = 6,000 here).
- RSS: the state after cycle WARM and after the last cycle is the same size (same number of
  entries, probes, rows), so the process must not grow between them by more than a quarter
  of what keeping every endpoint ever seen would cost (RETAINED_BYTES per endpoint, a
  ProbeResult with its LiveCert and strings, measured with tracemalloc below).
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import itertools
import multiprocessing
import sqlite3
import tracemalloc
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from exporter.config.load import load_config
from exporter.probes.seam import Target
from exporter.probes.tls import probe_many
from exporter.service.service import Service
from pilab.pki import pi_subject
from pilab.tls import TlsEndpoint
from tests.kit.lab import start_pi, write_config

STORES, LIVE, CHURN, CYCLES, WARM = 2, 12, 6, 500, 100


def rss_bytes() -> int:
    """Resident memory after glibc gives back the free pages it keeps (malloc_trim): what is
    retained, not what the allocator happens to cache. Without it the growth measured
    varied from 2 to 14 MiB run to run (bound 12.9) and failed a CI run; with it 1.7-1.9."""
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096


def rows(db: Path, table: str) -> int:
    with sqlite3.connect(db) as con:
        return int(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


async def retained_bytes_per_probe(port: int) -> int:
    """What one endpoint's probe result costs in memory, if kept."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    results = await probe_many([Target(f"127.0.9.{i + 1}:{port}", 2.0, "jsse8") for i in range(50)],
                               asyncio.Semaphore(16))
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert all(r.cert is not None for r in results.values())
    return used // len(results)


def test_500_cycles_of_churn_keep_rows_and_memory_bounded(tmp_path: Path) -> None:
    # In a fresh process: its RSS is the soak's own, not what earlier tests left in this one.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        pool.submit(_soak_in_child, tmp_path).result(timeout=600)


def _soak_in_child(tmp_path: Path) -> None:
    asyncio.run(_soak(tmp_path))


async def _soak(tmp_path: Path) -> None:
    tls = TlsEndpoint(pi_subject("churn"), host="0.0.0.0")  # every 127.x.y.z reaches it
    await tls.start()
    pis = {f"pi-{i}": await start_pi(f"pi-{i}", page_lines=0) for i in range(STORES)}
    addresses = (f"127.{1 + n // 60000}.{n // 250 % 240}.{n % 250 + 2}" for n in itertools.count())
    live: dict[str, list[str]] = {name: [] for name in pis}

    def churn(k: int) -> None:
        for name, pi in pis.items():
            for key in live[name][:k]:
                pi.remove_entry(key)
            live[name] = live[name][k:]
            while len(live[name]) < LIVE:
                key = f"{next(addresses)}_{tls.port}"
                pi.add_entry(key, tls.current)
                live[name].append(key)

    churn(0)
    cfg = load_config(write_config(tmp_path, pis, interval="1h", probe_timeout="2s"))
    service = Service(cfg, tmp_path / "data")
    db = tmp_path / "data" / "baseline.db"
    try:
        per_probe = await retained_bytes_per_probe(tls.port)
        rss_warm = 0
        for cycle in range(1, CYCLES + 1):
            churn(CHURN)
            snap = await service.run_once()
            assert len(snap.views) == STORES * LIVE
            if cycle == WARM:
                gc.collect()
                rss_warm = rss_bytes()
            if cycle % 100 == 0:
                assert rows(db, "baselines") == STORES * LIVE
                assert rows(db, "endpoints") <= STORES * LIVE
                assert len(service.probes) <= STORES * LIVE
        gc.collect()
        grown = rss_bytes() - rss_warm
        seen_after_warm = (CYCLES - WARM) * STORES * CHURN
        allowance = seen_after_warm * per_probe // 4
        assert grown <= allowance, (
            f"RSS grew {grown / 2**20:.1f} MiB over {CYCLES - WARM} cycles; bound "
            f"{allowance / 2**20:.1f} MiB (a quarter of {seen_after_warm} endpoints x {per_probe} B)")
        # Every entry still decided from a real probe of its current address.
        assert all(v.probe is not None and v.probe.cert is not None for v in snap.views)
    finally:
        await service.stop()
        for pi in pis.values():
            await pi.stop()
        await tls.stop()
