"""`prime-tofu-exporter doctor` as a subprocess against lab PI servers over real SSH and real
TLS peers: what it shows at each step, that it is safe to paste, and its exit codes."""

from __future__ import annotations

import re
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest
import yaml

from pilab.pi import Cli, CliSession, PiServer
from pilab.pki import CertBundle, pi_subject
from pilab.tls import TlsEndpoint
from tests.kit.lab import PASSWORD, start_pi, write_config
from tests.kit.processes import acli

BAD_LINE = "host=10.0.0.9_99999; subject=CN = port-out-of-range"


class Tls13Only(TlsEndpoint):
    """A peer that refuses anything below TLS 1.3 (the exporter's TLS 1.2 fast path fails)."""

    def _context(self, bundle: CertBundle) -> ssl.SSLContext:
        ctx = super()._context(bundle)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        return ctx


class OneBadLine(Cli):
    """The normal listing plus one line that looks like an entry but is not one."""

    extra = BAD_LINE

    def listing(self, pi: PiServer) -> str:
        return pi.listing_text() + self.extra + "\n"


class PagesAnyway(Cli):
    """A CLI that ignores `terminal length 0` and pages every 3 lines."""

    async def listcerts(self, session: CliSession, shell: bool) -> int:
        await session.emit(self.listing(session.pi).split("\n")[:-1], 3 if shell else 0)
        return 0


@dataclass
class Lab:
    pi: PiServer
    peers: dict[str, TlsEndpoint]


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    peers = {
        "ec": TlsEndpoint(pi_subject("prime-sec")),
        "rsa": TlsEndpoint(pi_subject("ISE-server"), key_type="rsa"),
        "tls13": Tls13Only([("CN", "kong")]),
    }
    for ep in peers.values():
        await ep.start()
    pi = await start_pi("pi-doc", style="3.9",
                        entries={f"127.0.0.1_{ep.port}": ep for ep in peers.values()})
    pi.cli = OneBadLine()
    yield Lab(pi, peers)
    await pi.stop()
    for ep in peers.values():
        await ep.stop()


async def doctor(cfg: Path, store: str = "pi") -> subprocess.CompletedProcess[str]:
    return await acli("doctor", "--config.file", str(cfg), "--store", store, cwd=cfg.parent)


def entry_block(out: str, peer: TlsEndpoint) -> str:
    """The lines doctor printed for the entry of `peer`, up to its verdict."""
    m = re.search(rf"entry 127\.0\.0\.1_{peer.port},.*?verdict: [^\n]*", out, re.S)
    assert m, out
    return m.group()


def host_key_fingerprint(pi: PiServer) -> str:
    return str(pi.host_key.convert_to_public().get_fingerprint("sha256"))


def assert_listing_and_probes(out: str, lab: Lab) -> None:
    # The listing, numbered; the bad line's number is the one it has in the listing.
    numbered = re.search(r"^ +(\d+) \| " + re.escape(BAD_LINE) + "$", out, re.M)
    assert numbered, out
    assert "parsed 3 entries; 1 line not parsed:" in out
    assert f"    line {numbered.group(1)}: {BAD_LINE}\n" in out
    for ep in lab.peers.values():
        assert re.search(rf"^ +\d+ \| host=127\.0\.0\.1_{ep.port}; subject=", out, re.M)
    # One probe per entry: the version spoken and the certificate chosen.
    for name, version, key in (("ec", "TLSv1.2", "EC secp256r1"), ("rsa", "TLSv1.2", "RSA 2048"),
                               ("tls13", "TLSv1.3", "EC secp256r1")):
        ep = lab.peers[name]
        block = entry_block(out, ep)
        assert f"probe 127.0.0.1:{ep.port}: {version}," in block, block
        assert f"sha256 {ep.current.fingerprint_sha256}, key {key}," in block, block
        # First contact: every entry is adopted, so a matching subject proves nothing.
        assert "verdict: unknown (evidence none): the entry was already stored" in block


async def test_shell_mode_shows_every_step(lab: Lab, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, {"pi": lab.pi})
    res = await doctor(cfg)
    out = res.stdout
    assert res.returncode == 3, out + res.stderr  # unknowns left, as `check` says
    assert (f"host key verified: ssh-ed25519 {host_key_fingerprint(lab.pi)}, "
            f"in {tmp_path / 'known_hosts'}, line 1") in out
    assert "logged in as 'admin' by keyboard-interactive, answered with the password" in out
    assert "cli_mode shell: opened an interactive shell on a PTY" in out
    assert "prompt detected: 'pi-doc/admin#'" in out
    assert "sent 'terminal length 0'" in out
    assert "paging: none seen" in out
    assert_listing_and_probes(out, lab)
    assert out.rstrip().endswith("exit 3: entries are left unknown "
                                 "(normal at first contact: pin or accept them)")
    # Nothing written: doctor keeps its baselines in memory, not in --storage.path (./data).
    assert not (tmp_path / "data").exists()


async def test_exec_mode_has_no_prompt_and_the_same_listing(lab: Lab, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, {"pi": lab.pi}, store_extra={"pi": {"cli_mode": "exec"}})
    res = await doctor(cfg)
    out = res.stdout
    assert res.returncode == 3, out + res.stderr
    assert ("cli_mode exec: ran 'ncs certvalidation tofu-certs listcerts': exit status 0, "
            in out)
    assert "prompt detected" not in out and "PTY" not in out
    assert "paging: none seen" in out
    assert_listing_and_probes(out, lab)


