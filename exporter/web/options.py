"""The --web.* flags as data, and listen address parsing: what `cli` and `server` need
without importing the web stack (so `check` and `remediate` start without aiohttp)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

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
    route_prefix: str = ""  # every route under it: "" or "/x" (no trailing slash)
    link_base: str = ""  # the path the page's links start with: the external URL's, else the prefix


def _path(value: str) -> str:
    """'/x/' -> '/x', '/' -> ''."""
    return value.rstrip("/")


def web_paths(route_prefix: str | None, external_url: str | None) -> tuple[str, str]:
    """(route prefix, link base) from --web.route-prefix and --web.external-url, as Prometheus
    reads them: the prefix defaults to the external URL's path, the page's links start with the
    external URL's path (a proxy may strip its prefix before passing a request on: then the
    route prefix is '/' and the links still carry the proxy's path). ValueError names the flag."""
    base = ""
    if external_url is not None:
        url = urlsplit(external_url)
        if url.scheme not in ("http", "https") or not url.netloc or url.query or url.fragment:
            raise ValueError(f"--web.external-url {external_url!r}: expected an absolute "
                             "http(s) URL without query, e.g. https://proxy.example.net/tofu/")
        base = _path(url.path)
    if route_prefix is None:
        return base, base
    if not route_prefix.startswith("/") or "//" in route_prefix or any(
            c in route_prefix for c in "?#%\\ ") or not route_prefix.isprintable():
        raise ValueError(f"--web.route-prefix {route_prefix!r}: expected a path such as /tofu")
    prefix = _path(route_prefix)
    return prefix, base if external_url is not None else prefix
