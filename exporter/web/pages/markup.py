"""Pure: text to inert HTML for the pages. Every function runs its input through `visible`
and HTML escaping first; what it adds afterwards is markup of ours (<wbr>, <code>), never
anything taken from the text."""

from __future__ import annotations

import html
import re

from exporter.core.text import visible

# Where a key, endpoint or subject may wrap: after a separator (127.0.0.12_8443 wraps after
# "_" or a ".", CN=a,O=b after ","), not in the middle of a part.
_SEPARATOR = re.compile(r"([._:/=,@-])")
HEX_GROUP = 8  # a 64-digit fingerprint wraps in groups of 8 digits


def inert(value: object) -> str:
    """Peer/PI text -> one escaped line of inert HTML."""
    return html.escape(visible(str(value)), quote=True)


def breakable(value: object) -> str:
    """`inert`, with a line-break opportunity after each separator. <wbr> adds no character:
    what a click selects and a copy pastes is the text as it is."""
    return _SEPARATOR.sub(r"\1<wbr>", inert(value))


def hex_groups(value: object) -> str:
    """`inert`, with a line-break opportunity every HEX_GROUP characters (a fingerprint)."""
    text = visible(str(value))
    return "<wbr>".join(html.escape(text[i:i + HEX_GROUP], quote=True)
                        for i in range(0, len(text), HEX_GROUP))


def with_code(value: object) -> str:
    """`inert`, with each `backticked` span shown as <code> (our own help text quotes commands
    that way); unbalanced backticks stay as they are."""
    parts = visible(str(value)).split("`")
    if len(parts) % 2 == 0:
        return inert(value)
    return "".join(f"<code>{html.escape(p, quote=True)}</code>" if i % 2 else html.escape(p, quote=True)
                   for i, p in enumerate(parts))