async def test_paging_seen_and_answered(lab: Lab, tmp_path: Path) -> None:
    class Both(PagesAnyway, OneBadLine):
        pass

    lab.pi.cli = Both()
    res = await doctor(write_config(tmp_path, {"pi": lab.pi}))
    # 11 listing lines before the bad one and the bad one: a --More-- every 3 lines.
    pages = re.search(r"paging: (\d+) --More-- prompts answered with a space", res.stdout)
    assert pages and int(pages.group(1)) >= 3, res.stdout
    assert_listing_and_probes(res.stdout, lab)


async def test_a_mismatch_is_exit_1_and_a_wrong_host_key_exit_2(lab: Lab, tmp_path: Path) -> None:
    lab.peers["rsa"].regenerate(pi_subject("ISE-server-2024"))
    res = await doctor(write_config(tmp_path, {"pi": lab.pi}))
    assert res.returncode == 1, res.stdout
    assert "verdict: mismatch (evidence subject)" in entry_block(res.stdout, lab.peers["rsa"])

    kh = tmp_path / "known_hosts"
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().split()
    kh.write_text(f"[{lab.pi.host}]:{lab.pi.port} {other[0]} {other[1]}\n")
    res = await doctor(tmp_path / "exporter.yml")
    assert res.returncode == 2, res.stdout
    assert "FAILED (hostkey): host key of" in res.stdout
    assert "logged in" not in res.stdout and "probes and verdicts" not in res.stdout
    assert res.stdout.rstrip().endswith("exit 2: the store could not be read")

    res = await doctor(tmp_path / "exporter.yml", store="no-such")
    assert res.returncode == 2 and "no such store" in res.stderr and "pi" in res.stderr


async def test_no_secret_ever_printed_and_hostile_text_visible(lab: Lab, tmp_path: Path) -> None:
    """A PI that prints the password and passphrase back (and terminal tricks) in its
    listing: the output holds neither secret and no raw control character."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    passphrase = "Key-Pa55phrase-Secret"
    (tmp_path / "id").write_bytes(key.export_private_key(passphrase=passphrase))
    (tmp_path / "id").chmod(0o600)
    (tmp_path / "passphrase").write_text(passphrase + "\n")
    (tmp_path / "passphrase").chmod(0o600)
    lab.pi.authorized_keys.append(key.export_public_key().decode())
    hostile = OneBadLine()
    hostile.extra = (f"{PASSWORD} \u202egnp.exe \x07 {passphrase}\n"
                     f"host=127.0.0.1_1; subject=CN = {PASSWORD}\x1b]0;title\x07\n")
    lab.pi.cli = hostile

    # Each login's own secret is configured, and printed back by the PI: never shown.
    for login, secret in (({}, PASSWORD), ({"private_key_file": "id",
                                             "private_key_passphrase_file": "passphrase"}, passphrase)):
        cfg = write_config(tmp_path, {"pi": lab.pi}, store_extra={"pi": dict(login)})
        if login:  # the key only: no password to fall back on
            data = yaml.safe_load(cfg.read_text())
            del data["defaults"]["password_file"]
            cfg.write_text(yaml.safe_dump(data))
        res = await doctor(cfg)
        out = res.stdout + res.stderr
        assert res.returncode == 3, out
        assert secret not in out, out
        shown = f"{PASSWORD} \\u202egnp.exe \\x07 {passphrase}".replace(secret, "<redacted>")
        assert re.search(r"^ +\d+ \| " + re.escape(shown) + "$", res.stdout, re.M), out
        assert "\\x1b]0;title\\x07" in res.stdout
        assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f\u202a-\u202e]", res.stdout)
        assert key.export_private_key().decode().splitlines()[1] not in out
        if login:
            assert (f"logged in as 'admin' by publickey (ssh-ed25519 "
                    f"{key.get_fingerprint('sha256')})") in res.stdout
            assert "passphrase configured (not shown)" in res.stdout
        else:
            assert "password configured (not shown)" in res.stdout


async def test_a_refused_command_is_called_out(lab: Lab, tmp_path: Path) -> None:
    """A login whose role lacks the command gets a CLI error, not a listing: doctor shows it,
    names the likely cause, and the read fails (exit 2) instead of passing as an empty store."""
    refusing = OneBadLine()
    refusing.listing = lambda pi: "% Invalid input detected at '^' marker.\n"  # type: ignore[method-assign]
    lab.pi.cli = refusing
    res = await doctor(write_config(tmp_path, {"pi": lab.pi}))
    assert re.search(r"^ +1 \| % Invalid input detected at '\^' marker\.$", res.stdout, re.M)
    assert "parsed 0 entries; no lines not parsed" in res.stdout
    assert "the CLI answered with an error, not a listing: the login's role may not" in res.stdout
    assert ("store read failed (command): the CLI answered with an error, not a listing: "
            "% Invalid input detected at '^' marker.") in res.stdout
    assert res.returncode == 2 and res.stdout.rstrip().endswith("exit 2: the store could not be read")


def test_auth_method_is_named_from_what_asyncssh_asked_for() -> None:
    """The lab offers keyboard-interactive whenever it takes passwords; an OpenSSH server
    with KbdInteractiveAuthentication off takes the password method: both are named."""
    from exporter.sources.prime.ssh import auth_method

    key = asyncssh.generate_private_key("ssh-ed25519")
    assert auth_method(["password"], []) == "password"
    assert auth_method(["password"], [key]) == "password"  # the key was refused first
    assert auth_method(["keyboard-interactive", "password"], []) == (
        "keyboard-interactive, answered with the password")
    assert auth_method([], [key]) == "publickey"
    assert auth_method([], []) == "none"
