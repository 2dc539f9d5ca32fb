"""The exporter's own loops are supervised: a failure is logged, counted, retried with
backoff, and one that makes the process useless fails /-/healthy (issue 10).

The fault is real: the service's baseline database is closed under it, so every query on it
raises (sqlite3 "Cannot operate on a closed database"), the way a database file that became
unusable does. Reads run against a lab PI over real SSH; the HTTP side is the exporter's own
app. Fails on 5dda20e: there the first pass died in a task nobody awaited, nothing was
logged or counted, and /-/healthy said 200 for ever.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from exporter.config.load import load_config
from exporter.service.service import Service
from exporter.store.database import BaselineDB
from exporter.web.routes import make_app
from pilab.pi import PiServer
from pilab.pki import pi_subject
from pilab.tls import TlsEndpoint
from tests.kit.lab import free_port, start_pi, write_config
from tests.kit.processes import value, wait_for


@pytest_asyncio.fixture
async def pi() -> AsyncIterator[PiServer]:
    peer = TlsEndpoint(pi_subject("ise"))
    await peer.start()
    server = await start_pi("alpha", page_lines=0, entries={f"{peer.host}_{peer.port}": peer})
    yield server
    await server.stop()
    await peer.stop()


class Http:
    def __init__(self, service: Service) -> None:
        self.service = service
        self.port = free_port()
        self.runner = web.AppRunner(make_app(service), access_log=None)
        self.client = aiohttp.ClientSession()

    async def __aenter__(self) -> Http:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()
        await self.runner.cleanup()

    async def get(self, path: str) -> tuple[int, str]:
        async with self.client.get(f"http://127.0.0.1:{self.port}{path}") as r:
            return r.status, await r.text()


async def test_failing_first_pass_is_logged_counted_retried_and_fails_health(
    pi: PiServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    config = load_config(write_config(tmp_path, {"alpha": pi}, interval="1s"))
    service = Service(config, tmp_path)
    service.backoff_base = 0.05  # bounded exponential from 50 ms: five failures in < 1 s
    db_path = service.db.path
    service.db.close()  # the fault: every query on it raises from now on
    async with Http(service) as http:
        first = asyncio.create_task(service.start())  # as serve() did on 5dda20e
        try:
            bound = 5  # exporter.service.service.FAILURE_BOUND

            async def unhealthy() -> str | None:
                status, text = await http.get("/-/healthy")
                return text if status == 503 else None

            text = await wait_for(unhealthy, 20, step=0.05)
            assert "loop start failed" in text and "closed database" in text, text
            status, why = await http.get("/-/ready")
            assert status == 503 and "first pass over the stores failing" in why, why
            # /metrics still answers and says what is wrong: the failures are counted, and
            # the read that could not record its baselines is not a success.
            status, body = await http.get("/metrics")
            assert status == 200, body
            assert (value(body, "tofu_exporter_loop_errors_total", loop="start") or 0) >= bound
            assert value(body, "tofu_exporter_loop_errors_total", loop="probe") == 0
            assert value(body, "tofu_store_up", store="alpha") == 0
            assert (value(body, "tofu_store_read_errors_total", store="alpha", reason="storage")
                    or 0) >= 1
            errors = [r for r in caplog.records if r.getMessage() == "loop error; retrying"]
            assert len(errors) >= bound and all(r.exc_info for r in errors)
            delays = [r.retry_in_seconds for r in errors]  # type: ignore[attr-defined]
            assert delays[:4] == [0.05, 0.1, 0.2, 0.4], delays  # exponential...
            service.backoff_max = 0.3
            await wait_for(lambda: _logged_delay(caplog, 0.3), 10, step=0.05)  # ...and bounded
            # The database comes back: the next attempt goes through, by itself.
            service.db = BaselineDB(db_path)

            async def ready() -> bool:
                return (await http.get("/-/ready"))[0] == 200

            await wait_for(ready, 10, step=0.05)
            assert await http.get("/-/healthy") == (200, "Healthy.\n")
            status, body = await http.get("/metrics")
            assert value(body, "tofu_store_up", store="alpha") == 1
            assert any(r.getMessage() == "loop recovered" for r in caplog.records)
        finally:
            first.cancel()
            await asyncio.wait([first])
            await service.stop()


async def _logged_delay(caplog: pytest.LogCaptureFixture, delay: float) -> bool:
    return any(getattr(r, "retry_in_seconds", None) == delay for r in caplog.records)


async def test_a_loop_task_that_ends_fails_health_and_a_reload_is_not_a_death(
    pi: PiServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_config(tmp_path, {"alpha": pi}, interval="1s")
    service = Service(load_config(path), tmp_path)
    async with Http(service) as http:
        await service.start()
        try:
            assert await http.get("/-/healthy") == (200, "Healthy.\n")
            # A reload that changes the store ends its loop on purpose: still healthy.
            await service.apply_config(load_config(
                write_config(tmp_path, {"alpha": pi}, interval="2s", name="changed.yml")))
            assert await http.get("/-/healthy") == (200, "Healthy.\n")
            # The loop ending any other way leaves the store unread for ever: unhealthy.
            task = service.state("alpha").task
            assert task is not None
            task.cancel()
            await asyncio.wait([task])
            status, text = await http.get("/-/healthy")
            assert status == 503 and "loop store:alpha ended (cancelled)" in text, text
            assert any(r.getMessage().startswith("loop task ended") for r in caplog.records)
        finally:
            await service.stop()
