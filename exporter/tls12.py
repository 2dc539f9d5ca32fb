"""Read a peer's leaf certificate from a TLS 1.2 handshake without finishing it.

Up to TLS 1.2 the server's Certificate message travels in plaintext right after its
ServerHello. Sending a ClientHello and reading until that message costs no key exchange, no
signature check and no record decryption: a fraction of a full OpenSSL handshake, for both
the exporter and the peer. Anything unexpected (an alert, TLS 1.3 only, not TLS at all, an
empty chain, anonymous suites) raises `Fallback`, and the caller does a full handshake with
OpenSSL, which also produces the precise error text for the operator.

We offer the suites and signature algorithms a normal client offers (ECDSA and RSA), so a
server holding both certificate types chooses as it would for any TLS 1.2 client.
"""

from __future__ import annotations

import asyncio
import os
import struct
from typing import cast

# ECDHE-ECDSA/RSA with AES-GCM, ChaCha20, AES-CBC; then static RSA and 3DES for old appliances.
_SUITES = bytes.fromhex(
    "c02bc02fc02cc030cca9cca8c009c013c00ac014009c009d002f0035000a"
)
# x25519, secp256r1, secp384r1, secp521r1
_GROUPS = bytes.fromhex("001d001700180019")
# ecdsa_secp256r1_sha256 .. sha512, rsa_pss_rsae_sha256 .. 512, rsa_pkcs1_sha256 .. 512, sha1 pair
_SIGALGS = bytes.fromhex("0403" "0503" "0603" "0804" "0805" "0806" "0401" "0501" "0601" "0201" "0203")
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


def client_hello(sni: str | None) -> bytes:
    exts = b""
    if sni:
        name = sni.encode("idna")
        exts += _ext(0x0000, _vec16(b"\x00" + _vec16(name)))
    exts += _ext(0x000A, _vec16(_GROUPS))
    exts += _ext(0x000B, b"\x01\x00")  # uncompressed points
    exts += _ext(0x000D, _vec16(_SIGALGS))
    exts += _ext(0x0017, b"")  # extended master secret
    exts += _ext(0xFF01, b"\x00")  # renegotiation info
    body = (
        b"\x03\x03" + os.urandom(32) + b"\x00" + _vec16(_SUITES) + b"\x01\x00" + _vec16(exts)
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


async def fetch_leaf(host: str, port: int, sni: str | None) -> tuple[bytes, str]:
    """Leaf DER from a plaintext TLS 1.2 handshake, and the version the server chose
    ("TLSv1.2", or older). Raises Fallback, or OSError on connect."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bytes] = loop.create_future()
    transport, grabber = await loop.create_connection(
        lambda: _Grabber(client_hello(sni), done), host, port
    )
    try:
        return await done, grabber.reader.version
    finally:
        transport.abort()  # never finish the handshake: no key exchange on either side
