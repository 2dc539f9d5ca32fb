"""An asyncssh server that behaves like the Prime Infrastructure admin CLI.

It holds a real TOFU store filled by real TLS handshakes to its peers, so drift in
the lab is produced the way PI produces it, not scripted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import asyncssh

from pilab.pki import CertBundle, subject_of
from pilab.tls import format_endpoint

Subject = tuple[tuple[str, str], ...]

# No default login: whoever starts a lab server names its users (and their passwords).
DEFAULT_USERS: Mapping[str, str] = MappingProxyType({})
DEFAULT_BANNER = (
    "\n"
    "Cisco Prime Infrastructure\n"
    "\n"
    "*************************************************************************\n"
    "* WARNING: This system is restricted to authorized users for business   *\n"
    "* purposes only. Unauthorized access or use is a violation of           *\n"
    "* company policy and the law. This system may be monitored for          *\n"
    "* administrative and security reasons. By proceeding, you acknowledge   *\n"
    "* that you have read and understand this notice.                        *\n"
    "*************************************************************************\n"
)
LISTING_HEADER = (
    "",
    "Host certificate are automatically added to this list on first connection,",
    "",
    "if trust-on-first-use is configured - ncs certvalidation certificate-check ...",
    "",
    "",
    "",
)
MORE = " --More-- "
# What a terminal-oriented CLI prints to wipe the --More-- prompt after a key press.
MORE_ERASE = "\r" + " " * len(MORE) + "\r"
LISTCERTS = ("ncs", "certvalidation", "tofu-certs", "listcerts")
DELETECERT = ("ncs", "certvalidation", "tofu-certs", "deletecert", "host")
_PEER_TIMEOUT = 3.0
_LOG_LIMIT = 1000
# Java's X500Principal keyword for the attributes the lab uses.
_JAVA_NAMES = {"emailAddress": "EMAILADDRESS"}


@dataclass(frozen=True)
class StoredCert:
    key: str  # "<address>_<port>", the listcerts/deletecert key
    der: bytes
    subject: Subject


@dataclass(frozen=True)
class TofuFailure:
    """Structured twin of one `TOFU failed` log record, for tests."""

    key: str
    stored_der: bytes
    current_der: bytes
    record: str  # the text appended to PiServer.log


_SPECIAL_35 = "\\/"
_SPECIAL_39 = '\\,+"<>;'  # RFC 2253 specials


def _escape(value: str, special: str) -> str:
    """Specials backslash-escaped; control characters and line separators as `\\0A`-style
    hex escapes of their UTF-8 bytes, as OpenSSL prints them: a listing line stays one line."""
    return "".join(
        "".join(f"\\{b:02X}" for b in ch.encode()) if ch in _LINE_BREAKING or ord(ch) < 0x20
        else "\\" + ch if ch in special else ch
        for ch in value
    )


# Besides C0: DEL, C1 and the Unicode separators, which text tools split lines at; OpenSSL
# prints them as escaped bytes too (ESC_CTRL, ESC_MSB).
_LINE_BREAKING = frozenset("\x7f\u2028\u2029" + "".join(map(chr, range(0x80, 0xA0))))


def format_subject(subject: Subject, style: str) -> str:
    """The subject as listcerts prints it for a PI version.

    "3.5": OpenSSL 1.0 `-subject` style, `/C=US/.../CN=x` (with the leading space PI prints
    after `subject=`). "3.9": OpenSSL 1.1 oneline style, `CN = kong, O = Cisco`.
    Both in DER order; special characters are backslash-escaped.
    """
    if style == "3.5":
        return " " + "".join(f"/{k}={_escape(v, _SPECIAL_35)}" for k, v in subject)
    if style == "3.9":
        return ", ".join(f"{k} = {_escape(v, _SPECIAL_39)}" for k, v in subject)
    raise ValueError(f"unknown style {style!r}")


def entry_line(cert: StoredCert, style: str) -> str:
    sep = ";  " if style == "3.5" else "; "
    return f"host={cert.key}{sep}subject={format_subject(cert.subject, style)}"


def tofu_failed_record(subject: Subject) -> str:
    """PI's health-monitor log record, verbatim (including Cisco's "is configure").

    `subject` is printed Java-style (last RDN first). Which certificate PI names here is
    not documented; PiServer.log_names chooses ("current" by default, or "stored").
    """
    dn = ", ".join(f"{_JAVA_NAMES.get(k, k)}={v}" for k, v in reversed(subject))
    cns = [v for k, v in subject if k == "CN"]
    short = f"CN={cns[-1]}" if cns else dn
    return (
        "[system] [HealthMonitorThread] TOFU failed.\n"
        "Check local trust Trust-on-first-use is configure for this connection.\n"
        " Current certificate of the remote host is different from what was used earlier\n"
        f"- {dn}\n"
        "javax.net.ssl.SSLHandshakeException: java.security.cert.CertificateException:\n"
        "Trust-on-first-use is configure for this connection.\n"
        "Current certificate of the remote host is different from what was used earlier\n"
        f"- {short}"
    )


async def fetch_leaf_der(host: str, port: int, timeout: float = _PEER_TIMEOUT) -> bytes:
    """TLS handshake without verification (TOFU trusts whatever comes) -> leaf DER."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    async with asyncio.timeout(timeout):
        _, writer = await asyncio.open_connection(host, port, ssl=ctx)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await writer.wait_closed()
    if not der:
        raise ConnectionError("no peer certificate")
    return bytes(der)


