"""Misbehaving SSH servers for the fault matrix and the secrets test.

The lab servers run on their own event loop in a thread (LabThread), so a server busy
flooding or paging cannot slow the exporter's loop: what the tests measure is the
exporter. The 50 MB flood runs in a child process so the exporter's memory can be
measured on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncssh

from pilab.pi import PiServer
from pilab.pki import pi_subject
from pilab.tls import TlsEndpoint
from tests.conftest import free_port, start_pi  # noqa: F401  (sf.free_port, sf.start_pi)

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent


class LabThread:
    """An asyncio loop in a daemon thread hosting lab servers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="lab", daemon=True)
        self._thread.start()

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def run_sync(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)




def random_known_hosts_line(host: str, port: int) -> str:
    pub = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().split()
    return f"[{host}]:{port} {pub[0]} {pub[1]}"


# --- raw TCP servers that are not (quite) SSH ---------------------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _hold(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(ConnectionError):
        while await reader.read(4096):
            pass


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accepts TCP, never says a word."""
    await _hold(reader)
    writer.close()


async def banner_then_hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"SSH-2.0-OpenSSH_8.0\r\n")
    await writer.drain()
    await _hold(reader)
    writer.close()


async def close_during_kex(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Banner exchange, the client's KEXINIT arrives, then half a KEXINIT and a hard close."""
    writer.write(b"SSH-2.0-OpenSSH_8.0\r\n")
    await writer.drain()
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
        await reader.readline()  # client banner
        await reader.readexactly(64)  # the start of its KEXINIT packet
    writer.write(b"\x00\x00\x03\x0c\x0a\x14" + b"\x00" * 10)
    writer.transport.abort()


async def speaks_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    await writer.drain()
    writer.close()


@dataclass
class RawServer:
    handler: Handler
    host: str = "127.0.0.1"
    port: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> None:
        async def track(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)  # type: ignore[arg-type]
            try:
                await self.handler(r, w)
            finally:
                self._tasks.discard(task)  # type: ignore[arg-type]

        self._server = await asyncio.start_server(track, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._server = None


# --- lab PI servers ---------------------------------------------------------------------




async def restart_with_new_key(pi: PiServer, password: str) -> PiServer:
    """The same PI on the same port after a reinstall: same store, new host key."""
    port = pi.port
    await pi.stop()
    new = PiServer(pi.hostname, port=port, users={"admin": password}, style=pi.style)
    for key, stored in pi.entries().items():
        new.add_entry(key, stored.der)
    await new.start()
    return new


async def start_tls() -> TlsEndpoint:
    ep = TlsEndpoint(pi_subject("ISE-server"))
    await ep.start()
    return ep


# --- the 50 MB flood, in its own process ----------------------------------------------------

_FLOOD = """
import asyncio, json, sys
from pilab.pi import PiServer
from tests.faultlab import faults

async def main():
    pi = PiServer("flood", users={"admin": sys.argv[1]})
    faults(pi).extra_lines = ["x" * 9999] * int(sys.argv[2])  # 10 kB lines
    await pi.start()
    print(json.dumps({"port": pi.port, "known_hosts": pi.known_hosts_line()}), flush=True)
    await asyncio.to_thread(sys.stdin.read)  # the test went away: so do we

asyncio.run(main())
"""


@dataclass
class FloodServer:
    """A lab PI whose listcerts prints `mib` MiB, in a child process."""

    password: str
    mib: int = 50
    proc: subprocess.Popen[str] | None = None
    port: int = 0
    known_hosts: str = ""

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _FLOOD, self.password, str(self.mib * 105)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )
        assert self.proc.stdout is not None
        info = json.loads(self.proc.stdout.readline())
        self.port, self.known_hosts = info["port"], info["known_hosts"]

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)


def peak_rss_reset() -> int:
    """Reset this process's peak RSS (Linux clear_refs 5); returns the current RSS in bytes."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status("VmRSS")


def peak_rss() -> int:
    return _status("VmHWM")


def _status(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field_name)
