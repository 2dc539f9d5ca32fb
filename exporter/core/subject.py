"""Certificate subjects: parse what PI prints, normalise, compare, format. Pure, no I/O.

PI prints stored subjects in two OpenSSL styles, depending on the OpenSSL it ships:

* 1.0 (PI 3.5 era):  `/C=US/ST=CA/O=Cisco Systems/CN=prime-pri`
* 1.1+ (PI 3.9 era): `C = US, ST = CA, O = "Cisco, Inc.", CN = prime-pri`

Both become one `Subject`: (name, value) pairs in DER order (the order printed), with
multi-valued RDNs (`+`) flattened into consecutive pairs.

Canonical attribute names are OpenSSL's own short names, spelled exactly as OpenSSL
spells them (C, ST, L, O, OU, CN, DC, SN, GN, UID, emailAddress, serialNumber, title,
...), so `format_subject` reproduces what a 1.0-era PI prints. Unknown alphabetic names
are upper-cased; unknown OIDs stay dotted. Names compare case-insensitively anyway.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

from exporter.core.model import Subject

if TYPE_CHECKING:  # cryptography.x509 loads `socket` (through email.utils): a probe's import
    from cryptography import x509


class SubjectError(ValueError):
    """Text that is not a subject in either OpenSSL print style."""


# (canonical, dotted OID, other spellings). Lookup is case-insensitive.
_ATTRIBUTES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("C", "2.5.4.6", ("countryName",)),
    ("ST", "2.5.4.8", ("stateOrProvinceName", "S")),
    ("L", "2.5.4.7", ("localityName",)),
    ("O", "2.5.4.10", ("organizationName",)),
    ("OU", "2.5.4.11", ("organizationalUnitName",)),
    ("CN", "2.5.4.3", ("commonName",)),
    ("emailAddress", "1.2.840.113549.1.9.1", ("email", "E")),
    ("DC", "0.9.2342.19200300.100.1.25", ("domainComponent",)),
    ("UID", "0.9.2342.19200300.100.1.1", ("userId",)),
    ("serialNumber", "2.5.4.5", ()),
    ("title", "2.5.4.12", ()),
    ("GN", "2.5.4.42", ("givenName",)),
    ("SN", "2.5.4.4", ("surname",)),
    ("street", "2.5.4.9", ("streetAddress",)),
    ("postalCode", "2.5.4.17", ()),
    ("initials", "2.5.4.43", ()),
    ("generationQualifier", "2.5.4.44", ()),
    ("x500UniqueIdentifier", "2.5.4.45", ()),
    ("dnQualifier", "2.5.4.46", ()),
    ("pseudonym", "2.5.4.65", ()),
    ("organizationIdentifier", "2.5.4.97", ()),
    ("businessCategory", "2.5.4.15", ()),
    ("jurisdictionL", "1.3.6.1.4.1.311.60.2.1.1", ("jurisdictionLocalityName",)),
    ("jurisdictionST", "1.3.6.1.4.1.311.60.2.1.2", ("jurisdictionStateOrProvinceName",)),
    ("jurisdictionC", "1.3.6.1.4.1.311.60.2.1.3", ("jurisdictionCountryName",)),
    ("unstructuredName", "1.2.840.113549.1.9.2", ()),
)

_BY_NAME: dict[str, str] = {}
_BY_OID: dict[str, str] = {}
for _canon, _oid, _aliases in _ATTRIBUTES:
    _BY_OID[_oid] = _canon
    _BY_NAME[_oid] = _canon
    for _alias in (_canon, *_aliases):
        _BY_NAME[_alias.lower()] = _canon

# `name =` at the cursor. ASCII classes on purpose: `\d` and `str.isalpha` accept
# non-ASCII digits/letters that no OpenSSL prints.
_KEY_RE = re.compile(
    r"[ \t]*(?:[Oo][Ii][Dd]\.)?([A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)+)[ \t]*="
)
_HEX = frozenset("0123456789abcdefABCDEF")


def canonical_name(name: str) -> str:
    """Canonical spelling of an attribute name or dotted OID (see module docstring)."""
    name = name.strip()
    if name[:4].lower() == "oid.":
        name = name[4:]
    known = _BY_NAME.get(name.lower())
    if known is not None:
        return known
    return name if name[:1].isdigit() else name.upper()


@functools.lru_cache(maxsize=65536)
def parse_subject(text: str) -> Subject:
    """Parse either OpenSSL print style into a normalised Subject; SubjectError if neither.
    Cached: a subject repeats across the stores that trust one peer and across re-reads,
    and one shared tuple is 6 strings per RDN less per entry (bench/run.py's scale scenario:
    13 MB)."""
    body = text.strip()
    if not body:
        raise SubjectError("empty subject")
    if body.startswith("/"):
        # 1.0 style: no quoting, `/` and `+` separate.
        pairs = _scan(body, 1, seps="/+", quotes=False)
    else:
        # 1.1+ style (also bare `CN=x`): `,` and `+` separate, values may be quoted.
        pairs = _scan(body, 0, seps=",+", quotes=True)
    return tuple(pairs)


def _scan(text: str, pos: int, *, seps: str, quotes: bool) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    while True:
        m = _KEY_RE.match(text, pos)
        if m is None:
            raise SubjectError(f"expected 'name=value' at offset {pos} in {text!r}")
        value, pos = _scan_value(text, m.end(), seps=seps, quotes=quotes)
        pairs.append((canonical_name(m.group(1)), value))
        if pos >= len(text):
            return pairs
        pos += 1  # the separator


class _Chars:
    """The decoded characters of one value. Consecutive hex escapes collect as bytes first:
    multi-byte UTF-8 arrives byte by byte."""

    __slots__ = ("out", "raw")

    def __init__(self) -> None:
        self.out: list[str] = []
        self.raw = bytearray()

    def byte(self, b: int) -> None:
        self.raw.append(b)

    def char(self, c: str) -> None:
        self.flush()
        self.out.append(c)

    def flush(self) -> None:
        if self.raw:
            try:
                self.out.append(self.raw.decode("utf-8"))
            except UnicodeDecodeError:
                self.out.append(self.raw.decode("latin-1"))  # 1.0 printed T61 bytes this way
            self.raw.clear()

    def text(self) -> str:
        self.flush()
        return "".join(self.out)


def _scan_value(text: str, pos: int, *, seps: str, quotes: bool) -> tuple[str, int]:
    """One unescaped, stripped value starting at pos; returns it and the separator's offset."""
    n = len(text)
    while pos < n and text[pos] in " \t":
        pos += 1
    quoted = quotes and pos < n and text[pos] == '"'
    if quoted:
        pos += 1
    chars = _Chars()
    while pos < n:
        c = text[pos]
        if c == "\\":
            pos = _scan_escape(text, pos, chars)
            continue
        if quoted:
            if c == '"':
                quoted = False
            else:
                chars.char(c)
            pos += 1
            continue
        # A separator only counts when another `name=` follows; otherwise it is part of
        # the value, which keeps unescaped `O=A/B Corp` or `O = Cisco, Inc` intact.
        if c in seps and _KEY_RE.match(text, pos + 1):
            break
        chars.char(c)
        pos += 1
    value = chars.text()
    if quoted:
        raise SubjectError(f"unterminated quote in {text!r}")
    return value.strip(), pos


