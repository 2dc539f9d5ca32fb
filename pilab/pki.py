"""Self-signed certificates for the lab, each with a fresh key."""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

# OpenSSL short names <-> OIDs, the set the lab (and PI's listing) uses.
SHORT_NAMES: dict[str, x509.ObjectIdentifier] = {
    "C": NameOID.COUNTRY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "L": NameOID.LOCALITY_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "CN": NameOID.COMMON_NAME,
    "emailAddress": NameOID.EMAIL_ADDRESS,
    "DC": NameOID.DOMAIN_COMPONENT,
}
_OID_TO_SHORT = {oid: name for name, oid in SHORT_NAMES.items()}


@dataclass(frozen=True)
class CertBundle:
    cert_pem: bytes
    key_pem: bytes
    der: bytes
    fingerprint_sha256: str  # lowercase hex of SHA-256 over the DER


def pi_subject(cn: str) -> list[tuple[str, str]]:
    """The subject PI's self-signed certificates carry in the seed, in DER order."""
    return [
        ("C", "US"),
        ("ST", "CA"),
        ("L", "SJ"),
        ("O", "Cisco Systems"),
        ("OU", "Prime Infra"),
        ("CN", cn),
    ]


def _name(subject: Sequence[tuple[str, str]]) -> x509.Name:
    attrs = []
    for short, value in subject:
        if short not in SHORT_NAMES:
            raise ValueError(f"unsupported attribute {short!r}")
        attrs.append(x509.NameAttribute(SHORT_NAMES[short], value))
    return x509.Name(attrs)  # keeps the given (DER) order


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def make_cert(
    subject: Sequence[tuple[str, str]],
    *,
    key_type: str = "ec",
    days: int = 365,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    sans: Sequence[str] = (),
    serial: int | None = None,
) -> CertBundle:
    """A self-signed certificate with a freshly generated key (so the SPKI changes too)."""
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    if key_type == "ec":
        key = ec.generate_private_key(ec.SECP256R1())
    elif key_type == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        raise ValueError(f"unknown key_type {key_type!r}")
    # Backdate a little so clocks that lag slightly still accept the certificate.
    start = not_before or datetime.now(UTC) - timedelta(minutes=5)
    end = not_after or start + timedelta(days=days)
    name = _name(subject)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName([_san(s) for s in sans]), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    der = cert.public_bytes(serialization.Encoding.DER)
    return CertBundle(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        der=der,
        fingerprint_sha256=hashlib.sha256(der).hexdigest(),
    )


def subject_of(der: bytes) -> tuple[tuple[str, str], ...]:
    """The subject of a DER certificate in DER order, multi-valued RDNs flattened."""
    cert = x509.load_der_x509_certificate(der)
    out: list[tuple[str, str]] = []
    for rdn in cert.subject.rdns:
        for attr in rdn:
            value = attr.value if isinstance(attr.value, str) else attr.value.hex()
            out.append((_OID_TO_SHORT.get(attr.oid, attr.oid.dotted_string), value))
    return tuple(out)
