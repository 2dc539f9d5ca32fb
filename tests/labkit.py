"""Shared test helpers: a lab PI server plus the StoreConfig that reads it, no mocks."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from exporter.config.model import StoreConfig
from pilab.pi import PiServer
from tests.conftest import PASSWORD


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

