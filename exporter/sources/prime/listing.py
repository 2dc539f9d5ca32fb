"""Parse `ncs certvalidation tofu-certs listcerts` output into a Listing. Pure, no I/O.

The text arrives from an SSH transport that has already removed the command echo and
the prompt, but PTY debris survives: CR/CRLF line ends, ANSI escapes, `--More--` pager
remnants, banners, the header and the trailing prompt. Entry lines look like

    host=10.0.0.1_8082;  subject= /C=US/ST=CA/O=Cisco Systems/CN=prime-pri
    host=10.0.0.5_443; subject=CN = kong

parse_listing never raises: a line that looks like an entry but does not parse ends up
in Listing.bad_lines, so a format change on some PI version shows up as a metric instead
of entries silently disappearing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from exporter.core.endpoint import format_endpoint as endpoint_of  # noqa: F401  (re-export)
from exporter.core.model import Listing, StoredEntry, Subject
from exporter.core.subject import SubjectError, parse_subject

# CSI (colours, erase line), OSC (window title), then any other two-byte ESC sequence
# (ESC 7 / ESC 8 save and restore the cursor, ESC = / ESC > keypad modes; not lower-case
# Fs: a stray ESC before `host=` must not take its `h`).
# None of them may span a line end, so garbage cannot swallow the next entry.
_ANSI_RE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b\r\n]*(?:\x07|\x1b\\)?"
    r"|\x1b[0-?@-Z\\-_]"
)
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # everything C0 but TAB
# A pager prompt left at the start of the next line, with the backspaces/spaces that
# erased it: " --More-- \b\b\b\b\b\b\b\b\b\b          \b\b\b...host=...".
_MORE_RE = re.compile(
    r"^[\s\x08]*-{2,}[ \t]*More[ \t]*(?:\([^)\r\n]*\)[ \t]*)?-{2,}[\s\x08]*", re.I
)
_HOST_START_RE = re.compile(r"host[ \t]*=", re.I)
_ENTRY_RE = re.compile(
    r"host[ \t]*=[ \t]*(?P<key>[^;\s]*)(?:[ \t]*;[ \t]*|[ \t]+)subject[ \t]*=(?P<subject>.*)",
    re.I | re.S,
)
# A DNS name is at most 253 characters; with `_<port>` a real key fits in 260. Longer is
# junk, and would become an unbounded label value.
MAX_KEY = 260
_HOST_RE = re.compile(r"[A-Za-z0-9._:%-]+")  # IPv4, IPv6 (with zone id), DNS names, `_`
_BRACKETED_RE = re.compile(r"\[(?P<host>[^\]]+)\]_(?P<port>[0-9]+)")
_PORT_RE = re.compile(r"[0-9]{1,5}")


def parse_listing(text: str) -> Listing:
    """All entries in print order, plus every line that looked like an entry but was not."""
    return parse_capped(text, None)[0]


def parse_capped(text: str, limit: int | None) -> tuple[Listing, int]:
    """The first `limit` entries (all when None) and how many valid entries came after them.

    Entries past the cap are validated and counted, never kept: a 100,000-entry store read
    with max_entries 5000 holds 5000 parsed entries, not 100,000. Identical subject
    attributes (O=Cisco Systems, C=US...) and identical subjects share one object across
    entries, so a big store costs a fraction of one tuple per attribute per entry.
    """
    return _parse(text, limit, [])


def _parse(text: str, limit: int | None, numbers: list[int]) -> tuple[Listing, int]:
    """parse_capped, appending the line number of each bad line to `numbers`."""
    entries: list[StoredEntry] = []
    bad: list[str] = []
    seen: set[str] = set()
    beyond = 0
    shared = _Shared()
    for number, raw_line in numbered(text):
        line = _clean(raw_line)
        if not line:
            continue
        if not _HOST_START_RE.match(line):
            # Banners, header, prompt: ignored unless they mention entry syntax, which
            # would mean an entry we failed to recognise.
            lowered = line.lower()
            if "host=" in lowered or "subject=" in lowered:
                bad.append(line)
                numbers.append(number)
            continue
        entry = _parse_entry(line, shared)
        if entry is None or entry.key in seen:
            bad.append(line)
            numbers.append(number)
            continue
        if limit is not None and len(entries) >= limit:
            beyond += 1  # not remembered: a repeated key past the cap counts twice
            continue
        seen.add(entry.key)
        entries.append(entry)
    return Listing(entries=tuple(entries), bad_lines=tuple(bad)), beyond


def cli_error(text: str) -> str | None:
    """The first line of an IOS-style CLI error (`% Invalid input detected ...`, what a login
    whose role may not run the command gets), or None. Only asked of a listing without
    entries: read as an empty store, an error would drop every baseline of the store."""
    for _, raw in numbered(text):
        line = _clean(raw)
        if line.startswith("%"):
            return line
    return None


def numbered(text: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) as the parser splits `text` into lines."""
    return enumerate(_lines(text), 1)


