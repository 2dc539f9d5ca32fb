"""The SSH wire encoding (RFC 4251 section 5) and key fingerprints, as OpenSSH's sshbuf reads them.

One reader for both sides that parse SSH keys: the known_hosts core (keys and certificates written
in a file) and the host-key probe (the key a server sends). Pure: struct, base64 and hashlib only
(no `cryptography`, whose import pulls in `socket`). A reader raises its caller's error class, so
a short blob is a bad key to the one and a protocol error of the peer to the other.
"""

from __future__ import annotations

import base64
import hashlib
import struct

MAX_BIGNUM = 16384 // 8  # SSHBUF_MAX_BIGNUM: the longest mpint OpenSSH reads, in bytes


class WireError(ValueError):
    """Bytes that break the encoding; the message says how (plain text, no peer bytes)."""


def string(data: bytes) -> bytes:
    """uint32 length, then the bytes."""
    return struct.pack(">I", len(data)) + data


def mpint(n: int) -> bytes:
    """A non-negative mpint: big-endian, a leading zero byte when the top bit is set, 0 empty."""
    if n == 0:
        return string(b"")
    return string(n.to_bytes((n.bit_length() + 8) // 8, "big"))


def plain_blob(key_type: str, fields: bytes) -> bytes:
    """A plain key's blob from its type and its public fields: for a certificate, the key it
    certifies (nonce and certificate fields dropped), which is what ssh-keygen -lf fingerprints."""
    return string(key_type.encode()) + fields


def fingerprint(blob: bytes) -> str:
    """`SHA256:` + unpadded base64 of SHA-256 of the blob (SSH_FP_DEFAULT), as `ssh-keygen -lf`
    prints it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


class Reader:
    """Reads wire types from `data`, from `pos` on. `what` names the bytes in errors ("truncated
    blob"); every error is raised as `error(message)`."""

    def __init__(self, data: bytes, pos: int = 0, what: str = "data",
                 error: type[Exception] = WireError) -> None:
        self.data, self.pos = data, pos
        self._what, self._error = what, error

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self._error(f"truncated {self._what}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def u64(self) -> int:
        return int(struct.unpack(">Q", self.take(8))[0])

    def string(self) -> bytes:
        return self.take(self.u32())

    def cstring(self) -> str:
        """sshbuf_get_cstring: no NUL inside; bytes that are no UTF-8 kept as surrogates."""
        raw = self.string()
        if b"\x00" in raw:
            raise self._error(f"NUL inside a string of the {self._what}")
        return raw.decode("utf-8", "surrogateescape")

    def text(self) -> str:
        """A string read as text, bytes that are no UTF-8 replaced (for names and messages)."""
        return self.string().decode("utf-8", "replace")

    def names(self) -> tuple[str, ...]:
        """A name-list: comma-separated, empty for none."""
        raw = self.text()
        return tuple(raw.split(",")) if raw else ()

    def mpint(self, max_bytes: int | None = None) -> int:
        """sshbuf_get_bignum2: non-negative; with `max_bytes`, at most that many bytes after a
        leading zero byte."""
        raw = self.string()
        if raw and raw[0] & 0x80:
            raise self._error(f"negative number in the {self._what}")
        if max_bytes is not None and (len(raw) > max_bytes + 1
                                      or (len(raw) == max_bytes + 1 and raw[0] != 0)):
            raise self._error(f"number too large in the {self._what}")
        return int.from_bytes(raw, "big")

    @property
    def left(self) -> int:
        return len(self.data) - self.pos
