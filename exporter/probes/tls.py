"""TLS handshake -> the peer's leaf certificate, captured whether or not it verifies.

Self-signed, expired and wrong-host certificates are the normal case between PI, ISE and
DNA Center, so nothing is verified here: we want what the peer presents, as PI sees it.
"""

from __future__ import annotations

import _ssl
import asyncio
import contextlib
import ctypes
import functools
import hashlib
import ipaddress
import logging
import re
import ssl
import sys
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from exporter.core.endpoint import split_endpoint
from exporter.core.model import LiveCert, ProbeResult
from exporter.core.subject import format_subject, subject_from_name
from exporter.probes import jsse, tls12
from exporter.probes.seam import Prober, Target


def _client_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    # Old appliances still speak TLS 1.0 with weak suites; we only read their certificate.
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    try:
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    except ssl.SSLError:  # pragma: no cover - OpenSSL builds without SECLEVEL syntax
        ctx.set_ciphers("ALL")
    return ctx


_CONTEXT = _client_context()
log = logging.getLogger(__name__)


def _profile_context(profile: jsse.Profile) -> ssl.SSLContext:
    """A context offering what the JSSE profile offers: its versions and TLS 1.2 suites in
    its order, and (through OpenSSL, which the ssl module does not expose for these) its
    TLS 1.3 suites, groups and signature algorithms. Used when the certificate must come
    from a completed handshake (TLS 1.3 chosen), so the server chooses as it would for PI."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # JSSE disables TLS 1.0 and 1.1
    if not profile.tls13:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(profile.openssl_ciphers + ":@SECLEVEL=0")  # SHA-1 sigalgs stay offered
    if not _openssl_offer(ctx, profile):
        log.warning("cannot set the TLS groups and signature algorithms of a client profile; "
                    "OpenSSL's defaults are offered", extra={"profile": profile.name})
    return ctx


_SSL_CTRL_SET_GROUPS_LIST = 92
_SSL_CTRL_SET_SIGALGS_LIST = 98


@functools.cache
def _libssl() -> ctypes.CDLL | None:
    try:
        lib = ctypes.CDLL(_ssl.__file__)  # its symbol lookup reaches the libssl it links
        lib.SSL_CTX_get_options.restype = ctypes.c_uint64
        lib.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
        lib.SSL_CTX_ctrl.restype = ctypes.c_long
        lib.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_char_p]
        lib.SSL_CTX_set_ciphersuites.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    except (OSError, AttributeError):
        return None
    return lib


def _openssl_offer(ctx: ssl.SSLContext, profile: jsse.Profile) -> bool:
    """Set the profile's TLS 1.3 suites, groups and signature algorithms on the SSL_CTX
    behind `ctx`. CPython keeps that pointer first after the object header; we use it only
    after SSL_CTX_get_options through it returns ctx.options, else change nothing."""
    lib = _libssl()
    if lib is None:
        return False
    ptr = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    if not ptr or lib.SSL_CTX_get_options(ptr) != int(ctx.options):
        return False
    suites13 = ":".join(jsse.SUITE13_NAMES[s] for s in profile.suites13)
    return bool(
        (not suites13 or lib.SSL_CTX_set_ciphersuites(ptr, suites13.encode()) == 1)
        and lib.SSL_CTX_ctrl(ptr, _SSL_CTRL_SET_GROUPS_LIST, 0, profile.openssl_groups.encode()) == 1
        and lib.SSL_CTX_ctrl(ptr, _SSL_CTRL_SET_SIGALGS_LIST, 0, profile.openssl_sigalgs.encode()) == 1
    )


_PROFILE_CONTEXTS: dict[str, ssl.SSLContext] = {}


def profile_context(name: str) -> ssl.SSLContext:
    ctx = _PROFILE_CONTEXTS.get(name)
    if ctx is None:
        ctx = _PROFILE_CONTEXTS[name] = _profile_context(jsse.PROFILES[name])
    return ctx


def java_sni(host: str) -> str | None:
    """The server name JSSE sends for `host`: a DNS name with a dot inside, never an IP
    literal, a dotless name or one ending in a dot (sun.security.ssl.Utilities)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
        return None
    except ValueError:
        pass
    if not host.isascii() or "." not in host.strip(".") or host.endswith(".") or host.startswith("."):
        return None
    return host


def key_type(key: object) -> str:
    """`RSA 2048`, `EC secp256r1`, `Ed25519`: which of a dual-certificate peer's keys we got."""
    if isinstance(key, rsa.RSAPublicKey | dsa.DSAPublicKey):
        name = f"{'RSA' if isinstance(key, rsa.RSAPublicKey) else 'DSA'} {key.key_size}"
    elif isinstance(key, ec.EllipticCurvePublicKey):
        name = f"EC {key.curve.name}"
    else:
        name = type(key).__name__.removeprefix("_").removesuffix("PublicKey")
    return sys.intern(name)  # a handful of distinct values, shared by every certificate


