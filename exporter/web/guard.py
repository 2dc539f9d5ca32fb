"""The web config at run time: basic auth, client SAN check, rate limit, response headers, and
a TLS context that follows renewed certificate files without a restart.

Basic auth costs one bcrypt hash (~70 ms at cost 10) per uncached check. The checks run in
threads, at most `SLOTS` at a time; waiting checks are served newest first and the oldest
are shed beyond `QUEUE`, so a burst of wrong passwords delays a rightful login by at most
one hash time instead of queueing it behind the whole burst. An unknown user is checked
against a dummy hash of the usual cost, so its answer takes as long as a wrong password's.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import hashlib
import hmac
import logging
import os
import ssl
import time
from collections.abc import Awaitable, Callable

import bcrypt
from aiohttp import web
from prometheus_client import Counter, Gauge

from exporter.web.config import WebConfig

log = logging.getLogger("exporter.web")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]
OPEN_PATHS = frozenset({"/-/healthy"})  # liveness probes carry no credentials
SLOTS = 2
QUEUE = 32
_ALPHABET = b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

AUTH = Counter("tofu_exporter_http_auth_checks", "Basic auth checks by result "
               "(ok, cached, denied, shed: dropped unchecked while checks queued)", ["result"])
for _result in ("ok", "cached", "denied", "shed"):
    AUTH.labels(_result)  # every result exported from the start, at 0
AUTH_WAITING = Gauge("tofu_exporter_http_auth_waiting", "Basic auth checks waiting for a hash slot")


def dummy_hash(cost: int) -> bytes:
    """A well-formed bcrypt hash nobody knows the password of: checking it costs what a
    real check of that cost does, without spending a hash to make it."""
    tail = bytes(_ALPHABET[b % 64] for b in os.urandom(31))
    return bcrypt.gensalt(cost) + tail


class ShedError(Exception):
    """Dropped from the check queue: newer checks arrived while it waited."""


class NewestFirst:
    """A semaphore for `slots` holders whose waiters are woken last-in first-out, and whose
    oldest waiter is dropped when more than `queue` wait."""

    def __init__(self, slots: int, queue: int) -> None:
        self.free = slots
        self.queue = queue
        self.waiting: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self) -> None:
        if self.free > 0 and not self.waiting:
            self.free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.append(fut)
        if len(self.waiting) > self.queue:
            self.waiting.popleft().set_exception(ShedError())
        AUTH_WAITING.set(len(self.waiting))
        try:
            await fut  # the slot is handed over by release()
        except asyncio.CancelledError:
            if fut in self.waiting:
                self.waiting.remove(fut)
            elif fut.done() and not fut.cancelled() and fut.exception() is None:
                self.release()  # handed a slot as we were cancelled: pass it on
            raise
        finally:
            AUTH_WAITING.set(len(self.waiting))

    def release(self) -> None:
        while self.waiting:
            fut = self.waiting.pop()
            if not fut.done():
                fut.set_result(None)
                return
        self.free += 1


class Guard:
    """The web config in force; `swap` takes a reloaded one (users, headers, limits, TLS)."""

    def __init__(self, cfg: WebConfig, route_prefix: str = "") -> None:
        self.cfg = cfg
        self.prefix = route_prefix  # OPEN_PATHS and auth_excluded_paths are read below it
        self.slots = NewestFirst(SLOTS, QUEUE)
        self._verified: set[bytes] = set()  # digests of credentials bcrypt already accepted
        self._dummy = dummy_hash(cfg.dummy_cost)
        self._tokens = float(max(cfg.rate_burst, 1))
        self._refill_at = time.monotonic()
        self._tls = TlsFiles(cfg)

    def swap(self, cfg: WebConfig) -> None:
        if cfg.users != self.cfg.users:
            self._verified.clear()
        if cfg.dummy_cost != self.cfg.dummy_cost:
            self._dummy = dummy_hash(cfg.dummy_cost)
        if _session_settings(cfg) != _session_settings(self.cfg):
            log.warning("web config: TLS on/off, versions, ciphers and client_auth_type apply "
                        "at the next restart; certificates, keys, CAs, users and headers now")
        self.cfg = cfg
        self._tls.swap(cfg)

    # ---- TLS -------------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext | None:
        return self._tls.listening()

    # ---- rate limit ------------------------------------------------------------------

    def _allow(self) -> bool:
        """Token bucket as golang.org/x/time/rate: one token per interval, `burst` at most
        (a burst of 0 counts as 1: one request per interval)."""
        interval = self.cfg.rate_interval
        if interval <= 0:
            return True
        now = time.monotonic()
        cap = float(max(self.cfg.rate_burst, 1))
        self._tokens = min(cap, self._tokens + (now - self._refill_at) / interval)
        self._refill_at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    # ---- auth ------------------------------------------------------------------------

    async def authorised(self, header: str) -> bool:
        users = self.cfg.users
        scheme, _, value = header.partition(" ")
        user, sep, password = "", "", ""
        if scheme.lower() == "basic":
            try:
                user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                sep = ""
        if not sep:
            AUTH.labels("denied").inc()
            return False  # no credentials at all: nothing to time
        known = users.get(user)
        hashed = known if known is not None else self._dummy
        digest = hashlib.sha256(hashed + b"\0" + password.encode()).digest()
        if known is not None and any(hmac.compare_digest(digest, d) for d in self._verified):
            AUTH.labels("cached").inc()
            return True
        try:
            await self.slots.acquire()
        except ShedError:
            AUTH.labels("shed").inc()
            return False
        try:
            ok = await asyncio.to_thread(bcrypt.checkpw, password.encode(), hashed)
        finally:
            self.slots.release()
        ok = ok and known is not None
        if ok:
            self._verified.add(digest)
        AUTH.labels("ok" if ok else "denied").inc()
        return ok

    def _sans_ok(self, request: web.Request) -> bool:
        tls = self.cfg.tls
        if tls is None or not tls.client_allowed_sans:
            return True
        sslobj = request.transport.get_extra_info("ssl_object") if request.transport else None
        cert = sslobj.getpeercert() if sslobj is not None else None
        sans = {v for _, v in (cert or {}).get("subjectAltName", ())}
        return bool(sans & set(tls.client_allowed_sans))

    async def add_headers(self, _: web.Request, resp: web.StreamResponse) -> None:
        """on_response_prepare: also reaches responses streamed from inside a handler."""
        for name, value in self.cfg.headers:
            resp.headers[name] = value

    def _route(self, path: str) -> str | None:
        """The path below --web.route-prefix; None outside it (never an open path)."""
        if not self.prefix:
            return path
        return path[len(self.prefix):] if path.startswith(self.prefix + "/") else None

    def middlewares(self) -> list[Middleware]:
        @web.middleware
        async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
            cfg = self.cfg
            if not self._allow():
                return web.Response(status=429, text="Too Many Requests\n")
            if not self._sans_ok(request):
                return web.Response(status=403, text="Forbidden: client certificate SAN not allowed\n")
            if cfg.users and self._route(request.path) not in OPEN_PATHS | cfg.excluded_paths \
                    and not await self.authorised(request.headers.get("Authorization", "")):
                # Never the user name: people type passwords into it.
                log.debug("web auth denied", extra={"path": request.path, "remote": request.remote})
                return web.Response(
                    status=401, text="Unauthorized\n",
                    headers={"WWW-Authenticate": 'Basic realm="prime-tofu-exporter"'},
                )
            return await handler(request)

        return [guard]


def _session_settings(cfg: WebConfig) -> tuple[object, ...]:
    """What a TLS connection takes from the listening context, not from a swapped one."""
    t = cfg.tls
    if t is None:
        return (None,)
    return (t.client_auth_type, t.min_version, t.max_version, t.ciphers, t.prefer_server_ciphers)


class TlsFiles:
    """The listening TLS context, and per handshake the context of the certificate files as
    they are now: a renewed certificate (same paths, new content) is served to the next
    client without a restart or signal. The files are stat()ed at most once a second."""

    def __init__(self, cfg: WebConfig) -> None:
        self.cfg = cfg
        self._stamp: tuple[object, ...] = ()
        self._ctx: ssl.SSLContext | None = None
        self._checked = 0.0
        self._listening: ssl.SSLContext | None = None

    def swap(self, cfg: WebConfig) -> None:
        self.cfg = cfg
        self._checked = 0.0
        self._stamp = ()  # rebuild at the next handshake

    def _files_stamp(self) -> tuple[object, ...]:
        tls = self.cfg.tls
        out: list[object] = [id(self.cfg)]
        for f in tls.files() if tls else ():
            try:
                st = os.stat(f)
                out.append((f, st.st_ino, st.st_size, st.st_mtime_ns))
            except OSError:
                out.append((f, None))
        return tuple(out)

    def current(self) -> ssl.SSLContext | None:
        now = time.monotonic()
        if self._ctx is not None and now - self._checked < 1.0:
            return self._ctx
        self._checked = now
        stamp = self._files_stamp()
        if stamp != self._stamp or self._ctx is None:
            try:
                ctx = self.cfg.ssl_context()
            except (ssl.SSLError, OSError, ValueError) as e:
                # Half-written renewal (new cert, old key): keep serving the old pair.
                log.warning("web TLS certificate reload failed; serving the previous one",
                            extra={"error": str(e)})
                return self._ctx
            if self._ctx is not None:
                log.info("web TLS certificate reloaded")
            self._ctx, self._stamp = ctx, stamp
        return self._ctx

    def listening(self) -> ssl.SSLContext | None:
        if self.cfg.tls is None:
            return None
        if self._listening is None:
            ctx = self.current()
            assert ctx is not None

            def pick(sslobj: ssl.SSLObject, _name: str | None, _ctx: ssl.SSLContext) -> None:
                fresh = self.current()
                if fresh is not None and fresh is not sslobj.context:
                    sslobj.context = fresh

            ctx.sni_callback = pick
            self._listening = ctx
        return self._listening
