"""A real TLS server whose certificate can be regenerated while it runs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import tempfile
from collections.abc import Sequence
from pathlib import Path

from pilab.pki import CertBundle, make_cert

_RESPONSE = (
    b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"
)
# How long a connected client may stay silent before we hang up.
_IDLE_TIMEOUT = 5.0


def server_context(bundle: CertBundle) -> ssl.SSLContext:
    """An SSLContext serving `bundle`; load_cert_chain only reads files, so use a private dir."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory(prefix="lab-tls-") as tmp:  # mode 0700
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert.write_bytes(bundle.cert_pem)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(bundle.key_pem)
        ctx.load_cert_chain(cert, key)
    return ctx


def format_endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class TlsEndpoint:
    """TLS listener on host:port presenting a self-signed certificate.

    `regenerate()` swaps the certificate for new connections at once. The listener
    keeps one base SSLContext whose SNI callback (run for every ClientHello, with or
    without a server name) moves the connection onto the current context: the
    documented way to choose a certificate per connection in Python's ssl module.
    """

    def __init__(
        self,
        subject: Sequence[tuple[str, str]],
        host: str = "127.0.0.1",
        port: int = 0,
        key_type: str = "ec",
        bundle: CertBundle | None = None,
    ) -> None:
        self._subject = list(subject)
        self._host = host
        self._requested_port = port
        self._key_type = key_type
        self._bundle = bundle or make_cert(self._subject, key_type=key_type)
        self._ctx = self._context(self._bundle)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def _context(self, bundle: CertBundle) -> ssl.SSLContext:
        ctx = server_context(bundle)
        ctx.sni_callback = self._pick_context
        return ctx

    def _pick_context(self, sslobj: ssl.SSLObject, _name: str | None, ctx: ssl.SSLContext) -> None:
        if ctx is not self._ctx:
            sslobj.context = self._ctx

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle,
            self._host,
            self._requested_port,
            ssl=self._ctx,
            ssl_handshake_timeout=10.0,
            backlog=512,
        )

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()
        self._server = None

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            return self._requested_port
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def endpoint(self) -> str:
        return format_endpoint(self._host, self.port)

    @property
    def current(self) -> CertBundle:
        return self._bundle

    @property
    def subject(self) -> list[tuple[str, str]]:
        return list(self._subject)

    def regenerate(self, subject: Sequence[tuple[str, str]] | None = None) -> CertBundle:
        """New key and certificate; connections accepted from now on get them."""
        if subject is not None:
            self._subject = list(subject)
        bundle = make_cert(self._subject, key_type=self._key_type)
        self._ctx = self._context(bundle)
        self._bundle = bundle
        return bundle

    def present(self, bundle: CertBundle) -> None:
        """Present an earlier certificate again (a renewal rolled back); new connections get it."""
        self._ctx = self._context(bundle)
        self._bundle = bundle

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            # Probes often hang up right after the handshake: EOF is the normal case.
            async with asyncio.timeout(_IDLE_TIMEOUT):
                line = await reader.readline()
            if line:
                while line not in (b"\r\n", b"\n", b""):
                    async with asyncio.timeout(_IDLE_TIMEOUT):
                        line = await reader.readline()
                writer.write(_RESPONSE)
                await writer.drain()
        except (OSError, TimeoutError, ValueError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()
