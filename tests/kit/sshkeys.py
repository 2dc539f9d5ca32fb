"""SSH keys and host certificates for the known_hosts tests, made with `cryptography` (real
Ed25519/ECDSA/RSA/DSA keys, certificates signed by a real CA key); the security-key types, which
need hardware to generate, are built from their documented wire format around real points."""

from __future__ import annotations

import base64
import struct
import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa

NOW = int(time.time())


def _ssh(s: bytes) -> bytes:
    return struct.pack(">I", len(s)) + s


def openssh_line(private) -> str:
    return private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def blob_of(line: str) -> bytes:
    return base64.b64decode(line.split()[1])


def b64(blob: bytes) -> str:
    return base64.b64encode(blob).decode()


ED = [ed25519.Ed25519PrivateKey.generate() for _ in range(4)]
P256 = ec.generate_private_key(ec.SECP256R1())
P384 = ec.generate_private_key(ec.SECP384R1())
P521 = ec.generate_private_key(ec.SECP521R1())
RSA = rsa.generate_private_key(65537, 2048)
DSA = dsa.generate_private_key(1024)


def sk_ed25519_blob() -> bytes:
    raw = ED[3].public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return _ssh(b"sk-ssh-ed25519@openssh.com") + _ssh(raw) + _ssh(b"ssh:")


def sk_ecdsa_blob() -> bytes:
    point = P256.public_key().public_bytes(serialization.Encoding.X962,
                                           serialization.PublicFormat.UncompressedPoint)
    return _ssh(b"sk-ecdsa-sha2-nistp256@openssh.com") + _ssh(b"nistp256") + _ssh(point) + _ssh(b"ssh:")


def host_cert(key, ca, principals=("web1.example.com",), after=None, before=None,
              cert_type=serialization.SSHCertificateType.HOST, critical=()) -> bytes:
    b = (serialization.SSHCertificateBuilder().public_key(key.public_key()).serial(7)
         .type(cert_type).key_id(b"id").valid_after(NOW - 3600 if after is None else after)
         .valid_before(NOW + 3600 if before is None else before))
    b = b.valid_principals([p.encode() for p in principals]) if principals else b.valid_for_all_principals()
    for name, value in critical:
        b = b.add_critical_option(name, value)
    cert = b.sign(ca)
    return blob_of(cert.public_bytes().decode())


ED_LINE = openssh_line(ED[0])
ED2_LINE = openssh_line(ED[1])
CA_LINE = openssh_line(ED[2])
KEYS = {
    "ssh-ed25519": ED_LINE,
    "ecdsa-sha2-nistp256": openssh_line(P256),
    "ecdsa-sha2-nistp384": openssh_line(P384),
    "ecdsa-sha2-nistp521": openssh_line(P521),
    "ssh-rsa": openssh_line(RSA),
    "ssh-dss": openssh_line(DSA),
    "sk-ssh-ed25519@openssh.com": "sk-ssh-ed25519@openssh.com " + b64(sk_ed25519_blob()),
    "sk-ecdsa-sha2-nistp256@openssh.com": "sk-ecdsa-sha2-nistp256@openssh.com " + b64(sk_ecdsa_blob()),
}
