"""Peer- and PI-supplied text made safe to show to people.

Subjects, SANs, issuers, reasons and error strings come from PI servers and TLS peers: they may
hold newlines, carriage returns, ANSI escapes, bidi overrides. Shown raw, a subject with a
newline prints a line that looks like a real `deletecert` command. `visible` makes every such
character visible as an escape, so one value is always one line and reads as data.
"""

from __future__ import annotations

import re

# C0 controls, DEL, C1 controls; Unicode line/paragraph separators; bidi embeddings, overrides
# and isolates (U+202A-202E, U+2066-2069) and the implicit marks (U+200E, U+200F, U+061C);
# zero-width characters that hide content (U+200B-200D, U+2060, U+FEFF).
_UNSAFE = re.compile(
    "[\\\\\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\u200b-\u200f\u061c\u2060\ufeff]"
)
_NAMED = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(m: re.Match[str]) -> str:
    c = m.group()
    named = _NAMED.get(c)
    if named is not None:
        return named
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}"


def visible(value: str) -> str:
    """`value` with every control, separator and bidi character shown as a backslash escape
    (backslash itself doubled, so the escaping is unambiguous). Plain text passes unchanged."""
    return _UNSAFE.sub(_escape, value)


def is_plain(value: str) -> bool:
    """True when `visible` would leave `value` unchanged."""
    return _UNSAFE.search(value) is None
