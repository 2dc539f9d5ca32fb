"""HTTP: /metrics, the landing page, the entries JSON, health, readiness, reload and /probe.

aiohttp, because the exporter is one asyncio program (asyncssh, TLS probes) and the web side
must share its loop. Everything derived from a snapshot (the exposition, its gzip form, the
landing page, the JSON) is built once per snapshot, in a worker thread, by one request while
the others wait for it: a storm of requests renders nothing twice, and /-/healthy answers
while a 20,000-entry page is being built.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web
from prometheus_client import REGISTRY, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST, choose_encoder
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as om_generate_latest

from exporter.core.history import Change
from exporter.exposition.packing import (
    Chunk,
    GzipCache,
    Packed,
    Whole,
    deflates_whole,
    gzip_member,
    plain,
    size,
)
from exporter.exposition.writer import packs, render_chunks
from exporter.fleet.snapshot import Snapshot
from exporter.remediate.hostkey_plan import hostkey_files
from exporter.service.service import Service
from exporter.version import __version__
from exporter.web import api
from exporter.web.pages import daypage
from exporter.web.pages.landing import landing_page as _landing_page

ReloadFn = Callable[[], Awaitable[str | None]]  # returns an error text, or None on success
Middleware = Callable[..., Awaitable[web.StreamResponse]]
Handler = Callable[[web.Request], Awaitable[web.Response]]
# The exporter's own families (header and sample chunks): not in a /probe answer.
OWN_PREFIXES = (b"# HELP tofu_exporter_", b"tofu_exporter_")
WRITE_TIMEOUT = 30.0  # a client that reads nothing for this long loses its response

# No `<counter>_created` series, for any family (docs/metrics.md): the snapshot's counters have
# none, and prometheus_client's own Counter wrote one for the three it keeps. rate() does not
# need them, and Prometheus's Go client writes none in the text format either.
disable_created_metrics()


def landing_page(snap: Snapshot, recent: Sequence[Change] = (),
                 hints: tuple[str | None, str | None] = (None, None)) -> str:
    return _landing_page(snap, __version__, recent=recent, hints=hints).decode()


def entries_body(snap: Snapshot, hints: tuple[str | None, str | None],
                 store: str | None = None, state: str | None = None) -> bytes:
    """/api/v1/entries (exporter.web.api's shape), optionally of one store and/or one state."""
    data = [e for e in api.entries_data(snap, *hints)
            if (store is None or e["store"] == store) and (state is None or e["state"] == state)]
    return json.dumps({"status": "success", "data": data}).encode()


def _own(chunk: Chunk) -> bool:
    return isinstance(chunk, bytes) and chunk.startswith(OWN_PREFIXES)


def render(snap: Snapshot, with_process: bool = True) -> bytes:
    chunks = render_chunks(snap)
    if not with_process:
        chunks = [c for c in chunks if not _own(c)]
    return b"".join(map(plain, chunks)) + (generate_latest(REGISTRY) if with_process else b"")


# ---- negotiation -------------------------------------------------------------------------
# Any client may send these headers: a malformed one must not fail the request (nor log a
# traceback per request). RFC 9110 gives no rule for a malformed member; we ignore that
# member as if it were absent (RFC 9110 12.4.2, 12.5.3): treating `gzip;q=.` as q=1 would
# send gzip to a client that may not want it, while identity is always acceptable.

# RFC 9110 12.4.2: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
_QVALUE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")
_VERSION = re.compile(r"[0-9]+(?:\.[0-9]+)*")


def _weight(params: str) -> float | None:
    """The q of one Accept-Encoding member: 1 without one, None if it is malformed."""
    q = 1.0
    for param in params.split(";"):
        name, eq, value = param.partition("=")
        if name.strip().lower() == "q":
            if not eq or not _QVALUE.fullmatch(value.strip()):
                return None
            q = float(value)
    return q


def accepts_gzip(header: str) -> bool:
    """RFC 9110 12.5.3: gzip's own weight, else that of `*` (which stands only for the
    codings not named), else not acceptable. Malformed members count as absent."""
    weights: dict[str, float] = {}
    for part in header.split(","):
        coding, _, params = part.partition(";")
        coding = coding.strip().lower()
        q = _weight(params)
        if coding in ("gzip", "*") and q is not None:
            weights[coding] = max(q, weights.get(coding, 0.0))
    return weights.get("gzip", weights.get("*", 0.0)) > 0


def _well_formed_accept(header: str) -> str:
    """`Accept` without the members whose version parameter prometheus_client's
    choose_encoder cannot compare (`version=abc` raised TypeError: HTTP 500); a quoted
    version is unquoted (RFC 9110 5.6.6 allows either form)."""
    kept = []
    for member in header.split(","):
        params = member.split(";")
        for i, param in enumerate(params[1:], 1):
            name, _, value = param.partition("=")
            if name.strip() == "version":
                value = value.strip()
                if len(value) >= 2 and value[0] == value[-1] == '"':
                    value = value[1:-1]
                if value and not _VERSION.fullmatch(value):
                    break
                params[i] = f"{name}={value}"
        else:
            kept.append(";".join(params))
    return ",".join(kept)


def wants_openmetrics(header: str) -> bool:
    _, content_type = choose_encoder(_well_formed_accept(header))
    return content_type.startswith("application/openmetrics-text")


# ---- OpenMetrics from the text chunks ----------------------------------------------------


def openmetrics_chunk(chunk: Chunk) -> Chunk:
    """A text-format chunk in OpenMetrics: sample lines are the same; a family's header names
    a counter without its _total suffix, and HELP escapes quotes too."""
    if isinstance(chunk, Packed) or not chunk.startswith(b"# HELP "):
        return chunk
    head, _, rest = chunk.partition(b"\n")
    typ, _, samples = rest.partition(b"\n")
    name = typ.split(b" ")[2]
    if typ.endswith(b" counter") and name.endswith(b"_total"):
        base = name[: -len(b"_total")]
        head = head.replace(b"# HELP " + name, b"# HELP " + base, 1)
        typ = typ.replace(b"# TYPE " + name, b"# TYPE " + base, 1)
    help_name, _, doc = head[len(b"# HELP "):].partition(b" ")
    head = b"# HELP " + help_name + b" " + doc.replace(b'"', b'\\"')
    return head + b"\n" + typ + b"\n" + samples


def own_openmetrics() -> bytes:
    return om_generate_latest(REGISTRY)  # ends with "# EOF"


# ---- per-snapshot products ---------------------------------------------------------------


class PerSnapshot:
    """A value computed from the current snapshot once, in a worker thread, shared by every
    request that asks while that snapshot is current."""

    def __init__(self) -> None:
        self._snap: Snapshot | None = None
        self._task: asyncio.Future[Any] | None = None

    async def get(self, snap: Snapshot, build: Callable[[], Any]) -> Any:
        if self._snap is not snap or self._task is None:
            self._snap, self._task = None, None  # let the old value go first
            self._snap = snap
            self._task = asyncio.ensure_future(asyncio.to_thread(build))
        return await asyncio.shield(self._task)


async def _stream(
    request: web.Request, chunks: Sequence[Chunk], headers: dict[str, str]
) -> web.StreamResponse:
    """Write chunk by chunk, waiting for the socket: the body is never copied whole and the
    transport never buffers all of it. A packed slice is inflated only while it is written,
    on the loop: under 1 ms a slice (100 MB in 0.13 s), where a thread hop per slice made
    plain scrapes four times slower under load. A client that stops reading is cut off."""
    resp = web.StreamResponse(headers=headers)
    resp.content_length = sum(map(size, chunks))
    await resp.prepare(request)
    if request.method == "HEAD":  # GET's headers, no body (aiohttp would write one)
        await resp.write_eof()
        return resp
    for chunk in chunks:
        data = chunk.plain() if isinstance(chunk, Packed) else chunk
        async with asyncio.timeout(WRITE_TIMEOUT):
            await resp.write(data)
    await resp.write_eof()
    return resp


def make_app(
    service: Service,
    reload: ReloadFn | None = None,
    middlewares: list[Middleware] | None = None,
    telemetry_path: str = "/metrics",
    on_prepare: Callable[[web.Request, web.StreamResponse], Awaitable[None]] | None = None,
    route_prefix: str = "",
    link_base: str | None = None,
) -> web.Application:
    """Every route under `route_prefix` ("" or "/x"); the page's links start with `link_base`
    (--web.external-url's path; default: the prefix)."""
    base = route_prefix if link_base is None else link_base
    app = web.Application(middlewares=middlewares or [])
    if on_prepare is not None:
        app.on_response_prepare.append(on_prepare)
    gz = GzipCache()
    text, gzipped, om, page, entries, whole, om_whole = (PerSnapshot() for _ in range(7))

    async def gzipped_body(snap: Snapshot, body: list[Chunk], chunks: list[Chunk],
                           openmetrics: bool) -> list[Chunk]:
        """One gzip member of `body`, whose last chunk (the process metrics) is new each time:
        deflated whole when small, else spliced from per-chunk pieces (exporter.exposition.packing)."""
        head, tail = body[:-1], plain(body[-1])
        if deflates_whole(head):
            prefix: Whole = await (om_whole if openmetrics else whole).get(snap, lambda: Whole.of(head))
            return [*prefix.member(tail)]
        if openmetrics:
            pieces, crc, total = await asyncio.to_thread(gz.pieces, head)
        else:
            pieces, crc, total = await gzipped.get(snap, lambda: gz.pieces(chunks))
        return [*gzip_member(pieces, crc, total, tail)]

    async def metrics(request: web.Request) -> web.StreamResponse:
        snap = service.snapshot()
        chunks: list[Chunk] = await text.get(snap, lambda: render_chunks(snap, None, service.blocks))
        openmetrics = wants_openmetrics(request.headers.get("Accept", ""))
        headers = {"Content-Type": CONTENT_TYPE_LATEST, "Vary": "Accept, Accept-Encoding"}
        body: list[Chunk]
        if openmetrics:
            headers["Content-Type"] = OPENMETRICS_TYPE
            om_chunks = await om.get(snap, lambda: [openmetrics_chunk(c) for c in chunks])
            body = [*om_chunks, own_openmetrics()]
        else:
            body = [*chunks, generate_latest(REGISTRY)]
        if accepts_gzip(request.headers.get("Accept-Encoding", "")):
            headers["Content-Encoding"] = "gzip"
            body = await gzipped_body(snap, body, chunks, openmetrics)
        return await _stream(request, body, headers)

    hints = (service.config.source, service.storage_path)  # named by the `accept` commands

    async def index(_: web.Request) -> web.Response:
        snap = service.snapshot()
        # The history changes with the snapshot; read here, on the loop: SQLite is per thread.
        recent = service.evidence.history(limit=daypage.RECENT)
        files = hostkey_files(service.config)  # each known_hosts store's file, for its fixes
        body = await page.get(snap, lambda: _landing_page(
            snap, __version__, telemetry_path, recent=recent, hints=hints, base=base, files=files))
        return web.Response(body=body, content_type="text/html", charset="utf-8")

    async def api_entries(request: web.Request) -> web.Response:
        snap = service.snapshot()
        store, state = request.query.get("store"), request.query.get("state")
        if store is None and state is None:
            body = await entries.get(snap, lambda: entries_body(snap, hints))
        else:
            body = await asyncio.to_thread(entries_body, snap, hints, store, state)
        return web.Response(body=body, content_type="application/json")

    async def api_history(request: web.Request) -> web.Response:
        return api.history(service, request)

    healthy, ready = _health_handlers(service)

    async def do_reload(_: web.Request) -> web.Response:
        if reload is None:
            return web.Response(status=501, text="reload not available\n")
        error = await reload()
        if error:
            return web.Response(status=500, text=f"reload failed, old config kept:\n{error}\n")
        return web.Response(text="reloaded\n")

    async def probe(request: web.Request) -> web.StreamResponse:
        target = request.query.get("target", "")
        store = service.config.store(target)
        if store is None:
            return web.Response(
                status=400, text=f"unknown target {target!r}: not a configured store\n"
            )
        timeout = store.connect_timeout + store.command_timeout + store.probe_timeout
        header = request.headers.get("X-Prometheus-Scrape-Timeout-Seconds")
        if header:
            with contextlib.suppress(ValueError):
                timeout = max(0.5, float(header) - 0.5)  # leave room to send the answer
        try:
            async with asyncio.timeout(timeout):  # not wait_for: it can lose a cancellation
                snap = await service.run_once([target])
        except TimeoutError:
            snap = service.snapshot()
        # Streamed from the store's cached blocks (exporter.exposition.writer): 200 concurrent
        # /probe requests must not each hold a joined copy of their body.
        # Packed or not as /metrics would have it: the two share the store's cached blocks.
        chunks = [c for c in render_chunks(snap.for_store(target), packs(snap), service.blocks)
                  if not _own(c)]
        return await _stream(request, chunks, {"Content-Type": CONTENT_TYPE_LATEST})

    at = route_prefix
    app.router.add_get(at + telemetry_path, metrics)
    app.router.add_get(at + "/", index)
    app.router.add_get(at + "/api/v1/entries", api_entries)
    app.router.add_get(at + "/api/v1/history", api_history)
    app.router.add_get(at + "/-/healthy", healthy)
    app.router.add_get(at + "/-/ready", ready)
    app.router.add_post(at + "/-/reload", do_reload)
    app.router.add_put(at + "/-/reload", do_reload)
    app.router.add_get(at + "/probe", probe)
    if at:  # as Prometheus: the bare root and the prefix without its slash lead to the page
        async def to_page(_: web.Request) -> web.Response:
            raise web.HTTPFound((base or at) + "/")
        app.router.add_get("/", to_page)
        app.router.add_get(at, to_page)
    return app


def _health_handlers(service: Service) -> tuple[Handler, Handler]:
    async def healthy(_: web.Request) -> web.Response:
        problems = service.health()  # what a restart may cure (exporter.service.service)
        if problems:
            return web.Response(status=503, text="Unhealthy:\n" + "".join(f"  {p}\n" for p in problems))
        return web.Response(text="Healthy.\n")

    async def ready(_: web.Request) -> web.Response:
        why = service.not_ready()
        if why is None and service.shard.sharded and not service.config.stores:
            # Ready (more replicas than stores is legitimate while scaling out), but say it.
            shard = service.shard
            return web.Response(text=f"Ready, but shard {shard.index} of {shard.total} owns "
                                     f"none of the stores in {service.config.source}: this "
                                     "replica watches nothing.\n")
        if why is None:
            return web.Response(text="Ready.\n")
        return web.Response(status=503, text=f"Not ready: {why}.\n")

    return healthy, ready


def make_health_app(service: Service) -> web.Application:
    """The plain probe port (--web.health-address): /-/healthy and /-/ready only, no TLS, no
    auth, so kubelet probes work whatever the web config requires of other clients."""
    app = web.Application()
    healthy, ready = _health_handlers(service)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    return app
