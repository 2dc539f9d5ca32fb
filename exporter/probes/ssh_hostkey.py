"""Live SSH host key of one type: the key a host presents now, its signature verified.

The fast path is the sans-IO reader in `ssh_kex` on a bare asyncio Protocol: one TCP
connection, two round trips, no authentication, no session, a DISCONNECT right after the
server's key-exchange reply. A server that needs what the reader does not speak (group
exchange, group1, DSA, sk- keys, a guessed first packet) is asked again with asyncssh's
`get_server_host_key`, which also verifies the exchange signature; `path` says which read it.
Every failure is a result with an error string, never an exception.
"""

from __future__ import annotations

import asyncio
import base64
import math
import time
from dataclasses import dataclass
from typing import cast

from exporter.core.endpoint import ANY_CERTIFICATE, split_endpoint, split_hostkey_endpoint
from exporter.core.model import LiveCert, ProbeResult
from exporter.core.sshwire import fingerprint
from exporter.core.text import visible
from exporter.probes import ssh_kex
from exporter.probes.seam import Target

READER, ASYNCSSH = "reader", "asyncssh"
# One process-wide set of ephemeral key pairs, each reused for a while (see EphemeralKeys).
EPHEMERAL_KEYS = ssh_kex.EphemeralKeys()


@dataclass(frozen=True)
class HostKeyResult:
    host: str
    port: int
    key_type: str  # asked for: the known_hosts entry's type
    blob: bytes | None  # the key blob, or the whole certificate blob for a -cert type
    fingerprint: str | None  # SHA256:... as `ssh-keygen -lf` prints it (a certificate's: its key's)
    algorithm: str | None  # host key algorithm negotiated (rsa-sha2-512 for an ssh-rsa key)
    kex: str | None
    banner: str | None  # the server's version line, raw peer text: show via exporter.core.text.visible
    offered: tuple[str, ...]  # the server's host key algorithms (empty when not seen)
    path: str  # READER or ASYNCSSH
    elapsed: float
    error: str | None  # set when no verified key exchange happened; blob and fingerprint are None


class _Exchange(asyncio.Protocol):
    def __init__(self, reader: ssh_kex.HostKeyExchange, done: asyncio.Future[None]) -> None:
        self.reader = reader
        self._done = done
        self.transport: asyncio.WriteTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; both can write.
        self.transport = cast(asyncio.WriteTransport, transport)
        self.transport.write(self.reader.start())

    def data_received(self, data: bytes) -> None:
        if self._done.done():
            return
        try:
            reply = self.reader.feed(data)
        except (ssh_kex.KexError, ssh_kex.Fallback) as exc:
            self._done.set_exception(exc)
            return
        if self.reader.outcome is not None:
            self._done.set_result(None)
        elif reply and self.transport is not None:
            self.transport.write(reply)

    def eof_received(self) -> bool | None:
        self.connection_lost(None)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done.done():
            why = self.reader.closed()
            if isinstance(exc, ConnectionResetError):
                why = why.replace("closed by", "connection reset by")
            self._done.set_exception(ssh_kex.KexError(why))


def _result(host: str, port: int, key_type: str, reader: ssh_kex.HostKeyExchange | None,
            start: float, error: str | None, path: str = READER) -> HostKeyResult:
    outcome = reader.outcome if reader is not None and error is None else None
    return HostKeyResult(
        host, port, key_type,
        blob=outcome.host_key.blob if outcome else None,
        fingerprint=outcome.host_key.fingerprint if outcome else None,
        algorithm=reader.algorithm if reader else None,
        kex=reader.kex if reader else None,
        banner=reader.banner if reader else None,
        offered=reader.offered if reader else (),
        path=path, elapsed=time.perf_counter() - start, error=error,
    )


def _describe(exc: BaseException, reader: ssh_kex.HostKeyExchange | None) -> str:
    waiting = f" waiting for {reader.waiting_for}" if reader is not None else ""
    if isinstance(exc, TimeoutError):
        return "timeout" + (waiting or " connecting")
    if isinstance(exc, ssh_kex.KexError):
        return str(exc)
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset" + waiting
    if isinstance(exc, OSError):
        return f"connect failed: {visible(exc.strerror or exc.__class__.__name__)}"
    return f"host key read failed: {exc.__class__.__name__}"


async def _read(host: str, port: int, reader: ssh_kex.HostKeyExchange, started: list[bool]) -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    transport, _ = await loop.create_connection(lambda: _Exchange(reader, done), host, port)
    started.append(True)
    try:
        await done
    except BaseException:
        transport.abort()
        raise
    # Verified: say goodbye in plaintext (we never sent NEWKEYS) so the server logs a clean exit.
    cast(asyncio.WriteTransport, transport).write(ssh_kex.disconnect())
    transport.close()


