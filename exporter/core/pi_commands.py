"""The PI admin CLI commands the exporter runs, and the grammar of the keys they take. Pure.

One definition: the store reader, the remediation plan and the entry views all build their
command text here, so a key can only ever become the single argument of one command.
"""

from __future__ import annotations

import re

LISTCERTS = "ncs certvalidation tofu-certs listcerts"
DELETECERT = "ncs certvalidation tofu-certs deletecert host"
# The listcerts key grammar (exporter.sources.prime.listing): address or name, `_`, port. Nothing
# that a CLI could read as a second word or a second command: no space, `;`, newline.
KEY_RE = re.compile(r"(?:\[[A-Za-z0-9._:%-]+\]|[A-Za-z0-9._:%-]+)_[0-9]{1,5}")


def is_key(key: str) -> bool:
    return KEY_RE.fullmatch(key) is not None


def deletecert(key: str) -> str:
    """The fix for one entry. Only for a key inside the grammar (see `is_key`)."""
    return f"{DELETECERT} {key}"
