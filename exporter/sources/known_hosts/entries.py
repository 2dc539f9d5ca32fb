"""One entry per (host, key type) of a known_hosts file: what the exporter probes and judges.

An entry's key is the host as the file writes it (as the resolve list names it, for a hashed or
pattern line), a space, and the key type: `[10.0.0.5]:2222 ssh-ed25519`. Lines with a marker
keep it in front, as the file does: `@cert-authority web1.example.com ssh-ed25519` (the CA's key
type) and `@revoked ...`; a revoked entry is never probed, it constrains the others.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporter.sources.known_hosts.keys import key_fingerprint
from exporter.sources.known_hosts.match import Unresolved, lookup_name, resolve, split_lookup
from exporter.sources.known_hosts.parse import REVOKE_MARKER, BadLine, KeyLine, KnownHosts, parse


@dataclass(frozen=True)
class Entry:
    key: str
    host: str  # as written (or as resolved)
    port: int
    lookup: str  # the string ssh looks the host up by
    marker: str
    key_type: str
    lines: tuple[KeyLine, ...]  # every line behind this entry, in file order

    @property
    def line_numbers(self) -> tuple[int, ...]:
        return tuple(line.number for line in self.lines)

    @property
    def blobs(self) -> tuple[bytes, ...]:
        return tuple(line.key.blob for line in self.lines)

    @property
    def fingerprints(self) -> tuple[str, ...]:
        """The stored keys' fingerprints as `ssh-keygen -lf` prints them."""
        return tuple(key_fingerprint(line.key) for line in self.lines)

    @property
    def probed(self) -> bool:
        return self.marker != REVOKE_MARKER


@dataclass(frozen=True)
class Store:
    entries: tuple[Entry, ...]
    unresolved: tuple[Unresolved, ...]
    bad: tuple[BadLine, ...]

    def for_lookup(self, lookup: str) -> tuple[Entry, ...]:
        """Every entry (all markers) of one host as ssh looks it up: what `verdict.judge` takes."""
        return tuple(e for e in self.entries if e.lookup == lookup)


def entry_key(host: str, key_type: str, marker: str = "") -> str:
    return f"{marker} {host} {key_type}" if marker else f"{host} {key_type}"


def build(known: KnownHosts, names: tuple[str, ...] = ()) -> Store:
    """Group the resolved key lines by (lookup string, marker, key type), in file order."""
    resolution = resolve(known, names)
    grouped: dict[tuple[str, str, str], tuple[str, list[KeyLine]]] = {}
    for line, hosts in resolution.named:
        for host in hosts:
            parts = split_lookup(host)
            assert parts is not None  # resolve names only strings ssh looks up
            lookup = lookup_name(*parts)
            group = grouped.setdefault((lookup, line.marker, line.key_type), (host, []))
            if line not in group[1]:
                group[1].append(line)
    entries = []
    for (lookup, marker, key_type), (host, lines) in grouped.items():
        name, port = split_lookup(host) or (host, 22)
        entries.append(Entry(entry_key(host, key_type, marker), name, port, lookup, marker, key_type,
                             tuple(lines)))
    return Store(tuple(entries), resolution.unresolved, known.bad_lines)


def load(data: bytes | str, names: tuple[str, ...] = ()) -> Store:
    """Parse a file's bytes and build its entries."""
    return build(parse(data), names)