def parse_certificate(der: bytes) -> LiveCert:
    """DER leaf -> LiveCert. Raises ValueError on junk."""
    cert = x509.load_der_x509_certificate(der)
    public_key = cert.public_key()
    spki = public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    subject = subject_from_name(cert.subject)
    return LiveCert(
        fingerprint_sha256=hashlib.sha256(der).hexdigest(),
        spki_sha256=hashlib.sha256(spki).hexdigest(),
        subject=subject,
        subject_text=format_subject(subject),
        issuer_text=format_subject(subject_from_name(cert.issuer)),
        serial=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc.timestamp(),
        not_after=cert.not_valid_after_utc.timestamp(),
        key_type=key_type(public_key),
    )


class CertCache:
    """Parsed certificates by DER hash: a stable peer is parsed once, not every cycle."""

    def __init__(self, size: int = 20000) -> None:
        self._size = size
        self._items: OrderedDict[bytes, LiveCert] = OrderedDict()

    def get(self, der: bytes) -> LiveCert:
        digest = hashlib.sha256(der).digest()
        cert = self._items.get(digest)
        if cert is None:
            cert = parse_certificate(der)
            self._items[digest] = cert
            if len(self._items) > self._size:
                self._items.popitem(last=False)
        return cert


_CACHE = CertCache()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, ssl.SSLError):
        # OpenSSL leaves `reason` empty for some errors ("[SSL] ASN1 lib (_ssl.c:1006)").
        text = re.sub(r"^\[[^\]]*\]\s*|\s*\(_ssl\.c:\d+\)$", "", str(exc.strerror or ""))
        return f"tls handshake failed: {getattr(exc, 'reason', None) or text or exc.__class__.__name__}"
    if isinstance(exc, OSError):
        return f"connect failed: {exc.strerror or exc.__class__.__name__}"
    if isinstance(exc, ValueError):
        return "certificate could not be parsed"
    return f"probe failed: {exc.__class__.__name__}"


async def _handshake(
    host: str, port: int, sni: str | None, ctx: ssl.SSLContext = _CONTEXT
) -> tuple[bytes, str]:
    # A bare Protocol, not streams: the handshake is all we want, no reader or writer.
    transport, _ = await asyncio.get_running_loop().create_connection(
        asyncio.Protocol, host, port, ssl=ctx, server_hostname=sni or "", ssl_handshake_timeout=None
    )
    try:
        sslobj = transport.get_extra_info("ssl_object")
        der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
        version = (sslobj.version() if sslobj is not None else None) or "unknown"
    finally:
        # The certificate is in hand: drop the connection without a close_notify round trip.
        transport.abort()
    if not der:
        raise ssl.SSLError("peer sent no certificate")
    return der, version


# Endpoints the plaintext fast path could not read (TLS 1.3 chosen, odd servers): full
# handshakes only, for a while, so they do not cost two connections every cycle.
_FULL_ONLY: dict[tuple[str, int, str], float] = {}
_FULL_ONLY_FOR = 3600.0


async def _leaf(host: str, port: int, sni: str | None, profile: str) -> tuple[bytes, str]:
    """The leaf DER and the TLS version it came with."""
    now = time.monotonic()
    key = (host, port, profile)
    if _FULL_ONLY.get(key, 0.0) < now:
        try:
            return await tls12.fetch_leaf(host, port, sni, jsse.PROFILES[profile])
        except tls12.Fallback:
            if len(_FULL_ONLY) > 100_000:
                _FULL_ONLY.clear()
            _FULL_ONLY[key] = now + _FULL_ONLY_FOR
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            pass  # let OpenSSL try and name the failure
    try:
        return await _handshake(host, port, sni, profile_context(profile))
    except (ssl.SSLError, ConnectionResetError, ConnectionAbortedError):
        # Nothing Java offers suits the peer (TLS 1.0 only, anonymous suites): any protocol
        # and suite, to show its certificate anyway and to name the failure as before.
        return await _handshake(host, port, sni)


async def probe(
    endpoint: str,
    timeout: float,
    sni: str | None = None,
    connect: str | None = None,
    cache: CertCache = _CACHE,
    profile: str = jsse.DEFAULT,
) -> ProbeResult:
    """Handshake with `connect` (or `endpoint`) as the JSSE `profile` would, and describe
    the leaf. Without a configured `sni`, the entry's host name goes as SNI where Java sends
    one (never for an IP address). Never raises."""
    start = time.perf_counter()
    host, port = split_endpoint(connect or endpoint)
    sni = sni or java_sni(split_endpoint(endpoint)[0])
    cert, error, version = None, None, None
    try:
        async with asyncio.timeout(timeout):  # no extra task per probe, unlike wait_for
            der, version = await _leaf(host, port, sni, profile)
        cert = cache.get(der)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # every failure is a result, never a crash
        error = "no certificate sent" if "no certificate" in str(exc) else _describe(exc)
        left = timeout - (time.perf_counter() - start)
        if left > 0 and isinstance(exc, _FAILED_AFTER_HELLO) and error != "no certificate sent":
            with contextlib.suppress(Exception):
                async with asyncio.timeout(left):
                    captured = await _capture_certificate(host, port, sni, profile)
                if captured:
                    cert, error, version = cache.get(captured[0]), None, captured[1]
    return ProbeResult(endpoint, cert, error, time.perf_counter() - start, time.time(), version)