class PiServer:
    """One PI server: SSH admin CLI, TOFU store, health monitor.

    `cli` holds what the CLI does at its hook points (Cli); it is read on every use, so a
    replacement takes effect at once, on open sessions too.
    """

    def __init__(
        self,
        hostname: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        users: Mapping[str, str] = DEFAULT_USERS,
        authorized_keys: Sequence[str] = (),
        style: str = "3.5",
        banner: str = DEFAULT_BANNER,
        exec_enabled: bool = True,
        page_lines: int = 20,
        host_key: asyncssh.SSHKey | None = None,
    ) -> None:
        if style not in ("3.5", "3.9"):
            raise ValueError(f"unknown style {style!r}")
        self.hostname = hostname
        self._host = host
        self._requested_port = port
        self.users = dict(users)
        self.authorized_keys = list(authorized_keys)
        self.style = style
        self.banner = banner
        self.exec_enabled = exec_enabled
        self.page_lines = page_lines
        self.host_key: asyncssh.SSHKey = host_key or asyncssh.generate_private_key("ssh-ed25519")
        self.cli: Cli = Cli()
        # Whose subject a `TOFU failed` record names: "current" (presented) or "stored".
        self.log_names = "current"
        # State.
        self.store: dict[str, StoredCert] = {}
        self.peers: dict[str, tuple[str, int]] = {}
        self.log: list[str] = []
        self.tofu_failures: list[TofuFailure] = []
        self.connections = 0
        self.max_open = 0  # most SSH connections open at the same time (reset it at will)
        self.max_busy = 0  # most listcerts commands in progress at the same time
        self._busy = 0
        self.commands: list[str] = []
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._conns: set[asyncssh.SSHServerConnection] = set()
        self._monitor: asyncio.Task[None] | None = None

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        self._acceptor = await asyncssh.create_server(
            lambda: _Server(self),
            self._host,
            self._requested_port,
            server_host_keys=[self.host_key],
            encoding=None,  # bytes in and out: what a hook writes reaches the client unchanged
            line_editor=False,  # the CLI echoes itself
            allow_pty=True,
            agent_forwarding=False,
            x11_forwarding=False,
        )

    async def stop(self) -> None:
        await self.stop_health_monitor()
        if self._acceptor is not None:
            self._acceptor.close()
            await self._acceptor.wait_closed()
            self._acceptor = None
        conns = list(self._conns)
        for conn in conns:
            conn.close()
        for conn in conns:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await conn.wait_closed()
        self._conns.clear()

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        if self._acceptor is None:
            return self._requested_port
        return int(self._acceptor.get_port())

    @property
    def endpoint(self) -> str:
        return format_endpoint(self._host, self.port)

    def known_hosts_line(self) -> str:
        """`[host]:port keytype base64` (plain `host` on port 22), as OpenSSH writes it."""
        pub = self.host_key.export_public_key("openssh").decode().split()
        name = self._host if self.port == 22 else f"[{self._host}]:{self.port}"
        return f"{name} {pub[0]} {pub[1]}"

    # --- TOFU store ------------------------------------------------------------------

    def add_entry(self, key: str, cert: CertBundle | bytes) -> StoredCert:
        der = cert.der if isinstance(cert, CertBundle) else bytes(cert)
        stored = StoredCert(key=key, der=der, subject=subject_of(der))
        self.store[key] = stored
        return stored

    def remove_entry(self, key: str) -> bool:
        return self.store.pop(key, None) is not None

    def entries(self) -> dict[str, StoredCert]:
        return dict(self.store)

    def listing_text(self) -> str:
        """What `listcerts` prints, with \\n line ends."""
        lines = list(LISTING_HEADER)
        for cert in self.store.values():
            lines += [entry_line(cert, self.style), ""]
        return "\n".join(lines) + "\n"

    # --- peers and health monitor ----------------------------------------------------

    def add_peer(self, key: str, host: str, port: int) -> None:
        self.peers[key] = (host, port)

    async def connect_peers(self, only: Sequence[str] | None = None) -> dict[str, str]:
        """Connect to every peer (or those of `only`) like PI's health monitor does.

        Returns key -> "stored" (first use), "match", "mismatch" or "unreachable".
        """
        keys = [k for k in self.peers if only is None or k in only]
        results = await asyncio.gather(
            *(fetch_leaf_der(*self.peers[k]) for k in keys), return_exceptions=True
        )
        outcome: dict[str, str] = {}
        for key, res in zip(keys, results, strict=True):
            if isinstance(res, BaseException):
                if isinstance(res, asyncio.CancelledError):
                    raise res
                outcome[key] = "unreachable"
                continue
            stored = self.store.get(key)
            if stored is None:
                self.add_entry(key, res)
                outcome[key] = "stored"
            elif stored.der == res:
                outcome[key] = "match"
            else:
                named = stored.subject if self.log_names == "stored" else subject_of(res)
                record = tofu_failed_record(named)
                self._append_log(record)
                self.tofu_failures.append(TofuFailure(key, stored.der, res, record))
                outcome[key] = "mismatch"
        return outcome

    def _append_log(self, record: str) -> None:
        self.log.append(record)
        if len(self.log) > _LOG_LIMIT:
            del self.log[: len(self.log) - _LOG_LIMIT]
        if len(self.tofu_failures) > _LOG_LIMIT:
            del self.tofu_failures[: len(self.tofu_failures) - _LOG_LIMIT]

    async def run_health_monitor(self, interval: float) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self.connect_peers()
            await asyncio.sleep(interval)

    def start_health_monitor(self, interval: float = 2.0) -> None:
        if self._monitor is None or self._monitor.done():
            self._monitor = asyncio.create_task(self.run_health_monitor(interval))

    async def stop_health_monitor(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
            self._monitor = None


class _Server(asyncssh.SSHServer):
    def __init__(self, pi: PiServer) -> None:
        self._pi = pi
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._pi.connections += 1
        self._pi._conns.add(conn)
        self._pi.max_open = max(self._pi.max_open, len(self._pi._conns))

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._pi._conns.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return bool(self._pi.users)

    def validate_password(self, username: str, password: str) -> bool:
        expected = self._pi.users.get(username)
        return expected is not None and hmac.compare_digest(expected.encode(), password.encode())

    def public_key_auth_supported(self) -> bool:
        return bool(self._pi.authorized_keys)

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        # Any authorized key logs in as any user: the lab has one admin role.
        for line in self._pi.authorized_keys:
            with contextlib.suppress(asyncssh.KeyImportError, ValueError):
                if asyncssh.import_public_key(line).public_data == key.public_data:
                    return True
        return False

    def session_requested(self) -> CliSession:
        return CliSession(self._pi)


class Cli:
    """What the admin CLI does at its hook points: the normal PI behaviour.

    Subclass and set PiServer.cli to make a server misbehave (the tests' fault switches).
    """

    async def greet(self, session: CliSession) -> None:
        """What a shell prints before its first prompt."""
        banner = session.pi.banner
        session.write_text(banner if banner.endswith("\n") else banner + "\n")

    def listing(self, pi: PiServer) -> str:
        """The text `listcerts` prints, \\n line ends."""
        return pi.listing_text()

    async def listcerts(self, session: CliSession, shell: bool) -> int:
        lines = self.listing(session.pi).split("\n")[:-1]
        await session.emit(lines, session.page_lines if shell else 0)
        return 0

    async def deletecert(self, session: CliSession, key: str) -> int:
        if not session.pi.remove_entry(key):
            session.write_text(f"% Entry not found: {key}\n")
            return 1
        session.write_text(f"Deleted certificate for host {key}\n")
        return 0


class _SessionClosed(Exception):
    pass


class CliSession(asyncssh.SSHServerSession[bytes]):
    """One SSH session of the admin CLI. What Cli hooks use: pi, channel, page_lines (this
    session's `terminal length`), write, write_text, read_key, emit, and hang (waits for the
    client to go away, then ends the session)."""

    def __init__(self, pi: PiServer) -> None:
        self.pi = pi
        self.channel: asyncssh.SSHServerChannel[bytes] | None = None
        self._user = ""
        self._pty = False
        self._command: str | None = None
        self.page_lines = pi.page_lines
        self._buf = bytearray()
        self._skip_lf = False  # a CR ended the last line; drop the LF of a CRLF
        self._eof = False
        self._wake = asyncio.Event()
        self._closed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # --- asyncssh callbacks ----------------------------------------------------------

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self.channel = chan
        self._user = str(chan.get_extra_info("username") or "")

    def pty_requested(
        self, term_type: str, term_size: tuple[int, int, int, int], term_modes: Mapping[int, int]
    ) -> bool:
        self._pty = True
        return True

    def shell_requested(self) -> bool:
        return True

    def exec_requested(self, command: str) -> bool:
        # PI-like devices refuse exec outright: the client sees the request fail.
        if not self.pi.exec_enabled:
            return False
        self._command = command
        return True

    def subsystem_requested(self, subsystem: str) -> bool:
        return False

    def session_started(self) -> None:
        self._task = asyncio.create_task(self._run())

    def data_received(self, data: bytes, datatype: int | None) -> None:
        self._buf += data
        self._wake.set()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake.set()
        return True  # keep our side open: exec output may still be on its way

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed.set()
        self._wake.set()
        if self._task is not None and not self._task.done():
            self._task.cancel()

    # --- I/O helpers -----------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._closed.is_set() or self.channel is None:
            raise _SessionClosed
        try:
            self.channel.write(data)
        except (BrokenPipeError, OSError, asyncssh.Error) as exc:
            raise _SessionClosed from exc

    @property
    def _newline(self) -> str:
        # Shells and PTYs get CRLF like a network CLI; a bare exec gets plain LF.
        return "\r\n" if self._command is None or self._pty else "\n"

    def write_text(self, text: str) -> None:
        self.write(text.replace("\n", self._newline).encode())

    async def _wait_input(self) -> None:
        self._wake.clear()
        await self._wake.wait()

    async def _read_line(self) -> str | None:
        """One line ended by CR, LF or CRLF; None at EOF."""
        while True:
            if self._skip_lf and self._buf[:1] == b"\n":
                del self._buf[:1]
            if self._buf:
                self._skip_lf = False
            cut = next((i for i, b in enumerate(self._buf) if b in (10, 13)), None)
            if cut is not None:
                line = bytes(self._buf[:cut])
                self._skip_lf = self._buf[cut] == 13
                del self._buf[: cut + 1]
                return line.decode(errors="replace")
            if self._eof or self._closed.is_set():
                if self._buf:
                    line = bytes(self._buf)
                    self._buf.clear()
                    return line.decode(errors="replace")
                return None
            await self._wait_input()

    async def read_key(self) -> str | None:
        """One key press at --More--; None at EOF. A line end right after it is swallowed."""
        while True:
            if self._skip_lf and self._buf[:1] == b"\n":
                del self._buf[:1]
            if self._buf:
                key = chr(self._buf[0])
                del self._buf[:1]
                self._skip_lf = key == "\r"
                if key not in "\r\n":
                    while self._buf[:1] in (b"\r", b"\n"):
                        del self._buf[:1]
                return key
            if self._eof or self._closed.is_set():
                return None
            await self._wait_input()

    async def hang(self) -> None:
        await self._closed.wait()
        raise _SessionClosed

    # --- the CLI ---------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            if self._command is None:
                await self._shell()
                status = 0
            else:
                status = await self._dispatch(self._command, shell=False) or 0
            if self.channel is not None and not self._closed.is_set():
                self.channel.exit(status)
        except _SessionClosed:
            pass

    async def _shell(self) -> None:
        pi = self.pi
        await pi.cli.greet(self)
        while True:
            self.write(f"{pi.hostname}/{self._user}# ".encode())
            line = await self._read_line()
            if line is None:
                return
            self.write(line.encode() + b"\r\n")
            if await self._dispatch(line, shell=True) is None:
                return

    async def _dispatch(self, line: str, *, shell: bool) -> int | None:
        """Run one command; the exit status, or None when the session is over."""
        words = line.split()
        if not words:
            return 0
        self.pi.commands.append(" ".join(words))
        low = tuple(w.lower() for w in words)
        if low in (("exit",), ("quit",), ("logout",)):
            return None
        if len(low) == 3 and low[:2] == ("terminal", "length") and low[2].isdigit():
            self.page_lines = int(low[2])
            return 0
        if low == LISTCERTS:
            pi = self.pi
            pi._busy += 1
            pi.max_busy = max(pi.max_busy, pi._busy)
            try:
                return await pi.cli.listcerts(self, shell)
            finally:
                pi._busy -= 1
        if len(low) == 6 and low[:5] == DELETECERT:
            return await self.pi.cli.deletecert(self, words[5])
        if len(low) == 4 and low[:3] == ("show", "logs", "file"):
            # Where PI's health monitor writes; the exact file name is site-specific.
            self.write_text("".join(record + "\n" for record in self.pi.log))
            return 0
        # Caret under the command, IOS-style (prompt width included in a shell).
        indent = len(f"{self.pi.hostname}/{self._user}# ") if shell else 0
        self.write_text(" " * indent + "^\n% Invalid input detected at '^' marker.\n\n")
        return 1

    async def emit(self, lines: list[str], page: int) -> None:
        # One write per page, as sshd forwards what a PTY buffered, not one packet per line.
        budget, chunk = page, list[str]()
        for line in lines:
            if page > 0 and budget == 0:
                self.write_text("".join(chunk))
                chunk = []
                self.write(MORE.encode())
                key = await self.read_key()
                self.write(MORE_ERASE.encode())
                if key is None or key in "qQ":
                    return
                budget = 1 if key in "\r\n" else page  # Enter: one more line
            chunk.append(line + "\n")
            budget -= 1
        self.write_text("".join(chunk))
