"""Read a peer's leaf certificate from a TLS 1.2 handshake without finishing it.

Up to TLS 1.2 the server's Certificate message travels in plaintext right after its
ServerHello. Sending a ClientHello and reading until that message costs no key exchange, no
signature check and no record decryption: a fraction of a full OpenSSL handshake, for both
the exporter and the peer. Anything unexpected (an alert, TLS 1.3 only, not TLS at all, an
empty chain, anonymous suites) raises `Fallback`, and the caller does a full handshake with
OpenSSL, which also produces the precise error text for the operator.

We offer what a Java (JSSE) client offers (exporter.probes.jsse, one profile per Java generation), so a
server holding two certificates (RSA and ECDSA) chooses the one it gives PI. A profile with
TLS 1.3 offers it too; a server that takes it encrypts its certificate, and the ServerHello
saying so is a `Fallback` (the caller completes a handshake with the same offer).
"""

from __future__ import annotations

import asyncio
import os
import struct
from typing import cast

from exporter.probes.jsse import DEFAULT, PROFILES, SCSV_RENEGOTIATION, TLS12, TLS13, Profile

_MAX_HANDSHAKE = 4 * 1024 * 1024  # far above a 100-certificate chain
_MAX_RECORD = 16384 + 2048
# ServerHello's version field, named as ssl.SSLObject.version() names it.
_VERSIONS = {0x0300: "SSLv3", 0x0301: "TLSv1", 0x0302: "TLSv1.1", 0x0303: "TLSv1.2"}


class Fallback(Exception):
    """The fast path cannot tell; do a full handshake."""


def _ext(kind: int, body: bytes) -> bytes:
    return struct.pack("!HH", kind, len(body)) + body


def _vec16(body: bytes) -> bytes:
    return struct.pack("!H", len(body)) + body


def _u16s(values: tuple[int, ...]) -> bytes:
    return b"".join(v.to_bytes(2, "big") for v in values)


def client_hello(sni: str | None, profile: Profile = PROFILES[DEFAULT]) -> bytes:
    """The ClientHello JSSE sends, extension for extension in its order (a TLS 1.3 key share
    is random bytes: we never finish the handshake)."""
    exts = b""
    if sni:
        name = sni.encode("idna")
        exts += _ext(0x0000, _vec16(b"\x00" + _vec16(name)))
    sigalgs = _vec16(_u16s(profile.sigalgs))
    exts += _ext(0x0005, b"\x01\x00\x00\x00\x00")  # status_request (OCSP)
    exts += _ext(0x000A, _vec16(_u16s(profile.groups)))
    exts += _ext(0x000B, b"\x01\x00")  # uncompressed points
    exts += _ext(0x0011, bytes.fromhex("000702000400000000"))  # status_request_v2
    exts += _ext(0x0017, b"")  # extended master secret
    exts += _ext(0x0023, b"")  # session ticket
    exts += _ext(0x000D, sigalgs)
    if profile.tls13:
        exts += _ext(0x002B, bytes([2 * len(profile.versions)]) + _u16s(profile.versions))
        exts += _ext(0x002D, b"\x01\x01")  # psk_dhe_ke
    exts += _ext(0x0032, sigalgs)  # signature_algorithms_cert
    if profile.tls13:
        share = struct.pack("!HH", 0x001D, 32) + os.urandom(32)  # x25519, JSSE's first group
        exts += _ext(0x0033, _vec16(share))
    session = os.urandom(32) if profile.tls13 else b""  # 1.3 middlebox compatibility
    suites = _u16s(profile.suites13 + profile.suites12 + (SCSV_RENEGOTIATION,))
    body = (
        TLS12.to_bytes(2, "big") + os.urandom(32) + bytes([len(session)]) + session
        + _vec16(suites) + b"\x01\x00" + _vec16(exts)
    )
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + _vec16(handshake)


def leaf_from_certificate(body: bytes) -> bytes:
    """TLS 1.2 Certificate body: list length(3), then length(3) + DER per certificate."""
    if len(body) < 6:
        raise Fallback("empty certificate list")
    n = int.from_bytes(body[3:6], "big")
    der = body[6 : 6 + n]
    if n == 0 or len(der) != n:
        raise Fallback("malformed certificate list")
    return bytes(der)


