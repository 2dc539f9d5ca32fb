"""The operator's "yes" before a command changes anything (remediate --apply, accept)."""

from __future__ import annotations

import sys
from typing import TextIO

from exporter.core.exitcodes import ERROR, FAILED


def confirm(verb: str, outcome: str, assume_yes: bool, out: TextIO) -> int | None:
    """None to go ahead; else the exit code. `verb` says what needs the yes ("delete",
    "record"), `outcome` what a refusal leaves ("nothing deleted"). Without a terminal and
    without --yes nothing happens: a pipe must not answer for the operator."""
    if assume_yes:
        return None
    if not sys.stdin.isatty():
        print(f"refusing to {verb} without confirmation: no terminal; pass --yes to confirm",
              file=sys.stderr)
        return ERROR
    print(f"Type 'yes' to {'run' if verb == 'delete' else verb} them: ", end="", file=out,
          flush=True)
    try:
        answer = sys.stdin.readline().strip().lower()
    except KeyboardInterrupt:
        answer = ""
    if answer != "yes":
        print(f"not confirmed; {outcome}", file=out)
        return FAILED
    return None
