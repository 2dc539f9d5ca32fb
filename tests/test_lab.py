"""The lab's servers are real; these tests drive them with real SSH and TLS clients."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from pilab.pi import MORE, MORE_ERASE, PiServer, format_subject
from pilab.pki import make_cert, pi_subject, subject_of
from pilab.scene import start_demo_scene
from pilab.tls import TlsEndpoint
from tests.kit.faults import faults

PASSWORD = "s3cret-lab"
LISTCERTS = "ncs certvalidation tofu-certs listcerts"


@pytest.fixture
async def peer() -> AsyncIterator[TlsEndpoint]:
    ep = TlsEndpoint(pi_subject("prime-sec"))
    await ep.start()
    yield ep
    await ep.stop()


@pytest.fixture
async def pi(peer: TlsEndpoint) -> AsyncIterator[PiServer]:
    server = PiServer("prime-pri", users={"admin": PASSWORD}, page_lines=5)
    server.add_entry("10.0.0.3_443", make_cert(pi_subject("ISE-server")))
    server.add_peer(f"127.0.0.1_{peer.port}", peer.host, peer.port)
    await server.start()
    await server.connect_peers()
    yield server
    await server.stop()


def connect(pi: PiServer, **kw: Any) -> Any:
    opts: dict[str, Any] = {"username": "admin", "password": PASSWORD, "known_hosts": None}
    opts.update(kw)
    return asyncssh.connect(pi.host, pi.port, **opts)


async def read_until(proc: asyncssh.SSHClientProcess[str], *markers: str) -> str:
    out = ""
    while not any(m in out for m in markers):
        chunk = await asyncio.wait_for(proc.stdout.read(4096), 2.0)
        assert chunk, f"EOF before {markers!r}; got {out!r}"
        out += chunk
    return out


def crlf(text: str) -> str:
    return text.replace("\n", "\r\n")


async def test_shell_banner_prompt_echo_crlf(pi: PiServer) -> None:
    async with connect(pi) as conn:
        proc = await conn.create_process(term_type="vt100")
        head = await read_until(proc, "prime-pri/admin# ")
        assert head == crlf(pi.banner) + "prime-pri/admin# "
        proc.stdin.write("terminal length 0\r")
        await read_until(proc, "prime-pri/admin# ")
        proc.stdin.write(LISTCERTS + "\n")
        out = await read_until(proc, "prime-pri/admin# ")
        assert out == LISTCERTS + "\r\n" + crlf(pi.listing_text()) + "prime-pri/admin# "
        assert MORE not in out
        proc.stdin.write("exit\n")
        await asyncio.wait_for(proc.wait_closed(), 2.0)
    assert pi.commands == ["terminal length 0", LISTCERTS, "exit"]
    assert pi.connections == 1


async def test_paging_space_and_q(pi: PiServer) -> None:
    async with connect(pi) as conn:
        proc = await conn.create_process(term_type="vt100")
        await read_until(proc, "# ")
        proc.stdin.write(LISTCERTS + "\n")
        first = await read_until(proc, MORE)
        # Echo line plus exactly page_lines output lines before the pager stops.
        assert first.count("\r\n") == 1 + 5
        pages = [first]
        while True:
            proc.stdin.write(" ")
            chunk = await read_until(proc, MORE, "# ")
            pages.append(chunk)
            if chunk.endswith("# "):
                break
        assert len(pages) == 3  # 11 lines at 5 per page
        text = "".join(pages).replace(MORE + MORE_ERASE, "")
        assert text == LISTCERTS + "\r\n" + crlf(pi.listing_text()) + "prime-pri/admin# "
        # q abandons the listing and returns to the prompt.
        proc.stdin.write(LISTCERTS + "\n")
        await read_until(proc, MORE)
        proc.stdin.write("q")
        rest = await read_until(proc, "# ")
        assert rest == MORE_ERASE + "prime-pri/admin# "


async def test_exec_output_equals_listing(pi: PiServer) -> None:
    async with connect(pi) as conn:
        result = await conn.run(LISTCERTS, timeout=3)
    assert result.exit_status == 0
    assert result.stdout == pi.listing_text()
    assert "host=127.0.0.1_" in result.stdout and "CN=prime-sec" in result.stdout


async def test_exec_refused_when_disabled(pi: PiServer) -> None:
    pi.exec_enabled = False
    async with connect(pi) as conn:
        with pytest.raises(asyncssh.ChannelOpenError):
            await conn.run(LISTCERTS, timeout=3)


async def test_wrong_password_rejected(pi: PiServer) -> None:
    with pytest.raises(asyncssh.PermissionDenied):
        async with connect(pi, password="wrong"):
            pass


async def test_public_key_auth_and_known_hosts(tmp_path: Path) -> None:
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    pub = client_key.export_public_key().decode()
    server = PiServer("pi-system-184", users={}, authorized_keys=[pub], style="3.9")
    server.add_entry("10.0.0.9_443", make_cert([("CN", "kong"), ("O", "Cisco, Inc/DNA")]))
    await server.start()
    try:
        known = tmp_path / "known_hosts"
        known.write_text(server.known_hosts_line() + "\n")
        async with asyncssh.connect(
            server.host,
            server.port,
            username="admin",
            client_keys=[client_key],
            known_hosts=str(known),
        ) as conn:
            out = (await conn.run(LISTCERTS, timeout=3)).stdout
        assert r"host=10.0.0.9_443; subject=CN = kong, O = Cisco\, Inc/DNA" in str(out)
        # Restart with another host key: the old known_hosts line must now fail.
        await server.stop()
        other = PiServer("pi-system-184", users={}, authorized_keys=[pub], port=server.port)
        await other.start()
        try:
            with pytest.raises(asyncssh.HostKeyNotVerifiable):
                async with asyncssh.connect(
                    other.host,
                    other.port,
                    username="admin",
                    client_keys=[client_key],
                    known_hosts=str(known),
                ):
                    pass
        finally:
            await other.stop()
    finally:
        await server.stop()


async def test_deletecert_then_health_monitor_restores_current(pi: PiServer, peer: TlsEndpoint) -> None:
    key = f"127.0.0.1_{peer.port}"
    old = pi.entries()[key].der
    new = peer.regenerate()
    assert (await pi.connect_peers())[key] == "mismatch"
    assert pi.entries()[key].der == old  # TOFU keeps the old one
    async with connect(pi) as conn:
        result = await conn.run(f"ncs certvalidation tofu-certs deletecert host {key}", timeout=3)
        assert result.exit_status == 0
        assert key not in pi.entries()
        missing = await conn.run("ncs certvalidation tofu-certs deletecert host 1.2.3.4_1")
        assert missing.stdout == "% Entry not found: 1.2.3.4_1\n"
    pi.start_health_monitor(0.05)
    for _ in range(100):
        if key in pi.entries():
            break
        await asyncio.sleep(0.02)
    assert pi.entries()[key].der == new.der


async def test_connect_peers_logs_tofu_failed(pi: PiServer, peer: TlsEndpoint) -> None:
    assert pi.log == []
    peer.regenerate(pi_subject("prime-sec-new"))
    await pi.connect_peers()
    assert len(pi.log) == 1
    record = pi.log[0]
    assert record.startswith("[system] [HealthMonitorThread] TOFU failed.")
    assert "Trust-on-first-use is configure for this connection." in record
    assert (
        "Current certificate of the remote host is different from what was used earlier\n"
        "- CN=prime-sec-new, OU=Prime Infra, O=Cisco Systems, L=SJ, ST=CA, C=US\n"
    ) in record
    assert record.endswith("- CN=prime-sec-new")


async def test_unreachable_peer_is_tolerated(pi: PiServer, peer: TlsEndpoint) -> None:
    port = peer.port
    await peer.stop()
    assert (await pi.connect_peers())[f"127.0.0.1_{port}"] == "unreachable"


def fetch(host: str, port: int) -> bytes:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), 2) as raw, ctx.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der
    return der


async def test_tls_regenerate_serves_new_fingerprint(peer: TlsEndpoint) -> None:
    first = await asyncio.to_thread(fetch, peer.host, peer.port)
    assert hashlib.sha256(first).hexdigest() == peer.current.fingerprint_sha256
    new = peer.regenerate()
    second = await asyncio.to_thread(fetch, peer.host, peer.port)
    assert second == new.der != first
    assert subject_of(second) == tuple(pi_subject("prime-sec"))
    # Many at once, including bare TCP connects that never speak TLS.
    raws = [await asyncio.open_connection(peer.host, peer.port) for _ in range(5)]
    results = await asyncio.gather(*(asyncio.to_thread(fetch, peer.host, peer.port) for _ in range(30)))
    assert set(results) == {new.der}
    for _, writer in raws:
        writer.close()


async def test_failure_knobs(pi: PiServer) -> None:
    async with connect(pi) as conn:
        faults(pi).garbage = b"\x00\xffnot a listing"
        result = await conn.run(LISTCERTS, timeout=3, encoding=None)
        assert result.stdout == b"\x00\xffnot a listing"
        faults(pi).garbage = None
        faults(pi).extra_lines = ["host=broken line"]
        assert "host=broken line" in (await conn.run(LISTCERTS, timeout=3)).stdout
        faults(pi).hang_on_command = True
        with pytest.raises(asyncssh.TimeoutError):
            await conn.run(LISTCERTS, timeout=0.3)
        faults(pi).hang_on_command = False
        faults(pi).endless_more = True
        with pytest.raises(asyncssh.TimeoutError):
            await conn.run(LISTCERTS, timeout=0.3)
        faults(pi).endless_more = False
        faults(pi).drop_mid_output = True
        proc = await conn.create_process(LISTCERTS)
        out = await asyncio.wait_for(proc.stdout.read(), 2.0)
        assert 0 < len(out) < len(pi.listing_text())
        assert not out.endswith("\n")  # cut mid-line
    async with connect(pi) as conn:
        faults(pi).drop_mid_output = False
        faults(pi).hang_after_banner = True
        proc = await conn.create_process(term_type="vt100")
        banner = await read_until(proc, "*\r\n" + "*" * 10)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(read_until(proc, "# "), 0.3)
        assert "# " not in banner
    assert pi.connections == 2


async def test_invalid_command(pi: PiServer) -> None:
    async with connect(pi) as conn:
        result = await conn.run("show tofu", timeout=3)
    assert result.exit_status == 1
    assert "% Invalid input detected at '^' marker." in str(result.stdout)


def test_subject_styles() -> None:
    subject = (("CN", "a/b,c"), ("O", "x"))
    assert format_subject(subject, "3.5") == r" /CN=a\/b,c/O=x"
    assert format_subject(subject, "3.9") == r"CN = a/b\,c, O = x"


async def test_demo_scene(tmp_path: Path) -> None:
    lab = await start_demo_scene(tmp_path, fixed_ports=False)
    try:
        pri, sec, sys184 = lab.pis["prime-pri"], lab.pis["prime-sec"], lab.pis["pi-system-184"]
        ise, spri, ssec = lab.endpoints["ise"], lab.endpoints["prime-pri"], lab.endpoints["prime-sec"]
        assert list(pri.entries()) == [
            f"127.0.0.1_{spri.port}",
            f"127.0.0.12_{ssec.port}",
            f"127.0.0.13_{ise.port}",
        ]
        assert list(sec.entries()) == [
            f"127.0.0.11_{spri.port}",
            f"127.0.0.1_{ssec.port}",
            f"127.0.0.12_{ssec.port}",
        ]
        assert len(sys184.entries()) == 2 and sys184.style == "3.9"
        stored_ise = pri.entries()[f"127.0.0.13_{ise.port}"]
        assert dict(stored_ise.subject)["CN"] == "ISE-server"
        assert stored_ise.der != ise.current.der  # the seed's drift
        assert dict(subject_of(ise.current.der))["CN"] == "ISE-server-2024"
        assert (tmp_path / "pi-password").stat().st_mode & 0o777 == 0o600
        password = (tmp_path / "pi-password").read_text().strip()
        known = lab.write_known_hosts(tmp_path / "kh")
        async with asyncssh.connect(
            sec.host, sec.port, username="admin", password=password, known_hosts=str(known)
        ) as conn:
            out = (await conn.run(LISTCERTS, timeout=3)).stdout
        assert out == sec.listing_text()
        assert "host=127.0.0.11_" in str(out)
        for _ in range(50):  # the health monitor's first round logs the ISE drift
            if pri.log:
                break
            await asyncio.sleep(0.02)
        assert "CN=ISE-server-2024" in pri.log[0]
        assert sec.log == [] and sys184.log == []
    finally:
        await lab.stop()
