"""A known_hosts file with exact lines removed, every other byte kept.

Like `ssh-keygen -R` (known_hosts_find_delete writes every kept line back as it read it), with one
difference on purpose: ssh-keygen writes each kept line with "\\n", so a file whose last line had
no newline gains one; here that line stays as it was. CRLF survives either way (getline keeps the
"\\r"). The I/O (temporary file, FILE.old, mode and owner, rename) is the caller's.
"""

from __future__ import annotations

from collections.abc import Iterable


def remove_lines(data: bytes, numbers: Iterable[int]) -> bytes:
    """`data` without the lines numbered `numbers` (1-based, as OpenSSH numbers them). A number
    that is not a line of the file is an error: nothing is removed on a guess."""
    drop = set(numbers)
    pieces = data.split(b"\n")
    # pieces[i] is line i+1 with its "\n" dropped; a file ending in "\n" leaves an empty last piece
    # that is no line.
    count = len(pieces) - 1 if pieces[-1] == b"" else len(pieces)
    missing = sorted(n for n in drop if not 1 <= n <= count)
    if missing:
        raise ValueError(f"no such line: {', '.join(map(str, missing))} (the file has {count} lines)")
    kept = [piece + b"\n" for n, piece in enumerate(pieces[:count], start=1) if n not in drop]
    out = b"".join(kept)
    if count == len(pieces) and count not in drop:
        out = out[:-1]  # the last line had no "\n": keep it so
    return out
