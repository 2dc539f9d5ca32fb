"""SSH fault matrix: one misbehaving PI server next to a healthy one, a real exporter.

Every row asserts what an operator relies on while the fault is active: /metrics answers
in under 1 s, the faulty store shows tofu_store_up 0 and the right error reason, the
healthy store keeps being read, and no baseline is lost or changed. Rows with a way back
also prove the exporter recovers on its own (new session, same baselines).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from exporter.config.load import load_config
from exporter.core.model import ErrorReason
from exporter.service.service import Service
from exporter.sources.prime.ssh import MAX_OUTPUT
from exporter.store.database import BaselineDB
from exporter.web.routes import make_app
from pilab.pi import PiServer
from pilab.tls import TlsEndpoint
from tests.kit import faults as sf
from tests.kit.faults import faults
from tests.kit.lab import LoopThread, free_port, start_pi

PASSWORD = "Matrix-Pa55-healthy"
INTERVAL = 1.0
CONNECT_TIMEOUT = 1.5
COMMAND_TIMEOUT = 1.5


@dataclass
class Lab:
    thread: LoopThread
    tls: TlsEndpoint
    healthy: PiServer

    def entries(self) -> dict[str, TlsEndpoint]:
        # Two keys for one endpoint: as PI names a peer and as PI names itself (loopback).
        return {f"{self.tls.host}_{self.tls.port}": self.tls, f"localhost_{self.tls.port}": self.tls}


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    thread = LoopThread()
    tls = thread.run(sf.start_tls())
    healthy = thread.run(
        start_pi("prime-ok", PASSWORD, {f"{tls.host}_{tls.port}": tls})
    )
    yield Lab(thread, tls, healthy)
    thread.run(healthy.stop())
    thread.run(tls.stop())
    thread.close()


@dataclass
class Target:
    """The faulty store's server and how the exporter is told to read it."""

    host: str
    port: int
    known_hosts: str  # the line the exporter trusts
    pi: PiServer | None = None
    raw: sf.RawServer | None = None
    flood: sf.FloodServer | None = None
    entries: dict[str, str] = field(default_factory=dict)  # entry -> endpoint, to seed
    fingerprints: dict[str, str] = field(default_factory=dict)
    store: dict[str, Any] = field(default_factory=dict)  # extra store config keys
    secrets: dict[str, str] = field(default_factory=dict)  # file name -> content


LabFn = Callable[[Lab, Target, Path], Awaitable[None]]


@dataclass(frozen=True)
class Fault:
    id: str
    reason: ErrorReason
    build: Callable[[Lab, Path], Awaitable[Target]]
    arm: LabFn | None = None  # None: faulty from the start; else armed after a good read
    disarm: LabFn | None = None  # how it gets well again; None: no way back in this test
    mode: str = "shell"
    command_timeout: float = COMMAND_TIMEOUT


# --- builders -----------------------------------------------------------------------------


def _raw(handler: sf.Handler | None) -> Callable[[Lab, Path], Awaitable[Target]]:
    async def build(lab: Lab, tmp: Path) -> Target:
        if handler is None:  # nothing listens: connection refused
            port = free_port()
            return Target("127.0.0.1", port, sf.random_known_hosts_line("127.0.0.1", port),
                          entries={"10.9.9.9_443": "10.9.9.9:443"},
                          fingerprints={"10.9.9.9:443": "ab" * 32})
        raw = sf.RawServer(handler)
        await lab.thread.arun(raw.start())
        return Target(raw.host, raw.port, sf.random_known_hosts_line(raw.host, raw.port), raw=raw,
                      entries={"10.9.9.9_443": "10.9.9.9:443"},
                      fingerprints={"10.9.9.9:443": "ab" * 32})

    return build


def _pi(
    knobs: dict[str, Any] | None = None, *, cold: LabFn | None = None, **kw: Any
) -> Callable[[Lab, Path], Awaitable[Target]]:
    """A lab PI; `knobs` (fault switches) and `cold` (any other fault) apply from the start."""

    async def build(lab: Lab, tmp: Path) -> Target:
        pi = await lab.thread.arun(start_pi("prime-bad", PASSWORD, lab.entries(), **kw))
        for name, value in (knobs or {}).items():
            setattr(faults(pi), name, value)
        t = _pi_target(lab, pi)
        if cold is not None:
            await cold(lab, t, tmp)
        return t

    return build


