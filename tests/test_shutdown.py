"""Shutdown never hangs: a read cancelled at any point (connecting, logging in, paging,
mid-output, exactly as it completes) ends at once, and the session closes within a deadline.

Python 3.11's asyncio.wait_for returns the result when a cancellation races with the
awaited read completing: the cancellation is lost and the "cancelled" read goes on. Each
round here cancels a real read against the lab SSH server at a different moment and
requires that the cancellation is never lost: a read not finished when cancel() was called
ends cancelled, and the session then closes within ROUND_DEADLINE.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

from exporter.sources.prime.ssh import PiSession, StoreReadError
from pilab.pi import PiServer
from pilab.pki import make_cert, pi_subject
from tests.kit.faults import faults
from tests.kit.lab import start_pi, store_config

ROUND_DEADLINE = 5.0  # far above a close (ms); a hang is what fails a round
ENTRIES = 5000  # max_entries' default: a read long enough (~0.1 s) to cut into


async def _pi() -> PiServer:
    pi = await start_pi("prime-stress")
    cert = make_cert(pi_subject("peer"))
    for i in range(ENTRIES):
        pi.add_entry(f"10.{i // 250}.{i % 250}.9_8082", cert)
    return pi


async def _rounds(tmp: Path, n: int, seed: int) -> Counter[str]:
    """n start/stop rounds; returns how each cancel landed. Raises on a hang or lost cancel."""
    rng = random.Random(seed)
    pi = await _pi()
    outcomes: Counter[str] = Counter()
    try:
        base = store_config(pi, tmp, command_timeout=30.0, connect_timeout=10.0)
        # How long one full read takes per mode, to spread the cancels over all of it.
        spans = {}
        for mode in ("shell", "exec"):
            took = []
            for _ in range(3):
                s = PiSession(replace(base, cli_mode=mode))
                t0 = time.perf_counter()
                assert "host=" in await s.run(base.listcerts_command)
                took.append(time.perf_counter() - t0)
                await s.close()
            spans[mode] = sorted(took)[1]
        for i in range(n):
            mode = ("shell", "exec")[i % 2]
            session = PiSession(replace(base, cli_mode=mode))
            faults(pi).hang_on_command = False
            if i % 5 == 1:  # a kept session: the read starts with draining the old shell
                await session.run(base.listcerts_command)
            faults(pi).hang_on_command = i % 7 == 3  # a PI that never answers: cancel must still work
            commands = len(pi.commands)
            task = asyncio.create_task(session.run(base.listcerts_command))
            # The moment of the stop is the variable under test, not a synchronisation.
            await asyncio.sleep(rng.uniform(0, spans[mode]))
            done_before = task.done()
            mid_read = base.listcerts_command in pi.commands[commands:] and not done_before
            task.cancel()
            t0 = time.monotonic()
            try:
                async with asyncio.timeout(ROUND_DEADLINE):
                    with contextlib.suppress(asyncio.CancelledError, StoreReadError):
                        await task
                    await session.close()
            except TimeoutError:
                raise AssertionError(
                    f"round {i} ({mode}): stop hung for more than {ROUND_DEADLINE}s") from None
            if not done_before:
                went_on = "" if task.cancelled() else (
                    f"an error: {task.exception()}" if task.exception() else "a result")
                assert task.cancelled(), (
                    f"round {i} ({mode}): cancel() during the read was lost; the read went on "
                    f"and returned {went_on}"
                )
            assert session._conn is None  # closed, not left for the next round
            outcomes["mid-read" if mid_read else "finished" if done_before else "before-command"] += 1
            outcomes[f"stop-ms-max-{mode}"] = max(
                outcomes[f"stop-ms-max-{mode}"], int(1000 * (time.monotonic() - t0)))
    finally:
        await pi.stop()
    return outcomes


async def test_300_start_stop_rounds_never_hang(tmp_path: Path) -> None:
    """About 15 s: in the default suite (a hang here is what the per-test timeout is for)."""
    got = await _rounds(tmp_path, 300, seed=2)
    assert got["mid-read"] >= 75, got  # a quarter of the rounds really cut into a read
