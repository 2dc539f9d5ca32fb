"""Checks on files that hold secrets (passwords, private keys, TLS keys)."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def loose_permissions(path: str | Path, what: str = "file") -> str | None:
    """A one-line warning when a secret file is accessible by group or others, as OpenSSH
    refuses an unprotected private key; None when it is not (or cannot be examined: whoever
    reads the file reports that). The warning names the file and its mode, never the content.
    """
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None
    if not mode & 0o077:
        return None
    return (f"{what} {str(path)!r} is accessible by group or others (mode {mode:04o}); "
            f"it holds a secret: chmod 600 it")
