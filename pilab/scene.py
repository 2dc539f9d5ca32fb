"""The seed's scene on loopback: two PI servers, ISE and two DNA Centers, one call."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pilab.hosts import AutomationHosts
from pilab.pi import PiServer
from pilab.pki import CertBundle, pi_subject
from pilab.tls import TlsEndpoint

HEALTH_INTERVAL = 2.0

_T = TypeVar("_T", TlsEndpoint, PiServer)


@dataclass
class Lab:
    pis: dict[str, PiServer]
    endpoints: dict[str, TlsEndpoint]
    workdir: Path
    password: str = ""
    password_file: Path | None = None
    known_hosts_file: Path | None = None
    # The automation host's SSH targets and its known_hosts file (pilab.hosts), when started.
    ssh_hosts: AutomationHosts | None = None

    def write_known_hosts(self, path: Path | None = None) -> Path:
        """Every PI server's host key line; defaults to <workdir>/known_hosts."""
        target = path or self.workdir / "known_hosts"
        target.write_text("".join(pi.known_hosts_line() + "\n" for pi in self.pis.values()))
        return target

    def regenerate(self, name: str, subject: Sequence[tuple[str, str]] | None = None) -> CertBundle:
        return self.endpoints[name].regenerate(subject)

    async def stop(self) -> None:
        if self.ssh_hosts is not None:
            await self.ssh_hosts.stop()
        await asyncio.gather(*(pi.stop() for pi in self.pis.values()), return_exceptions=True)
        await asyncio.gather(*(ep.stop() for ep in self.endpoints.values()), return_exceptions=True)


async def _start(make: Callable[[int], _T], port: int, fixed: bool) -> _T:
    """Start on the fixed port if asked and free, else on an ephemeral one."""
    if fixed:
        server = make(port)
        try:
            await server.start()
            return server
        except OSError:
            pass
    server = make(0)
    await server.start()
    return server


def _write_secret(path: Path, text: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text + "\n")


async def start_demo_scene(workdir: Path, *, fixed_ports: bool = True) -> Lab:
    """Build the seed: ISE renewed its certificate after prime-pri had stored it."""
    workdir.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(12)
    password_file = workdir / "pi-password"
    _write_secret(password_file, password)
    users = {"admin": password}

    tls_specs: dict[str, tuple[list[tuple[str, str]], str, int]] = {
        "prime-pri": (pi_subject("prime-pri"), "127.0.0.11", 8082),
        "prime-sec": (pi_subject("prime-sec"), "127.0.0.12", 8082),
        "ise": (pi_subject("ISE-server"), "127.0.0.13", 8443),
        "dnac-1": ([("CN", "kong")], "127.0.0.21", 8443),
        "dnac-2": ([("CN", "kong")], "127.0.0.22", 8443),
    }
    pi_specs: dict[str, tuple[str, int, str]] = {
        "prime-pri": ("127.0.0.11", 2201, "3.5"),
        "prime-sec": ("127.0.0.12", 2202, "3.5"),
        "pi-system-184": ("127.0.0.31", 2203, "3.9"),
    }

    def tls_maker(name: str) -> Callable[[int], TlsEndpoint]:
        subject, host, _ = tls_specs[name]
        return lambda port: TlsEndpoint(subject, host=host, port=port)

    def pi_maker(name: str) -> Callable[[int], PiServer]:
        host, _, style = pi_specs[name]
        return lambda port: PiServer(name, host=host, port=port, users=users, style=style)

    starts: list[Awaitable[TlsEndpoint]] = [
        _start(tls_maker(n), spec[2], fixed_ports) for n, spec in tls_specs.items()
    ]
    pi_starts: list[Awaitable[PiServer]] = [
        _start(pi_maker(n), spec[1], fixed_ports) for n, spec in pi_specs.items()
    ]
    endpoints = dict(zip(tls_specs, await asyncio.gather(*starts), strict=True))
    pis = dict(zip(pi_specs, await asyncio.gather(*pi_starts), strict=True))
    lab = Lab(pis, endpoints, workdir, password=password, password_file=password_file)
    try:
        pri, sec, ise = endpoints["prime-pri"], endpoints["prime-sec"], endpoints["ise"]
        p, s = pis["prime-pri"], pis["prime-sec"]
        # A PI reaching itself over loopback stores the key as 127.0.0.1_<port>.
        p.add_peer(f"127.0.0.1_{pri.port}", pri.host, pri.port)
        p.add_peer(f"{sec.host}_{sec.port}", sec.host, sec.port)
        p.add_peer(f"{ise.host}_{ise.port}", ise.host, ise.port)
        s.add_peer(f"{pri.host}_{pri.port}", pri.host, pri.port)
        s.add_peer(f"127.0.0.1_{sec.port}", sec.host, sec.port)
        s.add_peer(f"{sec.host}_{sec.port}", sec.host, sec.port)
        for name in ("dnac-1", "dnac-2"):
            ep = endpoints[name]
            pis["pi-system-184"].add_peer(f"{ep.host}_{ep.port}", ep.host, ep.port)
        # Trust on first use, for real.
        await asyncio.gather(*(pi.connect_peers() for pi in pis.values()))
        # The seed: ISE renews after PI stored it.
        ise.regenerate(pi_subject("ISE-server-2024"))
        for pi in pis.values():
            pi.start_health_monitor(HEALTH_INTERVAL)
        lab.known_hosts_file = lab.write_known_hosts()
    except BaseException:
        await lab.stop()
        raise
    return lab