def _pi_target(lab: Lab, pi: PiServer) -> Target:
    ep = lab.tls.endpoint
    return Target(
        pi.host, pi.port, pi.known_hosts_line(), pi=pi,
        entries=dict.fromkeys(lab.entries(), ep),
        fingerprints={ep: lab.tls.current.fingerprint_sha256},
    )


def _key_pi(passphrase: str, configured: str) -> Callable[[Lab, Path], Awaitable[Target]]:
    async def build(lab: Lab, tmp: Path) -> Target:
        key = asyncssh.generate_private_key("ssh-ed25519")
        (tmp / "id_pi").write_bytes(key.export_private_key(passphrase=passphrase))
        pi = await lab.thread.arun(start_pi(
            "prime-bad", PASSWORD, lab.entries(), authorized_keys=[key.export_public_key().decode()]))
        t = _pi_target(lab, pi)
        t.store = {"private_key_file": "id_pi", "private_key_passphrase_file": "passphrase"}
        t.secrets = {"passphrase": configured}
        return t

    return build


def _flood(mib: int = 50) -> Callable[[Lab, Path], Awaitable[Target]]:
    async def build(lab: Lab, tmp: Path) -> Target:
        flood = sf.FloodServer(PASSWORD, mib)
        await asyncio.to_thread(flood.start)
        return Target("127.0.0.1", flood.port, flood.known_hosts, flood=flood,
                      entries={"10.9.9.9_443": "10.9.9.9:443"},
                      fingerprints={"10.9.9.9:443": "ab" * 32})

    return build


# --- arming -------------------------------------------------------------------------------


def _knob(name: str, on: object, off: object) -> tuple[LabFn, LabFn]:
    """A fault switch (tests.kit.faults), or a setting of the lab PI itself (exec_enabled)."""

    def owner(t: Target) -> object:
        assert t.pi is not None
        return t.pi if hasattr(t.pi, name) else faults(t.pi)

    async def arm(lab: Lab, t: Target, tmp: Path) -> None:
        setattr(owner(t), name, on)

    async def disarm(lab: Lab, t: Target, tmp: Path) -> None:
        setattr(owner(t), name, off)

    return arm, disarm


def _write_known_hosts(lab: Lab, tmp: Path, faulty_line: str) -> None:
    (tmp / "known_hosts").write_text(lab.healthy.known_hosts_line() + "\n" + faulty_line + "\n")


async def _trust_current_key(lab: Lab, t: Target, tmp: Path) -> None:
    assert t.pi is not None
    _write_known_hosts(lab, tmp, t.pi.known_hosts_line())


async def _reinstall(lab: Lab, t: Target, tmp: Path) -> None:
    assert t.pi is not None
    t.pi = await lab.thread.arun(sf.restart_with_new_key(t.pi, PASSWORD))


async def _distrust(lab: Lab, t: Target, tmp: Path) -> None:
    t.known_hosts = sf.random_known_hosts_line(t.host, t.port)


async def _change_password(lab: Lab, t: Target, tmp: Path) -> None:
    assert t.pi is not None
    t.pi.users = {"admin": "Someone-changed-it-1"}


async def _restore_password(lab: Lab, t: Target, tmp: Path) -> None:
    assert t.pi is not None
    t.pi.users = {"admin": PASSWORD}


GARBAGE = bytes(range(256)) * 8 + b"\xc3\x28\xff\xfe\xed\xa0\x80 not utf-8\r\n"

