"""Lab PI servers that misbehave, for the fault matrix and the secrets test.

Fault switches: a PI CLI that hangs, drops, pages forever or lies.

`faults(pi).hang_on_command = True` makes `pi` misbehave from its next command on, open
sessions included (PiServer.cli is read on every use); `= False` makes it well again.
The lab itself (pilab) knows nothing of these: it only offers the hook points (pilab.pi.Cli).

Servers that are not (quite) SSH (RawServer with a handler: silent, banner_then_hang, ...), a PI
reinstalled with a new host key, and a PI whose listing is 50 MB, in a child process so the
exporter's memory can be measured on its own (FloodServer, peak_rss). Tests run these on a
tests.kit.lab.LoopThread, so a server busy flooding or paging cannot slow the exporter's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

from pilab.pi import MORE, MORE_ERASE, Cli, CliSession, PiServer
from pilab.pki import pi_subject
from pilab.tls import TlsEndpoint
from tests.kit.lab import ROOT


@dataclass
class FaultyCli(Cli):
    """Plain switches, read on every use, so they may change at any time."""

    no_prompt: bool = False  # a shell that never prints its banner or prompt
    hang_after_banner: bool = False  # the banner, then never a prompt
    hang_on_command: bool = False  # listcerts never answers
    drop_mid_output: bool = False  # listcerts prints half, cut mid-line, then the connection drops
    # listcerts prints its first entry whole, then the channel closes with no exit status while
    # the connection stays up: a listing cut at a line boundary, which looks complete
    close_after_first_entry: bool = False
    endless_more: bool = False  # --More-- forever, ignoring `terminal length 0` and `q`
    garbage: bytes | None = None  # listcerts prints these bytes instead
    extra_lines: Sequence[str] = ()  # printed after the entries
    # deletecert prints this instead (`{key}` filled in) and deletes nothing: a PI that
    # answers without deleting ("" says nothing; a `%` line is an error, exit status 1).
    deletecert_reply: str | None = None
    # The health monitor reconnects to a deleted peer at once: its live certificate is
    # stored again before deletecert returns to the prompt.
    restore_on_delete: bool = False

    async def greet(self, session: CliSession) -> None:
        if self.no_prompt:
            await session.hang()
        await super().greet(session)
        if self.hang_after_banner:
            await session.hang()

    def listing(self, pi: PiServer) -> str:
        return super().listing(pi) + "".join(extra + "\n\n" for extra in self.extra_lines)

    async def listcerts(self, session: CliSession, shell: bool) -> int:
        if self.hang_on_command:
            await session.hang()
        if self.garbage is not None:
            session.write(self.garbage)
            return 0
        if self.drop_mid_output:
            await _drop_mid_output(session, self.listing(session.pi))
        if self.close_after_first_entry:
            await _close_after_first_entry(session, self.listing(session.pi))
        if self.endless_more:
            await _endless(session, self.listing(session.pi).split("\n")[:-1])
        return await super().listcerts(session, shell)

    async def deletecert(self, session: CliSession, key: str) -> int:
        if self.deletecert_reply is not None:
            reply = self.deletecert_reply.replace("{key}", key)
            session.write_text(reply + "\n" if reply else "")
            return 1 if reply.lstrip().startswith("%") else 0
        status = await super().deletecert(session, key)
        if status == 0 and self.restore_on_delete:
            await session.pi.connect_peers([key])
        return status


def faults(pi: PiServer) -> FaultyCli:
    """The fault switches of `pi` (all off until set), installed on first use."""
    if not isinstance(pi.cli, FaultyCli):
        pi.cli = FaultyCli()
    return pi.cli


async def _drop_mid_output(session: CliSession, text: str) -> None:
    session.write_text(text[: _mid_line_cut(text)])
    if session.channel is not None:
        # Disconnect aborts the socket, dropping unsent bytes: let the half arrive first.
        while session.channel.get_write_buffer_size():
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        session.channel.get_connection().close()
    await session.hang()


async def _close_after_first_entry(session: CliSession, text: str) -> None:
    first = text.find("\nhost=")
    second = text.find("\nhost=", first + 1)
    session.write_text(text[: second + 1 if second >= 0 else len(text)])
    if session.channel is not None:
        while session.channel.get_write_buffer_size():
            await asyncio.sleep(0.01)
        session.channel.close()  # no exit status: the connection stays
    await session.hang()


async def _endless(session: CliSession, lines: list[str]) -> None:
    """Pages forever, ignoring `terminal length 0` and `q`: the client must give up."""
    page = session.page_lines or session.pi.page_lines or 20
    i = 0
    while True:
        for _ in range(page):
            session.write_text((lines[i % len(lines)] if lines else "") + "\n")
            i += 1
        session.write(MORE.encode())
        if await session.read_key() is None:
            await session.hang()
        session.write(MORE_ERASE.encode())


def _mid_line_cut(text: str) -> int:
    """An offset near the middle of `text` inside an entry line (any non-blank line if none)."""
    mid = len(text) // 2
    best: tuple[int, int] | None = None  # (distance, cut)
    offset = 0
    entries = "\nhost=" in text
    for line in text.split("\n"):
        if line.startswith("host=") if entries else line.strip():
            cut = offset + max(1, len(line) // 2)
            if best is None or abs(cut - mid) < best[0]:
                best = (abs(cut - mid), cut)
        offset += len(line) + 1
    return best[1] if best else mid


# --- SSH servers that misbehave -------------------------------------------------------------

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
from tests.kit.faults import faults

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
