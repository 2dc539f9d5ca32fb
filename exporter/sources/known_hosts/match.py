"""Which lines of a known_hosts file apply to a host, as OpenSSH's client looks them up.

The client looks a host up by one string (get_hostfile_hostname_ipaddr / put_host_port): the
host name, lowercased by ssh, or `[host]:port` when the port is not 22. A hashed line matches
when HMAC-SHA1(salt, that string) gives the line's hash (match_maybe_hashed, host_hash); any other
line when the string matches its comma-separated patterns (match_hostname, match_pattern_list,
match_pattern: `*`, `?`, `!` negation, ASCII case folded). CheckHostIP is off by default since
OpenSSH 8.5, so only the host string is looked up; a caller that wants the address checked too
looks it up as a second string.

Which hosts a file names: a literal pattern names itself; hashed lines and wildcard or negated
patterns name only those strings of the store's `resolve:` list that they match, as
`ssh-keygen -F NAME` finds them. A line that names no host is returned as unresolved.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from exporter.sources.known_hosts.parse import HASH_MAGIC, KeyLine, KnownHosts

DEFAULT_PORT = 22
_SUBPATTERN_MAX = 1024  # match_pattern_list's `char sub[1024]`


def _lower(s: bytes) -> bytes:
    return s.lower()  # bytes.lower folds ASCII only, as C's tolower in the C locale


def match_pattern(s: bytes, pattern: bytes) -> bool:
    """match_pattern: `*` any run, `?` any one byte, all else literal. The C code recurses (and can
    take exponential time on a hostile line); this greedy walk with one backtrack point answers
    the same for every input, in O(len(s) * len(pattern))."""
    si = pi = 0
    star_pi, star_si = -1, 0
    while si < len(s):
        if pi < len(pattern) and pattern[pi] == 0x2A:  # '*'
            star_pi, star_si = pi, si
            pi += 1
        elif pi < len(pattern) and pattern[pi] in (0x3F, s[si]):  # '?' or the same byte
            si += 1
            pi += 1
        elif star_pi >= 0:
            star_si += 1
            si, pi = star_si, star_pi + 1
        else:
            return False
    return all(c == 0x2A for c in pattern[pi:])


def match_pattern_list(s: bytes, patterns: bytes, dolower: bool) -> int:
    """match_pattern_list: -1 if a negated subpattern matches, 1 if a plain one does, else 0. A
    subpattern of 1023 bytes or more ends the walk with 0, as the C buffer check does."""
    got_positive = 0
    i, n = 0, len(patterns)
    while i < n:
        negated = patterns[i] == 0x21  # '!'
        if negated:
            i += 1
        end = patterns.find(b",", i)
        end = n if end < 0 else end
        sub = patterns[i:end]
        if len(sub) >= _SUBPATTERN_MAX - 1:
            return 0
        i = end + 1 if end < n else end
        if match_pattern(s, _lower(sub) if dolower else sub):
            if negated:
                return -1
            got_positive = 1
    return got_positive


def match_hostname(host: str, patterns: str) -> int:
    """match_hostname: the host lowercased against the patterns lowercased."""
    return match_pattern_list(_lower(_b(host)), _b(patterns), True)


def _b(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def host_hash(name: str, salt: bytes) -> str:
    """host_hash: `|1|` base64(salt) `|` base64(HMAC-SHA1(salt, name))."""
    digest = hmac.new(salt, _b(name), hashlib.sha1).digest()
    return HASH_MAGIC + base64.b64encode(salt).decode() + "|" + base64.b64encode(digest).decode()


def lookup_name(host: str, port: int = DEFAULT_PORT) -> str:
    """put_host_port: the string the client looks a host up by (host lowercased, as ssh does)."""
    host = host.encode("utf-8", "surrogateescape").lower().decode("utf-8", "surrogateescape")
    return host if port in (0, DEFAULT_PORT) else f"[{host}]:{port}"


def split_lookup(name: str) -> tuple[str, int] | None:
    """(host, port) of a lookup string; None for a string the client never looks up: `[h]:22`
    (put_host_port writes port 22 bare), a bad port, brackets without a port, an empty name."""
    if name.startswith("["):
        close = name.find("]:")
        host, port_text = name[1:close], name[close + 2 :]
        if close < 2 or not port_text.isdigit() or port_text != str(int(port_text)):
            return None
        port = int(port_text)
        if not 0 < port < 65536 or port == DEFAULT_PORT or "[" in host or "]" in host:
            return None
        return host, port
    if not name or "[" in name or "]" in name:
        return None
    return name, DEFAULT_PORT


def line_matches(line: KeyLine, lookup: str) -> bool:
    """match_maybe_hashed(lookup, hosts) == 1: a hashed field is compared whole to the hash of the
    lookup string; a pattern field must match it with no negation matching."""
    if line.salt is not None:
        return hmac.compare_digest(_b(host_hash(lookup, line.salt)), _b(line.hosts))
    return match_hostname(lookup, line.hosts) == 1


def lines_for(known: KnownHosts, lookup: str) -> tuple[KeyLine, ...]:
    """load_hostkeys: every key line (any marker) that applies to the lookup string, in file order."""
    return tuple(line for line in known.key_lines if line_matches(line, lookup))


@dataclass(frozen=True)
class Unresolved:
    """A key line that names no host the exporter can probe, and why."""

    line: KeyLine
    reason: str


@dataclass(frozen=True)
class Resolution:
    named: tuple[tuple[KeyLine, tuple[str, ...]], ...]  # each line with the lookup strings it names
    unresolved: tuple[Unresolved, ...]


def _literals(line: KeyLine) -> list[str]:
    """The non-negated patterns without wildcards, as written, that the line itself matches."""
    out = []
    for sub in line.hosts.split(","):
        wild = not sub or sub[0] == "!" or "*" in sub or "?" in sub
        if not wild and match_hostname(sub, line.hosts) == 1:
            out.append(sub)
    return out


# A resolve name as the lookup walks it: (name as written, its lookup string and that string's
# bytes), or (name, None, b"") for a name ssh never looks up.
_Candidate = tuple[str, str | None, bytes]


def _candidates(names: Iterable[str]) -> list[_Candidate]:
    out: list[_Candidate] = []
    for name in names:
        parts = split_lookup(name)
        lookup = lookup_name(*parts) if parts is not None else None
        out.append((name, lookup, _b(lookup) if lookup is not None else b""))
    return out


def _hash_matcher(line: KeyLine) -> Callable[[bytes], bool]:
    """match_maybe_hashed for a hashed line, its hash decoded once: HMAC-SHA1(salt, lookup)
    compared to it (1,000 hashed lines x 1,000 resolve names: one HMAC each, no base64)."""
    assert line.salt is not None
    salt = line.salt
    try:
        want = base64.b64decode(line.hosts.rsplit("|", 1)[1], validate=True)
    except (ValueError, IndexError):
        return lambda _: False
    # HMAC (RFC 2104) from two SHA-1 states keyed once: OpenSSL 3's one-shot HMAC costs 2.5 us
    # a call in set-up alone, copying a keyed hash state 0.3 us.
    key = salt.ljust(64, b"\0")  # a 20-byte salt: shorter than SHA-1's block, padded
    inner = hashlib.sha1(bytes(b ^ 0x36 for b in key))
    outer = hashlib.sha1(bytes(b ^ 0x5C for b in key))

    def matches(lookup: bytes) -> bool:
        i, o = inner.copy(), outer.copy()
        i.update(lookup)
        o.update(i.digest())
        return hmac.compare_digest(o.digest(), want)
    return matches


def _resolve_line(line: KeyLine, resolve: list[_Candidate]) -> tuple[list[str], str]:
    named: list[str] = []
    seen: set[str] = set()
    skipped = ""
    hashed = _hash_matcher(line) if line.hashed else None
    candidates = ([] if line.hashed else _candidates(_literals(line))) + resolve
    for name, lookup, raw in candidates:
        if lookup is None:
            skipped = f"{name!r} is not a name ssh looks up"
            continue
        if lookup in seen:
            continue
        if not (hashed(raw) if hashed is not None else line_matches(line, lookup)):
            continue
        seen.add(lookup)
        named.append(name)  # as written: the entry's key shows the host as the file or config does
    if named:
        return named, ""
    if line.hashed:
        return [], "hashed host matches no name of the resolve list"
    return [], skipped or "pattern matches no name of the resolve list"


def resolve(known: KnownHosts, names: tuple[str, ...] = ()) -> Resolution:
    """The lookup strings each key line names: its literal hosts as written, and the `names`
    (host, address or `[host]:port`) that its hash or patterns match."""
    named: list[tuple[KeyLine, tuple[str, ...]]] = []
    unresolved: list[Unresolved] = []
    candidates = _candidates(names)  # each name split and lowered once, not once per line
    for line in known.key_lines:
        hosts, reason = _resolve_line(line, candidates)
        if hosts:
            named.append((line, tuple(hosts)))
        else:
            unresolved.append(Unresolved(line, reason))
    return Resolution(tuple(named), tuple(unresolved))
