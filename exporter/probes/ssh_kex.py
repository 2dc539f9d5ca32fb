"""The SSH transport up to the server's key-exchange reply, as a pure state machine (sans-IO).

A host key check needs no authentication and no session: the server sends its host key in
its key-exchange reply, signed over the exchange hash (RFC 4253 section 8), which covers both
sides' fresh ephemeral keys. We send our version line and a KEXINIT offering exactly one host
key algorithm (the entry's type), read the server's KEXINIT, send our ephemeral key, and
verify the reply's signature with the key it carries: a server replaying another host's key
without its private half fails here. Nothing is encrypted, no NEWKEYS is ever sent.

Key exchange methods spoken: curve25519-sha256 (OpenSSH 6.5 onwards), ecdh-sha2-nistp256
(5.7 onwards, RHEL 6.5+) and diffie-hellman-group14-sha256 / -sha1 (RHEL 6's OpenSSH 5.3).
Host keys: ssh-ed25519, ecdsa-sha2-nistp256/384/521, ssh-rsa (rsa-sha2-512, rsa-sha2-256,
ssh-rsa signatures) and their -cert-v01@openssh.com certificates. Anything else raises
`Fallback` (the caller asks asyncssh); a peer that breaks the protocol raises `KexError`.
"""

from __future__ import annotations

import functools
import hashlib
import os
import struct
import warnings
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dh, ec, ed25519, padding, rsa, x25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from exporter.core.sshwire import Reader, fingerprint, mpint, plain_blob, string
from exporter.core.text import visible

CLIENT_VERSION = b"SSH-2.0-prime_tofu_exporter"
MAX_PACKET = 256 * 1024  # a KEXINIT or a reply with an 8192-bit RSA certificate is a few KiB
_MAX_PRE_LINES = 64  # text lines a server may send before its version line (RFC 4253 4.2)
_MAX_LINE = 1024

MSG_DISCONNECT, MSG_IGNORE, MSG_UNIMPLEMENTED, MSG_DEBUG = 1, 2, 3, 4
MSG_KEXINIT, MSG_KEX_INIT, MSG_KEX_REPLY = 20, 30, 31

# RFC 3526 group 14 (2048-bit MODP), generator 2.
_GROUP14 = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A0879"
    "8E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B"
    "0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA4836"
    "1C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804"
    "F1746C08CA18217C32905E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6"
    "955817183995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
    16,
)

KEX_METHODS = (
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "ecdh-sha2-nistp256",
    "diffie-hellman-group14-sha256",
    "diffie-hellman-group14-sha1",
)
# Offered so that any server finds a match; never used: we stop before NEWKEYS.
_CIPHERS = ("aes128-ctr,aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com,"
            "chacha20-poly1305@openssh.com,aes128-cbc,aes256-cbc,3des-cbc")
_MACS = "hmac-sha2-256,hmac-sha2-512,hmac-sha1,hmac-sha2-256-etm@openssh.com,umac-64@openssh.com"

_CERT = "-cert-v01@openssh.com"
_ECDSA = {"nistp256": (ec.SECP256R1, hashes.SHA256), "nistp384": (ec.SECP384R1, hashes.SHA384),
          "nistp521": (ec.SECP521R1, hashes.SHA512)}
# Host key algorithm (plain form) -> (key blob type, signature name, hash for RSA/ECDSA).
_PLAIN: dict[str, tuple[str, str, type[hashes.HashAlgorithm] | None]] = {
    "ssh-ed25519": ("ssh-ed25519", "ssh-ed25519", None),
    "rsa-sha2-512": ("ssh-rsa", "rsa-sha2-512", hashes.SHA512),
    "rsa-sha2-256": ("ssh-rsa", "rsa-sha2-256", hashes.SHA256),
    "ssh-rsa": ("ssh-rsa", "ssh-rsa", hashes.SHA1),
    **{f"ecdsa-sha2-{c}": (f"ecdsa-sha2-{c}", f"ecdsa-sha2-{c}", h) for c, (_, h) in _ECDSA.items()},
}
_RSA_ORDER = ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")  # as OpenSSH offers for an RSA key


PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey


class KexError(Exception):
    """The peer broke the protocol or failed verification: a definite error, no retry."""


class Fallback(Exception):
    """The peer needs something this reader does not speak; another client may."""


def host_key_algorithms(key_type: str) -> tuple[str, ...]:
    """What to offer for a known_hosts key type: one algorithm, three signature hashes for RSA."""
    if key_type == "ssh-rsa":
        return _RSA_ORDER
    if key_type == "ssh-rsa" + _CERT:
        return tuple(a + _CERT for a in _RSA_ORDER)
    return (key_type,)