FAULTS = [
    Fault("connection-refused", ErrorReason.CONNECT, _raw(None)),
    Fault("tcp-accepted-then-silence", ErrorReason.TIMEOUT, _raw(sf.silent)),
    Fault("ssh-banner-then-hang", ErrorReason.TIMEOUT, _raw(sf.banner_then_hang)),
    Fault("closes-during-key-exchange", ErrorReason.CONNECT, _raw(sf.close_during_kex)),
    Fault("not-ssh-speaks-http", ErrorReason.CONNECT, _raw(sf.speaks_http)),
    Fault("wrong-host-key", ErrorReason.HOSTKEY, _pi(cold=_distrust), None, _trust_current_key),
    Fault("host-key-changed-since-last-run", ErrorReason.HOSTKEY, _pi(), _reinstall, _trust_current_key),
    Fault("auth-rejected", ErrorReason.AUTH, _pi(cold=_change_password), None, _restore_password),
    Fault("key-passphrase-wrong", ErrorReason.AUTH, _key_pi("right-Passphrase", "wrong-Passphrase")),
    Fault("login-banner-then-hang", ErrorReason.TIMEOUT, _pi({"hang_after_banner": True}),
          None, _knob("hang_after_banner", True, False)[1]),
    Fault("shell-opens-no-prompt-ever", ErrorReason.TIMEOUT, _pi({"no_prompt": True}),
          None, _knob("no_prompt", True, False)[1]),
    Fault("prompt-then-command-never-returns", ErrorReason.TIMEOUT, _pi(),
          *_knob("hang_on_command", True, False)),
    Fault("drop-mid-line-shell", ErrorReason.CONNECT, _pi(), *_knob("drop_mid_output", True, False)),
    Fault("drop-mid-line-exec", ErrorReason.CONNECT, _pi(), *_knob("drop_mid_output", True, False),
          mode="exec"),
    Fault("channel-closed-after-one-entry-exec", ErrorReason.CONNECT, _pi(),
          *_knob("close_after_first_entry", True, False), mode="exec"),
    Fault("endless-more-paging", ErrorReason.COMMAND, _pi(), *_knob("endless_more", True, False),
          command_timeout=20.0),
    Fault("50MB-output-shell", ErrorReason.COMMAND, _flood(), command_timeout=20.0),
    Fault("50MB-output-exec", ErrorReason.COMMAND, _flood(), mode="exec", command_timeout=20.0),
    Fault("binary-garbage-shell", ErrorReason.PARSE, _pi(), *_knob("garbage", GARBAGE, None)),
    Fault("binary-garbage-exec", ErrorReason.PARSE, _pi(), *_knob("garbage", GARBAGE, None), mode="exec"),
    Fault("exec-channel-refused", ErrorReason.COMMAND, _pi(exec_enabled=False),
          None, _knob("exec_enabled", False, True)[1], mode="exec"),
]


# --- observing the exporter ---------------------------------------------------------------


def baseline_rows(db: Path) -> list[tuple[Any, ...]]:
    """Every persisted baseline, read from the file as a restart would; integrity checked."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return sorted(con.execute("SELECT * FROM baselines").fetchall())
    finally:
        con.close()


def samples(body: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for fam in text_string_to_metric_families(body)
        for s in fam.samples
    }


class Scraper:
    """Scrapes /metrics every 100 ms in the background, recording how long each took."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.durations: list[float] = []
        self.failures: list[str] = []
        self._task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        while True:
            start = time.perf_counter()
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the cancel of
                # stop() when it races with the response arriving, and this loop never ends.
                async with asyncio.timeout(5):
                    resp = await self.client.get("/metrics")
                    await resp.read()
                if resp.status != 200:
                    self.failures.append(f"HTTP {resp.status}")
            except Exception as e:
                self.failures.append(repr(e))
            self.durations.append(time.perf_counter() - start)
            await asyncio.sleep(0.1)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.05)


def write_config(lab: Lab, tmp: Path, t: Target, fault: Fault) -> Path:
    (tmp / "pi-password").write_text(PASSWORD + "\n")
    for name, text in t.secrets.items():
        (tmp / name).write_text(text + "\n")
    _write_known_hosts(lab, tmp, t.known_hosts)
    faulty: dict[str, Any] = {"name": "faulty", "host": t.host, "port": t.port,
                              "cli_mode": fault.mode, "command_timeout": f"{fault.command_timeout}s"}
    faulty.update(t.store or {"password_file": "pi-password"})
    data = {
        "defaults": {
            "username": "admin",
            "known_hosts": "known_hosts",
            "connect_timeout": f"{CONNECT_TIMEOUT}s",
            "command_timeout": f"{COMMAND_TIMEOUT}s",
            "probe_timeout": "1s",
            "store_interval": f"{INTERVAL}s",
            "probe_interval": f"{INTERVAL}s",
        },
        "stores": [
            {"name": "healthy", "host": lab.healthy.host, "port": lab.healthy.port,
             "password_file": "pi-password"},
            faulty,
        ],
    }
    path = tmp / "exporter.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@dataclass
class Running:
    service: Service
    client: TestClient
    scraper: Scraper
    db: Path


async def _start_exporter(cfg: Path, storage: Path) -> AsyncIterator[Running]:
    service = Service(load_config(cfg), storage)
    client = TestClient(TestServer(make_app(service)))
    await client.start_server()
    scraper = Scraper(client)
    scraper.start()
    starting = asyncio.create_task(service.start())
    try:
        yield Running(service, client, scraper, storage / "baseline.db")
    finally:
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        await scraper.stop()
        await service.stop()
        await client.close()


