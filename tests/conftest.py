"""Shared test helpers: free ports, lab PI servers, and the exporter config that reads them.

Plain functions (imported by the kits and tests as `tests.conftest`) plus the fixtures that
wrap them: one definition each, instead of one per test module.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilab.pi import PiServer
from pilab.tls import TlsEndpoint

PASSWORD = "Lab-Pa55-word!"


def free_port() -> int:
    """A TCP port free right now on loopback (never a fixed port: helpers run in parallel)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_pi(hostname: str, password: str = PASSWORD,
                   entries: Mapping[str, TlsEndpoint] | None = None, **kwargs: Any) -> PiServer:
    """A started lab PI server with one admin login, holding `entries` (key -> endpoint)."""
    pi = PiServer(hostname, users={"admin": password}, **kwargs)
    for key, ep in (entries or {}).items():
        pi.add_entry(key, ep.current)
    await pi.start()
    return pi


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


@pytest.fixture
def port() -> int:
    return free_port()