def _scan_escape(text: str, pos: int, chars: _Chars) -> int:
    """The backslash escape at pos (1.0 `\\xC3`, RFC 2253 `\\C3`, or `\\c` for a literal c)
    into chars; returns the offset after it."""
    n = len(text)
    if pos + 1 >= n:
        raise SubjectError(f"dangling backslash at end of {text!r}")
    nxt = text[pos + 1]
    if nxt in "xX" and pos + 3 < n and {text[pos + 2], text[pos + 3]} <= _HEX:
        chars.byte(int(text[pos + 2 : pos + 4], 16))
        return pos + 4
    if pos + 2 < n and {nxt, text[pos + 2]} <= _HEX:
        chars.byte(int(text[pos + 1 : pos + 3], 16))
        return pos + 3
    chars.char(nxt)
    return pos + 2


def subject_from_name(name: x509.Name) -> Subject:
    """The Subject of a cryptography Name, normalised like parse_subject."""
    pairs: list[tuple[str, str]] = []
    for rdn in name.rdns:
        for attr in rdn:
            dotted = attr.oid.dotted_string
            value = attr.value
            text = value.hex() if isinstance(value, bytes) else value  # bytes: x500UniqueId
            pairs.append((_BY_OID.get(dotted, dotted), text.strip()))
    return tuple(pairs)


_PLUS_BEFORE_KEY = re.compile(r"\+(?=" + _KEY_RE.pattern + ")")


@functools.lru_cache(maxsize=65536)  # the same few subjects are printed for every entry, every build
def format_subject(subject: Subject) -> str:
    """OpenSSL 1.0 one-line style, escaped so that parse_subject reads it back unchanged."""
    parts = []
    for key, value in subject:
        escaped = value.replace("\\", "\\\\").replace("/", "\\/")
        # Only a `+` that looks like the start of another RDN is ambiguous.
        escaped = _PLUS_BEFORE_KEY.sub(r"\\+", escaped)
        parts.append(f"/{key}={escaped}")
    return "".join(parts)


def subjects_equal(a: Subject, b: Subject) -> bool:
    """Same attributes in the same (DER) order; names case-insensitive, values exact but
    for surrounding whitespace."""
    if len(a) != len(b):
        return False
    return all(
        canonical_name(ka).lower() == canonical_name(kb).lower() and va.strip() == vb.strip()
        for (ka, va), (kb, vb) in zip(a, b, strict=True)
    )


def common_name(subject: Subject) -> str | None:
    """The last CN: with several, the most specific one comes last in DER order."""
    for key, value in reversed(subject):
        if canonical_name(key) == "CN":
            return value
    return None
