"""Debian's OpenSSH server on loopback, as many as a test needs, each with its own host keys.

Each `Sshd` is `/usr/sbin/sshd -D -e -f CONFIG` on a free 127.0.0.1 port with host keys made
by `ssh-keygen` (no system sshd, no PAM, no pid file, no login possible: a host key check
needs none). Keys and CAs are made once per test session (`KeyStore`, RSA generation is the
slow part) and shared; a key rotated away is just another name in the store.

The variants the known_hosts tests need are `SshdKit` methods: every key type, a rotated key,
a removed key type, host certificates (from the test CA, from another CA, expired), a legacy
RHEL 6-era sshd, and a port that refuses connections. `ssh_verdict` asks Debian's own `ssh`
(batch mode, one known_hosts file, one key type) what it makes of a host: the oracle.

sshd run as root insists on its privilege separation directory (/run/sshd, which Debian's
service unit creates at boot and a container never boots): the kit creates it, empty, 0755.
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")
# known_hosts key type -> ssh-keygen arguments
KEYGEN = {
    "ssh-ed25519": ("-t", "ed25519"),
    "ecdsa-sha2-nistp256": ("-t", "ecdsa", "-b", "256"),
    "ecdsa-sha2-nistp384": ("-t", "ecdsa", "-b", "384"),
    "ecdsa-sha2-nistp521": ("-t", "ecdsa", "-b", "521"),
    "ssh-rsa": ("-t", "rsa", "-b", "2048"),  # 2048 bits: keygen time, not strength, matters here
    "ssh-dss": ("-t", "dsa"),  # off by default since OpenSSH 7.0; sshd serves it when asked
}
KEY_TYPES = tuple(t for t in KEYGEN if t != "ssh-dss")  # what Debian's sshd offers by default
CERT = "-cert-v01@openssh.com"
PRINCIPALS = ("127.0.0.1", "localhost")
# What RHEL 6's OpenSSH 5.3 offered that Debian 12's sshd still speaks when asked.
LEGACY_KEX = ("diffie-hellman-group14-sha1", "diffie-hellman-group-exchange-sha1")
LEGACY_HOST_KEY_ALGORITHMS = ("ssh-rsa",)


def run(*args: str | Path) -> str:
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True).stdout


@dataclass(frozen=True)
class KeyFile:
    """A key made by ssh-keygen: `path` the private half, `path.pub` the public line."""

    type: str
    path: Path

    @property
    def pub(self) -> Path:
        return Path(f"{self.path}.pub")

    @property
    def public(self) -> str:
        """`TYPE BASE64`, as a known_hosts line holds it."""
        return " ".join(self.pub.read_text().split()[:2])

    @property
    def blob(self) -> bytes:
        return base64.b64decode(self.public.split()[1])

    def fingerprint(self) -> str:
        """`SHA256:...` as `ssh-keygen -lf` prints it: the oracle, never our own code."""
        return run("ssh-keygen", "-lf", self.pub).split()[1]


@dataclass(frozen=True)
class CertFile:
    """A host certificate (`ssh-keygen -s CA -h`) for `key`, signed by `ca`."""

    key: KeyFile
    ca: KeyFile
    path: Path  # the -cert.pub file sshd's HostCertificate names

    @property
    def type(self) -> str:
        return self.key.type + CERT

    @property
    def blob(self) -> bytes:
        return base64.b64decode(self.path.read_text().split()[1])

    def fingerprint(self) -> str:
        return run("ssh-keygen", "-lf", self.path).split()[1]


class KeyStore:
    """Keys and certificates by name in one directory, made on first use and kept."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def key(self, key_type: str, name: str = "host") -> KeyFile:
        path = self.root / f"{name}-{key_type}"
        if not path.exists():
            run("ssh-keygen", "-q", *KEYGEN[key_type], "-N", "", "-C", f"{name}-{key_type}", "-f", path)
        return KeyFile(key_type, path)

    def ca(self, name: str) -> KeyFile:
        return self.key("ssh-ed25519", f"ca-{name}")

    def certify(self, key: KeyFile, ca: str, validity: str = "-1d:+3650d",
                principals: tuple[str, ...] = PRINCIPALS) -> CertFile:
        """`key`'s host certificate from CA `ca`; `validity` as `ssh-keygen -V` takes it."""
        stem = "".join(c if c.isalnum() else "_" for c in f"{key.path.name}-{ca}-{validity}-{principals}")
        path = self.root / f"{stem}-cert.pub"  # where ssh-keygen -s writes STEM.pub's certificate
        if not path.exists():
            (self.root / f"{stem}.pub").write_text(key.pub.read_text())
            run("ssh-keygen", "-q", "-s", self.ca(ca).path, "-h", "-I", f"{key.path.name}@{ca}",
                "-n", ",".join(principals), "-V", validity, self.root / f"{stem}.pub")
        return CertFile(key, self.ca(ca), path)


