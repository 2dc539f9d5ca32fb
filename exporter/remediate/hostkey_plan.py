"""Remediation of known_hosts stores, planning (pure): which exact lines of which file are
proven stale, and the command that shows the host's key now.

Only a `mismatch` with evidence `stored` (the file holds the exact key and the host offered
that type with another key) is a stale line. The plan never adds a key: trusting the new one
stays a person's decision, after checking its fingerprint out of band. A host name that is not
a plain name or address never reaches a command line: its entry is skipped with the reason.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from exporter.config.model import Config
from exporter.core.model import Evidence, State
from exporter.fleet.report import Row
from exporter.sources.known_hosts.keys import canonical_type, key_fingerprint, plain_type
from exporter.sources.known_hosts.match import line_matches, lookup_name
from exporter.sources.known_hosts.parse import KeyLine, parse, parse_line, split_lines

# A host name (letters, digits, "-", "_", "."; no leading "-": it would be an option) or an
# address (IPv4, or IPv6 with an optional zone id). Nothing else reaches `ssh-keyscan`.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,252}\Z")
_IPV6 = re.compile(r"[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(%[A-Za-z0-9_.-]{1,64})?\Z")


class HostKeyPlanError(ValueError):
    """A stale line that cannot be removed safely (the file changed since it was judged)."""


def safe_host(host: str) -> bool:
    return bool(_NAME.match(host) or _IPV6.match(host))


def sha256_text(fingerprint: str | None) -> str | None:
    """`SHA256:` + unpadded base64, as `ssh-keygen -lf` prints it, from the hex digest the
    store and the probe hold (a value already in that form is kept)."""
    if fingerprint is None:
        return None
    if fingerprint.startswith("SHA256:"):
        return fingerprint
    try:
        digest = bytes.fromhex(fingerprint)
    except ValueError:
        return None
    if len(digest) != 32:
        return None
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True)
class StaleLine:
    """One line of a known_hosts file whose key the host no longer presents."""

    store: str
    entry: str  # "<host> <type>"
    line: int  # 1-based, as OpenSSH numbers it
    host: str
    port: int
    key_type: str
    stored_fingerprint: str  # hex SHA-256 of the stored key blob
    live_fingerprint: str | None  # SHA256:... of the key the host presents, when probed
    reason: str  # the verdict's sentence (peer text: render through visible)

    @property
    def stored_sha256(self) -> str:
        return sha256_text(self.stored_fingerprint) or self.stored_fingerprint

    @property
    def keyscan(self) -> str:
        """The command that shows the host's key of this type now (validated parts only)."""
        if not safe_host(self.host) or canonical_type(self.key_type) is None:
            raise HostKeyPlanError(f"refusing to build a command for {self.entry!r}")
        return f"ssh-keyscan -t {plain_type(self.key_type)} -p {int(self.port)} {self.host}"

    @property
    def lookup(self) -> str:
        return lookup_name(self.host, self.port)


@dataclass(frozen=True)
class FilePlan:
    store: str
    file: str | None  # where the store's file is (None: the configuration does not say)
    lines: tuple[StaleLine, ...]
    remote: bool = False  # the file is on the store's host (read and changed over SSH)


@dataclass(frozen=True)
class HostKeySkip:
    store: str
    entry: str
    why: str


@dataclass(frozen=True)
class HostKeyPlan:
    files: tuple[FilePlan, ...]
    skipped: tuple[HostKeySkip, ...] = ()

    @property
    def lines(self) -> tuple[StaleLine, ...]:
        return tuple(s for fp in self.files for s in fp.lines)


def _triage(r: Row) -> StaleLine | HostKeySkip | None:
    if r.state != State.MISMATCH.value:
        return None
    if r.evidence != Evidence.STORED.value or r.stored_fingerprint_sha256 is None:
        return HostKeySkip(r.store, r.entry, f"evidence {r.evidence}, not stored: no line is "
                                             "proven stale")
    if r.line is None or r.line < 1:
        return HostKeySkip(r.store, r.entry, "the store did not say which line holds it")
    if r.entry.startswith("@"):
        return HostKeySkip(r.store, r.entry, "a marker line (@cert-authority, @revoked) is "
                                             "never removed here: edit it by hand")
    if r.key_type is None or canonical_type(r.key_type) is None:
        return HostKeySkip(r.store, r.entry, "not a key type OpenSSH knows")
    if not safe_host(r.host) or not 0 < r.port < 65536:
        return HostKeySkip(r.store, r.entry, "the host is not a plain host name or address; "
                                             "no command is built from it")
    live = sha256_text(r.live_fingerprint_sha256)
    return StaleLine(r.store, r.entry, r.line, r.host, r.port, r.key_type,
                     r.stored_fingerprint_sha256, live, r.reason)


