"""The web side of `serve`: apps, listening sockets, web config, connection bounds.

Kept apart from cli.py so the command line only parses flags and hands them over.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import REGISTRY

from exporter.config.model import Config, ConfigError
from exporter.exposition.buildinfo import BuildInfoCollector
from exporter.service.service import Service
from exporter.version import __version__
from exporter.web.config import WebConfig, load_web_config
from exporter.web.guard import Guard
from exporter.web.options import WebOptions, parse_listen
from exporter.web.routes import make_app, make_health_app
from exporter.web.sockets import (
    ConnectionGuard,
    GuardedSite,
    connection_budget,
    descriptor_room,
    raise_nofile_limit,
    systemd_sockets,
)

log = logging.getLogger("exporter.web")
_BUILD_INFO: list[BuildInfoCollector] = []


def register_build_info() -> None:
    """Once per process: the default registry refuses a second collector of the same name."""
    if not _BUILD_INFO:
        _BUILD_INFO.append(BuildInfoCollector())
        REGISTRY.register(_BUILD_INFO[0])


class WebServer:
    def __init__(self, service: Service, config: Config, web_cfg: WebConfig | None,
                 opts: WebOptions) -> None:
        self.service, self.config, self.opts = service, config, opts
        self.web_config_path = opts.config_file
        if self.web_config_path and web_cfg is None:
            web_cfg = load_web_config(self.web_config_path)
        self.guard = Guard(web_cfg or WebConfig(), opts.route_prefix)
        self.runners: list[web.AppRunner] = []
        self.conns: ConnectionGuard | None = None

    async def reload_web_config(self) -> str | None:
        """Re-read --web.config.file (users, headers, limits, certificates); a bad one is
        refused and the old one kept. Read and checked in a worker thread, swapped in here."""
        if not self.web_config_path:
            return None
        try:
            cfg = await asyncio.to_thread(load_web_config, self.web_config_path)
        except ConfigError as e:
            log.error("web config reload failed, old one kept", extra={"error": str(e)})
            return str(e)
        for w in cfg.warnings:
            log.warning("web config", extra={"file": self.web_config_path, "problem": w})
        self.guard.swap(cfg)
        return None

    async def start(self, reload: Callable[[], Awaitable[str | None]],
                    log_extra: dict[str, str] | None = None) -> None:
        register_build_info()
        opts = self.opts
        nofile = raise_nofile_limit()
        room = descriptor_room(nofile, len(self.config.stores), self.config.probe_concurrency)
        limit = connection_budget(opts.max_connections, nofile, len(self.config.stores),
                                  self.config.probe_concurrency)
        idle = opts.idle_timeout
        self.conns = ConnectionGuard(limit, idle, hard=room)
        app = make_app(self.service, reload,
                       [self.conns.middleware(), *self.guard.middlewares()],
                       opts.telemetry_path, self.guard.add_headers, opts.route_prefix, opts.link_base)
        # In-flight requests (a /probe read of a hanging PI) get 0.5 s to finish and 0.5 s
        # more once cancelled (aiohttp waits twice), in parallel with Service.stop (1 s).
        runner = web.AppRunner(app, access_log=None, keepalive_timeout=idle, shutdown_timeout=0.5)
        await runner.setup()
        self.runners.append(runner)
        ssl_ctx = self.guard.ssl_context()
        sites: list[GuardedSite] = []
        if opts.systemd_socket:
            sites = [GuardedSite(runner, self.conns, sock=s, ssl_context=ssl_ctx)
                     for s in systemd_sockets()]
        else:
            sites = [GuardedSite(runner, self.conns, host=h, port=p, ssl_context=ssl_ctx)
                     for h, p in opts.listen]
        for site in sites:
            await site.start()
        health = opts.health_listen
        if health:
            h_runner = web.AppRunner(make_health_app(self.service), access_log=None,
                                     keepalive_timeout=idle, shutdown_timeout=0.5)
            await h_runner.setup()
            self.runners.append(h_runner)
            host, port = parse_listen(health)
            await GuardedSite(h_runner, ConnectionGuard(64, idle), host=host, port=port).start()
        log.info("listening", extra={
            "address": ",".join(s.name for s in sites), "health": health or "",
            "stores": len(self.config.stores), "version": __version__,
            "max_connections": limit, "descriptor_room": room, "nofile": nofile,
            **(log_extra or {})})

    async def stop(self) -> None:
        await asyncio.gather(*(runner.cleanup() for runner in self.runners))
        if self.conns is not None:
            await self.conns.stop()