@dataclass
class Sshd:
    """One running sshd. `stale` are keys a known_hosts file would still hold for this host
    that it no longer presents (the rotated-away key, the removed type)."""

    port: int
    keys: tuple[KeyFile, ...]
    certs: tuple[CertFile, ...]
    config: Path
    log: Path
    process: subprocess.Popen[bytes]
    stale: tuple[KeyFile, ...] = ()
    host: str = "127.0.0.1"
    kex: tuple[str, ...] = ()
    host_key_algorithms: tuple[str, ...] = ()

    @property
    def known_hosts_host(self) -> str:
        return f"[{self.host}]:{self.port}"

    def key(self, key_type: str) -> KeyFile:
        return next(k for k in self.keys if k.type == key_type)

    def keyscan(self, key_type: str, cert: bool = False) -> str | None:
        """`ssh-keyscan -t TYPE` (with -c: certificates): the `TYPE BASE64` it prints, or None."""
        short = key_type.removeprefix("ssh-").removesuffix(CERT)
        short = "ecdsa" if short.startswith("ecdsa") else short
        args = ["ssh-keyscan", "-T", "5", "-t", short, "-p", str(self.port)]
        done = subprocess.run([*args, *(["-c"] if cert else []), self.host],
                              capture_output=True, text=True, timeout=30)
        for line in done.stdout.splitlines():  # `[host]:port TYPE KEY`; with -c `TYPE KEY`
            words = line.split()
            if key_type in words[:2] and not line.startswith("#"):
                i = words.index(key_type)
                return " ".join(words[i : i + 2])
        return None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


# What OpenSSH's client prints, in order of precedence, -> the kit's name for the outcome.
_SSH_SAYS = (
    ("REMOTE HOST IDENTIFICATION HAS CHANGED", "changed"),
    ("REVOKED HOST KEY DETECTED", "revoked"),
    ("Host key verification failed", "failed"),
    ("no matching host key type found", "no-common-type"),
    ("Connection refused", "unreachable"),
    ("Permission denied", "accepted"),  # authentication comes after the host key was accepted
)


def ssh_verdict(known_hosts: Path, host: str, port: int, key_type: str,
                options: tuple[str, ...] = ()) -> tuple[str, str]:
    """What Debian's `ssh` in batch mode, trusting exactly `known_hosts`, does with this host
    when it may only accept `key_type`: (outcome, stderr). Outcomes: accepted, changed,
    revoked, failed (no trusted key), no-common-type, unreachable, or `other`. No login is
    possible on a kit sshd, so "accepted" is the host key check passing, then Permission denied."""
    base = key_type.removesuffix(CERT)
    algorithms = [base] if base != "ssh-rsa" else ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]
    if base != key_type:
        algorithms = [a + CERT for a in algorithms]
    done = subprocess.run(
        ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
         "-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
         "-o", f"HostKeyAlgorithms={','.join(algorithms)}", "-o", "PubkeyAuthentication=no",
         "-o", "ConnectTimeout=5", *options, "-p", str(port), "-l", "nobody", host, "true"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    return next((name for text, name in _SSH_SAYS if text in done.stderr), "other"), done.stderr


def _config(port: int, keys: tuple[KeyFile, ...], certs: tuple[CertFile, ...],
            kex: tuple[str, ...], host_key_algorithms: tuple[str, ...], extra: tuple[str, ...]) -> str:
    lines = [
        *extra,  # first: sshd keeps the first value of a keyword, so `extra` overrides the rest
        f"ListenAddress 127.0.0.1:{port}",
        *(f"HostKey {k.path}" for k in keys),
        *(f"HostCertificate {c.path}" for c in certs),
        "PidFile none",
        "UsePAM no",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "AuthorizedKeysFile none",
        "StrictModes no",
        "MaxStartups 500",  # the benchmark's checks arrive back to back
        "LogLevel VERBOSE",
        *([f"KexAlgorithms {','.join(kex)}"] if kex else []),
        *([f"HostKeyAlgorithms {','.join(host_key_algorithms)}"] if host_key_algorithms else []),
    ]
    return "\n".join(lines) + "\n"


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5) as s:
        s.settimeout(2)
        return s.recv(64).startswith(b"SSH-")
    return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sshd(workdir: Path, keys: tuple[KeyFile, ...], certs: tuple[CertFile, ...] = (), *,
               kex: tuple[str, ...] = (), host_key_algorithms: tuple[str, ...] = (),
               extra: tuple[str, ...] = (), name: str = "sshd") -> Sshd:
    """Start sshd and wait until it sends its version line; a port lost to a race is retried."""
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", 0o755, exist_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)
    for attempt in range(5):
        port = _free_port()
        config = workdir / f"{name}.conf"
        config.write_text(_config(port, keys, certs, kex, host_key_algorithms, extra))
        log = workdir / f"{name}.log"
        with log.open("ab") as err:
            proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            if _answers(port):
                return Sshd(port, keys, certs, config, log, proc, kex=kex,
                            host_key_algorithms=host_key_algorithms)
            time.sleep(0.02)
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        if "Address already in use" not in log.read_text() or attempt == 4:
            raise RuntimeError(f"sshd did not start: {log.read_text()[-2000:]}")
    raise AssertionError("unreachable")