def speaks(algorithm: str) -> bool:
    return algorithm.removesuffix(_CERT) in _PLAIN


# ---- wire encoding ----------------------------------------------------------------------

def _namelist(names: str | tuple[str, ...]) -> bytes:
    return string((names if isinstance(names, str) else ",".join(names)).encode())


def packet(payload: bytes) -> bytes:
    """An unencrypted binary packet: length, padding length, payload, zero padding to 8."""
    pad = 8 - (5 + len(payload)) % 8
    pad += 8 if pad < 4 else 0
    return struct.pack("!IB", 1 + len(payload) + pad, pad) + payload + b"\0" * pad


def disconnect(reason: str = "host key read") -> bytes:
    """SSH_MSG_DISCONNECT, by application (11): the server logs a clean preauth disconnect."""
    return packet(bytes([MSG_DISCONNECT]) + struct.pack("!I", 11) + string(reason.encode()) + string(b""))


def _buf(data: bytes, pos: int = 0) -> Reader:
    """Reads SSH wire types from one message; running short is the peer's error."""
    return Reader(data, pos, what="message from the server", error=KexError)


# ---- host keys --------------------------------------------------------------------------

@dataclass(frozen=True)
class HostKey:
    blob: bytes  # as sent: the key, or the whole certificate
    plain: bytes  # the key alone (what ssh-keygen -lf fingerprints, for a certificate too)
    key: PublicKey

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.plain)


def parse_host_key(blob: bytes, blob_type: str) -> HostKey:
    """A key or certificate blob of `blob_type` -> its plain key. KexError when it is not one."""
    buf = _buf(blob)
    sent = buf.text()
    if sent != blob_type:
        raise KexError(f"server sent a {visible(sent)[:60]} key for {blob_type}")
    base = blob_type.removesuffix(_CERT)
    if base != blob_type:
        buf.string()  # certificate nonce; the CA's part is the caller's to check
    start = buf.pos
    key = _public_key(base, buf)
    return HostKey(blob, plain_blob(base, blob[start : buf.pos]), key)


# Public keys loaded from their wire fields, by (type, fields): a fleet's hosts present the
# same keys every cycle, and loading one (an ECDSA point checked to be on its curve, an RSA
# modulus) costs more than the dictionary look-up. The key object is a pure function of those
# bytes, so a hit is the very key the bytes say; the signature is still verified every time.
KEY_CACHE = 4096
_KEYS: dict[tuple[str, bytes], PublicKey] = {}


def _public_key(base: str, buf: Reader) -> PublicKey:
    start = buf.pos
    for _ in range(1 if base == "ssh-ed25519" else 2):  # Ed25519: the key; RSA: e, n; ECDSA: curve, point
        buf.string()
    fields = bytes(buf.data[start : buf.pos])
    key = _KEYS.get((base, fields))
    if key is None:
        key = _load_key(base, _buf(fields))
        if len(_KEYS) >= KEY_CACHE:
            del _KEYS[next(iter(_KEYS))]  # the oldest
        _KEYS[(base, fields)] = key
    return key


def _load_key(base: str, buf: Reader) -> PublicKey:
    try:
        if base == "ssh-ed25519":
            return ed25519.Ed25519PublicKey.from_public_bytes(buf.string())
        if base == "ssh-rsa":
            e = buf.mpint()
            key = rsa.RSAPublicNumbers(e, buf.mpint()).public_key()
            if key.key_size < 1024:  # OpenSSH refuses such a key: "Invalid key length"
                raise KexError(f"server's RSA key has {key.key_size} bits, below OpenSSH's 1024")
            return key
        curve = base.removeprefix("ecdsa-sha2-")
        if buf.text() != curve:
            raise KexError(f"{base} key names another curve")
        return ec.EllipticCurvePublicKey.from_encoded_point(_ECDSA[curve][0](), buf.string())
    except (ValueError, KeyError) as exc:
        raise KexError(f"server's {base} key does not parse") from exc


