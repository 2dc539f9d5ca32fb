"""The real entry points as subprocesses: demo, check, serve with reload, /probe."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.cli.demo import AUTOMATION_STORE
from pilab.scene import Lab
from tests.kit.lab import free_port
from tests.kit.processes import EXPORTER, acli


def get(url: str, method: str = "GET", timeout: float = 5) -> tuple[int, str]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def wait_for(url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            if get(url, timeout=1)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not come up")


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str], float]]:
    port = free_port()
    start = time.monotonic()
    proc = subprocess.Popen(
        [*EXPORTER, "demo", "--web.listen-address", f"127.0.0.1:{port}",
         "--demo.dir", str(tmp_path / "demo"), "--demo.regenerate-after", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        yield f"http://127.0.0.1:{port}", proc, start
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_demo_reaches_the_seed_verdicts(demo: tuple[str, subprocess.Popen[str], float]) -> None:
    base, _proc, start = demo
    wait_for(f"{base}/-/ready", start + 20)
    # ISE on pri (subject), prime-sec on pri, prime-sec's 2 self entries; web1's rotated host key
    want_mismatch = 5
    deadline = start + 45
    while True:
        body = get(f"{base}/metrics")[1]
        mismatch = samples(body, "tofu_certificate_mismatch")
        if sum(mismatch.values()) >= want_mismatch or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    evidence = {
        (dict(k)["store"], dict(k)["entry"]): dict(k)["evidence"]
        for k, v in samples(body, "tofu_certificate_evidence_info").items() if v == 1
    }
    state = {
        (dict(k)["store"], dict(k)["entry"]): dict(k)["state"]
        for k, v in samples(body, "tofu_certificate_state").items() if v == 1
    }
    cn = {
        (dict(k)["store"], dict(k)["entry"]): dict(k)["subject"].rsplit("CN=", 1)[-1]
        for k in samples(body, "tofu_entry_info")
    }
    got: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for se, st in state.items():
        if se[0] != AUTOMATION_STORE:
            got.setdefault((se[0], cn[se]), []).append((st, evidence[se]))
    assert got[("prime-pri", "ISE-server")] == [("mismatch", "subject")]
    assert got[("prime-pri", "prime-sec")] == [("mismatch", "baseline")]
    assert got[("prime-sec", "prime-sec")] == [("mismatch", "baseline")] * 2  # its own entries
    assert sorted(got[("pi-system-184", "kong")]) == [("match", "fingerprint"), ("unknown", "none")]
    assert got[("prime-pri", "prime-pri")] == [("unknown", "none")]
    assert got[("prime-sec", "prime-pri")] == [("unknown", "none")]
    print(f"demo: all verdicts reached {time.monotonic() - start:.1f}s after start")
    mismatches = {(dict(k)["store"], dict(k)["entry"]) for k, v in samples(
        body, "tofu_certificate_mismatch").items() if v == 1}
    assert mismatches == {k for k, v in state.items() if v == "mismatch"}
    assert len(mismatches) == want_mismatch
    page = get(f"{base}/")[1].replace("<wbr>", "")  # the page's line-break hints
    for store, entry in mismatches:
        if store != AUTOMATION_STORE:
            assert f"ncs certvalidation tofu-certs deletecert host {entry}" in page
    # address, key type, verdict, evidence of each known_hosts entry
    auto = sorted((e.split("]")[0].lstrip("["), e.rsplit(" ", 1)[1], st, evidence[(s, e)])
                  for (s, e), st in state.items() if s == AUTOMATION_STORE)
    assert auto == [("127.0.0.41", "ssh-ed25519", "mismatch", "stored"),
                    ("127.0.0.42", "ecdsa-sha2-nistp256", "unknown", "stored"),
                    ("127.0.0.42", "ssh-ed25519", "match", "stored"),
                    ("127.0.0.43", "ssh-ed25519", "match", "stored")]
    assert "ssh-keyscan -t ssh-ed25519 -p" in page and "1 stale known_hosts lines" in page
    assert "live certificate changed" in page and "differs from the stored" in page


async def test_check_json_and_exit_codes(demo_lab: tuple[Lab, Path], tmp_path: Path) -> None:
    lab, cfg = demo_lab
    run = ["check", "--config.file", str(cfg), "--storage.path", str(tmp_path / "d")]
    res = await acli(*run, "--output", "json")
    assert res.returncode == 1, res.stderr  # ISE mismatch by subject
    items = json.loads(res.stdout)
    for field in ("store", "entry", "endpoint", "state", "evidence", "stored_subject",
                  "live_fingerprint_sha256"):
        assert all(field in i for i in items)
    ise = [i for i in items if "ISE-server" in i["stored_subject"]]
    assert [(i["state"], i["evidence"]) for i in ise] == [("mismatch", "subject")]
    assert ise[0]["remediation"].endswith(f"deletecert host {ise[0]['entry']}")

    # Fix ISE the PI way; only unknowns and one pinned match remain: exit 3.
    pri = lab.pis["prime-pri"]
    pri.remove_entry(ise[0]["entry"])
    await pri.connect_peers()
    res = await acli(*run)
    assert res.returncode == 3, res.stdout + res.stderr
    assert "STATE" in res.stdout and "mismatch" not in res.stdout

    # One store unreadable (its password changed on the PI side): exit 2.
    pri.users["admin"] = "changed-on-the-PI"
    res = await acli(*run)
    assert res.returncode == 2
    assert "prime-pri unreadable" in res.stderr and "rejected" in res.stderr


async def test_serve_reload_ready_and_probe(demo_lab: tuple[Lab, Path], tmp_path: Path) -> None:
    import asyncio

    _lab, cfg = demo_lab
    port = free_port()
    proc = subprocess.Popen(
        [*EXPORTER, "serve", "--config.file", str(cfg), "--web.listen-address",
         f"127.0.0.1:{port}", "--storage.path", str(tmp_path / "d"), "--log.format", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await asyncio.to_thread(wait_for, f"{base}/-/ready", time.monotonic() + 20)
        assert (await asyncio.to_thread(get, f"{base}/-/healthy"))[0] == 200
        reload_ok = "tofu_exporter_config_last_reload_successful"
        good = cfg.read_text()
        cfg.write_text(good + "\nstores: [oops\n")
        status, text = await asyncio.to_thread(get, f"{base}/-/reload", "POST")
        assert status == 500 and "old config kept" in text
        body = (await asyncio.to_thread(get, f"{base}/metrics"))[1]
        assert samples(body, reload_ok) == {(): 0.0}
        assert samples(body, "tofu_store_up")[(("store", "prime-pri"),)] == 1.0  # still serving

        cfg.write_text(good)
        os.kill(proc.pid, signal.SIGHUP)
        for _ in range(50):
            body = (await asyncio.to_thread(get, f"{base}/metrics"))[1]
            if samples(body, reload_ok) == {(): 1.0}:
                break
            await asyncio.sleep(0.1)
        assert samples(body, reload_ok) == {(): 1.0}

        status, text = await asyncio.to_thread(get, f"{base}/probe?target=pi-system-184")
        assert status == 200
        stores = {dict(k)["store"] for k in samples(text, "tofu_store_up")}
        assert stores == {"pi-system-184"}
        assert len(samples(text, "tofu_entry_info")) == 2
        assert (await asyncio.to_thread(get, f"{base}/probe?target=nope"))[0] == 400
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(r["msg"] == "reload failed, old config kept" for r in logs)
    password = (cfg.parent / "pi-password").read_text().strip()
    assert password not in err
