"""Pure: PI log text -> how many `TOFU failed` records name each common name.

The record (domain.md) ends its first paragraph with
`... different from what was used earlier` and the peer's subject on the next line,
Java style: `- CN=prime-sec, OU=Prime Infra, ...`. "is configure" is Cisco's grammar.
"""

from __future__ import annotations

import re
from collections import Counter

_RECORD = re.compile(r"TOFU failed\.")
_SUBJECT = re.compile(r"different from what was used earlier\s*-\s*(?P<subject>[^\n]*)")
_CN = re.compile(r"(?:^|,)\s*CN\s*=\s*(?P<cn>(?:\\.|[^,\\])*)", re.IGNORECASE)


def tofu_failures(text: str) -> Counter[str]:
    """Common name -> number of TOFU-failed records naming it. Never raises."""
    counts: Counter[str] = Counter()
    starts = [m.start() for m in _RECORD.finditer(text)]
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(text)
        m = _SUBJECT.search(text, start, end)
        if m is None:
            continue
        cn = _CN.search(m.group("subject"))
        if cn is not None:
            counts[cn.group("cn").strip().replace("\\", "")] += 1
    return counts
