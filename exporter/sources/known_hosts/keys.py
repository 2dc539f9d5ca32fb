"""SSH public keys and certificates read from their wire format, as OpenSSH's sshkey.c reads them.

Pure: the RFC 4251 reader of exporter.core.sshwire (no `cryptography`, whose import pulls in `socket`).
What OpenSSH checks while parsing a blob is checked here too (sshkey_from_blob_internal and each
key type's deserialize_public): the type name is one OpenSSH knows, every field is present, no
bytes trail, an Ed25519 key is 32 bytes, an RSA modulus has at least 1024 bits, an ECDSA point is
on its curve and passes sshkey_ec_validate_public. The one check left to the caller is a
certificate's CA signature (cert_parse verifies it): `signature_parts` hands over what to verify.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporter.core.sshwire import MAX_BIGNUM, Reader, WireError, fingerprint, plain_blob

# Key type names as sshkey.c's keyimpls table spells them (Debian's build: OpenSSL, ECC, NIST P-521
# and security keys; no XMSS). The value is the plain type a certificate type certifies.
PLAIN_TYPES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-rsa",
    "ssh-dss",
)
CERT_SUFFIX = "-cert-v01@openssh.com"
_CERT_NAMES = {
    "ssh-ed25519-cert-v01@openssh.com": "ssh-ed25519",
    "ecdsa-sha2-nistp256-cert-v01@openssh.com": "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384-cert-v01@openssh.com": "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521-cert-v01@openssh.com": "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519-cert-v01@openssh.com": "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com": "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-rsa-cert-v01@openssh.com": "ssh-rsa",
    "ssh-dss-cert-v01@openssh.com": "ssh-dss",
}
# Signature-only names that sshkey_type_from_name / peek_type_nid also accept as a key's type
# (same key type, so sshkey_read takes `host rsa-sha2-256 <ssh-rsa blob>`): name -> canonical.
_ALIASES = {
    "rsa-sha2-256": "ssh-rsa",
    "rsa-sha2-512": "ssh-rsa",
    "rsa-sha2-256-cert-v01@openssh.com": "ssh-rsa-cert-v01@openssh.com",
    "rsa-sha2-512-cert-v01@openssh.com": "ssh-rsa-cert-v01@openssh.com",
    "webauthn-sk-ecdsa-sha2-nistp256@openssh.com": "sk-ecdsa-sha2-nistp256@openssh.com",
}
# SSH_ALLOWED_CA_SIGALGS (myproposal.h): the default CASignatureAlgorithms; ssh-rsa (SHA-1) is out.
ALLOWED_CA_SIGALGS = frozenset({
    "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com", "rsa-sha2-512", "rsa-sha2-256",
})
CERT_TYPE_USER, CERT_TYPE_HOST = 1, 2
_MAX_PRINCIPALS = 256  # SSHKEY_CERT_MAX_PRINCIPALS
_RSA_MIN_BITS = 1024  # SSH_RSA_MINIMUM_MODULUS_SIZE

# NIST prime curves (a = -3): field prime, b, group order.
_CURVES = {
    "nistp256": (
        2**256 - 2**224 + 2**192 + 2**96 - 1,
        0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B,
        0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    ),
    "nistp384": (
        2**384 - 2**128 - 2**96 + 2**32 - 1,
        0xB3312FA7E23EE7E4988E056BE3F82D19181D9C6EFE8141120314088F5013875AC656398D8A2ED19D2A85C8EDD3EC2AEF,
        0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973,
    ),
    "nistp521": (
        2**521 - 1,
        0x0051953EB9618E1C9A1F929A21A0B68540EEA2DA725B99B315F3B8B489918EF109E156193951EC7E937B1652C0BD3BB1BF073573DF883D2C34F1EF451FD46B503F00,
        0x01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFA51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409,
    ),
}


class BadKey(WireError):
    """A blob OpenSSH would refuse; the message says why (plain text, no peer bytes)."""


def canonical_type(name: str) -> str | None:
    """The key type OpenSSH reads `name` as (sshkey_type_from_name), or None for an unknown name."""
    if name in PLAIN_TYPES or name in _CERT_NAMES:
        return name
    return _ALIASES.get(name)


def is_cert_type(name: str) -> bool:
    return name in _CERT_NAMES


def plain_type(name: str) -> str:
    """The plain key type a (canonical) certificate type certifies; a plain type is itself."""
    return _CERT_NAMES.get(name, name)


@dataclass(frozen=True)
class Certificate:
    """The fields of an OpenSSH certificate (PROTOCOL.certkeys) that a host check reads."""

    serial: int
    cert_type: int  # 1 user, 2 host
    key_id: str
    principals: tuple[str, ...]
    valid_after: int
    valid_before: int
    critical: bytes  # the raw critical-options section (a host check refuses any)
    extensions: bytes
    ca_key: bytes  # the CA's public-key blob
    signature: bytes  # the signature blob (string sigtype, string sig)
    signature_type: str
    signed_data: bytes  # the certificate blob up to, not including, the signature


@dataclass(frozen=True)
class Key:
    """One parsed public key or certificate."""

    key_type: str  # canonical type name of the blob
    blob: bytes  # the whole blob as given
    public: bytes  # the plain public-key blob (a certificate's certified key, nonce dropped)
    cert: Certificate | None = None

    @property
    def plain_type(self) -> str:
        return plain_type(self.key_type)


def key_fingerprint(key: Key) -> str:
    """sshkey_fingerprint as `ssh-keygen -lf` prints it: of the plain key, also for a certificate
    (sshkey_fingerprint_raw serialises with force_plain)."""
    return fingerprint(key.public)


def _reader(data: bytes) -> Reader:
    return Reader(data, what="blob", error=BadKey)


def _ec_point(curve: str, point: bytes) -> None:
    """sshbuf_get_eckey + sshkey_ec_validate_public for an uncompressed point on a NIST curve."""
    p, b, order = _CURVES[curve]
    size = (p.bit_length() + 7) // 8
    if len(point) != 1 + 2 * size or point[0] != 4:
        raise BadKey("ECDSA point not in uncompressed form")
    x = int.from_bytes(point[1 : 1 + size], "big")
    y = int.from_bytes(point[1 + size :], "big")
    if x >= p or y >= p or (y * y - (x * x * x - 3 * x + b)) % p:
        raise BadKey("ECDSA point not on its curve")
    # Cofactor 1: a point on the curve has the group's order. The remaining checks of
    # sshkey_ec_validate_public, as written there:
    half = order.bit_length() // 2
    if x.bit_length() <= half or y.bit_length() <= half or x >= order - 1 or y >= order - 1:
        raise BadKey("ECDSA point refused (sshkey_ec_validate_public)")


def _public_fields(plain: str, r: Reader) -> bytes:
    """Read one plain key's public fields (each type's deserialize_public); return them raw."""
    start = r.pos
    if plain in ("ssh-ed25519", "sk-ssh-ed25519@openssh.com"):
        if len(r.string()) != 32:
            raise BadKey("Ed25519 key is not 32 bytes")
    elif plain == "ssh-rsa":
        r.mpint(MAX_BIGNUM)
        if r.mpint(MAX_BIGNUM).bit_length() < _RSA_MIN_BITS:
            raise BadKey("RSA modulus below 1024 bits")
    elif plain == "ssh-dss":
        for _ in range(4):
            r.mpint(MAX_BIGNUM)
    else:  # ecdsa-sha2-<curve> and sk-ecdsa-sha2-nistp256@openssh.com
        curve = plain.removeprefix("sk-").split("@")[0].removeprefix("ecdsa-sha2-")
        if r.cstring() != curve:
            raise BadKey("ECDSA curve does not match the key type")
        _ec_point(curve, r.string())
    if plain.startswith("sk-"):
        r.cstring()  # the security key's application string
    return r.data[start : r.pos]


def _cert_body(r: Reader, blob: bytes) -> Certificate:
    """cert_parse up to the signature check (the caller verifies it: see `signature_parts`)."""
    serial, cert_type, key_id = r.u64(), r.u32(), r.cstring()
    principals_raw = r.string()
    valid_after, valid_before = r.u64(), r.u64()
    critical, extensions = r.string(), r.string()
    r.string()  # reserved
    ca_key = r.string()
    signed_len = r.pos
    signature = r.string()
    if cert_type not in (CERT_TYPE_USER, CERT_TYPE_HOST):
        raise BadKey("unknown certificate type")
    principals: list[str] = []
    pr = _reader(principals_raw)
    while pr.left:
        if len(principals) >= _MAX_PRINCIPALS:
            raise BadKey("too many principals")
        principals.append(pr.cstring())
    for section in (critical, extensions):
        sr = _reader(section)
        while sr.left:
            sr.string()
            sr.string()
    ca = parse_blob(ca_key, allow_cert=False)
    if ca.key_type not in PLAIN_TYPES:
        raise BadKey("CA key is not a valid CA type")
    sig_type = _reader(signature).cstring()
    return Certificate(serial, cert_type, key_id, tuple(principals), valid_after, valid_before,
                       critical, extensions, ca_key, signature, sig_type, blob[:signed_len])


def parse_blob(blob: bytes, allow_cert: bool = True) -> Key:
    """sshkey_from_blob_internal: the blob's own type name, its fields, nothing trailing.
    Raises BadKey for a blob OpenSSH would refuse."""
    r = _reader(blob)
    name = canonical_type(r.cstring())
    if name is None:
        raise BadKey("unknown key type in blob")
    cert = is_cert_type(name)
    if cert and not allow_cert:
        raise BadKey("certificate where a plain key is required")
    if cert:
        r.string()  # nonce
    plain = plain_type(name)
    fields = _public_fields(plain, r)
    body = _cert_body(r, blob) if cert else None
    if r.left:
        raise BadKey("trailing bytes after the key")
    return Key(name, blob, plain_blob(plain, fields), body)


def signature_parts(key: Key) -> tuple[bytes, bytes, bytes]:
    """What the caller verifies for a certificate, as cert_parse does with sshkey_verify:
    (signed data, signature blob, CA public-key blob)."""
    if key.cert is None:
        raise ValueError("not a certificate")
    return key.cert.signed_data, key.cert.signature, key.cert.ca_key


def same_public(a: Key, b: Key) -> bool:
    """sshkey_equal_public: the same key material, certificate or not."""
    return a.public == b.public


def same_key(a: Key, b: Key) -> bool:
    """sshkey_equal: both plain keys or both certificates (then the whole certificate), same key."""
    if (a.cert is None) != (b.cert is None):
        return False
    return a.blob == b.blob if a.cert is not None else a.public == b.public
