"""The operators' audit log (`remediate --apply`, `accept`): append-only JSON lines, and who
the operator is.

The file is evidence, so it is opened like one: never through a symbolic link (O_NOFOLLOW: a
link planted at the log's path would append to, or create, whatever it points at), only a
regular file, owned by the user running the command or by root, writable by nobody else.
Every line is ASCII-escaped JSON: an operator's reason or a peer's subject may hold line
separators (U+2028), bidi overrides (U+202E) or C1 controls (U+009B, a terminal's CSI), and
none of them reaches the file raw, where `tail` or an editor would act on them.
"""

from __future__ import annotations

import json
import os
import pwd
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

AUDIT_NAME = "remediation-audit.jsonl"  # one audit log for every change an operator makes
_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class AuditError(Exception):
    """The audit log could not be opened or written; `lines` holds what it would have held
    (JSON, ASCII-escaped), for the operator to keep by other means."""

    def __init__(self, path: Path, error: OSError | str, lines: Sequence[str] = ()) -> None:
        why = error if isinstance(error, str) else (error.strerror or str(error))
        super().__init__(f"--audit.file {str(path)!r}: {why}")
        self.lines = list(lines)


def audit_path(audit_file: str | None, storage_path: str) -> Path:
    return Path(audit_file or Path(storage_path) / AUDIT_NAME)


def _unsafe(st: os.stat_result) -> str | None:
    """Why a file opened as the audit log must not take our lines, or None."""
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_uid not in (os.geteuid(), 0):
        return (f"owned by uid {st.st_uid}, neither the user running this command "
                f"(uid {os.geteuid()}) nor root: chown it or pass another --audit.file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022:
        return f"writable by group or others (mode {mode:04o}): chmod go-w it"
    return None


def _why_not(path: Path, e: OSError) -> str:
    """Why the audit log did not open, in the operator's terms."""
    try:
        st = os.lstat(path)
    except OSError:
        return e.strerror or str(e)
    if stat.S_ISLNK(st.st_mode):  # ELOOP from O_NOFOLLOW
        return "is a symbolic link; the audit log is never written through one (pass the real path)"
    if not stat.S_ISREG(st.st_mode):  # a FIFO without a reader: ENXIO
        return "not a regular file"
    return e.strerror or str(e)


def _open(path: Path) -> int:
    """The audit log, opened for appending (created 0640 when absent). Raises AuditError for
    a symbolic link, a file that is not regular, or one whose owner or mode let someone else
    rewrite it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, _FLAGS, 0o640)
    except OSError as e:
        raise AuditError(path, _why_not(path, e)) from None
    try:
        why = _unsafe(os.fstat(fd))
    except OSError as e:
        os.close(fd)
        raise AuditError(path, e) from None
    if why is not None:
        os.close(fd)
        raise AuditError(path, why)
    return fd


def check_audit(path: Path) -> None:
    """Before anything changes: the audit log can be created and appended to, safely."""
    os.close(_open(path))


def audit_line(record: dict[str, Any]) -> str:
    """One record, one line: ASCII-escaped JSON, keys sorted."""
    return json.dumps(record, sort_keys=True, ensure_ascii=True)


def append_audit(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Append-only JSON lines, flushed to disk before we go on to the next server."""
    lines = [audit_line(rec) for rec in records]
    data = "".join(ln + "\n" for ln in lines).encode("ascii")
    try:
        fd = _open(path)
    except AuditError as e:
        e.lines = lines
        raise
    try:
        view = memoryview(data)
        while view:  # a regular file takes it all at once; a full disk raises
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError as e:  # a full disk: nothing of the record may be lost
        raise AuditError(path, e, lines) from None
    finally:
        os.close(fd)


def report_lost_audit(e: AuditError, out: TextIO) -> None:
    print(f"{e}: the audit log could not be written; what it would hold follows, keep it:",
          file=out)
    for line in e.lines:
        print(f"  {line}", file=out)


@dataclass(frozen=True)
class Operator:
    """Who runs the command: the real uid's account name, never an environment variable.
    `via_sudo` is sudo's SUDO_USER, kept as extra information only: anyone can set it."""

    name: str
    via_sudo: str | None = None

    def __str__(self) -> str:
        return self.name + (f" (via sudo by {self.via_sudo})" if self.via_sudo else "")

    def audit_fields(self) -> dict[str, str]:
        return {"operator": self.name} | ({"via_sudo_by": self.via_sudo} if self.via_sudo else {})


def current_operator() -> Operator:
    uid = os.getuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:  # a uid with no account (a container's arbitrary uid)
        name = f"uid {uid}"
    return Operator(name, os.environ.get("SUDO_USER") or None)