def verify_signature(host_key: HostKey, algorithm: str, signature: bytes, exchange_hash: bytes) -> None:
    """The host key's signature over the exchange hash, as `algorithm` makes it, or KexError."""
    _, sig_name, hash_cls = _PLAIN[algorithm.removesuffix(_CERT)]
    buf = _buf(signature)
    if buf.text() != sig_name:
        raise KexError(f"server signed with another algorithm than {sig_name}")
    sig = buf.string()
    key = host_key.key
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(sig, exchange_hash)
        elif isinstance(key, rsa.RSAPublicKey):
            assert hash_cls is not None
            size = (key.key_size + 7) // 8  # OpenSSH accepts a signature short of leading zeros
            key.verify(sig.rjust(size, b"\0"), exchange_hash, padding.PKCS1v15(), hash_cls())
        else:
            assert hash_cls is not None
            rs = _buf(sig)
            r = rs.mpint()
            key.verify(encode_dss_signature(r, rs.mpint()), exchange_hash, ec.ECDSA(hash_cls()))
    except InvalidSignature as exc:
        raise KexError("host key signature does not verify: the server does not hold this key") from exc
    except ValueError as exc:  # a negative or oversized ECDSA r or s
        raise KexError("host key signature does not parse") from exc


@dataclass(frozen=True)
class HostCertificate:
    """What a host certificate says, its CA signature verified (cert_parse)."""

    serial: int
    key_id: str  # peer text: show via exporter.core.text.visible
    valid_after: int
    valid_before: int
    ca_fingerprint: str  # SHA256:... of the CA key


def check_certificate(blob: bytes, cert_type: str) -> HostCertificate:
    """A `-cert-v01@openssh.com` blob's fields, its CA signature verified over everything before
    it as OpenSSH's cert_parse does. KexError when it does not parse or verify, or its CA key or
    signature is of a type this reader does not speak."""
    buf = Reader(blob, what="host certificate", error=KexError)
    if buf.text() != cert_type or not cert_type.endswith(_CERT):
        raise KexError("not a host certificate of the type asked for")
    buf.string()  # nonce
    _public_key(cert_type.removesuffix(_CERT), buf)
    serial = buf.u64()
    buf.u32()  # certificate type: the known_hosts verdict checks it (host, not user)
    key_id = buf.text()
    buf.string()  # principals: the known_hosts verdict checks them against the host
    valid_after, valid_before = buf.u64(), buf.u64()
    for _ in range(3):  # critical options, extensions, reserved: the verdict's part too
        buf.string()
    ca_blob = buf.string()
    signed = blob[: buf.pos]
    signature = buf.string()
    if buf.pos != len(blob):
        raise KexError("trailing bytes after the certificate's signature")
    ca_type = _buf(ca_blob).text()
    if ca_type not in _PLAIN or _PLAIN[ca_type][0] != ca_type:
        raise KexError(f"certificate signed by a {visible(ca_type)[:60]} CA key, not read here")
    ca = parse_host_key(ca_blob, ca_type)
    algorithm = _buf(signature).text()
    if algorithm not in _PLAIN or _PLAIN[algorithm][0] != ca_type:
        raise KexError(f"certificate signature {visible(algorithm)[:60]} does not fit its CA key")
    try:
        verify_signature(ca, algorithm, signature, signed)
    except KexError:
        raise KexError("host certificate's CA signature does not verify") from None
    return HostCertificate(serial, key_id, valid_after, valid_before, ca.fingerprint)


# ---- key exchange methods ---------------------------------------------------------------

_FAMILIES = {"curve25519-sha256": "x25519", "curve25519-sha256@libssh.org": "x25519",
             "ecdh-sha2-nistp256": "p256", "diffie-hellman-group14-sha256": "dh14",
             "diffie-hellman-group14-sha1": "dh14"}
# Group 14 is the legacy path (RHEL 6); cryptography calls finite-field DH deprecated, once per
# call site. OpenSSL does the 2048-bit exponentiation in 0.3 ms where Python's pow takes 8 ms.
warnings.filterwarnings("ignore", message="Diffie-Hellman over finite fields",
                        module=r"exporter\.probes\.ssh_kex")
Private = x25519.X25519PrivateKey | ec.EllipticCurvePrivateKey | dh.DHPrivateKey


@functools.cache
def _group14() -> dh.DHParameterNumbers:
    return dh.DHParameterNumbers(_GROUP14, 2)


class EphemeralKeys:
    """Our ephemeral key pairs (X25519, P-256, group 14), each reused for up to `uses` checks.

    Safe here as it would not be in a session: K is only hashed into the exchange hash, never
    keys a cipher (we stop before NEWKEYS), and the fresh random cookie of our KEXINIT, also
    in that hash, makes every signature a server gives good for its own connection only.
    Saves a key generation per check (X25519: 32 us; group 14: a 2048-bit exponentiation)."""

    def __init__(self, uses: int = 1000) -> None:
        self._uses = uses
        self._made: dict[str, tuple[Private, bytes, int]] = {}

    def get(self, family: str) -> tuple[Private, bytes]:
        """(private key, our public value as sent and hashed: string Q_C or mpint e)."""
        made = self._made.get(family)
        if made is None or made[2] >= self._uses:
            made = (*self._make(family), 0)
        self._made[family] = (made[0], made[1], made[2] + 1)
        return made[0], made[1]

    def _make(self, family: str) -> tuple[Private, bytes]:
        if family == "dh14":
            # OpenSSL picks a 224-bit exponent for this 2048-bit group (NIST SP 800-56A)
            dk = _group14().parameters().generate_private_key()
            return dk, mpint(dk.public_key().public_numbers().y)
        if family == "x25519":
            xk = x25519.X25519PrivateKey.generate()
            return xk, string(xk.public_key().public_bytes_raw())
        ek = ec.generate_private_key(ec.SECP256R1())
        return ek, string(ek.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))


