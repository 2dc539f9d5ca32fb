"""Listening sockets and the bound on client connections.

- `--web.listen-address` (repeatable) or `--web.systemd-socket` (sockets passed by systemd
  socket activation, LISTEN_FDS/LISTEN_PID, from fd 3 on).
- At most `limit` client connections are open. A new connection beyond that evicts the one
  idle longest (no request in progress), so thousands of idle connections from one client
  cannot keep a scraper out nor use up the descriptors the SSH sessions and probes need.
- A connection must complete a request within `idle_timeout` of opening or of its previous
  response; an idle or half-sent (slowloris) connection is closed after that.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import resource
import socket
import ssl
import time
from typing import Any, cast

from aiohttp import web
from prometheus_client import Counter, Gauge

log = logging.getLogger("exporter.web")

SD_LISTEN_FDS_START = 3
RESERVED_FDS = 64  # database, log, listening sockets, Python's own
GRACE = 1.0  # seconds a new connection has to speak before it counts as idle

OPEN = Gauge("tofu_exporter_http_connections", "Open client connections")
CLOSED = Counter("tofu_exporter_http_connections_closed_by_server",
                 "Client connections the exporter closed: idle or half-sent too long (idle), "
                 "or evicted for a newer one at the connection limit (evicted)", ["reason"])
for _reason in ("idle", "evicted"):
    CLOSED.labels(_reason)  # both reasons exported from the start, at 0


def raise_nofile_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (systemd's LimitNOFILE, a container's ulimit):
    the default soft 1024 is far below what many stores and clients need. Returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if want > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def connection_budget(requested: int, nofile: int, stores: int, probes: int) -> int:
    """Client connections that fit beside one SSH connection per store and the probes."""
    return max(8, min(requested, descriptor_room(nofile, stores, probes)))


def descriptor_room(nofile: int, stores: int, probes: int) -> int:
    """Descriptors left for client connections: the hard bound on them."""
    return max(8, nofile - stores - probes - RESERVED_FDS)


def systemd_sockets() -> list[socket.socket]:
    """The sockets systemd passed us (fd 3 on), or ValueError saying why there are none."""
    pid, fds = os.environ.get("LISTEN_PID", ""), os.environ.get("LISTEN_FDS", "")
    if not pid or not fds:
        raise ValueError("--web.systemd-socket: no sockets passed (LISTEN_PID/LISTEN_FDS unset); "
                         "start through the socket unit")
    if pid != str(os.getpid()):
        raise ValueError(f"--web.systemd-socket: LISTEN_PID {pid} is not this process")
    socks = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(fds)):
        s = socket.socket(fileno=fd)
        s.setblocking(False)
        socks.append(s)
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)  # not for our children
    return socks


class _Conn(asyncio.Protocol):
    """Wraps aiohttp's protocol to see a connection open, close and go busy/idle."""

    __slots__ = ("busy", "guard", "inner", "since", "transport")

    def __init__(self, inner: asyncio.Protocol, guard: ConnectionGuard) -> None:
        self.inner, self.guard = inner, guard
        self.transport: asyncio.BaseTransport | None = None
        self.busy = 0
        self.since = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.guard.opened(self)
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.busy == 0:
            self.guard.spoke(self)
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.closed(self)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class ConnectionGuard:
    def __init__(self, limit: int, idle_timeout: float, hard: int | None = None) -> None:
        self.limit = limit
        self.hard = max(limit, hard or limit)
        self.idle_timeout = idle_timeout
        # Idle connections, longest idle first; busy ones leave it while a request runs.
        self.idle: collections.OrderedDict[_Conn, None] = collections.OrderedDict()
        self.silent: collections.OrderedDict[_Conn, None] = collections.OrderedDict()
        self.by_transport: dict[Any, _Conn] = {}
        self._sweeper: asyncio.Task[None] | None = None

    def factory(self, server: web.Server) -> Any:
        def make() -> _Conn:
            return _Conn(server(), self)
        return make

    def opened(self, c: _Conn) -> None:
        # Above the descriptor room: make room whatever the age (the descriptors the SSH
        # sessions and probes need come first). Above the limit: only connections idle
        # longer than GRACE make room, so a burst of real clients (a scrape storm) is served
        # and a flood of silent connections evicts its own members.
        while len(self.by_transport) >= self.hard and self._evict(None):
            pass
        while len(self.by_transport) >= self.limit and self._evict(c.since - GRACE):
            pass
        self.by_transport[c.transport] = c
        self.idle[c] = None
        self.silent[c] = None
        OPEN.set(len(self.by_transport))
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    def _evict(self, before: float | None) -> bool:
        """Close the connection silent longest (never sent a byte), or else the one idle
        longest, if idle since `before` (None: any); False when there is none."""
        for pool in (self.silent, self.idle):
            old = next(iter(pool), None)
            if old is not None and (before is None or old.since <= before):
                self.silent.pop(old, None)
                self.idle.pop(old, None)
                self._close(old, "evicted")
                return True
        return False

    def spoke(self, c: _Conn) -> None:
        self.silent.pop(c, None)

    def closed(self, c: _Conn) -> None:
        self.by_transport.pop(c.transport, None)
        self.idle.pop(c, None)
        self.silent.pop(c, None)
        OPEN.set(len(self.by_transport))

    def _close(self, c: _Conn, reason: str) -> None:
        self.by_transport.pop(c.transport, None)
        CLOSED.labels(reason).inc()
        if c.transport is not None:  # uvloop's transports are not asyncio.Transport subclasses
            cast(asyncio.Transport, c.transport).abort()

    def request_started(self, transport: Any) -> None:
        c = self.by_transport.get(transport)
        if c is not None:
            c.busy += 1
            self.idle.pop(c, None)

    def request_done(self, transport: Any) -> None:
        c = self.by_transport.get(transport)
        if c is not None:
            c.busy -= 1
            if c.busy == 0:
                c.since = time.monotonic()
                self.idle[c] = None

    async def _sweep(self) -> None:
        step = max(0.05, min(1.0, self.idle_timeout / 4))
        while True:
            await asyncio.sleep(step)
            now = time.monotonic()
            while len(self.by_transport) > self.limit and self._evict(now - GRACE):
                pass  # back to the limit once a burst's members had their chance to speak
            deadline = now - self.idle_timeout
            while self.idle:
                c = next(iter(self.idle))
                if c.since > deadline:
                    break
                del self.idle[c]
                self.silent.pop(c, None)
                self._close(c, "idle")

    def middleware(self) -> Any:
        @web.middleware
        async def track(request: web.Request, handler: Any) -> web.StreamResponse:
            transport = request.transport
            self.request_started(transport)
            try:
                return await handler(request)
            finally:
                self.request_done(transport)
        return track

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper


class GuardedSite(web.BaseSite):
    """aiohttp's SockSite / TCPSite, with the guard between the server and each connection."""

    def __init__(self, runner: web.BaseRunner, guard: ConnectionGuard, *,
                 sock: socket.socket | None = None, host: str | None = None, port: int = 0,
                 ssl_context: ssl.SSLContext | None = None, backlog: int = 128) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self._guard, self._sock, self._host, self._port = guard, sock, host, port

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        if self._sock is not None:
            addr = self._sock.getsockname()
            return f"{scheme}://{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else f"{scheme}://{addr}"
        return f"{scheme}://{self._host or ''}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        factory = self._guard.factory(server)
        if self._sock is not None:
            self._server = await loop.create_server(
                factory, sock=self._sock, ssl=self._ssl_context, backlog=self._backlog)
        else:
            self._server = await loop.create_server(
                factory, self._host, self._port, ssl=self._ssl_context, backlog=self._backlog,
                reuse_address=True)
