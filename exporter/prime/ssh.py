"""An SSH session with a PI server's admin CLI: interactive shell (PTY, prompt matching,
paging) or exec requests. Host keys are always checked against known_hosts.

The session is kept between reads (PI logins are slow) and thrown away on any doubt:
a timeout, a drop or output we could not frame means the next read reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time

import asyncssh

from exporter.config import StoreConfig
from exporter.model import ErrorReason

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\x1b[=>]")
_MORE = re.compile(r"\s*-+\s*More\s*-+\s*$", re.IGNORECASE)
DEFAULT_PROMPT = r"[A-Za-z0-9][\w.\-]*/[\w.\-@]+#"
MAX_OUTPUT = 16 * 1024 * 1024  # far above any real TOFU list; guards memory against a flood
MAX_PAGES = 10000


class StoreReadError(Exception):
    def __init__(self, reason: ErrorReason, message: str) -> None:
        self.reason = reason
        self.message = message
        super().__init__(message)


def clean(text: str) -> str:
    """Terminal output -> plain text: no ANSI escapes, no CR, no backspace games."""
    text = _ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    return text.replace("\x08", "")


def strip_echo_and_prompt(output: str, command: str, prompt: re.Pattern[str]) -> str:
    lines = output.split("\n")
    if lines and lines[0].strip().endswith(command.strip()):
        lines = lines[1:]
    while lines and (not lines[-1].strip() or prompt.fullmatch(lines[-1].strip())):
        lines.pop()
    return "\n".join(lines)


class PiSession:
    """One PI server. `run(command)` returns the command's output as clean text."""

    def __init__(self, cfg: StoreConfig) -> None:
        self.cfg = cfg
        self._conn: asyncssh.SSHClientConnection | None = None
        self._proc: asyncssh.SSHClientProcess[bytes] | None = None
        self._prompt: re.Pattern[str] | None = None
        self._lock = asyncio.Lock()
        self.connects = 0

    @property
    def connected(self) -> bool:
        return self._conn is not None

    async def close(self) -> None:
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        self._prompt = None
        if proc is not None:
            proc.close()
        if conn is not None:
            conn.close()
            with contextlib.suppress(TimeoutError, OSError, asyncssh.Error):
                await asyncio.wait_for(conn.wait_closed(), 2)

    async def run(self, command: str) -> str:
        async with self._lock:
            try:
                return await self._run(command)
            except StoreReadError:
                await self.close()
                raise
            except asyncio.CancelledError:
                await self.close()
                raise

    async def _run(self, command: str) -> str:
        cfg = self.cfg
        if self._conn is None:
            self._conn = await self._connect()
        deadline = time.monotonic() + cfg.command_timeout
        try:
            if cfg.cli_mode == "exec":
                return await self._exec(command, deadline)
            return await self._shell(command, deadline)
        except TimeoutError:
            raise StoreReadError(
                ErrorReason.TIMEOUT, f"no complete answer within {cfg.command_timeout:g}s"
            ) from None
        except (asyncssh.ChannelOpenError, asyncssh.ProcessError) as e:
            raise StoreReadError(ErrorReason.COMMAND, f"command channel refused: {e.reason}") from None
        except (asyncssh.DisconnectError, asyncssh.ConnectionLost, ConnectionError, BrokenPipeError) as e:
            raise StoreReadError(ErrorReason.CONNECT, f"connection lost: {_text(e)}") from None

    async def _connect(self) -> asyncssh.SSHClientConnection:
        cfg = self.cfg
        keys = [cfg.private_key_file] if cfg.private_key_file else []
        try:
            conn = await asyncio.wait_for(
                asyncssh.connect(
                    cfg.host,
                    cfg.port,
                    username=cfg.username,
                    password=cfg.password,
                    client_keys=keys,
                    passphrase=cfg.private_key_passphrase,
                    known_hosts=cfg.known_hosts,
                    agent_path=None,
                    config=None,
                    keepalive_interval=30,
                    keepalive_count_max=3,
                    login_timeout=cfg.connect_timeout,
                    connect_timeout=cfg.connect_timeout,
                ),
                cfg.connect_timeout,
            )
        except TimeoutError:
            raise StoreReadError(
                ErrorReason.TIMEOUT, f"no SSH login within {cfg.connect_timeout:g}s"
            ) from None
        except asyncssh.HostKeyNotVerifiable:
            kh = cfg.known_hosts
            target = cfg.host if cfg.port == 22 else f"[{cfg.host}]:{cfg.port}"
            raise StoreReadError(
                ErrorReason.HOSTKEY,
                f"host key of {target} is not in {kh} or has changed; not reading this store. "
                f"Verify the key out of band, then add it: ssh-keyscan -p {cfg.port} {cfg.host} >> {kh}",
            ) from None
        except asyncssh.PermissionDenied:
            raise StoreReadError(
                ErrorReason.AUTH, f"authentication as {cfg.username!r} rejected"
            ) from None
        except (asyncssh.Error, OSError) as e:
            raise StoreReadError(ErrorReason.CONNECT, f"cannot connect: {_text(e)}") from None
        self.connects += 1
        return conn

    async def _exec(self, command: str, deadline: float) -> str:
        assert self._conn is not None
        result = await asyncio.wait_for(
            self._conn.run(command, check=False, encoding=None),
            max(0.0, deadline - time.monotonic()),
        )
        out = result.stdout if isinstance(result.stdout, bytes) else b""
        if len(out) > MAX_OUTPUT:
            raise StoreReadError(ErrorReason.COMMAND, "output larger than 16 MiB")
        if result.exit_status not in (0, None):
            raise StoreReadError(
                ErrorReason.COMMAND, f"command exited with status {result.exit_status}"
            )
        return clean(out.decode("utf-8", errors="replace")).strip("\n")

    async def _shell(self, command: str, deadline: float) -> str:
        if self._proc is None or self._proc.is_closing():
            assert self._conn is not None
            proc: asyncssh.SSHClientProcess[bytes] = await asyncio.wait_for(
                self._conn.create_process(term_type="vt100", term_size=(511, 24), encoding=None),
                max(0.0, deadline - time.monotonic()),
            )
            self._proc = proc
            # Banner and motd come first; the first prompt tells us this server's exact prompt.
            await self._read_until_prompt(deadline, learn=True)
            await self._command("terminal length 0", deadline)
        output = await self._command(command, deadline)
        assert self._prompt is not None
        return strip_echo_and_prompt(output, command, self._prompt)

    async def _command(self, line: str, deadline: float) -> str:
        assert self._proc is not None
        self._proc.stdin.write(line.encode() + b"\n")
        return await self._read_until_prompt(deadline, learn=False)

    async def _read_until_prompt(self, deadline: float, learn: bool) -> str:
        assert self._proc is not None
        pattern = re.compile(self.cfg.prompt or DEFAULT_PROMPT)
        buf, pages = "", 0
        raw = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            chunk = await asyncio.wait_for(self._proc.stdout.read(65536), remaining)
            if not chunk:
                raise StoreReadError(
                    ErrorReason.CONNECT, "the CLI closed the session before the prompt returned"
                )
            raw += len(chunk)
            if raw > MAX_OUTPUT:
                raise StoreReadError(ErrorReason.COMMAND, "output larger than 16 MiB")
            buf += clean(chunk.decode("utf-8", errors="replace"))
            if _MORE.search(buf[-80:]):
                pages += 1
                if pages > MAX_PAGES:
                    raise StoreReadError(ErrorReason.COMMAND, "endless --More-- paging")
                buf = _MORE.sub("\n", buf)
                self._proc.stdin.write(b" ")
                continue
            tail = buf.rsplit("\n", 1)[-1].strip()
            if learn:
                m = pattern.fullmatch(tail)
                if m:
                    self._prompt = re.compile(re.escape(tail))
                    return buf
            elif self._prompt is not None and self._prompt.fullmatch(tail):
                return buf


def _text(e: BaseException) -> str:
    reason = getattr(e, "reason", None)
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(reason or e) or e.__class__.__name__
