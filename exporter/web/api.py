"""Read-only JSON: /api/v1/entries (every entry's verdict, with when its state began) and
/api/v1/history (the recorded changes, newest first). Served by the same app as /metrics, so
the same web config (TLS, basic auth) guards them. Documented in docs/api.md."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from aiohttp import web

from exporter.accept.plan import accept_command, check_for
from exporter.config.load import parse_duration
from exporter.core.history import change_json
from exporter.core.model import State
from exporter.fleet.report import rows
from exporter.fleet.snapshot import Snapshot
from exporter.service.service import Service

HISTORY_LIMIT = 100  # default page size of /api/v1/history
HISTORY_MAX = 1000


def _bad(message: str) -> web.Response:
    return web.json_response({"status": "error", "error": message}, status=400)


def entries_data(snap: Snapshot, config_file: str | None,
                 storage_path: str | None) -> list[dict[str, Any]]:
    """Pure: every entry's row, with the accept check and command for `unknown` ones."""
    out = []
    for r in rows(snap.views):
        item = asdict(r)
        if r.state == State.UNKNOWN.value and r.stored_fingerprint_sha256 is None:
            # accept attests a PI entry's live certificate; a known_hosts entry holds its key
            item["accept"] = {"check": check_for(snap, r),
                              "command": accept_command(r.store, r.entry, config_file, storage_path)}
        out.append(item)
    return out


def entries(service: Service, config_file: str | None,
            storage_path: str | None) -> web.Response:
    return web.json_response(
        {"status": "success", "data": entries_data(service.snapshot(), config_file, storage_path)})


def history(service: Service, request: web.Request) -> web.Response:
    q = request.query
    since = None
    if "since" in q:
        try:
            since = time.time() - parse_duration(q["since"])
        except ValueError as e:
            return _bad(f"since: {e}")
    try:
        limit = int(q.get("limit", HISTORY_LIMIT))
    except ValueError:
        return _bad("limit: not a number")
    if not 0 < limit <= HISTORY_MAX:
        return _bad(f"limit: 1 to {HISTORY_MAX}")
    changes = service.evidence.history(q.get("store"), q.get("entry"), since, limit)
    return web.json_response({"status": "success", "data": [change_json(c) for c in changes]})


def add_routes(app: web.Application, service: Service, config_file: str | None,
               storage_path: str | None) -> None:
    async def get_entries(_: web.Request) -> web.Response:
        return entries(service, config_file, storage_path)

    async def get_history(request: web.Request) -> web.Response:
        return history(service, request)

    app.router.add_get("/api/v1/entries", get_entries)
    app.router.add_get("/api/v1/history", get_history)