@dataclass
class SshdKit:
    """Starts sshd variants under `workdir`; `stop_all()` ends every one it started."""

    keys: KeyStore
    workdir: Path
    running: list[Sshd] = field(default_factory=list)
    _held: list[socket.socket] = field(default_factory=list)

    def start(self, key_types: tuple[str, ...] = KEY_TYPES, *, name: str = "host",
              certs: tuple[CertFile, ...] = (), **options: tuple[str, ...]) -> Sshd:
        keys = tuple(self.keys.key(t, name) for t in key_types)
        server = start_sshd(self.workdir, keys, certs, name=f"{name}-{len(self.running)}", **options)
        self.running.append(server)
        return server

    def every_type(self) -> Sshd:
        """ed25519, ecdsa 256/384/521 and rsa keys: all a Debian sshd offers."""
        return self.start(KEY_TYPES, name="every")

    def rotated(self, key_type: str = "ssh-ed25519") -> Sshd:
        """Presents a new `key_type` key; `stale` holds the one a known_hosts file trusted."""
        old = self.keys.key(key_type, "before-rotation")
        server = self.start((key_type,), name="after-rotation")
        server.stale = (old,)
        return server

    def removed_type(self, kept: str = "ssh-ed25519", removed: str = "ecdsa-sha2-nistp256") -> Sshd:
        """Had `kept` and `removed` keys; now presents only `kept` (`stale`: the removed key)."""
        server = self.start((kept,), name="removed-type")
        server.stale = (self.keys.key(removed, "removed-type"),)
        return server

    def certified(self, ca: str = "test-ca", validity: str = "-1d:+3650d",
                  key_type: str = "ssh-ed25519") -> Sshd:
        """A host key with its certificate from `ca` (another name: another CA; a `validity`
        in the past, e.g. 20200101:20200102: an expired certificate)."""
        cert = self.keys.certify(self.keys.key(key_type, f"cert-{ca}"), ca, validity)
        return self.start((key_type,), name=f"cert-{ca}", certs=(cert,))

    def legacy(self, kex: tuple[str, ...] = LEGACY_KEX) -> Sshd:
        """Only what RHEL 6's OpenSSH 5.3 offered: group14-sha1 / group-exchange-sha1, ssh-rsa."""
        return self.start(("ssh-rsa",), name="legacy", kex=kex,
                          host_key_algorithms=LEGACY_HOST_KEY_ALGORITHMS,
                          extra=("Ciphers aes128-ctr,aes256-ctr,aes128-cbc", "MACs hmac-sha1"))

    def unreachable(self) -> int:
        """A loopback port that refuses connections: bound, never listening, held until stop_all."""
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self._held.append(s)
        return int(s.getsockname()[1])

    def stop_all(self) -> None:
        for server in self.running:
            server.stop()
        for s in self._held:
            s.close()
        self.running.clear()
        self._held.clear()
