"""An SSH session with a PI server's admin CLI: interactive shell (PTY, prompt matching,
paging) or exec requests. Host keys are always checked against known_hosts.

The session is kept between reads (PI logins are slow) and thrown away on any doubt:
a timeout, a drop or output we could not frame means the next read reconnects.
Output is read in bounded chunks: a flooding or paging-forever server costs at most
MAX_OUTPUT bytes of memory and MAX_PAGES round trips, never the exporter.

A session may be given a Trace (`doctor` does): it is called at each step of the dialogue
with what was seen there, so the first-contact transcript comes from this code path and
not from a second implementation of it. Facts are the server's text as it came (show it
through exporter.core.text.visible); no password, passphrase or key material is ever passed.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import re
from typing import Protocol

import asyncssh
from asyncssh.misc import MaybeAwait

from exporter.config.model import StoreConfig
from exporter.core.model import ErrorReason
from exporter.core.text import visible

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\x1b[=>]")
_MORE = re.compile(r"\s*-+\s*More\s*-+\s*$", re.IGNORECASE)
_MORE_LINE = re.compile(r"^[ \t]*-+[ \t]*More[ \t]*-+[ \t]*$", re.IGNORECASE | re.MULTILINE)
DEFAULT_PROMPT = r"[A-Za-z0-9][\w.\-]*/[\w.\-@]+#"
# AES-GCM first: with AES-NI it costs a fraction of asyncssh's per-packet ChaCha20-Poly1305
# setup (bench: kept read 10.9 -> 4.5 CPU-ms). The rest of asyncssh's defaults stay offered.
_CIPHERS = [
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
]
MAX_OUTPUT = 16 * 1024 * 1024  # far above any real TOFU list; guards memory against a flood
# 5000 entries (max_entries) with their blank lines, at 24 lines a page, are ~420 pages.
MAX_PAGES = 1000
# Read in big pieces: a reader that falls behind makes asyncssh queue the surplus in the
# channel (measured: 33 MB queued at 64 KiB reads against a 50 MB flood).
_CHUNK = 1 << 20
_TAIL = 512  # enough decoded text to see a prompt or a --More-- at the end of the output
_DRAIN_QUIET = 0.05  # seconds of silence that mean a reused shell has nothing stale queued


class Trace(Protocol):
    """Called as trace(step, **facts) at each step of the dialogue; see PiSession."""

    def __call__(self, step: str, /, **facts: object) -> None: ...


class _Client(asyncssh.SSHClient):
    """Notes which methods asyncssh tried, in order, to name the one that logged in."""

    def __init__(self, tried: list[str]) -> None:
        self.tried = tried

    def kbdint_auth_requested(self) -> MaybeAwait[str | None]:
        self.tried.append("keyboard-interactive")
        # NotImplemented, as the base class: asyncssh answers a password prompt with the password
        return super().kbdint_auth_requested()


def auth_method(tried: list[str], keys: list[asyncssh.SSHKey]) -> str:
    """The method that logged in: asyncssh tries public keys first, then keyboard-interactive,
    then password, and asks for the password (once) only after the keys failed."""
    if "password" in tried:
        before = tried[: tried.index("password")]
        return "keyboard-interactive, answered with the password" if before else "password"
    if keys:
        return "publickey"
    return "none"


class StoreReadError(Exception):
    def __init__(self, reason: ErrorReason, message: str) -> None:
        self.reason = reason
        self.message = message
        super().__init__(message)


def exit_problem(status: int | None, signal: tuple[str, bool, str, str] | None
                 ) -> tuple[ErrorReason, str] | None:
    """Why an exec command's output is not known whole, or None for exit status 0.

    Only an exit status says the output is whole. A server that drops the connection closes the
    channel first (asyncssh's disconnect does), so "is the connection closed yet" races with the
    DISCONNECT behind it, and a listing cut short would read as complete: its missing entries as
    removed, their baselines pruned. A signal's name is the host's text: made visible."""
    if status == 0:
        return None
    if status is not None:
        return ErrorReason.COMMAND, f"exited with status {status}"
    if signal is not None:
        return ErrorReason.COMMAND, f"was killed by signal {visible(str(signal[0]))}"
    return ErrorReason.CONNECT, ("closed its channel without an exit status (connection lost "
                                 "before it finished?); the output may be cut, so none of it is used")


def clean(text: str) -> str:
    """Terminal output -> plain text: no ANSI escapes, no CR, no backspace games."""
    text = _ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    return text.replace("\x08", "")


def strip_echo_and_prompt(output: str, command: str, prompt: re.Pattern[str]) -> str:
    """Drop the echoed command line and trailing blank / prompt lines. Works on the ends of
    the text only: a multi-MB listing is sliced once, not split into lines and joined."""
    start = 0
    first_end = output.find("\n")
    first = output if first_end < 0 else output[:first_end]
    if first.strip().endswith(command.strip()):
        start = len(output) if first_end < 0 else first_end + 1
    end = len(output)
    while end > start:
        cut = output.rfind("\n", start, end)
        last = output[(cut + 1 if cut >= 0 else start):end].strip()
        if last and not prompt.fullmatch(last):
            break
        end = cut if cut >= 0 else start
    return output[start:end]


class _Output:
    """CLI output, accumulated under a size cap and decoded as it arrives.

    listcerts prints OpenSSL subjects, which escape every non-ASCII byte, so a NUL or an
    invalid UTF-8 sequence means the bytes are not a listing at all: parse error, not an
    empty list that would wipe the store's baselines. Only decoded text is kept (once):
    a 10 MB listing is not held as bytes and as text at the same time.
    """

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
        self.tail = ""  # the last _TAIL decoded characters, for prompt / pager checks
        self.invalid = 0
        self.pages = 0  # --More-- prompts answered

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > MAX_OUTPUT:
            raise StoreReadError(
                ErrorReason.COMMAND, f"output larger than {MAX_OUTPUT // (1024 * 1024)} MiB; gave up"
            )
        try:
            text = self._decoder.decode(chunk)
        except UnicodeDecodeError:
            self.invalid += 1
            self._decoder.reset()
            text = chunk.decode("utf-8", errors="replace")
        self.invalid += chunk.count(0)
        if self.invalid:
            self.parts = []  # never text(): keep only the tail, for the prompt
        else:
            self.parts.append(text)
        self.tail = (self.tail + text)[-_TAIL:]

    def text(self) -> str:
        if self.invalid:
            raise StoreReadError(ErrorReason.PARSE, "output is binary, not CLI text (NUL or invalid UTF-8)")
        try:
            self.parts.append(self._decoder.decode(b"", final=True))
        except UnicodeDecodeError:  # a sequence cut at the very end
            raise StoreReadError(ErrorReason.PARSE, "output is not valid UTF-8 text") from None
        text = "".join(self.parts)
        self.parts = [text]
        return text


class _Login:
    """Logging in to one PI server: the client key (loaded once per file version), the
    connection with its host key checked, and what `doctor` is told about it."""

    def __init__(self, cfg: StoreConfig, trace: Trace | None) -> None:
        self.cfg = cfg
        self._trace = trace
        self._key: tuple[tuple[int, int, int], asyncssh.SSHKey | StoreReadError] | None = None

    async def _client_keys(self) -> list[asyncssh.SSHKey]:
        """Load the key ourselves: a wrong passphrase is an auth problem, not a network one.

        Decrypting an OpenSSH key runs bcrypt's KDF (about a second of CPU): it runs in a
        thread so /metrics never waits for it, and the result (or the failure) is kept until
        the file changes, so a wrong passphrase does not burn a second every interval.
        """
        cfg = self.cfg
        if not cfg.private_key_file:
            return []
        path = cfg.private_key_file
        try:
            st = os.stat(path)
        except OSError as e:
            raise StoreReadError(
                ErrorReason.AUTH, f"cannot read private key {path}: {e.strerror or e}"
            ) from None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if self._key is None or self._key[0] != stamp:
            try:
                key: asyncssh.SSHKey | StoreReadError = await asyncio.to_thread(
                    asyncssh.read_private_key, path, cfg.private_key_passphrase
                )
            except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError, ValueError):
                why = "wrong passphrase or not a private key" if cfg.private_key_passphrase else (
                    "encrypted and no passphrase configured, or not a private key")
                key = StoreReadError(ErrorReason.AUTH, f"cannot load private key {path}: {why}")
            except OSError as e:
                key = StoreReadError(
                    ErrorReason.AUTH, f"cannot read private key {path}: {e.strerror or e}"
                )
            self._key = (stamp, key)
        loaded = self._key[1]
        if isinstance(loaded, StoreReadError):
            raise StoreReadError(loaded.reason, loaded.message)
        return [loaded]

    async def connect(self) -> asyncssh.SSHClientConnection:
        cfg = self.cfg
        keys = await self._client_keys()
        tried: list[str] = []

        def password() -> str | None:
            tried.append("password")
            return cfg.password

        try:
            async with asyncio.timeout(cfg.connect_timeout):
                conn = await asyncssh.connect(
                    cfg.host,
                    cfg.port,
                    client_factory=lambda: _Client(tried),
                    username=cfg.username,
                    password=password if cfg.password is not None else None,
                    client_keys=keys,
                    known_hosts=cfg.known_hosts,
                    agent_path=None,
                    config=None,
                    keepalive_interval=30,
                    keepalive_count_max=3,
                    encryption_algs=_CIPHERS,
                    login_timeout=cfg.connect_timeout,
                    # Not asyncssh's own: it wraps the connect in asyncio.wait_for, which on
                    # 3.11 returns the connection when a cancel races with the login
                    # completing, and the cancelled read went on. The timeout above bounds it.
                    connect_timeout=None,
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
        except (asyncssh.Error, OSError, ValueError) as e:
            raise StoreReadError(ErrorReason.CONNECT, f"cannot connect: {_text(e)}") from None
        if self._trace is not None:
            self._trace_login(conn, auth_method(tried, keys), keys)
        return conn

    def _trace_login(self, conn: asyncssh.SSHClientConnection, method: str,
                     keys: list[asyncssh.SSHKey]) -> None:
        assert self._trace is not None
        cfg = self.cfg
        self._trace("connected", host=cfg.host, port=cfg.port,
                    server_version=str(conn.get_extra_info("server_version") or ""),
                    cipher=str(conn.get_extra_info("send_cipher") or ""))
        host_key = conn.get_server_host_key()
        self._trace("hostkey", algorithm=host_key.get_algorithm() if host_key else "none",
                    fingerprint=host_key.get_fingerprint("sha256") if host_key else "",
                    known_hosts=cfg.known_hosts)
        client_key = (f"{keys[0].get_algorithm()} {keys[0].get_fingerprint('sha256')}"
                      if method == "publickey" and keys else None)
        self._trace("auth", username=cfg.username, method=method, key=client_key)


class PiSession:
    """One PI server. `run(command)` returns the command's output as clean text."""

    def __init__(self, cfg: StoreConfig, trace: Trace | None = None) -> None:
        self.cfg = cfg
        self._trace = trace
        self._conn: asyncssh.SSHClientConnection | None = None
        self._proc: asyncssh.SSHClientProcess[bytes] | None = None
        self._prompt: re.Pattern[str] | None = None
        self._lock = asyncio.Lock()
        self._login = _Login(cfg, trace)
        self.connects = 0

    async def close(self) -> None:
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        self._prompt = None
        if proc is not None:
            proc.close()
        if conn is not None:
            conn.close()
            with contextlib.suppress(TimeoutError, OSError, asyncssh.Error):
                async with asyncio.timeout(2):
                    await conn.wait_closed()

    async def connection(self) -> asyncssh.SSHClientConnection:
        """The logged-in connection, opened on first use and again after the server dropped
        it: for a Source that reads a file (SFTP) rather than a CLI command's output."""
        async with self._lock:
            if self._conn is not None and self._conn.is_closed():
                await self.close()
            if self._conn is None:
                self._conn = await self._connect()
            return self._conn

    async def run(self, command: str) -> str:
        async with self._lock:
            try:
                text = await self._run(command)
            except StoreReadError as e:
                if self._trace is not None:
                    self._trace("failed", reason=e.reason.value, error=e.message)
                await self.close()
                raise
            except asyncio.CancelledError:
                await self.close()
                raise
            if self._trace is not None:
                self._trace("output", command=command, text=text)
            return text

    async def _run(self, command: str) -> str:
        cfg = self.cfg
        if self._conn is not None and self._conn.is_closed():
            # The server went away between reads (restart, idle drop): not this read's fault.
            await self.close()
        if self._conn is None:
            self._conn = await self._connect()
        elif self._trace is not None:
            self._trace("reused", mode=cfg.cli_mode)
        # One deadline for the whole command, as a cancel scope: asyncio.wait_for per chunk
        # (3.11) could swallow a cancellation that raced with a chunk arriving, and the
        # cancelled read then went on reading.
        try:
            async with asyncio.timeout(cfg.command_timeout):
                if cfg.cli_mode == "exec":
                    return await self._exec(command)
                return await self._shell(command)
        except TimeoutError:
            raise StoreReadError(
                ErrorReason.TIMEOUT, f"no complete answer within {cfg.command_timeout:g}s"
            ) from None
        except (asyncssh.ChannelOpenError, asyncssh.ProcessError) as e:
            if self._conn is not None and self._conn.is_closed():
                raise StoreReadError(ErrorReason.CONNECT, f"connection lost: {_text(e)}") from None
            raise StoreReadError(ErrorReason.COMMAND, f"command channel refused: {e.reason}") from None
        except (asyncssh.DisconnectError, asyncssh.ConnectionLost, ConnectionError, BrokenPipeError) as e:
            raise StoreReadError(ErrorReason.CONNECT, f"connection lost: {_text(e)}") from None

    async def _connect(self) -> asyncssh.SSHClientConnection:
        conn = await self._login.connect()
        self.connects += 1
        return conn

    async def _exec(self, command: str) -> str:
        assert self._conn is not None
        proc: asyncssh.SSHClientProcess[bytes] = await self._conn.create_process(
            command, encoding=None, stderr=asyncssh.DEVNULL
        )
        try:
            out = _Output()
            while chunk := await proc.stdout.read(_CHUNK):
                out.add(chunk)
            await proc.wait_closed()
        finally:
            proc.close()
        problem = exit_problem(proc.exit_status, proc.exit_signal)
        if problem is not None and problem[0] is ErrorReason.CONNECT:
            raise StoreReadError(problem[0], f"the command {problem[1]}")
        if self._trace is not None:
            self._trace("exec", command=command, exit_status=proc.exit_status, size=out.size)
        if problem is not None:
            raise StoreReadError(problem[0], f"command {problem[1]}")
        text, pages = _MORE_LINE.subn("", clean(out.text()))
        if self._trace is not None:
            self._trace("paging", command=command, answered=0, removed=pages)
        return text.strip("\n")

    async def _shell(self, command: str) -> str:
        if self._proc is not None and not self._proc.is_closing() and not await self._drain():
            self._proc.close()
            self._proc = None
        if self._proc is None or self._proc.is_closing():
            assert self._conn is not None
            proc: asyncssh.SSHClientProcess[bytes] = await self._conn.create_process(
                term_type="vt100", term_size=(511, 24), encoding=None
            )
            self._proc = proc
            if self._trace is not None:
                self._trace("shell", term_type="vt100", term_size=(511, 24))
            # Banner and motd come first; the first prompt tells us this server's exact prompt.
            banner = await self._read_until_prompt(learn=True)
            if self._trace is not None:
                self._trace("prompt", prompt=clean(banner.tail).rsplit("\n", 1)[-1].strip(),
                            pattern=self.cfg.prompt or DEFAULT_PROMPT, banner_size=banner.size)
            await self._command("terminal length 0")
        answer = await self._command(command)
        output, leftover = _MORE_LINE.subn("", clean(answer.text()))
        if self._trace is not None:
            self._trace("paging", command=command, answered=answer.pages, removed=leftover)
        assert self._prompt is not None
        return strip_echo_and_prompt(output, command, self._prompt)

    async def _drain(self) -> bool:
        """Discard whatever a reused shell printed since the last prompt (broadcasts, late
        output), so this read's answer cannot start with someone else's. False at EOF."""
        assert self._proc is not None
        discarded = 0
        while True:
            try:
                async with asyncio.timeout(_DRAIN_QUIET):
                    chunk = await self._proc.stdout.read(_CHUNK)
            except TimeoutError:
                return True
            if not chunk:
                return False
            discarded += len(chunk)
            if discarded > MAX_OUTPUT:
                return False

    async def _command(self, line: str) -> _Output:
        assert self._proc is not None
        self._proc.stdin.write(line.encode() + b"\n")
        out = await self._read_until_prompt(learn=False)
        if self._trace is not None:
            self._trace("sent", line=line, size=out.size)
        return out

    async def _read_until_prompt(self, learn: bool) -> _Output:
        """Raw output up to the prompt. Banners are not checked for being text: only the
        listing is parsed, and a login banner in Latin-1 must not fail the store."""
        assert self._proc is not None
        pattern = re.compile(self.cfg.prompt or DEFAULT_PROMPT)
        out = _Output()
        while True:
            chunk = await self._proc.stdout.read(_CHUNK)
            if not chunk:
                raise StoreReadError(
                    ErrorReason.CONNECT, "the CLI closed the session before the prompt returned"
                )
            out.add(chunk)
            tail = clean(out.tail)
            if _MORE.search(tail[-80:]):
                out.pages += 1
                if out.pages > MAX_PAGES:
                    raise StoreReadError(
                        ErrorReason.COMMAND, f"endless --More-- paging ({MAX_PAGES} pages); gave up"
                    )
                out.tail = ""  # this pager prompt is answered; do not answer it twice
                self._proc.stdin.write(b" ")
                continue
            last = tail.rsplit("\n", 1)[-1].strip()
            if learn:
                if pattern.fullmatch(last):
                    self._prompt = re.compile(re.escape(last))
                    return out
            elif self._prompt is not None and self._prompt.fullmatch(last):
                return out


def _text(e: BaseException) -> str:
    reason = getattr(e, "reason", None)
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(reason or e) or e.__class__.__name__
