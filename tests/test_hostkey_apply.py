"""`remediate --apply` on a known_hosts file (exporter.remediate.hostkey_apply), with Debian's
`ssh-keygen -R HOST -f COPY` as the oracle: on a copy of a real-looking file (comments, hashed
lines, a `name,address` line, a CRLF line, a @cert-authority line, mode 0600, another owner)
the exporter's removal of the stale lines leaves exactly the bytes ssh-keygen leaves."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import pwd
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from exporter.remediate.hostkey_apply import FileOutcome, HostKeyApplier, remove_stale_lines
from exporter.remediate.hostkey_plan import FilePlan, HostKeyPlan, StaleLine
from exporter.sources.known_hosts.match import host_hash
from exporter.store.audit import Operator

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs Debian's ssh-keygen"),
]


def keygen(tmp: Path, name: str, kind: str = "ed25519") -> tuple[str, bytes]:
    """A fresh host key: (`type base64` as a .pub holds it, the blob)."""
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "", "-f", str(tmp / name)],
                   check=True)
    typ, b64 = (tmp / f"{name}.pub").read_text().split()[:2]
    return f"{typ} {b64}", base64.b64decode(b64)


def real_looking(tmp: Path) -> tuple[bytes, dict[str, tuple[int, str, int, str, bytes]]]:
    """A file as years of ssh use leave it; and the stale lines: name -> (line, host, port, type, blob)."""
    k = {n: keygen(tmp, n) for n in ("web1", "db1", "git", "jump", "ca")}
    rsa = keygen(tmp, "jumprsa", "rsa")
    salt = bytes(range(7, 27))
    lines = [
        b"# ansible controller: hosts we talk to",
        f"web1.example.com,10.0.0.11 {k['web1'][0]}".encode(),            # 2: stale (rotated)
        f"{host_hash('[db1.example.com]:2222', salt)} {k['db1'][0]}".encode(),  # 3: stale, hashed
        b"",
        f"github.com {k['git'][0]} github".encode(),
        f"jump.example.com {k['jump'][0]}\r".encode(),                     # CRLF, kept as is
        f"jump.example.com {rsa[0]}".encode(),
        f"@cert-authority *.example.com {k['ca'][0]}".encode(),
        b"# end",
        b"",
    ]
    stale = {
        "web1.example.com": (2, "web1.example.com", 22, "ssh-ed25519", k["web1"][1]),
        "[db1.example.com]:2222": (3, "db1.example.com", 2222, "ssh-ed25519", k["db1"][1]),
    }
    return b"\n".join(lines), stale


def plan_for(path: Path, stale: dict[str, tuple[int, str, int, str, bytes]]) -> FilePlan:
    lines = tuple(
        StaleLine("automation", f"{name} {typ}", n, host, port, typ, hashlib.sha256(blob).hexdigest(),
                  "SHA256:live", "the host presents another key")
        for name, (n, host, port, typ, blob) in stale.items())
    return FilePlan("automation", str(path), lines)


async def test_apply_leaves_exactly_what_ssh_keygen_R_leaves(tmp_path: Path) -> None:
    data, stale = real_looking(tmp_path)
    ours, theirs = tmp_path / "ours" / "known_hosts", tmp_path / "theirs" / "known_hosts"
    for p in (ours, theirs):
        p.parent.mkdir()
        p.write_bytes(data)
        os.chmod(p, 0o600)
    os.chown(ours, 65534, 65534)  # another owner than the one running remediate (root here)
    for name in stale:
        subprocess.run(["ssh-keygen", "-R", name, "-f", str(theirs)], check=True,
                       capture_output=True)
    audit = tmp_path / "audit.jsonl"
    said: list[str] = []
    applier = HostKeyApplier(audit, "INC-42 reinstall", Operator("tester"), said.append)
    (out,) = await applier.apply(HostKeyPlan((plan_for(ours, stale),)))
    assert out.ok, out.detail
    assert ours.read_bytes() == theirs.read_bytes()
    assert ours.read_bytes() != data and b"\r\n" in ours.read_bytes()
    assert (ours.parent / "known_hosts.old").read_bytes() == data
    st = os.stat(ours)
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o600, 65534, 65534)
    assert sorted(os.listdir(ours.parent)) == ["known_hosts", "known_hosts.old"]  # no temp left
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(r["line"], r["result"], r["operator"], r["reason"]) for r in records] == [
        (2, "removed", "tester", "INC-42 reinstall"), (3, "removed", "tester", "INC-42 reinstall")]


def test_a_file_changed_since_it_was_judged_is_left_alone(tmp_path: Path) -> None:
    data, stale = real_looking(tmp_path)
    path = tmp_path / "known_hosts"
    path.write_bytes(b"# a line added on top\n" + data)  # every line moved down by one
    got = remove_stale_lines(plan_for(path, stale))
    assert not got.ok and "the file changed since it was judged" in got.detail
    assert path.read_bytes() == b"# a line added on top\n" + data
    assert not (tmp_path / "known_hosts.old").exists()


def test_a_missing_file_is_an_outcome_not_an_exception(tmp_path: Path) -> None:
    _, stale = real_looking(tmp_path)
    got = remove_stale_lines(plan_for(tmp_path / "nope", stale))
    assert not got.ok and "FileNotFoundError" in got.detail and "nothing removed" in got.detail


def test_a_symlinked_file_is_changed_where_it_lives(tmp_path: Path) -> None:
    data, stale = real_looking(tmp_path)
    real = tmp_path / "dotfiles" / "known_hosts"
    real.parent.mkdir()
    real.write_bytes(data)
    link = tmp_path / "known_hosts"
    link.symlink_to(real)
    assert remove_stale_lines(plan_for(link, stale)).ok
    assert link.is_symlink() and (real.parent / "known_hosts.old").read_bytes() == data


def test_a_host_learnt_twice_loses_both_stale_lines_as_with_ssh_keygen_R(tmp_path: Path) -> None:
    """The Source names an entry by its first line; the file holds web1's ed25519 type twice,
    neither the key web1 presents: the plan, with the file read, removes both, as
    `ssh-keygen -R web1` does (web1 has no other line)."""
    from exporter.remediate.hostkey_plan import with_file
    (old1, blob1), (old2, _), (new, _) = (keygen(tmp_path, n) for n in ("a", "b", "c"))
    data = "\n".join(["# twice", f"web1 {old1}", f"db1 {new}", f"web1 {old2}", ""]).encode()
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.write_bytes(data)
    theirs.write_bytes(data)
    subprocess.run(["ssh-keygen", "-R", "web1", "-f", str(theirs)], check=True, capture_output=True)
    live = subprocess.run(["ssh-keygen", "-lf", str(tmp_path / "c.pub")], check=True,
                          capture_output=True, text=True).stdout.split()[1]
    first = StaleLine("automation", "web1 ssh-ed25519", 2, "web1", 22, "ssh-ed25519",
                      hashlib.sha256(blob1).hexdigest(), live, "changed")
    plan = with_file(FilePlan("automation", str(ours), (first,)), data)
    assert [s.line for s in plan.lines] == [2, 4]
    assert remove_stale_lines(plan).ok
    assert ours.read_bytes() == theirs.read_bytes()


# ---- the same on the store's host: Debian's sshd, logged in with a key, with its internal-sftp
# or with no SFTP subsystem at all (then a POSIX shell does it) ----------------------------------

@pytest.fixture(params=["sftp", "shell"])
def login_server(request: pytest.FixtureRequest,
                 tmp_path: Path) -> Iterator[tuple[int, Path, Path, Path]]:
    """(port, the client key, the server's host public key, its log) of an sshd that lets this
    user in with the key and serves SFTP (internal-sftp: OpenSSH's own sftp-server) or not."""
    from tests.kit.sshd import SSHD, _answers, _free_port
    if not SSHD.exists():
        pytest.skip("needs /usr/sbin/sshd")
    d = tmp_path / "sshd"
    d.mkdir()
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    (d / "authorized_keys").write_text((d / "client.pub").read_text())
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", 0o755, exist_ok=True)
    port = _free_port()
    (d / "sshd.conf").write_text("\n".join([
        f"ListenAddress 127.0.0.1:{port}", f"HostKey {d / 'host'}", "PidFile none", "UsePAM no",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        f"AuthorizedKeysFile {d / 'authorized_keys'}", "StrictModes no",
        "PermitRootLogin prohibit-password", "LogLevel VERBOSE",
        "Subsystem sftp internal-sftp" if request.param == "sftp" else "", ""]))
    with (d / "sshd.log").open("ab") as err:
        proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(d / "sshd.conf")],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    try:
        for _ in range(250):
            if _answers(port) or proc.poll() is not None:
                break
            time.sleep(0.02)
        assert proc.poll() is None, (d / "sshd.log").read_text()
        yield port, d / "client", d / "host.pub", d / "sshd.log"
    finally:
        proc.terminate()
        proc.wait(5)


@contextlib.asynccontextmanager
async def remote_applier(server: tuple[int, Path, Path, Path], audit: Path, reason: str | None
                         ) -> AsyncIterator[Callable[[FilePlan], Awaitable[FileOutcome]]]:
    """Logged in to `server` (its host key verified): apply one file's plan as a remote file."""
    import asyncssh
    port, client_key, host_pub, _ = server
    trusted = asyncssh.import_known_hosts(f"[127.0.0.1]:{port} {host_pub.read_text()}")
    async with asyncssh.connect("127.0.0.1", port, username=pwd.getpwuid(os.getuid()).pw_name,
                                client_keys=[str(client_key)], known_hosts=trusted) as conn:
        async def connect(store: str) -> asyncssh.SSHClientConnection:
            return conn

        applier = HostKeyApplier(audit, reason, Operator("tester"), lambda _: None, connect=connect)

        async def apply(fp: FilePlan) -> FileOutcome:
            (out,) = await applier.apply(HostKeyPlan((FilePlan(fp.store, fp.file, fp.lines, remote=True),)))
            return out

        yield apply


async def test_apply_on_the_stores_host_leaves_what_ssh_keygen_R_leaves(
        tmp_path: Path, login_server: tuple[int, Path, Path, Path]) -> None:
    """A remote known_hosts file (here on loopback, so ssh-keygen can be the oracle): the
    same bytes, mode and owner, FILE.old, the audit records, over real OpenSSH: SFTP where the
    host serves it, a POSIX shell where it has no SFTP subsystem."""
    log = login_server[3]
    data, stale = real_looking(tmp_path)
    ours, theirs = tmp_path / "remote" / "known_hosts", tmp_path / "theirs"
    ours.parent.mkdir()
    ours.write_bytes(data)
    theirs.write_bytes(data)
    os.chmod(ours, 0o600)
    os.chown(ours, 65534, 65534)
    for name in stale:
        subprocess.run(["ssh-keygen", "-R", name, "-f", str(theirs)], check=True, capture_output=True)
    async with remote_applier(login_server, tmp_path / "audit.jsonl", "INC-9") as apply:
        out = await apply(plan_for(ours, stale))
        assert out.ok, out.detail
        assert out.old == str(ours.parent / "known_hosts.old")
        # A file that changed since the verdict is left alone, on the host too.
        again = await apply(plan_for(ours, stale))
        assert not again.ok and "changed since it was judged" in again.detail
    assert ours.read_bytes() == theirs.read_bytes()
    assert (ours.parent / "known_hosts.old").read_bytes() == data
    st = os.stat(ours)
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o600, 65534, 65534)
    assert sorted(os.listdir(ours.parent)) == ["known_hosts", "known_hosts.old"]
    results = [json.loads(x)["result"] for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert results == ["removed", "removed", "failed", "failed"]
    # which way it went: SFTP exactly where the host serves it
    served = "Starting session: subsystem 'sftp'" in log.read_text()
    assert served == ("Subsystem sftp" in (log.parent / "sshd.conf").read_text())


async def test_a_hostile_path_on_the_stores_host_is_data_not_a_command(
        tmp_path: Path, login_server: tuple[int, Path, Path, Path]) -> None:
    """The configured path reaches the host's shell only quoted: a directory named with a
    quote, `$(...)`, a `;` and a space, the file a symbolic link into it, changed where it
    lives; nothing the name spells runs."""
    data, stale = real_looking(tmp_path)
    pwned = f"PWNED-{os.getpid()}-{time.monotonic_ns()}"  # in the login's home, where it would run
    real = tmp_path / f"it's $(touch {pwned}); touch {pwned} `touch {pwned}`" / "known_hosts"
    real.parent.mkdir()
    real.write_bytes(data)
    link = tmp_path / "linked known_hosts"
    link.symlink_to(real)
    async with remote_applier(login_server, tmp_path / "audit.jsonl", None) as apply:
        out = await apply(plan_for(link, stale))
    assert out.ok, out.detail
    assert not (Path(pwd.getpwuid(os.getuid()).pw_dir) / pwned).exists()
    assert not (Path.cwd() / pwned).exists()
    assert link.is_symlink() and (real.parent / "known_hosts.old").read_bytes() == data
    assert out.old == str(real.parent / "known_hosts.old")
    assert sorted(os.listdir(real.parent)) == ["known_hosts", "known_hosts.old"]