class _Ephemeral:
    """Our half of one key exchange: the value we send, and the shared secret K from theirs."""

    def __init__(self, method: str, keys: EphemeralKeys) -> None:
        self.hash = hashlib.sha1 if method.endswith("sha1") else hashlib.sha256
        self._x, self.ours = keys.get(_FAMILIES[method])

    def read_theirs(self, buf: Reader) -> tuple[bytes, int]:
        """The server's value from the reply (as hashed) and the shared secret K."""
        try:
            if isinstance(self._x, dh.DHPrivateKey):
                f = buf.mpint()
                if not 1 < f < _GROUP14 - 1:
                    raise KexError("server's DH value is out of range")
                secret = self._x.exchange(dh.DHPublicNumbers(f, _group14()).public_key())
                return mpint(f), int.from_bytes(secret, "big")
            q = buf.string()
            if isinstance(self._x, x25519.X25519PrivateKey):
                secret = self._x.exchange(x25519.X25519PublicKey.from_public_bytes(q))
            else:
                peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), q)
                secret = self._x.exchange(ec.ECDH(), peer)
        except ValueError as exc:  # off the curve, wrong length, all-zero secret
            raise KexError("server's ephemeral key is invalid") from exc
        return string(q), int.from_bytes(secret, "big")


# ---- the exchange -----------------------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    algorithm: str  # host key algorithm negotiated (rsa-sha2-512 for an ssh-rsa key)
    kex: str
    host_key: HostKey


def _negotiate(ours: tuple[str, ...], theirs: tuple[str, ...]) -> str | None:
    return next((a for a in ours if a in theirs), None)


