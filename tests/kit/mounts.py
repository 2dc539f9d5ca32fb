"""Real tmpfs mounts for storage-fault tests: a read-only volume, a disk that fills up.

Permission bits do not stop root (the CI runs as root), a read-only or full file system
does. Tests that need a mount skip when the process may not mount (not root, no
CAP_SYS_ADMIN), saying so.
"""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


@contextmanager
def tmpfs(where: Path, options: str) -> Iterator[Path]:
    """Mount a fresh tmpfs with `options` (e.g. "ro" or "size=256k") at `where`."""
    where.mkdir(parents=True, exist_ok=True)
    done = _mount("-t", "tmpfs", "-o", options, "tmpfs", str(where))
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


def remount(where: Path, options: str) -> None:
    done = _mount("-o", f"remount,{options}", str(where))
    assert done.returncode == 0, done.stderr


def fill(path: Path) -> int:
    """Write zeros to `path` until the file system says it is full; the bytes written."""
    written = 0
    chunk = b"\0" * 65536
    with path.open("wb", buffering=0) as f:
        while True:
            try:
                written += f.write(chunk) or 0
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                if len(chunk) == 1:
                    return written
                chunk = chunk[: len(chunk) // 2]
