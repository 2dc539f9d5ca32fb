"""`accept` on a real pseudo-terminal: wait for its question, let the test change the world
(a certificate regenerated, an entry re-stored, a Service deciding), then answer."""

from __future__ import annotations

import asyncio
import os
import pty
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

EXPORTER = [sys.executable, "-m", "exporter"]
REASON = "HA page: Primary Active, secondary synced; ISE connection test passed"
PROMPT = b"Type 'yes'"


async def accept_on_terminal(cfg: Path, data: Path, answer: str, *args: str,
                             between: Callable[[], Awaitable[None]] | None = None,
                             env: dict[str, str] | None = None) -> tuple[int, str]:
    """`accept` with a pty as stdin/stdout/stderr; `between` runs once the question is on
    the terminal and before the answer is typed. Returns the exit code and everything shown."""
    master, slave = pty.openpty()
    proc = await asyncio.create_subprocess_exec(
        *EXPORTER, "accept", "--config.file", str(cfg), "--storage.path", str(data),
        "--log.level", "warn", "--reason", REASON, *args,
        stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    seen = b""

    def read() -> bytes:
        try:
            return os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            return b""

    try:
        while PROMPT not in seen:
            chunk = await asyncio.wait_for(asyncio.to_thread(read), 60)
            assert chunk, seen.decode(errors="replace")
            seen += chunk
        if between is not None:
            await between()
        os.write(master, answer.encode() + b"\n")
        while chunk := await asyncio.wait_for(asyncio.to_thread(read), 60):
            seen += chunk
        return await asyncio.wait_for(proc.wait(), 30), seen.decode(errors="replace")
    finally:
        os.close(master)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
