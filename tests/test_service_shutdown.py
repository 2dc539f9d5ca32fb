"""Shutdown never hangs (issue 10), at the level of the whole service and process.

- SIGTERM ends a real `prime-tofu-exporter serve` within 2 s, exit code 0, while a lab PI
  hangs mid-command in its store loop (and a /probe request queues behind it); the
  baselines on disk are intact afterwards.
- Service start/stop rounds across shell and exec mode with stores mid-read (a PI that
  never answers, stops landing at random points of real reads): every stop() returns within
  its deadline and leaves no task of the service running.
(tests/test_shutdown.py, from the storage work, covers the same at the PiSession level.)
"""

from __future__ import annotations

import asyncio
import random
import signal
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
import pytest_asyncio

from exporter.config.load import load_config
from exporter.config.model import Config
from exporter.service.service import Service
from pilab.pi import LISTCERTS, PiServer
from pilab.pki import pi_subject
from pilab.tls import TlsEndpoint
from tests.kit.faults import faults
from tests.kit.lab import start_pi, write_config
from tests.kit.processes import Exporter, value, wait_for

LISTCERTS_CMD = " ".join(LISTCERTS)


@pytest_asyncio.fixture
async def lab() -> AsyncIterator[dict[str, PiServer]]:
    peer = TlsEndpoint(pi_subject("ise"))
    await peer.start()
    entries = {f"{peer.host}_{peer.port}": peer}
    pis = {
        "shell": await start_pi("shell", page_lines=5, entries=entries),
        "exec": await start_pi("exec", page_lines=0, entries=entries),
        "hung": await start_pi("hung", page_lines=0, entries=entries),
    }
    yield pis
    for pi in pis.values():
        await pi.stop()
    await peer.stop()


async def test_sigterm_ends_serve_within_2s_while_a_pi_hangs(
    lab: dict[str, PiServer], tmp_path: Path
) -> None:
    config = write_config(tmp_path, lab, interval="1s",
                          store_extra={"exec": {"cli_mode": "exec"}})
    text = config.read_text().replace('command_timeout: 5s', 'command_timeout: 60s')
    config.write_text(text)
    exporter = Exporter(config, tmp_path)
    await exporter.start()
    try:
        body, _ = await exporter.metrics()
        assert all(value(body, "tofu_store_up", store=s) == 1 for s in lab)
        hung = lab["hung"]
        faults(hung).hang_on_command = True
        asked = hung.commands.count(LISTCERTS_CMD)

        async def stuck() -> bool:  # the store loop is now inside a read that never ends
            return hung.commands.count(LISTCERTS_CMD) > asked

        await wait_for(stuck, 10, step=0.05)
        # A /probe of the same PI queues behind the stuck read (one session per store).
        probe = asyncio.create_task(exporter.get("/probe?target=hung"))
        assert exporter.proc is not None
        t0 = time.monotonic()
        exporter.signal(signal.SIGTERM)
        code = await asyncio.wait_for(exporter.proc.wait(), 10)
        took = time.monotonic() - t0
        print(f"SIGTERM to exit: {took:.3f} s")
        assert took < 2.0, (took, exporter.log())
        assert code == 0, exporter.log()
        probe.cancel()
        await asyncio.gather(probe, return_exceptions=True)
    finally:
        await exporter.stop()
    db = sqlite3.connect(tmp_path / "data" / "baseline.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        stores = {s for (s,) in db.execute("SELECT DISTINCT store FROM baselines")}
        assert stores == set(lab)
    finally:
        db.close()


def _fast(config: Config) -> Config:
    """Loops that re-read at once, so a stop lands in the middle of reads and probes."""
    return replace(config, stores=tuple(
        replace(s, store_interval=0.01, probe_interval=0.01) for s in config.stores))


async def _rounds(config: Config, tmp: Path, rounds: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    worst = 0.0
    for i in range(rounds):
        service = Service(config, ":memory:")
        started = service.launch()
        # Stop during the first pass, or once the loops run (then mid-read: they never wait).
        await asyncio.sleep(rng.uniform(0, 0.25))
        t0 = time.monotonic()
        try:
            async with asyncio.timeout(5):
                await service.stop()
        except TimeoutError:
            pytest.fail(f"round {i}: stop() hung (seed {seed})")
        worst = max(worst, time.monotonic() - t0)
        tasks = [started, service._probe_task, *(s.task for s in service.stores.values())]
        # Each one ended or was left behind (logged) within the deadline; none may survive
        # the next round's deadline either.
        left = [t for t in tasks if t is not None and not t.done()]
        if left:
            await asyncio.wait(left, timeout=5)
            assert all(t.done() for t in left), f"round {i}: tasks still running {left}"
    return {"rounds": rounds, "worst_stop_seconds": worst}


async def _stress(lab: dict[str, PiServer], tmp: Path, rounds: int) -> None:
    faults(lab["hung"]).hang_on_command = True  # a store that is always mid-read
    config = write_config(tmp, lab, store_extra={"exec": {"cli_mode": "exec"}})
    cfg = _fast(load_config(config))
    t0 = time.monotonic()
    figures = await _rounds(cfg, tmp, rounds, seed=rounds)
    print(f"{figures['rounds']} rounds in {time.monotonic() - t0:.1f} s, "
          f"worst stop {figures['worst_stop_seconds']:.3f} s, 0 hangs")
    assert figures["worst_stop_seconds"] < 2.0


async def test_start_stop_rounds_never_hang(lab: dict[str, PiServer], tmp_path: Path) -> None:
    await _stress(lab, tmp_path, 40)


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_300_start_stop_rounds_never_hang(lab: dict[str, PiServer], tmp_path: Path) -> None:
    await _stress(lab, tmp_path, 300)


async def test_reload_awaits_the_loop_of_a_removed_store_mid_read(
    lab: dict[str, PiServer], tmp_path: Path
) -> None:
    hung = lab["hung"]
    config = _fast(load_config(write_config(tmp_path, lab, store_extra={"exec": {"cli_mode": "exec"}})))
    service = Service(config, ":memory:")
    await service.start()
    try:
        task = service.state("hung").task
        assert task is not None
        faults(hung).hang_on_command = True
        asked = hung.commands.count(LISTCERTS_CMD)

        async def stuck() -> bool:
            return hung.commands.count(LISTCERTS_CMD) > asked

        await wait_for(stuck, 10, step=0.02)
        t0 = time.monotonic()
        await service.apply_config(replace(config, stores=tuple(
            s for s in config.stores if s.name != "hung")))
        took = time.monotonic() - t0
        # Awaited (main only cancelled it and went on), and within the deadline.
        assert task.done() and took < 2.0, (task, took)
        assert "hung" not in service.stores
    finally:
        await service.stop()
