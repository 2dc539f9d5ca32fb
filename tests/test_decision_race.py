"""A store's listing and everything derived from it change as one value (issue 20, point 3).

A read whose list names new entries probes them (to witness their certificates) before it
swaps the new list in; other loops decide meanwhile. The peers here are real TLS servers
(pilab) behind a TCP relay the test holds, so the window in which a read waits for its
probe is as long as the test wants, and what is decided in it is deterministic.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from exporter.config import Config, load_config
from exporter.model import State
from exporter.service import Service
from exporter.snapshot import Snapshot
from pilab.pi import PiServer
from pilab.tls import TlsEndpoint
from tests.conftest import start_pi, write_config


class HeldPeer:
    """A real TLS peer behind a relay: connections are accepted at once, but their bytes
    reach the peer only while the gate is open. `connected` is set when a client waits."""

    def __init__(self, name: str) -> None:
        self.tls = TlsEndpoint([("CN", name)])
        self.gate = asyncio.Event()
        self.gate.set()
        self.connected = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.tls.start()
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)

    async def stop(self) -> None:
        self.gate.set()
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        await self.tls.stop()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def key(self) -> str:
        return f"127.0.0.1_{self.port}"

    def hold(self) -> None:
        self.connected.clear()
        self.gate.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            self.connected.set()
            await self.gate.wait()
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.tls.port)
            await asyncio.gather(_pipe(reader, up_w), _pipe(up_r, writer))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.close()


@dataclass
class World:
    pis: dict[str, PiServer]
    peers: list[HeldPeer]
    config: Config
    tmp: Path

    def add(self, store: str, peer: HeldPeer) -> None:
        """PI stores the peer's current certificate (as its health monitor would)."""
        self.pis[store].add_entry(peer.key, peer.tls.current)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    peers = [HeldPeer(f"peer-{i}") for i in range(5)]
    for p in peers:
        await p.start()
    pis = {"pri": await start_pi("pri"), "sec": await start_pi("sec")}
    cfg = write_config(tmp_path, pis, probe_timeout="10s")
    yield World(pis, peers, load_config(cfg), tmp_path)
    for pi in pis.values():
        await pi.stop()
    for p in peers:
        await p.stop()


def states(snap: Snapshot, store: str) -> dict[str, tuple[str, str]]:
    return {v.entry.key: (v.verdict.state.value, v.verdict.evidence.value)
            for v in snap.views if v.store == store}


@pytest.mark.parametrize("shape", ["shifted", "grown"])
async def test_a_decision_while_a_read_witnesses_new_entries_sees_the_old_list_whole(
        world: World, shape: str) -> None:
    """pri holds x (adopted), a and b (witnessed: match). Then a leaves (shifted: the list
    keeps its length) or stays (grown), and c appears; pri's read probes c, held. Meanwhile
    sec's loop reads and decides. Before the fix pri's old entries were zipped with the new
    endpoints there: a decided against b's certificate (`mismatch (baseline)`), b against
    c's endpoint with no probe yet (`unreachable`), both written to the history for good;
    grown, the lists differ in length and sec's loop died with `ValueError: zip()`."""
    x, a, b, c, y = world.peers
    world.add("pri", x)
    world.add("sec", y)
    service = Service(world.config, world.tmp / "data")
    pri, sec = world.config.stores
    try:
        await service.run_once()  # first read of each store: adopted
        world.add("pri", a)
        world.add("pri", b)
        snap = await service.run_once()  # a and b appear: witnessed
        before = states(snap, "pri")
        assert before[a.key] == before[b.key] == ("match", "baseline")
        recorded = len(service.db.history(store="pri"))

        if shape == "shifted":
            world.pis["pri"].remove_entry(a.key)
        world.add("pri", c)
        c.hold()
        read = asyncio.create_task(service.read_store(pri))
        async with asyncio.timeout(10):
            await c.connected.wait()  # pri's read is now witnessing c
        await service.read_store(sec)  # sec's loop step: its read, then a decision
        await service._decide()
        during = states(service.snapshot(), "pri")
        c.gate.set()
        await read
        await service._decide()
        after = states(service.snapshot(), "pri")
        history = service.db.history(store="pri")
    finally:
        c.gate.set()
        await service.stop()

    assert during == before, "a decision in the window saw the old list whole, or not at all"
    want = {k: v for k, v in before.items() if shape == "grown" or k != a.key}
    want[c.key] = ("match", "baseline")
    assert after == want
    changes = [(ch.entry, ch.after.state if ch.after else None)
               for ch in history[:len(history) - recorded]]
    assert not [ch for ch in changes if ch[1] not in (None, State.MATCH.value)], changes
    expected = {(c.key, "match")} | ({(a.key, None)} if shape == "shifted" else set())
    assert set(changes) == expected
