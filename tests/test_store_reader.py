"""Reading PI TOFU stores over real SSH from the lab's admin CLI simulator."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncssh
import pytest

from exporter.core.model import ErrorReason
from exporter.sources.prime.listing import parse_listing
from exporter.sources.prime.ssh import PiSession, StoreReadError
from pilab.pi import PiServer
from pilab.pki import make_cert, pi_subject
from tests.kit.faults import faults
from tests.kit.lab import start_pi as started_pi
from tests.kit.lab import store_config

LIST = "ncs certvalidation tofu-certs listcerts"


@pytest.fixture
async def pi() -> AsyncIterator[PiServer]:
    server = await started_pi("prime-pri", page_lines=5)
    server.add_entry("10.0.0.1_8082", make_cert(pi_subject("prime-pri")))
    server.add_entry("10.0.0.3_443", make_cert(pi_subject("ISE-server")))
    server.add_entry("10.0.0.2_8082", make_cert(pi_subject("prime-sec")))
    for i in range(12):  # enough lines to page several times at 5 lines a page
        server.add_entry(f"10.1.0.{i}_443", make_cert([("CN", f"peer-{i}")]))
    yield server
    await server.stop()


@pytest.mark.parametrize("mode", ["shell", "exec"])
async def test_listing_read_in_both_modes_equals_what_pi_prints(
    pi: PiServer, tmp_path: Path, mode: str
) -> None:
    session = PiSession(store_config(pi, tmp_path, cli_mode=mode))
    try:
        text = await session.run(LIST)
    finally:
        await session.close()
    got = parse_listing(text)
    want = parse_listing(pi.listing_text())
    assert got.bad_lines == ()
    assert [e.key for e in got.entries] == list(pi.entries()) and got == want
    assert got.entries[1].subject[-1] == ("CN", "ISE-server")


async def test_shell_handles_paging_when_terminal_length_is_ignored(
    pi: PiServer, tmp_path: Path
) -> None:
    # A CLI that ignores `terminal length 0` pages anyway: --More-- must be answered.
    faults(pi).endless_more = False
    session = PiSession(store_config(pi, tmp_path, listcerts_command=LIST))
    try:
        session_text = await session.run("terminal length 5")  # re-enable paging at 5 lines
        del session_text
        text = await session.run(LIST)
    finally:
        await session.close()
    assert len(parse_listing(text).entries) == 15
    assert "More" not in text


async def test_pi39_style_subjects(tmp_path: Path) -> None:
    pi = await started_pi("pi-system-184", style="3.9")
    pi.add_entry("10.0.0.5_443", make_cert([("CN", "kong")]))
    pi.add_entry("10.0.0.6_443", make_cert([("C", "US"), ("O", "Cisco, Inc."), ("CN", "kong")]))
    try:
        session = PiSession(store_config(pi, tmp_path))
        listing = parse_listing(await session.run(LIST))
        await session.close()
    finally:
        await pi.stop()
    assert [e.subject for e in listing.entries] == [
        (("CN", "kong"),),
        (("C", "US"), ("O", "Cisco, Inc."), ("CN", "kong")),
    ]


async def test_session_is_reused_across_reads_and_reestablished_after_a_drop(
    pi: PiServer, tmp_path: Path
) -> None:
    session = PiSession(store_config(pi, tmp_path))
    try:
        for _ in range(3):
            assert len(parse_listing(await session.run(LIST)).entries) == 15
        assert pi.connections == 1 and session.connects == 1
        faults(pi).drop_mid_output = True
        with pytest.raises(StoreReadError):
            await session.run(LIST)
        faults(pi).drop_mid_output = False
        assert len(parse_listing(await session.run(LIST)).entries) == 15
        assert session.connects == 2
    finally:
        await session.close()


async def test_wrong_password_is_auth_error_without_the_password(pi: PiServer, tmp_path: Path) -> None:
    session = PiSession(store_config(pi, tmp_path, password="not-the-Pa55word"))
    with pytest.raises(StoreReadError) as err:
        await session.run(LIST)
    assert err.value.reason is ErrorReason.AUTH
    assert "not-the-Pa55word" not in err.value.message


async def test_unknown_host_key_is_never_trusted(pi: PiServer, tmp_path: Path) -> None:
    cfg = store_config(pi, tmp_path)
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    Path(cfg.known_hosts or "").write_text(f"[{pi.host}]:{pi.port} {other}")
    with pytest.raises(StoreReadError) as err:
        await PiSession(cfg).run(LIST)
    assert err.value.reason is ErrorReason.HOSTKEY
    assert "ssh-keyscan" in err.value.message
    assert pi.commands == []  # nothing was run on a server we could not authenticate


async def test_private_key_auth(tmp_path: Path) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")
    key_file = tmp_path / "id_ed25519"
    key_file.write_bytes(key.export_private_key(passphrase="key-Passphrase-9"))
    pi = await started_pi("prime-sec", authorized_keys=[key.export_public_key().decode()])
    pi.add_entry("10.0.0.1_8082", make_cert(pi_subject("prime-pri")))
    try:
        cfg = store_config(
            pi, tmp_path, password=None, private_key_file=str(key_file),
            private_key_passphrase="key-Passphrase-9",
        )
        session = PiSession(cfg)
        assert [e.key for e in parse_listing(await session.run(LIST)).entries] == ["10.0.0.1_8082"]
        await session.close()
    finally:
        await pi.stop()


async def test_hanging_command_times_out_within_command_timeout(pi: PiServer, tmp_path: Path) -> None:
    faults(pi).hang_on_command = True
    session = PiSession(store_config(pi, tmp_path, command_timeout=1.0))
    start = time.monotonic()
    with pytest.raises(StoreReadError) as err:
        await session.run(LIST)
    assert err.value.reason is ErrorReason.TIMEOUT
    assert time.monotonic() - start < 2.5
    await session.close()
