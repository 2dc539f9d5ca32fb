"""Fault switches for lab PI servers: a PI CLI that hangs, drops, pages forever or lies.

`faults(pi).hang_on_command = True` makes `pi` misbehave from its next command on, open
sessions included (PiServer.cli is read on every use); `= False` makes it well again.
The lab itself (pilab) knows nothing of these: it only offers the hook points (pilab.pi.Cli).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from pilab.pi import MORE, MORE_ERASE, Cli, CliSession, PiServer


@dataclass
class FaultyCli(Cli):
    """Plain switches, read on every use, so they may change at any time."""

    no_prompt: bool = False  # a shell that never prints its banner or prompt
    hang_after_banner: bool = False  # the banner, then never a prompt
    hang_on_command: bool = False  # listcerts never answers
    drop_mid_output: bool = False  # listcerts prints half, cut mid-line, then the connection drops
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