def chosen_version(server_hello: bytes) -> int:
    """The version a ServerHello body selects: its supported_versions extension, if any
    (TLS 1.3 and its HelloRetryRequest), else its legacy version field."""
    legacy = int.from_bytes(server_hello[:2], "big")
    pos = 2 + 32
    if len(server_hello) <= pos:
        return legacy
    pos += 1 + server_hello[pos] + 2 + 1  # session id, suite, compression
    end = pos + 2 + int.from_bytes(server_hello[pos : pos + 2], "big")
    pos += 2
    while pos + 4 <= min(end, len(server_hello)):
        kind, size = struct.unpack("!HH", server_hello[pos : pos + 4])
        if kind == 0x002B and size == 2:
            return int.from_bytes(server_hello[pos + 4 : pos + 6], "big")
        pos += 4 + size
    return legacy


class HandshakeReader:
    """Pure state machine: bytes from the server in, the leaf DER out (or Fallback)."""

    def __init__(self) -> None:
        self._records = bytearray()
        self._handshake = bytearray()
        self.version = "unknown"  # the protocol the ServerHello chose

    def feed(self, data: bytes) -> bytes | None:
        self._records += data
        while len(self._records) >= 5:
            kind, major, length = self._records[0], self._records[1], int.from_bytes(
                self._records[3:5], "big"
            )
            if major != 3 or length > _MAX_RECORD:
                raise Fallback("not a TLS record")
            if len(self._records) < 5 + length:
                return None
            payload = bytes(self._records[5 : 5 + length])
            del self._records[: 5 + length]
            if kind != 22:  # alert, change cipher spec, application data: not for us
                raise Fallback(f"record type {kind} before the certificate")
            self._handshake += payload
            if len(self._handshake) > _MAX_HANDSHAKE:
                raise Fallback("handshake too large")
            leaf = self._messages()
            if leaf is not None:
                return leaf
        return None

    def _messages(self) -> bytes | None:
        hs = self._handshake
        while len(hs) >= 4:
            kind, length = hs[0], int.from_bytes(hs[1:4], "big")
            if length > _MAX_HANDSHAKE:
                raise Fallback("handshake message too large")
            if len(hs) < 4 + length:
                return None
            body = bytes(hs[4 : 4 + length])
            del hs[: 4 + length]
            if kind == 11:
                return leaf_from_certificate(body)
            if kind == 2 and len(body) >= 2:
                self.version = _VERSIONS.get(int.from_bytes(body[:2], "big"), self.version)
            elif kind != 2:  # anything but ServerHello before the Certificate
                raise Fallback(f"handshake message {kind} before the certificate")
            if chosen_version(body) == TLS13:
                raise Fallback("TLS 1.3 chosen: the certificate is encrypted")
        return None


class _Grabber(asyncio.Protocol):
    def __init__(self, hello: bytes, done: asyncio.Future[bytes]) -> None:
        self._hello = hello
        self._done = done
        self.reader = HandshakeReader()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; both can write.
        cast(asyncio.WriteTransport, transport).write(self._hello)

    def data_received(self, data: bytes) -> None:
        if self._done.done():
            return
        try:
            leaf = self.reader.feed(data)
        except Fallback as e:
            self._done.set_exception(e)
            return
        if leaf is not None:
            self._done.set_result(leaf)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done.done():
            self._done.set_exception(Fallback("closed before the certificate"))


async def fetch_leaf(
    host: str, port: int, sni: str | None, profile: Profile = PROFILES[DEFAULT]
) -> tuple[bytes, str]:
    """Leaf DER from a plaintext TLS 1.2 handshake, and the version the server chose
    ("TLSv1.2", or older). Raises Fallback, or OSError on connect."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bytes] = loop.create_future()
    transport, grabber = await loop.create_connection(
        lambda: _Grabber(client_hello(sni, profile), done), host, port
    )
    try:
        return await done, grabber.reader.version
    finally:
        transport.abort()  # never finish the handshake: no key exchange on either side
