"""Reload (POST /-/reload and SIGHUP) and overload, against `python -m exporter serve`."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from pilab.pi import LISTCERTS, PiServer
from pilab.pki import make_cert, pi_subject
from pilab.tls import TlsEndpoint
from tests.kit.faults import faults
from tests.kit.lab import free_port, offline_config, refused_keys, start_pi, write_config
from tests.kit.processes import Exporter, acli, value, wait_for

LISTCERTS_CMD = " ".join(LISTCERTS)


@pytest_asyncio.fixture
async def lab() -> AsyncIterator[dict[str, PiServer]]:
    peer = TlsEndpoint(pi_subject("ise"))
    await peer.start()
    pis = {name: await start_pi(name, page_lines=0) for name in ("alpha", "beta", "gamma")}
    for pi in pis.values():
        pi.add_entry(f"{peer.host}_{peer.port}", peer.current)
    yield pis
    for pi in pis.values():
        await pi.stop()
    await peer.stop()


async def started(config: Path, workdir: Path) -> Exporter:
    exporter = Exporter(config, workdir)
    await exporter.start()
    return exporter


async def reload_ok(exporter: Exporter) -> float | None:
    body, _ = await exporter.metrics()
    return value(body, "tofu_exporter_config_last_reload_successful")


async def test_broken_reload_keeps_old_config_http_and_sighup(
    lab: dict[str, PiServer], tmp_path: Path
) -> None:
    config = write_config(tmp_path, {"alpha": lab["alpha"], "beta": lab["beta"]})
    good = config.read_text()
    exporter = await started(config, tmp_path)
    try:
        assert await reload_ok(exporter) == 1.0
        for trigger in ("http", "sighup"):
            config.write_text(good.replace("stores:", "stores: [broken", 1))
            if trigger == "http":
                status, text = await exporter.post("/-/reload")
                assert status == 500 and "old config kept" in text and str(config) in text
            else:
                exporter.signal(signal.SIGHUP)
            await wait_for(lambda: _equals(reload_ok(exporter), 0.0), 5)
            # The old config keeps running: both stores stay up and keep being read.
            body, _ = await exporter.metrics()
            t0 = value(body, "tofu_store_last_success_timestamp_seconds", store="alpha")

            async def fresh(t: float | None = t0) -> bool:
                b, _ = await exporter.metrics()
                now = value(b, "tofu_store_last_success_timestamp_seconds", store="alpha")
                return bool(now and t and now > t and value(b, "tofu_store_up", store="beta") == 1)

            await wait_for(fresh, 5)
            config.write_text(good)
            if trigger == "http":
                status, text = await exporter.post("/-/reload")
                assert status == 200, text
            else:
                exporter.signal(signal.SIGHUP)
            await wait_for(lambda: _equals(reload_ok(exporter), 1.0), 5)
        assert exporter.log().count("reload failed, old config kept") == 2
        assert exporter.proc is not None and exporter.proc.returncode is None
    finally:
        await exporter.stop()


async def _equals(coro: object, expected: float) -> bool:
    return await coro == expected  # type: ignore[misc]


async def _true(condition: bool) -> bool:
    return condition


async def test_reload_adds_and_removes_stores_without_touching_the_others(
    lab: dict[str, PiServer], tmp_path: Path
) -> None:
    alpha, beta, gamma = lab["alpha"], lab["beta"], lab["gamma"]
    config = write_config(tmp_path, {"alpha": alpha, "beta": beta})
    exporter = await started(config, tmp_path)
    try:
        await wait_for(lambda: _true(alpha.commands.count(LISTCERTS_CMD) >= 2), 10)
        alpha_conns, alpha_reads = alpha.connections, alpha.commands.count(LISTCERTS_CMD)
        assert alpha_conns == 1  # two reads, one session
        write_config(tmp_path, {"alpha": alpha, "gamma": gamma})
        status, text = await exporter.post("/-/reload")
        assert status == 200, text

        async def swapped() -> bool:
            body, _ = await exporter.metrics()
            return (value(body, "tofu_store_up", store="gamma") == 1.0
                    and value(body, "tofu_store_up", store="beta") is None)

        await wait_for(swapped, 5)
        beta_reads = beta.commands.count(LISTCERTS_CMD)
        # Two more reads of alpha (1 s interval) are the window in which beta, had it kept
        # its loop, would have been read again too.
        swap_reads = alpha.commands.count(LISTCERTS_CMD)
        await wait_for(lambda: _true(alpha.commands.count(LISTCERTS_CMD) >= swap_reads + 2), 10)
        assert beta.commands.count(LISTCERTS_CMD) == beta_reads  # removed: not read any more
        assert alpha.commands.count(LISTCERTS_CMD) > alpha_reads  # still read...
        assert alpha.connections == alpha_conns  # ...on the very same SSH session
        body, _ = await exporter.metrics()
        assert 'store="beta"' not in body
        assert value(body, "tofu_exporter_config_last_reload_successful") == 1.0
    finally:
        await exporter.stop()


async def test_thousand_concurrent_scrapes(lab: dict[str, PiServer], tmp_path: Path) -> None:
    many = await start_pi("many", page_lines=0)
    for i, key in enumerate(refused_keys(200)):
        many.add_entry(key, make_cert([("CN", f"peer-{i}")]))
    config = write_config(tmp_path, {"alpha": lab["alpha"], "many": many}, interval="2s")
    exporter = await started(config, tmp_path)
    try:
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        async with aiohttp.ClientSession(connector=connector,
                                         timeout=aiohttp.ClientTimeout(total=60)) as session:

            async def scrape() -> tuple[int, int]:
                async with session.get(exporter.url + "/metrics") as r:
                    return r.status, (await r.text()).count("tofu_certificate_state{")

            t0 = time.perf_counter()
            results = await asyncio.gather(*(scrape() for _ in range(1000)))
            took = time.perf_counter() - t0
        print(f"\n1000 concurrent /metrics scrapes (201 entries each): {took:.2f} s")
        assert all(status == 200 for status, _ in results)
        assert {n for _, n in results} == {201 * 4}  # every body complete
        assert took < 10, f"{took:.1f} s"  # 14 s when every scrape re-rendered the snapshot
        body, took_one = await exporter.metrics()
        assert took_one < 1.0 and value(body, "tofu_store_up", store="alpha") == 1.0
    finally:
        await exporter.stop()
        await many.stop()


@pytest.mark.parametrize("mode", ["shell", "exec"])
async def test_hanging_store_does_not_stack_reads(
    lab: dict[str, PiServer], tmp_path: Path, mode: str
) -> None:
    hang = lab["gamma"]
    config = write_config(
        tmp_path, {"alpha": lab["alpha"], "gamma": hang}, interval="1s",
        store_extra={"gamma": {"command_timeout": "2s", "cli_mode": mode}},
    )
    exporter = await started(config, tmp_path)
    try:
        faults(hang).hang_on_command = True
        hang.max_open, hang.max_busy = len(hang._conns), 0  # counted by the lab, not sampled
        before_cmds = hang.commands.count(LISTCERTS_CMD)
        before_conns = hang.connections
        # On-demand reads of the hanging store pile on top of the loop's own reads.
        probes = [asyncio.create_task(exporter.get("/probe?target=gamma",
                                                   headers={"X-Prometheus-Scrape-Timeout-Seconds": "3"}))
                  for _ in range(10)]
        window, worst_scrape = 8.0, 0.0
        t0 = time.monotonic()
        while time.monotonic() - t0 < window:
            _, took = await exporter.metrics()
            worst_scrape = max(worst_scrape, took)
            await asyncio.sleep(0.1)
        answers = await asyncio.gather(*probes)
        reads = hang.commands.count(LISTCERTS_CMD) - before_cmds
        conns = hang.connections - before_conns
        print(f"\nhanging store ({mode}), {window:.0f} s, interval 1 s, command timeout 2 s, "
              f"10 /probe: {reads} reads, {conns} connections, at most {hang.max_open} open, "
              f"at most {hang.max_busy} reads at once")
        # The README: one read at a time, never more than one SSH connection open at once.
        assert hang.max_busy == 1, hang.max_busy
        assert hang.max_open == 1, hang.max_open
        # Each read waits out the 2 s timeout: at most one per 2 s, plus the one in flight.
        assert 2 <= reads <= window / 2.0 + 1, reads
        assert conns <= reads
        assert worst_scrape < 1.0
        assert all(status == 200 for status, _, _ in answers)
        body, _ = await exporter.metrics()
        assert value(body, "tofu_store_up", store="gamma") == 0.0
        assert value(body, "tofu_store_up", store="alpha") == 1.0
    finally:
        faults(hang).hang_on_command = False
        await exporter.stop()


async def test_reload_warns_about_a_secret_file_others_can_read(
    lab: dict[str, PiServer], tmp_path: Path
) -> None:
    """The start-up warning about a loose password_file (or key file) comes again when a
    reload brings one in, by HTTP or SIGHUP: the file and its mode, never its content. Each
    reload brings a NEW password, and the log redacts it from then on: the PI prints it in an
    unparseable line, which the exporter logs."""
    alpha = lab["alpha"]
    config = write_config(tmp_path, {"alpha": alpha})
    good = config.read_text()
    exporter = await started(config, tmp_path)
    try:
        assert "accessible by group or others" not in exporter.log()
        for trigger, name, mode, password in (("http", "pw-group", 0o640, "Reload-Pa55-one!"),
                                              ("sighup", "pw-world", 0o604, "Reload-Pa55-two!")):
            loose = tmp_path / name
            loose.write_text(password + "\n")
            loose.chmod(mode)
            alpha.users["admin"] = password  # the PI's password changed; the exporter follows
            config.write_text(good.replace("password_file: pi-password", f"password_file: {name}"))
            if trigger == "http":
                status, text = await exporter.post("/-/reload")
                assert status == 200, text
            else:
                exporter.signal(signal.SIGHUP)
            warning = (f"defaults.password_file {str(loose)!r} is accessible by group or others"
                       f" (mode {mode:04o}); it holds a secret: chmod 600 it")
            await wait_for(lambda w=warning: _true(w in exporter.log()), 5)
            # A hostile or broken PI echoes the new password into its listing.
            alpha.add_entry(f"echo {password}", alpha.entries()[next(iter(alpha.entries()))].der)
            seen = exporter.log().count("unparseable lines in listing")
            await wait_for(lambda s=seen: _true(
                exporter.log().count("unparseable lines in listing") > s), 10)
            alpha.remove_entry(f"echo {password}")
            assert password not in exporter.log(), f"{trigger}: the reloaded password was logged"
        log = exporter.log()
        assert log.count("accessible by group or others") == 2, log
        assert "Reload-Pa55" not in log and "<redacted>" in log
        body, _ = await exporter.metrics()
        assert value(body, "tofu_exporter_config_last_reload_successful") == 1.0
        assert value(body, "tofu_store_up", store="alpha") == 1.0  # logged in with the new one
    finally:
        await exporter.stop()


# ---- the file a reload reads: bounded, and off the event loop ------------------------------


async def _healthy_throughout(exporter: Exporter, until: asyncio.Future[Any]) -> int:
    """GET /-/healthy back to back until `until` is done; each must answer 200 (a stalled loop
    fails by the 10 s client timeout). -> how many answered."""
    assert exporter.session is not None
    n = 0
    while not until.done() or n == 0:
        async with exporter.session.get(exporter.url + "/-/healthy",
                                        timeout=aiohttp.ClientTimeout(total=10)) as r:
            assert r.status == 200, await r.text()
        n += 1
    return n


async def test_reload_of_a_config_symlinked_to_dev_zero_fails_fast(tmp_path: Path) -> None:
    """v0.1 read it whole on the event loop: 9.8 GB of memory and /-/healthy stalled. Now a
    bounded read (4 MiB + 1 bytes) refuses it, HTTP and SIGHUP, and the old config stays."""
    config = offline_config(tmp_path)
    good = config.read_text()
    exporter = Exporter(config, tmp_path)
    await exporter.start(ready=False)
    try:
        config.unlink()
        config.symlink_to("/dev/zero")
        post = asyncio.ensure_future(exporter.post("/-/reload"))
        assert await _healthy_throughout(exporter, post) >= 1
        status, text = await post
        assert status == 500, text
        assert f"{config}: is larger than 4 MiB, the limit for this file" in text
        exporter.signal(signal.SIGHUP)
        await wait_for(lambda: _true(exporter.log().count("reload failed, old config kept") == 2), 10)
        # A regular file over the limit is refused by its size, before a byte is read.
        config.unlink()
        config.write_text(good + "#" * (50 << 20) + "\n")  # 50 MB: 30 s of PyYAML in v0.1
        status, text = await exporter.post("/-/reload")
        assert status == 500 and "is larger than 4 MiB" in text, text
        config.write_text(good)
        status, text = await exporter.post("/-/reload")
        assert status == 200, text
        assert await reload_ok(exporter) == 1.0
    finally:
        await exporter.stop()
    assert "Traceback" not in exporter.log()


async def test_reload_reads_the_file_off_the_event_loop(tmp_path: Path) -> None:
    """A config that is a FIFO whose writer has not written yet holds the read as long as we
    like, deterministically: /-/healthy must answer all that time (v0.1 read on the loop and
    stopped answering), and the reload completes once the file arrives."""
    config = offline_config(tmp_path)
    good = config.read_text()
    exporter = Exporter(config, tmp_path)
    await exporter.start(ready=False)
    fifo = tmp_path / "config.fifo"
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR)  # a writer that sends nothing yet
    try:
        config.unlink()
        config.symlink_to(fifo)
        post = asyncio.ensure_future(exporter.post("/-/reload"))
        held = asyncio.ensure_future(asyncio.sleep(3))  # the reload is pending all along
        assert await _healthy_throughout(exporter, held) >= 3
        assert not post.done()
        os.write(writer, good.encode())
        os.close(writer)
        writer = -1
        status, text = await post
        assert status == 200, text
        assert await reload_ok(exporter) == 1.0
    finally:
        if writer >= 0:
            os.close(writer)
        await exporter.stop()


@pytest.mark.parametrize("flag", ["--config.file", "--web.config.file"])
async def test_a_config_file_over_the_limit_stops_the_start(tmp_path: Path, flag: str) -> None:
    """The start-up load has the same cap: exit 2 and the message, nothing served."""
    config = offline_config(tmp_path)
    (tmp_path / "web.yml").write_text("")
    big = tmp_path / "big.yml"  # valid, as the file it replaces, and 4 MiB + 6 bytes of comments
    valid = config.read_text() if flag == "--config.file" else ""
    big.write_text(valid + "# padding\n" * ((4 << 20) // 10 + 1))
    args = ["--config.file", str(config), "--web.config.file", str(tmp_path / "web.yml")]
    args[args.index(flag) + 1] = str(big)
    done = await acli("serve", *args, "--storage.path", str(tmp_path / "d"),
                      "--web.listen-address", f"127.0.0.1:{free_port()}", cwd=tmp_path)
    code, err = done.returncode, done.stderr
    assert code == 2, err
    assert f"{big}: is larger than 4 MiB, the limit for this file" in err, err
    assert "Traceback" not in err
