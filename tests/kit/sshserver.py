"""The server side of an SSH key exchange, in-process, for the sans-IO reader's unit tests.

Written from RFC 4253/5656/8731 and `cryptography` alone (no exporter code), so it is an
oracle for exporter.probes.ssh_kex: a version line, a KEXINIT, and a KEX_ECDH_REPLY /
KEXDH_REPLY whose exchange hash is signed with a host key made in the test. Every piece can
be replaced (another signer, a broken signature, a certificate blob) to test a refusal.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dh, ec, ed25519, padding, rsa, x25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.kit.sshkeys import blob_of, openssh_line

VERSION = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3"
# RFC 3526 section 3, written out again here so the test does not read the reader's copy.
GROUP14 = int(
    "FFFFFFFF FFFFFFFF C90FDAA2 2168C234 C4C6628B 80DC1CD1 29024E08 8A67CC74 020BBEA6 3B139B22"
    " 514A0879 8E3404DD EF9519B3 CD3A431B 302B0A6D F25F1437 4FE1356D 6D51C245 E485B576 625E7EC6"
    " F44C42E9 A637ED6B 0BFF5CB6 F406B7ED EE386BFB 5A899FA5 AE9F2411 7C4B1FE6 49286651 ECE45B3D"
    " C2007CB8 A163BF05 98DA4836 1C55D39A 69163FA8 FD24CF5F 83655D23 DCA3AD96 1C62F356 208552BB"
    " 9ED52907 7096966D 670C354E 4ABC9804 F1746C08 CA18217C 32905E46 2E36CE3B E39E772C 180E8603"
    " 9B2783A2 EC07A28F B5C55DF0 6F4C52C9 DE2BCBF6 95581718 3995497C EA956AE5 15D22618 98FA0510"
    " 15728E5A 8AACAA68 FFFFFFFF FFFFFFFF".replace(" ", ""), 16)
HASHES = {"secp256r1": hashes.SHA256, "secp384r1": hashes.SHA384, "secp521r1": hashes.SHA512,
          "rsa-sha2-256": hashes.SHA256, "rsa-sha2-512": hashes.SHA512, "ssh-rsa": hashes.SHA1}


def ssh_string(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def ssh_mpint(n: int) -> bytes:
    raw = n.to_bytes(n.bit_length() // 8 + 1, "big") if n else b""
    return ssh_string(raw)


def namelist(names: tuple[str, ...] | list[str]) -> bytes:
    return ssh_string(",".join(names).encode())


def binary_packet(payload: bytes, pad: int = 4) -> bytes:
    """A packet as RFC 4253 section 6 frames it (padding to 8, at least 4, random is allowed)."""
    pad += -(5 + len(payload) + pad) % 8
    return struct.pack(">IB", 1 + len(payload) + pad, pad) + payload + b"\xa5" * pad


def packets(data: bytes) -> list[bytes]:
    """The payloads of unencrypted packets, back to back (what the reader sends)."""
    out = []
    while data:
        length, pad = struct.unpack(">IB", data[:5])
        out.append(data[5 : 4 + length - pad])
        data = data[4 + length :]
    return out


def kexinit(kex: tuple[str, ...] = ("curve25519-sha256",), host_key_algs: tuple[str, ...] = ("ssh-ed25519",),
            guess: bytes = b"\0", cookie: bytes = b"\x42" * 16) -> bytes:
    return (bytes([20]) + cookie + namelist(kex) + namelist(host_key_algs)
            + namelist(("aes128-ctr",)) * 2 + namelist(("hmac-sha2-256",)) * 2
            + namelist(("none",)) * 2 + namelist(()) * 2 + guess + b"\0\0\0\0")


def key_blob(private) -> bytes:
    """The public key blob, as ssh-keygen writes it (cryptography's OpenSSH encoding)."""
    return blob_of(openssh_line(private))


def fingerprint_of(blob: bytes) -> str:
    """What `ssh-keygen -lf` prints: SHA256 of the blob, base64 without padding."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def sign(private, algorithm: str, data: bytes) -> bytes:
    """The SSH signature blob of `data` by `private`, as `algorithm` names it (RFC 4253 6.6,
    RFC 5656 3.1.2, RFC 8332, RFC 8709)."""
    if isinstance(private, ed25519.Ed25519PrivateKey):
        raw = private.sign(data)
    elif isinstance(private, rsa.RSAPrivateKey):
        raw = private.sign(data, padding.PKCS1v15(), HASHES[algorithm]())
    else:
        r, s = decode_dss_signature(private.sign(data, ec.ECDSA(HASHES[private.curve.name]())))
        raw = ssh_mpint(r) + ssh_mpint(s)
    return ssh_string(algorithm.encode()) + ssh_string(raw)


@dataclass
class Server:
    """One server's side of one exchange. `host_key` signs; `blob` is what it sends as its key
    (a certificate blob for a -cert type); `algorithm` names the signature."""

    host_key: object
    algorithm: str
    kex: tuple[str, ...] = ("curve25519-sha256",)
    host_key_algs: tuple[str, ...] | None = None
    blob: bytes | None = None
    signer: object | None = None  # another key signs instead of host_key
    version: bytes = VERSION
    banner: bytes = b""  # lines before the version line (RFC 4253 4.2 allows them)
    tamper: bool = False  # flip one bit of the signature
    signs: bytes | None = None  # sign these bytes instead of this exchange's hash (a replay)
    ephemeral: bytes | None = None  # send this (encoded) as the server's ephemeral value instead
    client_version: bytes = b""
    client_kexinit: bytes = b""
    sent: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.blob = self.blob if self.blob is not None else key_blob(self.host_key)
        self.kexinit = kexinit(self.kex, self.host_key_algs or (self.algorithm,))

    def hello(self) -> bytes:
        """Version line and KEXINIT, as OpenSSH sends them at once."""
        return self.banner + self.version + b"\r\n" + binary_packet(self.kexinit)

    def reply(self, client_kex_init: bytes) -> bytes:
        """The KEX reply payload to the client's KEX_ECDH_INIT / KEXDH_INIT payload."""
        method = self.chosen
        body = client_kex_init[1:]
        if method.startswith("diffie-hellman"):
            e = int.from_bytes(body[4:], "big")
            y = dh.DHParameterNumbers(GROUP14, 2).parameters().generate_private_key()
            f = y.public_key().public_numbers().y
            k = int.from_bytes(y.exchange(dh.DHPublicNumbers(e, dh.DHParameterNumbers(GROUP14, 2))
                                          .public_key()), "big")
            theirs, ours = ssh_mpint(e), ssh_mpint(f)
        else:
            q_c = body[4:]
            if method.startswith("curve25519"):
                x = x25519.X25519PrivateKey.generate()
                k = int.from_bytes(x.exchange(x25519.X25519PublicKey.from_public_bytes(q_c)), "big")
                q_s = x.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            else:
                p = ec.generate_private_key(ec.SECP256R1())
                k = int.from_bytes(p.exchange(ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(
                    ec.SECP256R1(), q_c)), "big")
                q_s = p.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
            theirs, ours = ssh_string(q_c), ssh_string(q_s)
        digest = hashlib.sha1 if method.endswith("sha1") else hashlib.sha256
        assert self.blob is not None
        h = digest(ssh_string(self.client_version) + ssh_string(self.version)
                   + ssh_string(self.client_kexinit) + ssh_string(self.kexinit) + ssh_string(self.blob)
                   + theirs + ours + ssh_mpint(k)).digest()
        self.exchange_hash = h
        signed = h if self.signs is None else self.signs
        signature = sign(self.signer or self.host_key, self.algorithm, signed)
        if self.tamper:
            signature = signature[:-1] + bytes([signature[-1] ^ 1])
        return bytes([31]) + ssh_string(self.blob) + (self.ephemeral or ours) + ssh_string(signature)

    @property
    def chosen(self) -> str:
        """The first of the client's kex methods the server has (the client's order rules)."""
        theirs = self.client_kexinit[17:]
        offered = theirs[4 : 4 + struct.unpack(">I", theirs[:4])[0]].decode().split(",")
        return next(m for m in offered if m in self.kex)


def converse(reader, server: Server, chunk: int | None = None) -> None:
    """Run `reader` (a HostKeyExchange) against `server` to the end, feeding the server's bytes
    `chunk` bytes at a time (all at once when None). Raises what the reader raises."""
    server.client_version = reader.start().rstrip(b"\r\n")

    def feed(data: bytes) -> bytes:
        out = b""
        step = chunk or len(data) or 1
        for i in range(0, len(data), step):
            out += reader.feed(data[i : i + step])
        return out

    sent = packets(feed(server.hello()))
    server.client_kexinit = sent[0]
    if len(sent) < 2:
        return
    feed(binary_packet(server.reply(sent[1])))
