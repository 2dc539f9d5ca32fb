"""Run the real exporter (`python -m exporter serve`) as a subprocess against lab servers.

Shared by the TLS fault matrix, the web security and the reload tests: what they check is
what an operator would see, so the exporter runs exactly as deployed, in its own process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent








def samples(body: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """label set (sorted) -> value for every sample of metric `name` in an exposition body."""
    out: dict[tuple[tuple[str, str], ...], float] = {}
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def value(body: str, name: str, **labels: str) -> float | None:
    """The one sample of `name` whose labels include `labels`, or None."""
    want = set(labels.items())
    hits = [v for k, v in samples(body, name).items() if want <= set(k)]
    assert len(hits) <= 1, f"{name}{labels}: {len(hits)} samples"
    return hits[0] if hits else None


class Exporter:
    """`python -m exporter serve` on a free loopback port; logs go to a file."""

    def __init__(
        self,
        config: Path,
        workdir: Path,
        web_config: Path | None = None,
        client_ssl: ssl.SSLContext | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.config = config
        self.extra_args = extra_args
        self.workdir = workdir
        self.web_config = web_config
        self.port = free_port()
        self.client_ssl = client_ssl
        self.log_path = workdir / f"exporter-{self.port}.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.client_ssl is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def args(self) -> list[str]:
        args = [
            sys.executable, "-m", "exporter", "serve",
            "--config.file", str(self.config),
            "--storage.path", str(self.workdir / "data"),
            "--web.listen-address", f"127.0.0.1:{self.port}",
        ]
        if self.web_config is not None:
            args += ["--web.config.file", str(self.web_config)]
        return args + list(self.extra_args)

    def spawn_kwargs(self) -> dict[str, Any]:
        """Extra create_subprocess_exec arguments (e.g. pass_fds) for subclasses."""
        return {}

    async def start(self, ready: bool = True, timeout: float = 20.0) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.args(), stdout=log, stderr=log, env=env, cwd=str(self.workdir),
                **self.spawn_kwargs(),
            )
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self.client_ssl or False, limit=0)
        )
        path = "/-/ready" if ready else "/-/healthy"
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.returncode is None, f"exporter exited: {self.log()}"
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with self.session.get(self.url + path) as r:
                    if r.status == 200:
                        return
            assert time.monotonic() < deadline, f"exporter not {path} in {timeout}s: {self.log()}"
            await asyncio.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def get(self, path: str, **kw: Any) -> tuple[int, str, float]:
        """GET -> (status, body, seconds)."""
        assert self.session is not None
        t0 = time.perf_counter()
        async with self.session.get(self.url + path, **kw) as r:
            body = await r.text()
            return r.status, body, time.perf_counter() - t0

    async def metrics(self) -> tuple[str, float]:
        status, body, took = await self.get("/metrics")
        assert status == 200, body
        return body, took

    async def post(self, path: str, **kw: Any) -> tuple[int, str]:
        assert self.session is not None
        async with self.session.post(self.url + path, **kw) as r:
            return r.status, await r.text()

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def wait_for(check: Any, timeout: float, step: float = 0.2) -> Any:
    """Poll an async callable until it returns something truthy; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(step)
    raise AssertionError(f"condition not met in {timeout}s (last: {last!r})")
