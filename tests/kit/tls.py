"""TLS peers that misbehave, written byte by byte where Python's ssl cannot be made to (a
Certificate message that is empty or holds a zero-length certificate), and certificates no CA
would sign (hostile_cert: CN and O unvalidated). For the TLS fault matrix and the hostile-input
tests; the lab's well-behaved peers are pilab.tls.TlsEndpoint.

`hold` keeps a connection silent until STOPPING is non-empty (a test's teardown appends to it),
so held connections let go when the scene stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import ssl
import struct
import tempfile
import warnings
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pilab.pki import CertBundle
from pilab.tls import TlsEndpoint

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
STOPPING: list[bool] = []  # non-empty once the scene tears down: held connections let go


# ---- purpose-built misbehaving servers ----------------------------------------------


async def read_record(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readexactly(5)
    return head + await reader.readexactly(struct.unpack("!H", head[3:5])[0])


def split_records(data: bytes) -> list[bytes]:
    out = []
    while data:
        n = 5 + struct.unpack("!H", data[3:5])[0]
        out.append(data[:n])
        data = data[n:]
    return out


def server_ctx(bundle: CertBundle, chain: bytes = b"") -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "c").write_bytes(bundle.cert_pem + chain)
        (Path(tmp) / "k").write_bytes(bundle.key_pem)
        ctx.load_cert_chain(Path(tmp) / "c", Path(tmp) / "k")
    return ctx


def server_flight(client_hello: bytes, ctx: ssl.SSLContext) -> list[bytes]:
    """What a real TLS server answers to this ClientHello, as TLS records."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_side=True)
    inc.write(client_hello)
    with contextlib.suppress(ssl.SSLWantReadError):
        obj.do_handshake()
    return split_records(out.read())


def rst(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), not a FIN."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def handshake_record(msg_type: int, body: bytes, version: bytes = b"\x03\x03") -> bytes:
    msg = bytes([msg_type]) + len(body).to_bytes(3, "big") + body
    return b"\x16" + version + struct.pack("!H", len(msg)) + msg


def tls12_hello_with_certificates(cert_list: bytes) -> bytes:
    """A hand-made TLS 1.2 ServerHello, Certificate (with `cert_list`), ServerHelloDone.

    Python's ssl cannot send an empty or zero-length certificate, so these bytes are
    written out: RSA key exchange suite 0x009c, renegotiation_info so OpenSSL 3 goes on
    to read the Certificate message at all.
    """
    hello = (
        b"\x03\x03" + os.urandom(32) + b"\x00" + b"\x00\x9c" + b"\x00"
        + b"\x00\x05" + b"\xff\x01\x00\x01\x00"
    )
    return (
        handshake_record(2, hello)
        + handshake_record(11, len(cert_list).to_bytes(3, "big") + cert_list)
        + handshake_record(14, b"")
    )


async def hold(writer: asyncio.StreamWriter, seconds: float = 30.0) -> None:
    """Keep the connection open and silent until `seconds` pass or the scene stops."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end and not writer.transport.is_closing() and not STOPPING:
        await asyncio.sleep(0.1)
    writer.transport.abort()


async def black_hole(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await hold(writer)  # accepts, never reads, never writes


async def plain_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(4096)
    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 11\r\n\r\nplain http\n")
    await writer.drain()
    writer.close()


async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(4096)
    writer.write(os.urandom(2048))
    await writer.drain()
    await hold(writer, 5)


def flight_then(action: str, bundle: CertBundle) -> Handler:
    ctx = server_ctx(bundle)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            records = server_flight(await read_record(reader), ctx)
        except (asyncio.IncompleteReadError, ssl.SSLError, OSError):
            writer.transport.abort()
            return
        if action == "stall":  # ServerHello only, then silence
            writer.write(records[0])
            await writer.drain()
            await hold(writer)
        else:  # ServerHello and half the rest, then RST
            rest = b"".join(records[1:])
            writer.write(records[0] + rest[: len(rest) // 2])
            await writer.drain()
            await asyncio.sleep(0.05)
            rst(writer)

    return handle


def crafted(cert_list: bytes) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await read_record(reader)
            writer.write(tls12_hello_with_certificates(cert_list))
            await writer.drain()
            await asyncio.wait_for(reader.read(4096), 2)
        writer.transport.abort()

    return handle


class TunedEndpoint(TlsEndpoint):
    """The lab's TlsEndpoint with its SSLContext adjusted (versions, client certs, chain)."""

    def __init__(
        self, bundle: CertBundle, tune: Callable[[ssl.SSLContext], None], chain: bytes = b""
    ) -> None:
        self._tune, self._chain = tune, chain
        super().__init__([("CN", "tuned")], bundle=bundle)

    def _context(self, bundle: CertBundle) -> ssl.SSLContext:
        ctx = server_ctx(bundle, self._chain)
        ctx.sni_callback = self._pick_context
        self._tune(ctx)
        return ctx


def require_client_cert(version: ssl.TLSVersion, ca: CertBundle) -> Callable[[ssl.SSLContext], None]:
    def tune(ctx: ssl.SSLContext) -> None:
        ctx.minimum_version = ctx.maximum_version = version
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=ca.cert_pem.decode())

    return tune


def tls10_only(ctx: ssl.SSLContext) -> None:
    # OpenSSL 3 refuses TLS 1.0 below SECLEVEL 0 on either side.
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1


def anonymous_only(ctx: ssl.SSLContext) -> None:
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("aNULL:@SECLEVEL=0")



# ---- certificates no CA would sign ----------------------------------------------------

def hostile_cert(cn: str, org: str) -> CertBundle:
    """Self-signed, CN and O unvalidated (cryptography refuses a CN over 64 chars otherwise)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, org, _validate=False),
        x509.NameAttribute(NameOID.COMMON_NAME, cn, _validate=False),
    ])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    return CertBundle(
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption()),
        der, hashlib.sha256(der).hexdigest(),
    )
