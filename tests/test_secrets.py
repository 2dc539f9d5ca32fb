"""Secrets never leak: the real exporter reads healthy and faulty stores with distinctive
passwords and key passphrases; every log line, metric, page and `check` output is grepped.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncssh
import pytest
import yaml

from pilab.pi import PiServer
from tests.kit import faults as sf
from tests.kit.faults import faults
from tests.kit.lab import free_port, start_pi
from tests.kit.processes import ENV, acli, value

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "Pw-Zq7kestrel-91!"
WRONG_PASSWORD = "Pw-Xy83heron-wrong!"
PASSPHRASE = "Pp-Lm44osprey-key?"
WRONG_PASSPHRASE = "Pp-Rt19finch-bad#"
SECRETS = (PASSWORD, WRONG_PASSWORD, PASSPHRASE, WRONG_PASSPHRASE)


@pytest.fixture
async def scene(tmp_path: Path) -> AsyncIterator[tuple[Path, list[PiServer]]]:
    tls = await sf.start_tls()
    entries = {f"{tls.host}_{tls.port}": tls}
    key = asyncssh.generate_private_key("ssh-ed25519")
    (tmp_path / "id_pi").write_bytes(key.export_private_key(passphrase=PASSPHRASE))
    (tmp_path / "id_pi").chmod(0o600)
    pub = [key.export_public_key().decode()]
    specs: dict[str, dict[str, Any]] = {
        "pw-shell": {}, "pw-exec": {}, "key-shell": {"authorized_keys": pub},
        "key-exec": {"authorized_keys": pub}, "auth-rejected": {}, "hang": {}, "garbage": {},
        "drop": {}, "no-exec": {"exec_enabled": False}, "key-wrong-passphrase": {"authorized_keys": pub},
    }
    pis = {name: await start_pi(name, PASSWORD, entries, **kw) for name, kw in specs.items()}
    faults(pis["hang"]).hang_on_command = True
    faults(pis["garbage"]).garbage = b"\x00\xff binary junk \xfe\r\n"
    faults(pis["drop"]).drop_mid_output = True
    for name, secret in (("pw", PASSWORD), ("wrong-pw", WRONG_PASSWORD),
                         ("pp", PASSPHRASE), ("wrong-pp", WRONG_PASSPHRASE)):
        (tmp_path / name).write_text(secret + "\n")
    refused = free_port()
    (tmp_path / "known_hosts").write_text(
        "".join(pi.known_hosts_line() + "\n" for pi in pis.values())
        + sf.random_known_hosts_line("127.0.0.1", refused) + "\n")
    stores: list[dict[str, Any]] = []
    for name, pi in pis.items():
        st: dict[str, Any] = {"name": name, "host": pi.host, "port": pi.port,
                              "cli_mode": "exec" if "exec" in name else "shell"}
        if name.startswith("key"):
            st.update(private_key_file="id_pi",
                      private_key_passphrase_file="wrong-pp" if "wrong" in name else "pp")
        else:
            st["password_file"] = "wrong-pw" if name == "auth-rejected" else "pw"
        stores.append(st)
    stores.append({"name": "refused", "host": "127.0.0.1", "port": refused, "password_file": "pw"})
    cfg = tmp_path / "exporter.yml"
    cfg.write_text(yaml.safe_dump({
        "defaults": {"username": "admin", "known_hosts": "known_hosts", "connect_timeout": "2s",
                     "command_timeout": "2s", "probe_timeout": "1s", "store_interval": "1s",
                     "probe_interval": "1s"},
        "stores": stores,
    }, sort_keys=False))
    yield cfg, list(pis.values())
    for pi in pis.values():
        await pi.stop()
    await tls.stop()


async def _serve_and_scrape(cfg: Path, tmp: Path) -> tuple[list[str], str]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", "serve", "--config.file", str(cfg),
        "--storage.path", str(tmp / "data"), "--web.listen-address", f"127.0.0.1:{port}",
        "--log.format", "json", "--log.level", "debug",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
    )
    bodies: list[str] = []
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                try:
                    async with http.get(f"{base}/-/healthy") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            for _ in range(6):  # several refresh cycles: every fault fires more than once
                for path in ("/metrics", "/", "/-/ready", "/probe?target=auth-rejected",
                             "/probe?target=key-wrong-passphrase", "/probe?target=pw-shell"):
                    async with http.get(base + path) as r:
                        bodies.append(await r.text())
                await asyncio.sleep(1)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    return bodies, out.decode(errors="replace") + err.decode(errors="replace")


async def _cli(*args: str) -> tuple[str, str]:
    done = await acli(*args, cwd=ROOT, env={**ENV, "PYTHONWARNINGS": "default"})
    return done.stdout, done.stderr


async def test_no_secret_in_logs_metrics_pages_or_check_output(
    scene: tuple[Path, list[PiServer]], tmp_path: Path
) -> None:
    cfg, _ = scene
    bodies, logs = await _serve_and_scrape(cfg, tmp_path)
    check = await _cli("check", "--config.file", str(cfg), "--storage.path", str(tmp_path / "c"),
                       "--output", "json", "--log.format", "json", "--log.level", "debug")
    table = await _cli("check", "--config.file", str(cfg), "--storage.path", str(tmp_path / "c"))
    config_check = await _cli("--config.check", "--config.file", str(cfg))

    # Not vacuous: the happy paths worked and every fault was seen and logged.
    # The last /metrics scrape (a /probe?target= body holds one store only).
    metrics = [b for b in bodies if 'tofu_store_up{store="refused"}' in b][-1]
    for store in ("pw-shell", "pw-exec", "key-shell", "key-exec"):
        assert value(metrics, "tofu_store_up", store=store) == 1.0, store
    for store, reason in (("auth-rejected", "auth"), ("key-wrong-passphrase", "auth"),
                          ("hang", "timeout"), ("garbage", "parse"), ("drop", "connect"),
                          ("refused", "connect")):
        # The collector exports every reason at 0: the fault must have been counted.
        got = value(metrics, "tofu_store_read_errors_total", store=store, reason=reason)
        assert got is not None and got >= 1, (store, reason, got)
        assert value(metrics, "tofu_store_up", store=store) == 0.0, store
    log_lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert sum(rec.get("msg") == "store read failed" for rec in log_lines) >= 6
    assert json.loads(check[0])  # the JSON report parsed
    assert "valid" in config_check[0]

    everything = {"logs": logs, "bodies": "\n".join(bodies), "check-json": "".join(check),
                  "check-table": "".join(table), "config-check": "".join(config_check)}
    for where, text in everything.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} leaked into {where}"
