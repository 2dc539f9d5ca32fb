"""The exporter as a server: the service, its HTTP app, signals and reloads, wired together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import TYPE_CHECKING

from exporter import __version__
from exporter.config import Config, ConfigError, load_config
from exporter.logs import RedactingHandler
from exporter.service import Service

if TYPE_CHECKING:
    from exporter.webconfig import WebConfig

log = logging.getLogger("exporter")


def parse_listen(value: str) -> tuple[str | None, int]:
    host, _, port = value.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--web.listen-address {value!r}: expected host:port, e.g. :9877")
    return (host.strip("[]") or None), int(port)


async def serve(
    config: Config,
    config_file: str,
    storage_path: str,
    listen: tuple[str | None, int],
    handler: RedactingHandler,
    web_cfg: WebConfig | None = None,
    started: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until `stop` (or SIGTERM/SIGINT); SIGHUP and /-/reload re-read `config_file`."""
    from aiohttp import web  # here, so `check` and `remediate` start without the web stack

    from exporter.web import make_app

    service = Service(config, storage_path)

    async def reload() -> str | None:
        try:
            new = load_config(config_file)
        except ConfigError as e:
            service.reload_failed()
            log.error("reload failed, old config kept", extra={"error": str(e)})
            return str(e)
        handler.secrets = tuple({*handler.secrets, *new.secrets})
        await service.apply_config(new)
        log.info("configuration reloaded", extra={"stores": len(new.stores)})
        return None

    middlewares = []
    ssl_ctx = None
    if web_cfg is not None:
        middlewares = web_cfg.middlewares()
        ssl_ctx = web_cfg.ssl_context()
    app = make_app(service, reload, middlewares)
    # In-flight requests (a /probe read of a hanging PI) get 0.5 s to finish and 0.5 s more
    # once cancelled (aiohttp waits twice), in parallel with Service.stop (1 s).
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, listen[0], listen[1], ssl_context=ssl_ctx)
    await site.start()
    log.info("listening", extra={"address": f"{listen[0] or ''}:{listen[1]}",
                                 "stores": len(config.stores), "version": __version__})
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[str | None]] = set()

    def on_hup() -> None:
        t = loop.create_task(reload())
        reloads.add(t)
        t.add_done_callback(reloads.discard)

    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGHUP, on_hup)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
    if started is not None:
        started.set()
    try:
        service.launch()  # supervised: its failures are logged, counted and fail /-/healthy
        await stop.wait()
        log.info("stopping")
    finally:
        t0 = loop.time()
        # Both bounded (Service.stop_deadline, shutdown_timeout): SIGTERM ends us in < 2 s.
        await asyncio.gather(service.stop(), runner.cleanup())
        log.info("stopped", extra={"seconds": round(loop.time() - t0, 3)})

