"""Helpers for the web tests: the real exporter with extra flags, a start-time descriptor limit,
or sockets passed as systemd would; raw idle connections; self-signed client certificates;
bcrypt hashes as the exporter-toolkit writes them."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any

import bcrypt

from tests.kit.processes import Exporter

# Runs the exporter after setting its descriptor limit and, for socket activation, moving a
# listening socket to fd 3 and naming this very process in LISTEN_PID (exec keeps the pid).
_WRAPPER = """
import os, resource, sys
soft, hard = (int(x) for x in sys.argv[1].split(","))
if soft:
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
fd = int(sys.argv[2])
if fd >= 0:
    os.dup2(fd, 3)
    os.environ["LISTEN_FDS"] = "1"
    os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.executable, [sys.executable, *sys.argv[3:]])
"""


class WebExporter(Exporter):
    """`python -m exporter serve` with extra web flags; optionally a start-time RLIMIT_NOFILE
    (soft, hard) as systemd's default gives, and a listening socket passed as fd 3."""

    def __init__(self, config: Path, workdir: Path, *extra: str, nofile: tuple[int, int] = (0, 0),
                 listen_sock: socket.socket | None = None, **kw: Any) -> None:
        super().__init__(config, workdir, **kw)
        self.extra = list(extra)
        self.nofile = nofile
        self.listen_sock = listen_sock
        self.url_override: str | None = None  # poll another port (the health port) at start
        if listen_sock is not None:
            self.port = listen_sock.getsockname()[1]

    @property
    def url(self) -> str:
        return self.url_override or super().url

    def args(self) -> list[str]:
        base = super().args()
        if self.listen_sock is not None:
            i = base.index("--web.listen-address")
            del base[i:i + 2]
        fd = self.listen_sock.fileno() if self.listen_sock is not None else -1
        return [sys.executable, "-c", _WRAPPER, f"{self.nofile[0]},{self.nofile[1]}", str(fd),
                *base[1:], *self.extra]

    def spawn_kwargs(self) -> dict[str, Any]:
        if self.listen_sock is None:
            return {}
        return {"pass_fds": (self.listen_sock.fileno(),)}

    def open_fds(self) -> int:
        assert self.proc is not None
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))


def listening_socket() -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(128)
    return s


def idle_connections(port: int, n: int) -> list[socket.socket]:
    """n connections that send nothing (connect() completes in the kernel's backlog)."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        socks.append(s)
    return socks


def raise_own_nofile(need: int) -> bool:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= need


def toolkit_hash(password: str) -> str:
    """What `htpasswd -nBC 10` writes, the exporter-toolkit's documented way: $2y$."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(10)).decode().replace("$2b$", "$2y$", 1)