class HostKeyExchange:
    """Bytes from the server in, bytes to send and finally the verified host key out.

    `start()` gives our version line; feed every chunk the server sends to `feed()` and send
    what it returns (our KEXINIT, then our ephemeral key) until `outcome` is set. Raises
    KexError or Fallback."""

    def __init__(self, key_type: str, keys: EphemeralKeys | None = None, cookie: bytes | None = None) -> None:
        self.key_type = key_type
        self.offer = host_key_algorithms(key_type)
        self._keys = keys if keys is not None else EphemeralKeys(uses=1)
        self._in = bytearray()
        self._pre_lines = 0
        self._kexinit = bytes([MSG_KEXINIT]) + (cookie or os.urandom(16)) + _kexinit_lists(self.offer)
        self._server_version = b""
        self._server_kexinit = b""
        self._ephemeral: _Ephemeral | None = None
        self.banner: str | None = None  # the server's version line, raw text: show via visible()
        self.offered: tuple[str, ...] = ()  # the server's host key algorithms
        self.kex: str | None = None
        self.algorithm: str | None = None
        self.outcome: Outcome | None = None
        self.waiting_for = "the server's version line"
        self.first_line: bytes | None = None  # a line before any version line (not SSH?)

    def closed(self) -> str:
        """Why a connection the server closed (or reset) before the reply failed."""
        if self.banner is None and self.first_line is not None:
            return f"not an SSH server (first line: {_sample(self.first_line)})"
        return f"closed by the server while waiting for {self.waiting_for}"

    def start(self) -> bytes:
        return CLIENT_VERSION + b"\r\n"

    def feed(self, data: bytes) -> bytes:
        self._in += data
        out = b""
        if not self._server_version:
            if not self._version_line():
                return out
            # Our KEXINIT only now, as OpenSSH's client does: some appliance servers read the
            # client's version line with one recv() and drop whatever came with it.
            out = packet(self._kexinit)
        while self.outcome is None:
            payload = self._next_packet()
            if payload is None:
                break
            out += self._message(payload)
        return out

    def _version_line(self) -> bool:
        while True:
            end = self._in.find(b"\n")
            if end < 0:
                if len(self._in) > _MAX_LINE:
                    raise KexError(f"not an SSH server (first bytes: {_sample(self._in)})")
                return False
            line = bytes(self._in[:end]).rstrip(b"\r")
            del self._in[: end + 1]
            if line.startswith(b"SSH-"):
                return self._accept_version(line)
            self._pre_lines += 1
            self.first_line = self.first_line if self.first_line is not None else line
            if self._pre_lines > _MAX_PRE_LINES or end > _MAX_LINE or b"\0" in line:
                raise KexError(f"not an SSH server (first line: {_sample(line)})")

    def _accept_version(self, line: bytes) -> bool:
        self.banner = line.decode("utf-8", "replace")
        if not line.startswith((b"SSH-2.0-", b"SSH-1.99-")):
            raise KexError(f"server speaks SSH protocol 1 only: {_sample(line)}")
        self._server_version = line
        self.waiting_for = "the server's KEXINIT"
        return True

    def _next_packet(self) -> bytes | None:
        if len(self._in) < 5:
            return None
        length, pad = struct.unpack("!IB", self._in[:5])
        if length > MAX_PACKET or length < pad + 1:
            raise KexError(f"not an SSH packet (length {length}, padding {pad})")
        if len(self._in) < 4 + length:
            return None
        payload = bytes(self._in[5 : 4 + length - pad])
        del self._in[: 4 + length]
        if not payload:
            raise KexError("empty SSH packet")
        return payload

    def _message(self, payload: bytes) -> bytes:
        kind = payload[0]
        if kind == MSG_DISCONNECT:
            buf = _buf(payload, 1)
            code = buf.u32()
            raise KexError(f"server disconnected ({code}): {visible(buf.text())[:200]}")
        if kind in (MSG_IGNORE, MSG_UNIMPLEMENTED, MSG_DEBUG):
            return b""
        if kind == MSG_KEXINIT and not self._server_kexinit:
            return self._on_kexinit(payload)
        if kind == MSG_KEX_REPLY and self._ephemeral is not None:
            self._on_reply(payload)
            return b""
        raise KexError(f"unexpected SSH message {kind} while waiting for {self.waiting_for}")

    def _on_kexinit(self, payload: bytes) -> bytes:
        buf = _buf(payload, 17)  # type byte, 16-byte cookie
        kex_methods, self.offered = buf.names(), buf.names()
        for _ in range(8):  # ciphers, MACs, compression, languages: both ways
            buf.string()
        if buf.take(1) != b"\0":
            raise Fallback("server sends a guessed key-exchange packet")
        self._server_kexinit = payload
        self.algorithm = _negotiate(self.offer, self.offered)
        if self.algorithm is None:
            raise KexError(f"host does not offer {self.key_type}")
        if not speaks(self.algorithm):
            raise Fallback(f"reader does not speak {self.algorithm}")
        self.kex = _negotiate(KEX_METHODS, kex_methods)
        if self.kex is None:
            raise Fallback("no key exchange method in common: " + visible(",".join(kex_methods))[:300])
        self._ephemeral = _Ephemeral(self.kex, self._keys)
        self.waiting_for = "the server's key exchange reply"
        return packet(bytes([MSG_KEX_INIT]) + self._ephemeral.ours)

    def _on_reply(self, payload: bytes) -> None:
        assert self._ephemeral is not None and self.algorithm is not None and self.kex is not None
        buf = _buf(payload, 1)
        blob = buf.string()
        host_key = parse_host_key(blob, _PLAIN[self.algorithm.removesuffix(_CERT)][0]
                                  + (_CERT if self.algorithm.endswith(_CERT) else ""))
        theirs, k = self._ephemeral.read_theirs(buf)
        signature = buf.string()
        h = self._ephemeral.hash(
            string(CLIENT_VERSION) + string(self._server_version) + string(self._kexinit)
            + string(self._server_kexinit) + string(blob) + self._ephemeral.ours + theirs + mpint(k)
        ).digest()
        verify_signature(host_key, self.algorithm, signature, h)
        self.outcome = Outcome(self.algorithm, self.kex, host_key)


@functools.lru_cache(maxsize=64)
def _kexinit_lists(host_key_algs: tuple[str, ...]) -> bytes:
    """KEXINIT after the cookie: our name-lists, no guessed packet, reserved 0."""
    return (
        _namelist(KEX_METHODS) + _namelist(host_key_algs)
        + _namelist(_CIPHERS) * 2 + _namelist(_MACS) * 2 + _namelist("none") * 2
        + _namelist("") * 2 + b"\0" + b"\0\0\0\0"
    )


def _sample(raw: bytes | bytearray) -> str:
    return "'" + visible(bytes(raw[:80]).decode("utf-8", "replace")) + "'"