def _seed(db: Path, t: Target) -> None:
    """The faulty store was read fine on an earlier run: its baselines are on disk."""
    base = BaselineDB(db)
    base.observe_store("faulty", t.entries, now=1_700_000_000.0)
    base.fill(t.fingerprints)
    base.close()


async def _stop_target(lab: Lab, t: Target) -> None:
    if t.pi is not None:
        await lab.thread.arun(t.pi.stop())
    if t.raw is not None:
        await lab.thread.arun(t.raw.stop())
    if t.flood is not None:
        t.flood.stop()


# --- the matrix ---------------------------------------------------------------------------


@pytest.mark.parametrize("fault", FAULTS, ids=[f.id for f in FAULTS])
async def test_ssh_fault(fault: Fault, lab: Lab, tmp_path: Path) -> None:
    t = await fault.build(lab, tmp_path)
    try:
        await _run_fault(fault, lab, t, tmp_path)
    finally:
        await _stop_target(lab, t)


async def _run_fault(fault: Fault, lab: Lab, t: Target, tmp: Path) -> None:
    storage = tmp / "data"
    _seed(storage / "baseline.db", t)
    cfg = write_config(lab, tmp, t, fault)
    flood = t.flood is not None
    rss = sf.peak_rss_reset() if flood else 0  # the exporter's own peak, from its start
    gen = _start_exporter(cfg, storage)
    run = await gen.__anext__()
    service = run.service
    try:
        await wait_for(lambda: service.ready, 15, "the first pass")
        if fault.arm is not None:
            await wait_for(lambda: service.state("faulty").last_success is not None, 5,
                           "a good read before the fault")
            connects = service.session("faulty").connects
            await fault.arm(lab, t, tmp)
        else:
            assert service.state("faulty").last_success is None
            connects = 0
        before = baseline_rows(run.db)
        assert {r[1] for r in before if r[0] == "faulty"} == set(t.entries)

        # The fault shows: a failed read with the expected reason.
        def failed() -> bool:
            return sum(service.state("faulty").value.errors.values()) >= 1

        await wait_for(failed, fault.command_timeout + CONNECT_TIMEOUT + 2 * INTERVAL + 3,
                       f"a failed read of the faulty store ({fault.reason.value})")
        t_err = time.time()
        if flood:
            grown = sf.peak_rss() - rss
            assert grown < 2 * MAX_OUTPUT, f"peak RSS grew {grown / 2**20:.0f} MiB reading 50 MB"
        faulty = service.state("faulty").value
        assert set(faulty.errors) == {fault.reason.value}, faulty.last
        # The healthy store keeps being read while the fault lasts.
        await wait_for(
            lambda: service.state("healthy").last_success.timestamp > t_err, 3 * INTERVAL + 2,
            "a fresh read of the healthy store",
        )
        resp = await run.client.get("/metrics")
        m = samples(await resp.text())
        faulty, healthy = frozenset({("store", "faulty")}), frozenset({("store", "healthy")})
        assert m[("tofu_store_up", faulty)] == 0
        assert m[("tofu_store_up", healthy)] == 1
        assert m[("tofu_store_last_success_timestamp_seconds", healthy)] > t_err
        reasons = {dict(k[1])["reason"]: v for k, v in m.items()
                   if k[0] == "tofu_store_read_errors_total" and ("store", "faulty") in k[1]}
        # Every reason is exported (0 until it happens); only the expected one counted.
        assert reasons.pop(fault.reason.value) >= 1
        assert set(reasons.values()) == {0}, reasons
        page = await (await run.client.get("/")).text()
        assert f"DOWN ({fault.reason.value}:" in page
        assert baseline_rows(run.db) == before, "a baseline was lost or changed during the fault"

        if fault.disarm is not None:
            await fault.disarm(lab, t, tmp)
            t_fix = time.time()
            await wait_for(
                lambda: service.state("faulty").last_success is not None
                and service.state("faulty").last_success.timestamp > t_fix,
                fault.command_timeout + CONNECT_TIMEOUT + 2 * INTERVAL + 3, "recovery",
            )
            assert service.session("faulty").connects > connects  # a new session, not the sick one
            listing = service.state("faulty").last_success.listing
            assert listing is not None and {e.key for e in listing.entries} == set(t.entries)
            assert baseline_rows(run.db) == before, "baselines changed after recovery"

        assert run.scraper.failures == []
        assert len(run.scraper.durations) >= 5
        assert max(run.scraper.durations) < 1.0, f"slowest /metrics: {max(run.scraper.durations):.2f}s"
    finally:
        await gen.aclose()
