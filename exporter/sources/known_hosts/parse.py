"""A `known_hosts` file read line by line as OpenSSH's hostkeys_foreach_file reads it.

Every line is kept, numbered as OpenSSH numbers it (one per "\\n"; a last line without one counts),
so a remediation can remove exact lines and keep every other byte. A line OpenSSH would skip as
invalid (HKF_STATUS_INVALID) becomes a `BadLine` with the reason; it is never fatal.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from exporter.core.text import visible
from exporter.sources.known_hosts.keys import BadKey, Key, canonical_type, parse_blob

CA_MARKER = "@cert-authority"
REVOKE_MARKER = "@revoked"
HASH_MAGIC = "|1|"
_WS = " \t"
_B64_SPACE = str.maketrans("", "", "\r\n\v\f")  # b64_pton skips isspace(); " \t" end the field


def _shown(raw: bytes) -> str:
    return visible(raw.decode("utf-8", "backslashreplace"))


@dataclass(frozen=True)
class KeyLine:
    """A host key line: [marker] hosts type base64 [comment]."""

    number: int
    raw: bytes  # the line without its "\n"
    marker: str  # "", CA_MARKER or REVOKE_MARKER
    hosts: str  # the host field as written (patterns, or one |1|salt|hash)
    salt: bytes | None  # the 20-byte HMAC-SHA1 salt of a hashed host field, else None
    written_type: str  # the key type as the line spells it
    key: Key
    comment: str

    @property
    def hashed(self) -> bool:
        return self.salt is not None

    @property
    def key_type(self) -> str:
        return self.key.key_type

    @property
    def shown(self) -> str:
        return _shown(self.raw)


@dataclass(frozen=True)
class BadLine:
    """A line OpenSSH skips as invalid; `shown` is the raw text safe to print."""

    number: int
    raw: bytes
    reason: str

    @property
    def shown(self) -> str:
        return _shown(self.raw)


@dataclass(frozen=True)
class OtherLine:
    """A blank or comment line."""

    number: int
    raw: bytes


Line = KeyLine | BadLine | OtherLine


@dataclass(frozen=True)
class KnownHosts:
    lines: tuple[Line, ...]

    @property
    def key_lines(self) -> tuple[KeyLine, ...]:
        return tuple(line for line in self.lines if isinstance(line, KeyLine))

    @property
    def bad_lines(self) -> tuple[BadLine, ...]:
        return tuple(line for line in self.lines if isinstance(line, BadLine))


class _Bad(Exception):
    pass


def split_lines(data: bytes) -> list[bytes]:
    """The file's lines as getline(3) returns them, each without its "\\n"."""
    parts = data.split(b"\n")
    if parts[-1] == b"":
        parts.pop()
    return parts


def _skip_ws(s: str, i: int) -> int:
    while i < len(s) and s[i] in _WS:
        i += 1
    return i


def _marker(s: str, i: int) -> tuple[str, int]:
    """check_markers: at most one of @cert-authority / @revoked, ended by whitespace. As in C, the
    end is the line's first space, or failing that its first tab."""
    found = ""
    while i < len(s) and s[i] == "@":
        if found:
            raise _Bad("more than one marker")
        end = s.find(" ", i)
        if end < 0:
            end = s.find("\t", i)
        if end < 0 or end <= i + 1 or end >= i + 32:
            raise _Bad("invalid marker")
        word = s[i:end]
        if word not in (CA_MARKER, REVOKE_MARKER):
            raise _Bad("invalid marker")
        found = word
        i = _skip_ws(s, end)
    return found, i


def hash_salt(field: str) -> bytes:
    """extract_salt: the salt of `|1|salt|hash`, which must decode to 20 bytes (SHA-1 HMAC)."""
    if not field.startswith(HASH_MAGIC):
        raise _Bad("bad host hash: no |1| magic")
    rest = field[len(HASH_MAGIC) :]
    end = rest.find("|")
    if end < 0:
        raise _Bad("bad host hash: no salt terminator")
    if not 0 < end <= 1024:
        raise _Bad("bad host hash: bad salt length")
    try:
        salt = base64.b64decode(rest[:end].translate(_B64_SPACE), validate=True)
    except (binascii.Error, ValueError):
        raise _Bad("bad host hash: salt is not base64") from None
    if len(salt) != 20:
        raise _Bad("bad host hash: salt is not 20 bytes")
    return salt


def _key(s: str, i: int) -> tuple[str, Key, int]:
    """sshkey_read: type name, whitespace, base64 blob whose own type is the written one."""
    end = i
    while end < len(s) and s[end] not in _WS:
        end += 1
    if end == len(s):
        raise _Bad("no key after the key type")
    written = s[i:end]
    want = canonical_type(written)
    if want is None:
        raise _Bad("unknown key type")
    i = _skip_ws(s, end)
    end = i
    while end < len(s) and s[end] not in _WS:
        end += 1
    try:
        blob = base64.b64decode(s[i:end].translate(_B64_SPACE).encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise _Bad("key is not base64") from None
    try:
        key = parse_blob(blob)
    except BadKey as e:
        raise _Bad(f"bad key: {e}") from None
    if key.key_type != want:
        raise _Bad("key type does not match the key")
    return written, key, _skip_ws(s, end)


def parse_line(number: int, raw: bytes) -> Line:
    """One line as hostkeys_foreach_file reads it with HKF_WANT_PARSE_KEY and a host to match."""
    # C string functions stop at a NUL byte: OpenSSH reads only what precedes it.
    s = raw.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")
    i = _skip_ws(s, 0)
    if i == len(s) or s[i] == "#":
        return OtherLine(number, raw)
    try:
        marker, i = _marker(s, i)
        end = i
        while end < len(s) and s[end] not in _WS:
            end += 1
        hosts = s[i:end]
        salt = hash_salt(hosts) if hosts.startswith("|") else None
        i = _skip_ws(s, end)
        if i == len(s) or s[i] == "#":
            raise _Bad("truncated before key type")
        written, key, i = _key(s, i)
    except _Bad as e:
        return BadLine(number, raw, str(e))
    # A CRLF file leaves "\r" at the end of each line (getline strips only "\n"): not comment text.
    return KeyLine(number, raw, marker, hosts, salt, written, key, s[i:].removesuffix("\r"))


def parse(data: bytes | str) -> KnownHosts:
    """Every line of a known_hosts file, in order."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    return KnownHosts(tuple(parse_line(n, raw) for n, raw in enumerate(split_lines(data), start=1)))
