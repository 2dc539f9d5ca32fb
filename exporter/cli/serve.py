"""The exporter as a server: the service, its HTTP app, signals and reloads, wired together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING

from exporter.cli.logsetup import RedactingHandler
from exporter.config.load import load_config
from exporter.config.model import Config, ConfigError
from exporter.fleet.shard import ALL, Shard, owns_none
from exporter.service.service import Service
from exporter.web.options import WebOptions, parse_listen

if TYPE_CHECKING:
    from exporter.web.config import WebConfig

log = logging.getLogger("exporter")

# After SIGTERM or SIGINT the process is gone within this many seconds. A clean stop takes
# about 1 s (Service.stop's deadline, the web runners'); the deadline covers a loop busy in
# one long step, e.g. 2.6 s deciding a 100,000-entry store, which would otherwise hold the
# signal until it ends. Exiting then is safe: every baseline and history write is one SQLite
# transaction, committed or not (the SIGKILL tests).
STOP_SIGNAL_DEADLINE = 1.8


__all__ = ["WebOptions", "parse_listen", "serve"]


def _on_stop_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """SIGTERM/SIGINT: stop cleanly, or exit at STOP_SIGNAL_DEADLINE. A Python-level handler,
    not loop.add_signal_handler: it runs between two bytecodes of whatever the loop's thread
    is doing, so the deadline starts when the signal arrives, not when the loop is free."""

    def force_exit() -> None:
        log.warning("stop deadline passed, the event loop is busy; exiting now",
                    extra={"deadline_seconds": STOP_SIGNAL_DEADLINE})
        logging.shutdown()
        os._exit(0)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(stop.set)
        timer = threading.Timer(STOP_SIGNAL_DEADLINE, force_exit)
        timer.daemon = True
        timer.start()

    with contextlib.suppress(ValueError):  # not the main thread (an in-process test)
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)


def _warn_if_empty(config: Config, shard: Shard) -> None:
    """A replica that owns no store serves (and is ready: legitimate while scaling out), but
    an operator must be able to see that it watches nothing (docs/sharding.md)."""
    if (why := owns_none(config, shard)) is not None:
        log.warning("this replica watches no store", extra={"reason": why})


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
    from exporter.web.serve import WebServer  # here: `check` and `remediate` skip the web stack

    service = Service(config, storage_path, shard, drop_others=True)  # a replica, not a one-shot
    _warn_if_empty(config, shard)
    web_server = WebServer(service, service.config, web_cfg,
                           web_opts or WebOptions(listen=(listen,)))

    one_at_a_time = asyncio.Lock()  # a slow read must not apply its file after a newer one

    async def reload() -> str | None:
        async with one_at_a_time:
            return await _reload()

    async def _reload() -> str | None:
        try:
            # In a worker thread: reading and parsing (up to MAX_CONFIG_BYTES, seconds of
            # PyYAML for the largest) must not stall /-/healthy or the scrapes.
            new = await asyncio.to_thread(load_config, config_file)
        except ConfigError as e:
            service.reload_failed()
            log.error("reload failed, old config kept", extra={"error": str(e)})
            return str(e)
        error = await web_server.reload_web_config()
        if error:
            return error
        handler.secrets = tuple({*handler.secrets, *new.secrets})
        for warning in new.warnings:  # as at start: a secret file the reload brought in, chmod 600
            log.warning(warning)
        await service.apply_config(new)
        log.info("configuration reloaded", extra={"stores": len(new.stores)})
        _warn_if_empty(new, shard)
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
    _on_stop_signals(loop, stop)
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

