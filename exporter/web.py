"""HTTP: /metrics, the landing page, health, readiness, reload and the /probe multi-target.

aiohttp, because the exporter is one asyncio program (asyncssh, TLS probes) and the web side
must share its loop without threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from exporter import __version__, api, daypage
from exporter.collector import render_chunks, render_text
from exporter.commands import DELETECERT
from exporter.history import Change
from exporter.remediate import make_plan, pair_health, render_next, render_store
from exporter.report import Row, rows
from exporter.service import Service
from exporter.snapshot import Snapshot

log = logging.getLogger("exporter.web")

ReloadFn = Callable[[], Awaitable[str | None]]  # returns an error text, or None on success


def render(snap: Snapshot, with_process: bool = True) -> bytes:
    body = render_text(snap)  # same bytes as generate_latest(SnapshotCollector), ~10x faster
    return body + generate_latest(REGISTRY) if with_process else body


async def _stream(request: web.Request, chunks: list[bytes]) -> web.StreamResponse:
    """Write chunk by chunk, waiting for the socket: the body is never copied whole and the
    transport never buffers all of it."""
    resp = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE_LATEST})
    resp.content_length = sum(len(c) for c in chunks)
    await resp.prepare(request)
    for chunk in chunks:
        await resp.write(chunk)
    await resp.write_eof()
    return resp


_STATE_COLOURS = {
    "match": "#1a7f37",
    "mismatch": "#cf222e",
    "unknown": "#9a6700",
    "unreachable": "#6e7781",
}


def landing_page(snap: Snapshot, recent: Sequence[Change] = (),
                 hints: tuple[str | None, str | None] = (None, None)) -> str:
    """`recent`: the newest changes (the history); `hints`: the config file and storage path
    the `accept` commands shown for unknown entries name."""
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>prime-tofu-exporter</title>",
        "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}"
        "code{background:#f6f8fa;padding:.1em .3em}.fix{user-select:all}</style></head><body>",
        f"<h1>prime-tofu-exporter {e(__version__)}</h1>",
        "<p><a href='/metrics'>Metrics</a> · <a href='/-/healthy'>Health</a> · "
        "<a href='/-/ready'>Ready</a> · <a href='/api/v1/entries'>Entries (JSON)</a> · "
        "<a href='/api/v1/history'>History (JSON)</a></p>",
    ]
    parts.append(daypage.recent_changes(recent))
    plan = make_plan(snap)  # the same plan and text `prime-tofu-exporter remediate` prints
    for pair in plan.pairs:
        parts.append(f"<h2 id='pair-{e(pair.name)}'>HA pair {e(pair.name)}</h2><p>primary "
                     f"{e(pair.primary)}, secondary {e(pair.secondary)}</p><ul>")
        for line, link in zip(pair_health(pair), pair.links, strict=True):
            colour = _STATE_COLOURS.get(link.state, "#000")
            parts.append(f"<li style='color:{colour}'>{e(line)}</li>")
        parts.append("</ul>")
    store_plans = {sp.store: sp for sp in plan.stores}
    by_store: dict[str, list[Row]] = {}
    for r in rows(snap.views):
        by_store.setdefault(r.store, []).append(r)
    for name, st in snap.stores.items():
        last = st.last
        if last is None:
            status = "never read"
        elif last.ok:
            status = "up"
        else:
            reason = last.error_reason.value if last.error_reason else "?"
            status = f"DOWN ({reason}: {last.error})"
        when = (
            time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(st.last_success.timestamp))
            if st.last_success
            else "never"
        )
        parts.append(f"<h2 id='store-{e(name)}'>{e(name)}</h2>")
        parts.append(f"<p>Store {e(status)}; last successful read {e(when)}.</p>")
        items = by_store.get(name, [])
        if not items:
            parts.append("<p>No entries known.</p>")
            continue
        parts.append(
            "<table><tr><th>entry</th><th>endpoint</th><th>state</th><th>evidence / why</th><th>since</th>"
            "<th>stored subject</th><th>live subject</th><th>live SHA-256</th><th>fix</th></tr>"
        )
        for r in items:
            colour = _STATE_COLOURS.get(r.state, "#000")
            fix = (f"<code class='fix'>{e(r.remediation)}</code>" if r.remediation
                   else daypage.unknown_help(snap, r, *hints))
            parts.append(
                f"<tr><td>{e(r.entry)}</td><td>{e(r.endpoint)}</td>"
                f"<td style='color:{colour};font-weight:bold'>{e(r.state)}</td>"
                f"<td>{e(r.evidence)}: {e(r.reason)}</td>{daypage.since_cell(r)}"
                f"<td>{e(r.stored_subject)}</td><td>{e(r.live_subject or '-')}</td>"
                f"<td><code>{e(r.live_fingerprint_sha256 or r.probe_error or '-')}</code></td>"
                f"<td>{fix}</td></tr>"
            )
        parts.append("</table>")
        sp = store_plans.get(name)
        if sp is not None and sp.steps:
            text = "\n".join(
                f"<span class='fix'>{e(line)}</span>" if line.strip().startswith(DELETECERT)
                else e(line)
                for line in render_store(sp).splitlines()
            )
            parts.append(f"<p>Remediation plan on {e(name)} (in its admin CLI; the order across "
                         f"servers and the follow-up steps are at the end of this page):</p>"
                         f"<pre class='plan'>{text}</pre>")
    rest = render_next(plan)
    if rest:
        parts.append(f"<h2 id='remediation'>After the deletes</h2><pre>{e(rest)}</pre>")
        parts.append("<p>Or let the exporter do it: <code>prime-tofu-exporter remediate</code> "
                     "prints this plan, <code>--apply</code> runs it and writes an audit log.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def make_app(
    service: Service,
    reload: ReloadFn | None = None,
    middlewares: list[Callable[..., Awaitable[web.StreamResponse]]] | None = None,
) -> web.Application:
    app = web.Application(middlewares=middlewares or [])

    # The snapshot only changes when a read or probe lands; rendering it costs ~10 ms per
    # 200 entries, so a scrape storm renders it once (1,000 scrapes: 14 s -> under 2 s).
    rendered: list[tuple[Snapshot, list[bytes]]] = []

    async def metrics(request: web.Request) -> web.StreamResponse:
        snap = service.snapshot()
        if not rendered or rendered[0][0] is not snap:
            rendered[:] = []  # let the old body go before the new one is built
            rendered[:] = [(snap, render_chunks(snap))]
        return await _stream(request, [*rendered[0][1], generate_latest(REGISTRY)])

    hints = (service.config.source, service.storage_path)

    async def index(_: web.Request) -> web.Response:
        page = landing_page(service.snapshot(), service.db.history(limit=daypage.RECENT), hints)
        return web.Response(text=page, content_type="text/html")

    async def healthy(_: web.Request) -> web.Response:
        problems = service.health()  # what a restart may cure (exporter.service)
        if problems:
            return web.Response(status=503, text="Unhealthy:\n" + "".join(f"  {p}\n" for p in problems))
        return web.Response(text="Healthy.\n")

    async def ready(_: web.Request) -> web.Response:
        why = service.not_ready()
        if why is None:
            return web.Response(text="Ready.\n")
        return web.Response(status=503, text=f"Not ready: {why}.\n")

    async def do_reload(_: web.Request) -> web.Response:
        if reload is None:
            return web.Response(status=501, text="reload not available\n")
        error = await reload()
        if error:
            return web.Response(status=500, text=f"reload failed, old config kept:\n{error}\n")
        return web.Response(text="reloaded\n")

    async def probe(request: web.Request) -> web.Response:
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
        body = render(snap.for_store(target), with_process=False)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/", index)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_post("/-/reload", do_reload)
    app.router.add_put("/-/reload", do_reload)
    app.router.add_get("/probe", probe)
    api.add_routes(app, service, *hints)
    return app