async def fetch_host_key(host: str, port: int, key_type: str, timeout: float) -> HostKeyResult:
    """The host key of `key_type` that host:port presents, its exchange signature verified.

    Never raises (but for cancellation): failures are results with `error` set."""
    start = time.perf_counter()
    reader: ssh_kex.HostKeyExchange | None = None
    started: list[bool] = []
    try:
        reader = ssh_kex.HostKeyExchange(key_type, EPHEMERAL_KEYS)
        async with asyncio.timeout(timeout):
            await _read(host, port, reader, started)
        return _result(host, port, key_type, reader, start, None)
    except asyncio.CancelledError:
        raise
    except ssh_kex.Fallback:
        left = timeout - (time.perf_counter() - start)
        return await _with_asyncssh(host, port, key_type, left, reader, start)
    except Exception as exc:  # every failure is a result
        return _result(host, port, key_type, reader, start, _describe(exc, reader if started else None))


def _fallback_kex_algs() -> list[str]:
    import asyncssh.kex

    # Everything asyncssh can do without Kerberos, legacy methods included: we only read a key.
    return [a.decode() for a in asyncssh.kex.get_kex_algs() if not a.startswith(b"gss-")]


async def _with_asyncssh(host: str, port: int, key_type: str, left: float,
                         reader: ssh_kex.HostKeyExchange | None, start: float) -> HostKeyResult:
    import asyncssh  # only when the reader cannot: most cycles never load it

    error: str | None = None
    blob = fp = None
    try:
        async with asyncio.timeout(max(left, 0.001)):
            key = await asyncssh.get_server_host_key(
                host, port, server_host_key_algs=list(ssh_kex.host_key_algorithms(key_type)),
                kex_algs=_fallback_kex_algs(), config=None)
        if key is None:
            raise ssh_kex.KexError("no host key in the key exchange")
        blob = key.public_data
        plain = key.key.public_data if isinstance(key, asyncssh.SSHCertificate) else blob
        fp = fingerprint(plain)
    except asyncio.CancelledError:
        raise
    except asyncssh.Error as exc:
        error = f"key exchange failed: {visible(exc.reason)[:300]}"
    except Exception as exc:
        error = _describe(exc, None)
    return HostKeyResult(
        host, port, key_type, blob=blob, fingerprint=fp, algorithm=None, kex=None,
        banner=reader.banner if reader else None, offered=reader.offered if reader else (),
        path=ASYNCSSH, elapsed=time.perf_counter() - start, error=error,
    )


# ---- the Prober seam ------------------------------------------------------------------------

# What an ANY_CERTIFICATE target asks for, in OpenSSH 9.2's default order (KEX_DEFAULT_PK_ALG):
# the certificate a client that accepts only certificates would get.
CERT_TYPES = tuple(t + ssh_kex._CERT for t in (
    "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa"))


def _offers(offered: tuple[str, ...], key_type: str) -> bool:
    return any(a in offered for a in ssh_kex.host_key_algorithms(key_type))


def live_key(result: HostKeyResult) -> LiveCert:
    """The LiveCert of a fetched host key: `fingerprint_sha256` the hex SHA-256 of the plain
    key blob (what `ssh-keygen -lf` prints in base64), `subject_text` that `SHA256:` form, the
    blob whole. A certificate's CA signature is verified here (OpenSSH's cert_parse does so
    before anything else): KexError when it does not verify."""
    assert result.blob is not None and result.fingerprint is not None
    b64 = result.fingerprint.removeprefix("SHA256:")
    hexfp = base64.b64decode(b64 + "=" * (-len(b64) % 4)).hex()
    issuer, serial, after, before = "", "", 0.0, math.inf
    if result.key_type.endswith(ssh_kex._CERT):
        cert = ssh_kex.check_certificate(result.blob, result.key_type)
        issuer, serial = f"CA {cert.ca_fingerprint}", format(cert.serial, "x")
        after, before = float(cert.valid_after), float(min(cert.valid_before, 2**53))
    return LiveCert(hexfp, hexfp, (), result.fingerprint, issuer, serial, after, before,
                    key_type=result.key_type, blob=result.blob)


async def _fetch(host: str, port: int, variant: str, timeout: float) -> HostKeyResult:
    if variant != ANY_CERTIFICATE:
        return await fetch_host_key(host, port, variant, timeout)
    start = time.perf_counter()
    first = await fetch_host_key(host, port, CERT_TYPES[0], timeout)
    if first.error is None or not first.offered:
        return first
    left = timeout - (time.perf_counter() - start)
    other = next((t for t in CERT_TYPES[1:] if _offers(first.offered, t)), None)
    if other is None or left <= 0:
        return first
    return await fetch_host_key(host, port, other, left)


async def probe_target(target: Target) -> ProbeResult:
    """The Prober seam for SSH host keys: what to ask for is the endpoint's own variant
    ("host:port TYPE", core.endpoint), else `target.variant` (a key type or ANY_CERTIFICATE);
    where, `target.connect` or the endpoint's "host:port". Never raises."""
    named, variant = split_hostkey_endpoint(target.endpoint) or (target.endpoint, target.variant)
    where = target.connect or named
    start = time.perf_counter()
    try:
        host, port = split_endpoint(where)
    except ValueError:
        return ProbeResult(target.endpoint, None, "not a host:port target", 0.0, time.time())
    result = await _fetch(host, port, variant, target.timeout)
    cert, error = None, result.error
    if error is None:
        try:
            cert = live_key(result)
        except ssh_kex.KexError as exc:
            error = str(exc)
    return ProbeResult(target.endpoint, cert, error, time.perf_counter() - start, time.time(),
                       offered=result.offered)
