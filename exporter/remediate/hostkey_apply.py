"""Remediation of known_hosts stores, the I/O edge: remove exactly the stale lines of a file,
local or on the store's host (over SFTP, or a POSIX shell where the host has no SFTP subsystem),
atomically, as `ssh-keygen -R` does, and audit it.

The file is read again and each planned line checked (same number, type, key and host) before
anything changes; a file that changed since it was judged is left alone. The new file is written
beside the old one with its mode and owner, FILE.old becomes a hard link to the file as it was
(ssh-keygen's `link(file, file.old)`), and a rename puts the new one in place: a reader sees the
old file or the new one, never half of either. Nothing here adds a key.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import posixpath
import secrets
import shlex
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

from exporter.core.model import ErrorReason
from exporter.core.text import visible
from exporter.remediate.hostkey_plan import FilePlan, HostKeyPlan, StaleLine, check_file
from exporter.sources.known_hosts.rewrite import remove_lines
from exporter.sources.known_hosts.source import cat_file, sftp_file
from exporter.sources.prime.ssh import StoreReadError, exit_problem
from exporter.store.audit import AuditError, Operator, append_audit, current_operator


@dataclass(frozen=True)
class FileOutcome:
    plan: FilePlan
    ok: bool  # the lines are gone and FILE.old holds the file as it was
    detail: str
    old: str | None = None  # the FILE.old path, when written


def _write_beside(real: Path, data: bytes, st: os.stat_result) -> str:
    """A temporary file in the same directory holding `data`, with the original's mode and
    owner, synced; its path."""
    fd, tmp = tempfile.mkstemp(dir=real.parent, prefix=f".{real.name}.")
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fchmod(fd, st.st_mode & 0o7777)
        if (st.st_uid, st.st_gid) != (os.getuid(), os.getgid()):
            os.fchown(fd, st.st_uid, st.st_gid)  # PermissionError when we may not: nothing changes
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    return tmp


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_lines(fp: FilePlan) -> FileOutcome:
    """One file: check, write beside, link FILE.old, rename. Every failure is an outcome with
    the reason, and leaves the file as it was."""
    if not fp.lines:
        return FileOutcome(fp, True, "nothing to remove")
    if not fp.file:
        return FileOutcome(fp, False, "the configuration names no local file for this store")
    real = Path(os.path.realpath(fp.file))  # a symlinked known_hosts: change the file it names
    tmp: str | None = None
    try:
        st = os.stat(real)
        data = real.read_bytes()
        problems = check_file(data, fp.lines)
        if problems:
            return FileOutcome(fp, False, "the file changed since it was judged: "
                               + "; ".join(problems) + "; nothing removed")
        tmp = _write_beside(real, remove_lines(data, [s.line for s in fp.lines]), st)
        if real.read_bytes() != data:  # written to meanwhile (ssh adding a host): start over
            return FileOutcome(fp, False, "the file changed while it was rewritten; nothing removed")
        old = real.with_name(real.name + ".old")
        old.unlink(missing_ok=True)
        os.link(real, old)
        os.replace(tmp, real)
        tmp = None
        _sync_dir(real.parent)
    except (OSError, ValueError) as e:
        return FileOutcome(fp, False, f"{type(e).__name__}: {e}; nothing removed")
    finally:
        if tmp is not None:
            os.unlink(tmp)
    return FileOutcome(fp, True, f"removed {len(fp.lines)} line(s); the file as it was is {old}",
                       str(old))


# ---- the same over SFTP (a known_hosts file on the store's host) ----------------------------

async def _sftp_write_beside(sftp: asyncssh.SFTPClient, real: str, data: bytes,
                             st: asyncssh.SFTPAttrs) -> str:
    """A new file beside `real` holding `data`, with its mode and owner; its path."""
    tmp = posixpath.join(posixpath.dirname(real), f".{posixpath.basename(real)}.{secrets.token_hex(6)}")
    mode = (st.permissions or 0o600) & 0o7777
    async with sftp.open(tmp, "xb", asyncssh.SFTPAttrs(permissions=0o600)) as f:
        await f.write(data)
        with contextlib.suppress(asyncssh.SFTPOpUnsupported):  # fsync@openssh.com where offered
            await f.fsync()
    try:
        await sftp.chmod(tmp, mode)
        got = await sftp.stat(tmp)
        if st.uid is not None and (got.uid, got.gid) != (st.uid, st.gid):
            await sftp.chown(tmp, st.uid, st.gid or 0)
    except BaseException:
        await sftp.remove(tmp)
        raise
    return tmp


async def remove_stale_lines_sftp(fp: FilePlan, sftp: asyncssh.SFTPClient) -> FileOutcome:
    """`remove_stale_lines` for a file on the store's host: the same checks, FILE.old as a
    hard link (hardlink@openssh.com), the new file renamed over the old (posix-rename@)."""
    assert fp.file  # HostKeyApplier._remove
    tmp: str | None = None
    try:
        real = await sftp.realpath(fp.file)
        real = real if isinstance(real, str) else real.decode()
        st = await sftp.stat(real)
        data = await sftp_file(sftp, real)
        problems = check_file(data, fp.lines)
        if problems:
            return FileOutcome(fp, False, "the file changed since it was judged: "
                               + "; ".join(problems) + "; nothing removed")
        tmp = await _sftp_write_beside(sftp, real, remove_lines(data, [s.line for s in fp.lines]), st)
        if await sftp_file(sftp, real) != data:
            return FileOutcome(fp, False, "the file changed while it was rewritten; nothing removed")
        old = real + ".old"
        if await sftp.exists(old):
            await sftp.remove(old)
        await sftp.link(real, old)
        await sftp.posix_rename(tmp, real)
        tmp = None
    except StoreReadError as e:
        return FileOutcome(fp, False, f"{visible(e.message)}; nothing removed")
    except (asyncssh.SFTPError, asyncssh.Error, OSError, ValueError) as e:
        why = e.reason if isinstance(e, asyncssh.SFTPError) else str(e)
        return FileOutcome(fp, False, f"{type(e).__name__}: {visible(why)}; nothing removed")
    finally:
        if tmp is not None:
            with contextlib.suppress(asyncssh.SFTPError, asyncssh.Error, OSError):
                await sftp.remove(tmp)
    return FileOutcome(fp, True, f"removed {len(fp.lines)} line(s); the file as it was is {old}",
                       old)


# ---- the same with a POSIX shell, for a host without an SFTP subsystem ----------------------

# Run as `sh -c SCRIPT sh PATH SHA256`, the new file on stdin. The same steps as over SFTP: a
# copy beside the file keeps its mode and owner (cp -p), the new bytes go into it, the file is
# checked unchanged (the sha256 of what was judged) right before FILE.old is linked and the copy
# renamed over it. A copy whose owner could not be kept is removed: nothing changes. Exit 3:
# the file changed; 4: the owner could not be kept.
_SHELL_REWRITE = r"""set -eu
real=$(readlink -f -- "$1")
tmp=$(mktemp "$(dirname -- "$real")/.$(basename -- "$real").XXXXXXXXXX")
trap 'rm -f -- "$tmp"' EXIT
cp -p -- "$real" "$tmp"
[ "$(stat -c %u:%g -- "$tmp")" = "$(stat -c %u:%g -- "$real")" ] || exit 4
cat >"$tmp"
sync -- "$tmp" 2>/dev/null || sync
set -- "$(sha256sum <"$real")" "$2"
[ "${1%% *}" = "$2" ] || exit 3
rm -f -- "$real.old"
ln -- "$real" "$real.old"
mv -f -- "$tmp" "$real"
trap - EXIT
printf '%s' "$real.old"
"""
_SHELL_EXIT = {3: "the file changed while it was rewritten",
               4: "the file's owner could not be kept for the new file"}
SHELL_TIMEOUT = 60.0


async def remove_stale_lines_shell(fp: FilePlan, conn: asyncssh.SSHClientConnection) -> FileOutcome:
    """`remove_stale_lines` for a file on a host without SFTP: read with `cat`, checked here as
    every other file is, then the rewrite above in one exec channel."""
    assert fp.file  # HostKeyApplier._remove
    try:
        async with asyncio.timeout(SHELL_TIMEOUT):
            data = await cat_file(conn, fp.file)
            problems = check_file(data, fp.lines)
            if problems:
                return FileOutcome(fp, False, "the file changed since it was judged: "
                                   + "; ".join(problems) + "; nothing removed")
            new = remove_lines(data, [s.line for s in fp.lines])
            command = (f"sh -c {shlex.quote(_SHELL_REWRITE)} sh {shlex.quote(fp.file)} "
                       f"{hashlib.sha256(data).hexdigest()}")
            done = await conn.run(command, input=new, encoding=None, check=False)
    except TimeoutError:
        return FileOutcome(fp, False, f"no answer within {SHELL_TIMEOUT:g}s; nothing removed "
                           "unless the host finished after that (FILE.old tells)")
    except StoreReadError as e:
        return FileOutcome(fp, False, f"{visible(e.message)}; nothing removed")
    except (asyncssh.Error, OSError, ValueError) as e:
        return FileOutcome(fp, False, f"{type(e).__name__}: {visible(str(e))}; nothing removed")
    return _rewritten(fp, done)


def _text(value: bytes | str | None) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value or ""


def _rewritten(fp: FilePlan, done: asyncssh.SSHCompletedProcess) -> FileOutcome:
    """The outcome the shell rewrite reported; whatever the host printed is made visible."""
    problem = exit_problem(done.exit_status, done.exit_signal)
    if problem is not None and problem[0] is ErrorReason.CONNECT:
        return FileOutcome(fp, False, "the rewrite's channel closed without an exit status: "
                           f"whether it ran is unknown ({visible(fp.file or '')}.old tells, on the host)")
    if problem is not None:
        why = _SHELL_EXIT.get(done.exit_status or 0) or visible(_text(done.stderr).strip()[:300])
        return FileOutcome(fp, False, f"{why or 'the rewrite failed'} (the rewrite {problem[1]}); "
                           "nothing removed")
    old = _text(done.stdout)
    return FileOutcome(fp, True, f"removed {len(fp.lines)} line(s); the file as it was is "
                       f"{visible(old)}", old)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# The store's SSH connection, for a file on its host (the CLI opens the store's own session,
# host key verified).
ConnectionOpener = Callable[[str], Awaitable[asyncssh.SSHClientConnection]]


@dataclass
class HostKeyApplier:
    audit_file: Path
    reason: str | None
    operator: Operator = field(default_factory=current_operator)
    say: Callable[[str], None] = print
    audit_errors: list[AuditError] = field(default_factory=list)
    connect: ConnectionOpener | None = None

    async def _remove(self, fp: FilePlan) -> FileOutcome:
        if not fp.remote:
            return await asyncio.to_thread(remove_stale_lines, fp)
        if not fp.file:
            return FileOutcome(fp, False, "the configuration names no file for this store")
        if self.connect is None:
            return FileOutcome(fp, False, "no SSH session for this store's host; nothing removed")
        try:
            conn = await self.connect(fp.store)
        except (asyncssh.Error, OSError) as e:
            return FileOutcome(fp, False, f"no SSH session for this store's host "
                               f"({visible(str(e))}); nothing removed")
        try:
            client = await conn.start_sftp_client()
        except (asyncssh.ChannelOpenError, asyncssh.SFTPError):
            # No SFTP subsystem (the Source reads such a file with `cat` too): the shell.
            return await remove_stale_lines_shell(fp, conn)
        try:
            return await remove_stale_lines_sftp(fp, client)
        finally:
            client.exit()

    async def apply(self, plan: HostKeyPlan) -> list[FileOutcome]:
        """File by file; no further file once the audit log could not be written."""
        outcomes = []
        for fp in plan.files:
            if not fp.lines:
                continue
            if self.audit_errors:
                outcomes.append(FileOutcome(fp, False, "not run: the audit log could not be written"))
                continue
            got = await self._remove(fp)
            self.say(f"{visible(fp.store)}: {visible(got.detail)}")
            outcomes.append(got)
            try:
                append_audit(self.audit_file, (self._record(got, s) for s in fp.lines))
            except AuditError as e:
                self.audit_errors.append(e)
        return outcomes

    def _record(self, o: FileOutcome, s: StaleLine) -> dict[str, Any]:
        return {
            "time": _now(), "unix_time": round(time.time(), 3), **self.operator.audit_fields(),
            "store": s.store, "entry": s.entry, "file": o.plan.file, "line": s.line,
            "host": s.host, "port": s.port, "key_type": s.key_type, "evidence": "stored",
            "evidence_reason": s.reason, "reason": self.reason, "action": "remove known_hosts line",
            "stored_fingerprint": s.stored_sha256, "live_fingerprint": s.live_fingerprint,
            "result": "removed" if o.ok else "failed", "detail": o.detail, "old_file": o.old,
        }