# A peer that aborts the handshake after sending its certificate (TLS 1.2 with a required
# client certificate: the server rejects our empty Certificate) still showed it to us.
_FAILED_AFTER_HELLO = (ssl.SSLError, ConnectionResetError, ConnectionAbortedError,
                       asyncio.IncompleteReadError)


def _leaf_of_certificate_message(data: bytes, tls13: bool) -> bytes | None:
    """The first certificate in a raw Certificate handshake message, or None.

    Layout: type(1) length(3) [TLS 1.3: context length(1) context] list length(3)
    then per certificate: length(3) DER [TLS 1.3: extensions].
    """
    pos = 4
    if tls13:
        if len(data) <= pos:
            return None
        pos += 1 + data[pos]
    pos += 3
    n = int.from_bytes(data[pos : pos + 3], "big")
    der = data[pos + 3 : pos + 3 + n]
    return bytes(der) if n and len(der) == n else None


async def _capture_certificate(
    host: str, port: int, sni: str | None, profile: str
) -> tuple[bytes, str] | None:
    """Handshake again, recording the Certificate message as it arrives (the ssl module's
    message callback), so a handshake that fails afterwards still yields the leaf: first
    with the profile's offer, then with any protocol and suite (an appliance Java could not
    talk to still shows its certificate). Private contexts: this runs only after a failure."""
    for ctx in (_profile_context(jsse.PROFILES[profile]), _client_context()):
        der = await _capture_with(host, port, sni, ctx)
        if der:
            return der
    return None


async def _capture_with(host: str, port: int, sni: str | None,
                        ctx: ssl.SSLContext) -> tuple[bytes, str] | None:
    seen: list[tuple[bytes, str]] = []

    def on_message(_conn: object, direction: str, version: int, content_type: int,
                   msg_type: int, data: bytes) -> None:
        if direction == "read" and content_type == 22 and msg_type == 11 and not seen:
            der = _leaf_of_certificate_message(data, version == ssl.TLSVersion.TLSv1_3)
            if der:
                seen.append((der, _version_name(version)))

    ctx._msg_callback = on_message  # type: ignore[attr-defined]
    with contextlib.suppress(Exception):
        return await _handshake(host, port, sni, ctx)
    return seen[0] if seen else None


def _version_name(version: int) -> str:
    """ssl.TLSVersion.TLSv1_3 -> "TLSv1.3", as SSLObject.version() writes it."""
    try:
        return ssl.TLSVersion(version).name.replace("_", ".")
    except ValueError:
        return "unknown"


async def probe_target(target: Target) -> ProbeResult:
    """The TLS leaf as a Prober (exporter.probes.seam): the target's variant is the JSSE
    profile of the client whose view is wanted."""
    return await probe(target.endpoint, target.timeout, target.sni, target.connect,
                       profile=target.variant)


async def probe_many(
    targets: Iterable[Target],
    concurrency: int | asyncio.Semaphore,
    prober: Prober = probe_target,
) -> Mapping[str, ProbeResult]:
    """Probe targets with `prober`, each endpoint once, bounded.

    Pass a shared Semaphore to bound concurrent calls together (each handshake in flight
    holds a 256 KiB TLS buffer). A slot is taken before a probe's task exists, so 5,000
    endpoints never mean 5,000 tasks waiting in memory, and a finished task is dropped at
    once, its result kept (200 concurrent /probe requests: 20,000 done tasks otherwise)."""
    sem = concurrency if isinstance(concurrency, asyncio.Semaphore) else asyncio.Semaphore(concurrency)
    results: dict[str, ProbeResult] = {}
    running: set[asyncio.Future[ProbeResult]] = set()

    def done(task: asyncio.Future[ProbeResult]) -> None:
        sem.release()
        running.discard(task)
        if not task.cancelled() and task.exception() is None:
            r = task.result()
            results[r.endpoint] = r

    try:
        for t in {t.endpoint: t for t in targets}.values():
            await sem.acquire()
            task = asyncio.ensure_future(prober(t))
            task.add_done_callback(done)
            running.add(task)
        while running:
            # a Prober turns every failure into a result: only cancellation ends one early
            await asyncio.gather(*running)
    except BaseException:
        for job in running:
            job.cancel()
        raise
    return results
