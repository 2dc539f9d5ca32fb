"""The real exporter in its own process, exactly as deployed: what the tests check is what an
operator would see.

- `cli` / `acli`: one command line (`python -m exporter ...`) run to its end, stdin /dev/null,
  output captured: `acli` for async tests, whose lab runs on the test's own loop.
- `Exporter`: `python -m exporter serve` on a free loopback port, with its HTTP session.
- `accept_on_terminal`: `accept` on a real pseudo-terminal, answering its question.
- `samples` / `value`: read an exposition body; `wait_for`: poll until true.
- `run`: any command that must succeed (builds, pipx); `source_copy`: the checkout as it stands.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.kit.lab import ROOT, free_port

EXPORTER = (sys.executable, "-m", "exporter")
# The checkout first on the path: the exporter the tests import is the one the child runs.
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def cli(*args: str, timeout: float = 60, cwd: Path | None = None,
        env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m exporter ARGS` to its end, without a terminal (stdin is /dev/null).
    `env`: the child's whole environment (default: this one, the checkout on PYTHONPATH)."""
    return subprocess.run([*EXPORTER, *args], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout, check=False, cwd=cwd,
                          env=dict(env) if env is not None else ENV)


async def acli(*args: str, timeout: float = 60, cwd: Path | None = None,
               env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`cli` for async tests: the lab runs on the test's loop, so the loop must keep running.
    A child still running after `timeout` is killed and the test fails with TimeoutError."""
    proc = await asyncio.create_subprocess_exec(
        *EXPORTER, *args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, cwd=cwd, env=dict(env) if env is not None else ENV)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return subprocess.CompletedProcess([*EXPORTER, *args], proc.returncode or 0, out.decode(),
                                       err.decode())








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
            *EXPORTER, "serve",
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
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.args(), stdout=log, stderr=log, env=ENV, cwd=str(self.workdir),
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


# --- accept on a terminal ---------------------------------------------------------------------

REASON = "HA page: Primary Active, secondary synced; ISE connection test passed"
PROMPT = b"Type 'yes'"  # accept's question


async def accept_on_terminal(cfg: Path, data: Path, answer: str, *args: str,
                             between: Callable[[], Awaitable[None]] | None = None,
                             env: dict[str, str] | None = None) -> tuple[int, str]:
    """`accept` with a pty as stdin/stdout/stderr; `between` runs once the question is on
    the terminal and before the answer is typed. Returns the exit code and everything shown."""
    master, slave = pty.openpty()
    proc = await asyncio.create_subprocess_exec(
        *EXPORTER, "accept", "--config.file", str(cfg), "--storage.path", str(data),
        "--log.level", "warn", "--reason", REASON, *args,
        stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    seen = b""

    def read() -> bytes:
        try:
            return os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            return b""

    try:
        while PROMPT not in seen:
            chunk = await asyncio.wait_for(asyncio.to_thread(read), 60)
            assert chunk, seen.decode(errors="replace")
            seen += chunk
        if between is not None:
            await between()
        os.write(master, answer.encode() + b"\n")
        while chunk := await asyncio.wait_for(asyncio.to_thread(read), 60):
            seen += chunk
        return await asyncio.wait_for(proc.wait(), 30), seen.decode(errors="replace")
    finally:
        os.close(master)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# --- builds and installs ---------------------------------------------------------------------

def run(cmd: list[str], timeout: float = 600, **kw: Any) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    assert r.returncode == 0, f"{' '.join(cmd)}: exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


# What a source tree holds besides the source, when it is not a git checkout to ask.
_NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__",
                                     ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis")


def source_copy(dest: Path) -> Path:
    """The checkout as it stands: tracked and new files, nothing git ignores."""
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others",
                            "--exclude-standard"], capture_output=True, text=True)
    if files.returncode != 0:  # an unpacked archive, not a git checkout
        shutil.copytree(ROOT, dest, ignore=_NOT_SOURCE, dirs_exist_ok=True)
        return dest
    for name in filter(None, files.stdout.split("\0")):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest
