"""The known_hosts Source: an OpenSSH known_hosts file, local or on a remote host over SSH.

`read()` gives one StoredEntry per (host, key type) (entries.build: hashed lines and patterns
resolved against the store's `resolve:` list), each keyed `"<host> <type>"` with its first line
number and the hex SHA-256 of its key blob; lines that do not parse (`bad_lines`) and lines that
name no host to probe (`unresolved`) are counted and shown with their line numbers, never fatal.
The parsed file rides along in the listing (KnownHostsListing.known): the verdict
(sources.known_hosts.judge) decides each host's entries together, @revoked lines included.

A remote file is read over the store's SSH session (host key verified against its own
`known_hosts`, as for PI): SFTP first, `cat` where the server has no SFTP subsystem.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shlex
import stat
import time
from dataclasses import dataclass

import asyncssh

from exporter.config.model import StoreConfig
from exporter.core.endpoint import ANY_CERTIFICATE, hostkey_endpoint
from exporter.core.model import ErrorReason, Listing, StoredEntry, StoreRead
from exporter.sources.known_hosts.entries import Entry, Store, load
from exporter.sources.known_hosts.parse import CA_MARKER
from exporter.sources.prime.ssh import PiSession, StoreReadError, exit_problem
from exporter.sources.seam import Offload

PROBER = "ssh_hostkey"
# A known_hosts file of 100,000 hosts is about 20 MB; one larger is not a known_hosts file.
MAX_FILE_BYTES = 64 << 20


@dataclass(frozen=True, slots=True)
class KnownHostsListing(Listing):
    """A Listing with the parsed file behind it (None only for an empty file)."""

    known: Store | None = None


def stored_entry(entry: Entry) -> StoredEntry:
    """What the generic parts show and record: the stored fingerprint(s) as the entry's subject
    text (`ssh-keygen -lf` form), the first line's key as `stored_fingerprint` (hex)."""
    first = entry.lines[0]
    return StoredEntry(
        key=entry.key, host=entry.host, port=entry.port,
        subject_text=", ".join(dict.fromkeys(entry.fingerprints)), subject=(),
        stored_fingerprint=hashlib.sha256(first.key.public).hexdigest(),
        key_type=entry.key_type, line=first.number,
    )


def probe_variant(entry: StoredEntry) -> str:
    """What to ask the host for: the entry's key type, or any host certificate for a CA line."""
    return ANY_CERTIFICATE if entry.key.startswith(CA_MARKER + " ") else entry.key_type


def entry_endpoint(entry: StoredEntry) -> str:
    """The probe endpoint of a known_hosts entry: "host:port TYPE" (core.endpoint)."""
    return hostkey_endpoint(entry.host, entry.port, probe_variant(entry))


def listing_of(data: bytes, resolve: tuple[str, ...], max_entries: int) -> tuple[KnownHostsListing, int]:
    """Pure: the file's bytes -> its listing (capped at `max_entries`) and how many entries the
    cap left out. A @revoked entry is not listed: it is never probed, it constrains the others."""
    known = load(data, resolve)
    probed = [e for e in known.entries if e.probed]
    listed = tuple(stored_entry(e) for e in probed[:max_entries])
    bad = tuple(f"line {b.number}: {b.shown[:200]} ({b.reason})" for b in known.bad)
    unresolved = tuple(f"line {u.line.number}: {u.line.hosts[:200]} {u.line.key_type} ({u.reason})"
                       for u in known.unresolved)
    return KnownHostsListing(listed, bad, unresolved, known), max(len(probed) - max_entries, 0)


def read_local(path: str, limit: int = MAX_FILE_BYTES) -> bytes:
    """The file's bytes, read bounded (a FIFO without a writer reads as empty, never hangs)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    with open(fd, "rb", buffering=0, closefd=True) as f:
        os.set_blocking(fd, True)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise StoreReadError(ErrorReason.COMMAND, f"{path} is not a regular file")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise StoreReadError(ErrorReason.PARSE, f"{path} is larger than {limit >> 20} MiB")
    return data


class KnownHostsSource:
    """The Source seam (sources.seam) for one `kind: known_hosts` store."""

    prober = PROBER

    def __init__(self, cfg: StoreConfig, offload: Offload | None = None,
                 session: PiSession | None = None) -> None:
        """`offload`: where the parse runs (a worker thread by default); `session`: the
        store's SSH session for a remote file (made on first use when not given)."""
        self.cfg = cfg
        self.capped = 0  # entries beyond max_entries at the last read
        self._offload = offload
        self._session = session

    async def read(self) -> StoreRead:
        cfg = self.cfg
        start = time.perf_counter()
        try:
            data = await (self._remote() if cfg.remote else self._local())
            # about 100 bytes a line; parsing hashes every hashed line once per resolve name
            if self._offload is not None:
                parsed = await self._offload(len(data) // 100, listing_of, data, cfg.resolve,
                                             cfg.max_entries)
            else:
                parsed = await asyncio.to_thread(listing_of, data, cfg.resolve, cfg.max_entries)
            listing, self.capped = parsed
        except StoreReadError as e:
            return StoreRead(cfg.name, False, None, time.perf_counter() - start, time.time(),
                             e.reason, e.message)
        return StoreRead(cfg.name, True, listing, time.perf_counter() - start, time.time(),
                         beyond=self.capped)

    async def _local(self) -> bytes:
        path = self.cfg.path or ""
        try:
            return await asyncio.to_thread(read_local, path)
        except OSError as e:
            raise StoreReadError(ErrorReason.COMMAND, f"cannot read {path}: {e.strerror or e}") from None

    async def _remote(self) -> bytes:
        if self._session is None:
            self._session = PiSession(self.cfg)
        path = self.cfg.path or ""
        conn = await self._session.connection()
        try:
            async with asyncio.timeout(self.cfg.command_timeout):
                try:
                    return await _sftp_read(conn, path)
                except (asyncssh.ChannelOpenError, asyncssh.SFTPOpUnsupported,
                        asyncssh.SFTPError) as e:
                    if isinstance(e, asyncssh.SFTPNoSuchFile | asyncssh.SFTPPermissionDenied):
                        raise StoreReadError(ErrorReason.COMMAND,
                                             f"cannot read {path}: {e.reason}") from None
                # No SFTP subsystem: `cat` on an exec channel; the path is the operator's.
                return await cat_file(conn, path)
        except TimeoutError:
            await self.close()
            raise StoreReadError(ErrorReason.TIMEOUT,
                                 f"no complete file within {self.cfg.command_timeout:g}s") from None
        except (asyncssh.Error, OSError) as e:
            await self.close()
            raise StoreReadError(ErrorReason.CONNECT, f"connection lost: {e}") from None

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


async def cat_file(conn: asyncssh.SSHClientConnection, path: str,
                   limit: int = MAX_FILE_BYTES) -> bytes:
    """A file read with `cat` on an exec channel (a host without SFTP), at most `limit` bytes
    held: a host that streams without end is cut off, not buffered. Whole only with exit
    status 0: a channel closed without one may have been cut at any line."""
    proc: asyncssh.SSHClientProcess[bytes] = await conn.create_process(
        f"cat -- {shlex.quote(path)}", encoding=None, stderr=asyncssh.DEVNULL)
    chunks: list[bytes] = []
    size = 0
    try:
        while chunk := await proc.stdout.read(1 << 16):
            size += len(chunk)
            if size > limit:
                raise StoreReadError(ErrorReason.PARSE, f"{path} is larger than {limit >> 20} MiB")
            chunks.append(chunk)
        await proc.wait_closed()
    finally:
        proc.close()
    problem = exit_problem(proc.exit_status, proc.exit_signal)
    if problem is not None:
        raise StoreReadError(problem[0], f"cat {path} {problem[1]}")
    return b"".join(chunks)


async def sftp_file(sftp: asyncssh.SFTPClient, path: str, limit: int = MAX_FILE_BYTES) -> bytes:
    """A file read over SFTP, at most `limit` bytes held (as `cat_file`)."""
    async with sftp.open(path, "rb") as f:
        data = await f.read(limit + 1)
    if len(data) > limit:
        raise StoreReadError(ErrorReason.PARSE, f"{path} is larger than {limit >> 20} MiB")
    return data if isinstance(data, bytes) else data.encode("utf-8", "surrogateescape")


async def _sftp_read(conn: asyncssh.SSHClientConnection, path: str) -> bytes:
    async with conn.start_sftp_client() as sftp:
        return await sftp_file(sftp, path)
