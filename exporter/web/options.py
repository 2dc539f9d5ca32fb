"""The --web.* flags as data, and listen address parsing: what `cli` and `server` need
without importing the web stack (so `check` and `remediate` start without aiohttp)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PORT = 9877


def parse_listen(value: str) -> tuple[str | None, int]:
    host, _, port = value.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--web.listen-address {value!r}: expected host:port, e.g. :9877")
    return (host.strip("[]") or None), int(port)


@dataclass(frozen=True)
class WebOptions:
    listen: tuple[tuple[str | None, int], ...] = ((None, DEFAULT_PORT),)
    systemd_socket: bool = False
    telemetry_path: str = "/metrics"
    health_listen: str | None = None
    max_connections: int = 512
    idle_timeout: float = 15.0
    config_file: str | None = None  # --web.config.file, re-read on reload