def hostkey_files(config: Config) -> dict[str, str | None]:
    """The known_hosts stores (`kind: known_hosts`) and the file each names."""
    return {s.name: getattr(s, "path", None) for s in config.stores
            if getattr(s, "kind", "pi") == "known_hosts"}


def remote_stores(config: Config) -> frozenset[str]:
    """The known_hosts stores whose file is on a remote host (read over the store's session)."""
    return frozenset(s.name for s in config.stores
                     if getattr(s, "kind", "pi") == "known_hosts" and getattr(s, "remote", False))


def make_hostkey_plan(items: Iterable[Row], files: Mapping[str, str | None],
                      store: str | None = None, entry: str | None = None,
                      remote: frozenset[str] = frozenset()) -> HostKeyPlan:
    """The stale lines of every known_hosts store (`files`: store -> its file; `remote`: the
    stores whose file is on their host), in file order. A store in `files` with nothing stale
    still gets its (empty) part."""
    by_store: dict[str, dict[int, StaleLine]] = {}
    skipped: list[HostKeySkip] = []
    for r in items:
        if not r.is_host_key or (store is not None and r.store != store):
            continue
        if entry is not None and r.entry != entry:
            continue
        got = _triage(r)
        if isinstance(got, HostKeySkip):
            skipped.append(got)
        elif got is not None:
            # One line can hold a host under two names (a resolved hashed line): remove it once.
            by_store.setdefault(r.store, {}).setdefault(got.line, got)
    names = [n for n in files if store is None or n == store]
    names += [n for n in by_store if n not in files]
    plans = tuple(
        FilePlan(n, files.get(n), tuple(sorted(by_store.get(n, {}).values(), key=lambda s: s.line)),
                 n in remote)
        for n in names
    )
    return HostKeyPlan(plans, tuple(skipped))


# ---- checking the file before it changes (pure) -----------------------------------------


def _key_line(data: bytes, number: int) -> KeyLine | None:
    lines = split_lines(data)
    if not 1 <= number <= len(lines):
        return None
    got = parse_line(number, lines[number - 1])
    return got if isinstance(got, KeyLine) else None


def check_line(data: bytes, s: StaleLine) -> str | None:
    """Why line `s.line` of `data` is not the stale line the plan judged (the file changed
    since), or None when it is: a key line, no marker, of that type, with that key, naming
    that host."""
    line = _key_line(data, s.line)
    if line is None:
        return f"line {s.line} is no longer a host key line"
    if line.marker:
        return f"line {s.line} now holds a {line.marker} line"
    if line.key_type != s.key_type:
        return f"line {s.line} now holds another key type"
    try:
        stored = bytes.fromhex(s.stored_fingerprint)
    except ValueError:
        return "the plan's stored fingerprint is not a SHA-256 digest"
    if hashlib.sha256(line.key.public).digest() != stored:  # as the Source hashes it
        return f"line {s.line} now holds another key"
    if not line_matches(line, s.lookup):
        return f"line {s.line} no longer names {s.lookup}"
    return None


def check_file(data: bytes, lines: Iterable[StaleLine]) -> list[str]:
    return [f"{why} (expected {s.entry})" for s in lines if (why := check_line(data, s))]


def _siblings(known_lines: Iterable[KeyLine], s: StaleLine) -> list[StaleLine]:
    """The other lines of the same entry (no marker, same type, naming the same host) whose key
    is not the one the host presents: stale as well, since OpenSSH reads them all."""
    out = []
    for line in known_lines:
        if (line.number == s.line or line.marker or line.key_type != s.key_type
                or not line_matches(line, s.lookup) or s.live_fingerprint is None
                or key_fingerprint(line.key) == s.live_fingerprint):
            continue
        out.append(StaleLine(s.store, s.entry, line.number, s.host, s.port, s.key_type,
                             hashlib.sha256(line.key.public).hexdigest(), s.live_fingerprint,
                             s.reason))
    return out


def with_file(fp: FilePlan, data: bytes) -> FilePlan:
    """The plan with what only the file shows: every further line of a stale entry (the Source
    names an entry by its first line; a file may hold the host's type twice, each with a key
    the host no longer presents), in file order, each once. Only when the host's live key is
    known: without it no other line is proven stale."""
    if not fp.lines:
        return fp
    keys = parse(data).key_lines
    found = {s.line: s for s in fp.lines}
    for s in fp.lines:
        for extra in _siblings(keys, s):
            found.setdefault(extra.line, extra)
    return FilePlan(fp.store, fp.file, tuple(found[n] for n in sorted(found)), fp.remote)
