"""The lab the tests run against: free loopback ports, lab PI servers (pilab) started with one
admin login, the exporter configs that read them, and a thread hosting an event loop for lab
servers that must not share the exporter's loop. Plain functions; the fixtures that wrap them
are in tests/conftest.py."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from exporter.config.model import StoreConfig
from pilab.pi import PiServer
from pilab.tls import TlsEndpoint

if TYPE_CHECKING:
    from exporter.service.service import Service
    from pilab.scene import Lab

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]

PASSWORD = "Lab-Pa55-word!"


def free_port() -> int:
    """A TCP port free right now on loopback (never a fixed port: helpers run in parallel)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def refused_keys(count: int) -> list[str]:
    """`count` TOFU keys on loopback ports nothing listens on, so every probe is refused at once.

    The ports lie below the kernel's ephemeral range, which bind(0) never hands out: a fixed
    range inside it (41000+) once collided with a lab peer's own port, and the store then
    held one key fewer than the test counted.
    """
    low = _ephemeral_low()
    if count > low - 1024:
        raise ValueError(f"{count} keys do not fit below the ephemeral range ({low})")
    return [f"127.0.0.1_{low - count + i}" for i in range(count)]


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


async def start_pi(hostname: str, password: str = PASSWORD,
                   entries: Mapping[str, TlsEndpoint] | None = None, **kwargs: Any) -> PiServer:
    """A started lab PI server with one admin login, holding `entries` (key -> endpoint)."""
    pi = PiServer(hostname, users={"admin": password}, **kwargs)
    for key, ep in (entries or {}).items():
        pi.add_entry(key, ep.current)
    await pi.start()
    return pi


def offline_config(tmp: Path) -> Path:
    """A valid config of one store, `pri`, whose PI (192.0.2.1, TEST-NET) is never reached:
    for tests that stop at the database or drive the service by hand."""
    (tmp / "pw").write_text("a-password\n")
    (tmp / "pw").chmod(0o600)
    (tmp / "kh").write_text("")
    cfg = tmp / "exporter.yml"
    cfg.write_text("defaults: {password_file: pw, known_hosts: kh}\n"
                   "stores: [{name: pri, host: 192.0.2.1}]\n")
    return cfg


def write_config(
    tmp: Path,
    pis: Mapping[str, PiServer],
    *,
    interval: str = "1s",
    probe_timeout: str = "2s",
    extra: Mapping[str, Any] | None = None,
    store_extra: Mapping[str, Mapping[str, Any]] | None = None,
    name: str = "exporter.yml",
    password: str = PASSWORD,
) -> Path:
    """A config reading every PI in `pis` (store name -> server), secrets in files."""
    (tmp / "pi-password").write_text(password + "\n")
    (tmp / "pi-password").chmod(0o600)
    kh = tmp / "known_hosts"
    kh.write_text("".join(pi.known_hosts_line() + "\n" for pi in pis.values()))
    stores = []
    for store, pi in pis.items():
        st: dict[str, Any] = {"name": store, "host": pi.host, "port": pi.port}
        st.update((store_extra or {}).get(store, {}))
        stores.append(st)
    data: dict[str, Any] = {
        "defaults": {
            "username": "admin",
            "password_file": "pi-password",
            "known_hosts": "known_hosts",
            "cli_mode": "shell",
            "connect_timeout": "3s",
            "command_timeout": "5s",
            "probe_timeout": probe_timeout,
            "store_interval": interval,
            "probe_interval": interval,
        },
        "stores": stores,
    }
    data.update(extra or {})
    path = tmp / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def store_config(pi: PiServer, tmp: Path, name: str | None = None, **overrides: object) -> StoreConfig:
    """A StoreConfig for `pi` with its host key trusted in a known_hosts file under tmp."""
    kh = tmp / f"known_hosts-{pi.hostname}"
    kh.write_text(pi.known_hosts_line() + "\n")
    base = StoreConfig(
        name=name or pi.hostname,
        host=pi.host,
        port=pi.port,
        username="admin",
        password=PASSWORD,
        private_key_file=None,
        private_key_passphrase=None,
        known_hosts=str(kh),
        cli_mode="shell",
        connect_timeout=3.0,
        command_timeout=3.0,
        probe_timeout=2.0,
        store_interval=60.0,
        probe_interval=60.0,
        self_address=pi.host,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]



class LoopThread:
    """An asyncio loop in a daemon thread hosting lab servers: a server busy flooding or paging
    cannot slow the loop under test, and synchronous tests (the monitoring stack) drive the lab
    from outside. `run` waits for a coroutine there; `arun` awaits it from another loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="lab", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run a plain function on the loop thread (the lab's state belongs to that thread)."""

        async def wrapper() -> T:
            return fn()

        return self.run(wrapper(), timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self.loop.close()


# ---- the demo lab (exporter.cli.demo.prepare; the demo_lab fixture) ---------------------

DELETE = "ncs certvalidation tofu-certs deletecert host"


def keys(lab: Lab) -> dict[str, str]:
    """The entry keys of the seed's scene, as the lab stored them."""
    sec, ise = lab.endpoints["prime-sec"], lab.endpoints["ise"]
    return {
        "sec": f"{sec.host}_{sec.port}",
        "sec_self": f"127.0.0.1_{sec.port}",
        "ise": f"{ise.host}_{ise.port}",
        "pri_self": f"127.0.0.1_{lab.endpoints['prime-pri'].port}",
        "dnac2": f"{lab.endpoints['dnac-2'].host}_{lab.endpoints['dnac-2'].port}",
    }


def deletes(lab: Lab) -> list[tuple[str, str]]:
    """(store, command) of every deletecert the demo lab's PI servers ran, in order."""
    return [(n, c) for n, pi in lab.pis.items() for c in pi.commands if c.startswith(DELETE)]


async def one_pass(cfg: Path, storage: Path) -> Service:
    """A Service over `cfg` after one read and probe pass (the caller stops it)."""
    from exporter.config.load import load_config
    from exporter.service.service import Service

    service = Service(load_config(cfg), storage)
    await service.run_once()
    return service