def parse_numbered(text: str) -> tuple[Listing, tuple[int, ...]]:
    """parse_listing, plus the number (as `numbered` counts) of each of its bad_lines."""
    numbers: list[int] = []
    return _parse(text, None, numbers)[0], tuple(numbers)


_BLOCK = 1 << 20


def _lines(text: str) -> Iterator[str]:
    """text.splitlines(), one block of about 1 MB at a time: a 10 MB listing never becomes
    one list of 200,000 strings. Blocks end just after a \n, where splitlines splits too
    (\r\n, its only two-character line end, ends with the \n)."""
    start, n = 0, len(text)
    while start < n:
        end = text.find("\n", start + _BLOCK)
        end = n if end < 0 else end + 1
        yield from text[start:end].splitlines()
        start = end


def _clean(line: str) -> str:
    line = _ANSI_RE.sub("", line)
    line = _MORE_RE.sub("", line)
    return _CONTROL_RE.sub("", line).strip()


class _Shared:
    """One object per distinct value within one listing: stores repeat O, OU, C, ST, L in
    every entry, and HA peers repeat whole subjects."""

    def __init__(self) -> None:
        self.rdns: dict[tuple[str, str], tuple[str, str]] = {}
        self.subjects: dict[Subject, Subject] = {}
        self.texts: dict[str, str] = {}

    def subject(self, subject: Subject) -> Subject:
        subject = tuple(self.rdns.setdefault(rdn, rdn) for rdn in subject)
        return self.subjects.setdefault(subject, subject)


def _parse_entry(line: str, shared: _Shared | None = None) -> StoredEntry | None:
    m = _ENTRY_RE.fullmatch(line)
    if m is None:
        return None
    key = m.group("key")
    if len(key) > MAX_KEY:
        return None
    hostport = _split_key(key)
    if hostport is None:
        return None
    subject_text = m.group("subject").strip()
    try:
        subject = parse_subject(subject_text)
    except SubjectError:
        return None
    host, port = hostport
    if shared is not None:
        subject = shared.subject(subject)
        subject_text = shared.texts.setdefault(subject_text, subject_text)
    return StoredEntry(key=key, host=host, port=port, subject_text=subject_text, subject=subject)


def _split_key(key: str) -> tuple[str, int] | None:
    """`addr_port` -> (addr, port). The port follows the LAST underscore, because host
    names may contain underscores and IPv6 addresses contain colons, not underscores."""
    bracketed = _BRACKETED_RE.fullmatch(key)
    if bracketed is not None:
        host, port_text = bracketed.group("host"), bracketed.group("port")
    else:
        host, sep, port_text = key.rpartition("_")
        if not sep:
            return None
    if not _HOST_RE.fullmatch(host) or not _PORT_RE.fullmatch(port_text):
        return None
    port = int(port_text)
    if not 1 <= port <= 65535:
        return None
    return host, port
