"""An automation host's SSH targets on loopback, and the known_hosts file it trusts them by.

The demo's second trust-on-first-use store: an Ansible/CI box whose known_hosts learnt three
hosts' keys, after which
- web1 was reinstalled: it presents a new ed25519 key (the file's line is stale: `mismatch`);
- db1 was upgraded and dropped its ecdsa-sha2-nistp256 key: its ed25519 line still matches, the
  ecdsa line is a stale line of a type no longer offered (`unknown`);
- git is unchanged, its line hashed (`HashKnownHosts yes`): found only through a `resolve:` name.

Each host is Debian's `/usr/sbin/sshd -D -f CONFIG` where the machine has it (real OpenSSH, as
the tests' oracle), else an asyncssh server presenting the same keys; `backend` says which.
No login is possible on either: a host key check needs none.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import asyncssh

SSHD = Path("/usr/sbin/sshd")
SSHD_BACKEND, ASYNCSSH_BACKEND = "sshd", "asyncssh"
KNOWN_HOSTS_NAME = "automation_known_hosts"


@dataclass
class SshHost:
    """One SSH target: the keys it presents now, and the ones the file trusts from before."""

    name: str
    host: str
    port: int
    keys: dict[str, asyncssh.SSHKey]  # key type -> the key presented now
    stale: dict[str, asyncssh.SSHKey]  # key type -> a key the file holds that it no longer presents
    process: subprocess.Popen[bytes] | None = None
    server: asyncssh.SSHAcceptor | None = None

    @property
    def lookup(self) -> str:
        """The name ssh looks the host up by, and writes into known_hosts."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def line(self, key_type: str, *, stale: bool = False, hashed: bool = False) -> str:
        key = (self.stale if stale else self.keys)[key_type]
        public = key.export_public_key("openssh").decode().split()[:2]
        return f"{_hashed(self.lookup) if hashed else self.lookup} {' '.join(public)}"

    async def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                await asyncio.to_thread(self.process.wait, 5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                await asyncio.to_thread(self.process.wait, 5)
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@dataclass
class AutomationHosts:
    hosts: dict[str, SshHost]
    known_hosts_file: Path
    backend: str  # SSHD_BACKEND or ASYNCSSH_BACKEND
    workdir: Path

    @property
    def resolve(self) -> list[str]:
        """The names a store config lists so that the hashed line is found (`resolve:`)."""
        return [self.hosts["git"].lookup]

    async def stop(self) -> None:
        await asyncio.gather(*(h.stop() for h in self.hosts.values()), return_exceptions=True)


def _hashed(name: str) -> str:
    """`|1|salt|hash` as ssh writes it with HashKnownHosts (HMAC-SHA1 of the lookup name)."""
    salt = secrets.token_bytes(20)
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _answers(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), 0.5) as s:
        s.settimeout(2)
        return s.recv(64).startswith(b"SSH-")
    return False


def _write_key(path: Path, key: asyncssh.SSHKey) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # sshd refuses readable keys
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.export_private_key("openssh"))


def _sshd_config(host: str, port: int, keys: list[Path]) -> str:
    return "\n".join([
        f"ListenAddress {host}:{port}", *(f"HostKey {k}" for k in keys), "PidFile none",
        "UsePAM no", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "AuthorizedKeysFile none", "StrictModes no", "LogLevel INFO", "",
    ])


def _start_sshd(h: SshHost, workdir: Path, fixed: bool) -> None:
    """sshd on the host's address, on its port when free, else on a free one."""
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", 0o755, exist_ok=True)  # privilege separation directory
    paths = []
    for key_type, key in h.keys.items():
        path = workdir / f"{h.name}-{key_type}"
        _write_key(path, key)
        paths.append(path)
    for attempt in range(5):
        port = h.port if fixed and attempt == 0 else _free_port(h.host)
        config = workdir / f"{h.name}-sshd.conf"
        config.write_text(_sshd_config(h.host, port, paths))
        log = workdir / f"{h.name}-sshd.log"
        with log.open("ab") as err:
            proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            if _answers(h.host, port):
                h.port, h.process = port, proc
                return
            time.sleep(0.02)
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        if "Address already in use" not in log.read_text():
            raise OSError(f"sshd for {h.name} did not start: {log.read_text()[-500:]}")
    raise OSError(f"sshd for {h.name}: no free port")


async def _start_asyncssh(h: SshHost, fixed: bool) -> None:
    ports = ([h.port] if fixed else []) + [0]
    for port in ports:
        try:
            h.server = await asyncssh.create_server(
                asyncssh.SSHServer, h.host, port, server_host_keys=list(h.keys.values()),
                password_auth=False, kbdint_auth=False, public_key_auth=False)
        except OSError:
            continue
        h.port = h.server.sockets[0].getsockname()[1]
        return
    raise OSError(f"no port for {h.name}")


def _hosts() -> dict[str, SshHost]:
    ed = "ssh-ed25519"
    ec = "ecdsa-sha2-nistp256"
    gen = asyncssh.generate_private_key
    return {
        # Reinstalled: a new ed25519 key; the file still holds the one from before.
        "web1": SshHost("web1", "127.0.0.41", 2241, {ed: gen(ed)}, {ed: gen(ed)}),
        # Upgraded: the ecdsa key is gone, the ed25519 key kept.
        "db1": SshHost("db1", "127.0.0.42", 2242, {ed: gen(ed)}, {ec: gen(ec)}),
        "git": SshHost("git", "127.0.0.43", 2243, {ed: gen(ed)}, {}),
    }


def known_hosts_text(hosts: dict[str, SshHost]) -> str:
    web1, db1, git = hosts["web1"], hosts["db1"], hosts["git"]
    return "\n".join([
        "# automation host: the hosts the nightly jobs reach (learnt on first use)",
        web1.line("ssh-ed25519", stale=True),
        db1.line("ssh-ed25519"),
        db1.line("ecdsa-sha2-nistp256", stale=True),
        "# git, written hashed (HashKnownHosts yes)",
        git.line("ssh-ed25519", hashed=True),
        "",
    ])


async def start_automation_hosts(workdir: Path, *, fixed_ports: bool = True,
                                 backend: str | None = None) -> AutomationHosts:
    """Start the three hosts (real sshd where /usr/sbin/sshd exists, unless `backend` says
    otherwise) and write the automation host's known_hosts file under `workdir`."""
    workdir.mkdir(parents=True, exist_ok=True)
    backend = backend or (SSHD_BACKEND if SSHD.exists() else ASYNCSSH_BACKEND)
    hosts = _hosts()
    lab = AutomationHosts(hosts, workdir / KNOWN_HOSTS_NAME, backend, workdir)
    try:
        for h in hosts.values():
            if backend == SSHD_BACKEND:
                await asyncio.to_thread(_start_sshd, h, workdir, fixed_ports)
            else:
                await _start_asyncssh(h, fixed_ports)
    except BaseException:
        await lab.stop()
        raise
    lab.known_hosts_file.write_text(known_hosts_text(hosts))
    os.chmod(lab.known_hosts_file, 0o600)
    return lab
