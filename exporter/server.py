"""The exporter as a server: the service, its HTTP app, signals and reloads, wired together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import TYPE_CHECKING

from exporter.config import Config, ConfigError, load_config
from exporter.logs import RedactingHandler
from exporter.service import Service
from exporter.shard import ALL, Shard
from exporter.webopts import WebOptions, parse_listen

if TYPE_CHECKING:
    from exporter.webconfig import WebConfig

log = logging.getLogger("exporter")


__all__ = ["WebOptions", "parse_listen", "serve"]


async def serve(
    config: Config,
    config_file: str,
    storage_path: str,
    listen: tuple[str | None, int],
    handler: RedactingHandler,
    web_cfg: WebConfig | None = None,
    started: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
    web_opts: WebOptions | None = None,
    shard: Shard = ALL,
) -> None:
    """Serve until `stop` (or SIGTERM/SIGINT); SIGHUP and /-/reload re-read `config_file`
    (and the web config). `web_opts` (the --web.* flags) overrides `listen`."""
    from exporter.webserve import WebServer  # here: `check` and `remediate` skip the web stack

    service = Service(config, storage_path, shard)
    web_server = WebServer(service, service.config, web_cfg,
                           web_opts or WebOptions(listen=(listen,)))

    async def reload() -> str | None:
        try:
            new = load_config(config_file)
        except ConfigError as e:
            service.reload_failed()
            log.error("reload failed, old config kept", extra={"error": str(e)})
            return str(e)
        error = web_server.reload_web_config()
        if error:
            return error
        handler.secrets = tuple({*handler.secrets, *new.secrets})
        for warning in new.warnings:  # as at start: a secret file the reload brought in, chmod 600
            log.warning(warning)
        await service.apply_config(new)
        log.info("configuration reloaded", extra={"stores": len(new.stores)})
        return None

    await web_server.start(reload, {"shard": f"{shard.index}/{shard.total}"} if shard.sharded else {})
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
        # Both bounded (Service.stop_deadline, the runners' shutdown_timeout): SIGTERM ends
        # us in < 2 s.
        await asyncio.gather(service.stop(), web_server.stop())
        log.info("stopped", extra={"seconds": round(loop.time() - t0, 3)})

