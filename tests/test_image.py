"""The container image, built from the Dockerfile as written and run with podman (marker `image`).

Not in the default suite: `scripts/image-check` (run by .ci/run) installs podman, makes the base
image when it is missing, then runs this module. Every check runs the real image:
- labels, user and HEALTHCHECK as built; no compiler and none of our test files inside;
- `demo` as uid 10001 with a read-only root and the data volume, serving the seed's scene,
  and `podman healthcheck run` passing;
- the default command with a real config and known_hosts mounted read-only and the password as
  a read-only secret file, reading a lab PI store on the host's loopback (--network host);
  SIGTERM stops it within 2 s, the baselines are in the volume's database, and a restarted
  container still proves a regenerated certificate against them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import sqlite3
import subprocess
import sys
import time
import tomllib
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilab.pki import pi_subject
from pilab.tls import TlsEndpoint
from tests.kit.lab import PASSWORD, free_port, start_pi
from tests.kit.processes import value

# The first test also builds the image (minutes on a loaded 2-core machine).
pytestmark = [pytest.mark.image, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parent.parent
PODMAN = str(ROOT / "scripts" / "podman")
TAG = "localhost/prime-tofu-exporter:image-check"
DATA = "/var/lib/prime-tofu-exporter"
UID = 10001


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, \
            f"podman {' '.join(args)}: {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r


def inspect(kind: str, name: str) -> dict[str, Any]:
    data = json.loads(podman(kind, "inspect", name).stdout)
    assert isinstance(data, list) and len(data) == 1
    return dict(data[0])


@dataclass(frozen=True)
class Image:
    tag: str
    version: str
    revision: str
    build_seconds: float
    size_bytes: int


@pytest.fixture(scope="module")
def image() -> Iterator[Image]:
    """`podman build` of the repository's Dockerfile, with the OCI label arguments."""
    subprocess.run([str(ROOT / "scripts" / "image-check"), "--prepare"], check=True, timeout=900)
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    git = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    revision = git.stdout.strip() if git.returncode == 0 else "unknown"
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    started = time.monotonic()
    podman("build", "--pull=never", "--network", "host", "--format", "docker", "--tag", TAG,
           "--build-arg", f"VERSION={version}", "--build-arg", f"REVISION={revision}",
           "--build-arg", f"CREATED={created}", str(ROOT), timeout=1800)
    seconds = time.monotonic() - started
    size = int(inspect("image", TAG)["Size"])
    print(f"\nimage {TAG}: built in {seconds:.0f} s (podman's layer cache reused where the inputs "
          f"were unchanged), {size / 1e6:.0f} MB")
    yield Image(TAG, version, revision, seconds, size)
    # vfs keeps a full copy per layer: drop the untagged build stage and the previous image
    # (a few GB) so repeated runs do not fill the disk; the base and this image stay.
    podman("image", "prune", "--force", check=False)


@contextlib.contextmanager
def container(image: Image, *args: str, network: str = "host", name_hint: str = "c") -> Iterator[str]:
    """`podman run -d` with a read-only root and a fresh data volume; removed afterwards."""
    name = f"tofu-{name_hint}-{uuid.uuid4().hex[:8]}"
    volume = f"{name}-data"
    try:
        podman("run", "--detach", "--pull=never", "--name", name, "--network", network, "--read-only",
               "--volume", f"{volume}:{DATA}", *args)
        yield name
    finally:
        logs = podman("logs", name, check=False)
        print(f"\n--- {name} log (tail)\n{(logs.stdout + logs.stderr)[-3000:]}")
        podman("rm", "--force", "--time", "0", name, check=False)
        podman("volume", "rm", "--force", volume, check=False)


def state(name: str) -> dict[str, Any]:
    return dict(inspect("container", name)["State"])


def process_uid(name: str) -> tuple[int, int]:
    """Real uid and gid of the container's main process, read on the host."""
    pid = state(name)["Pid"]
    status = Path(f"/proc/{pid}/status").read_text()
    uid = re.search(r"^Uid:\s+(\d+)", status, re.M)
    gid = re.search(r"^Gid:\s+(\d+)", status, re.M)
    assert uid and gid
    return int(uid.group(1)), int(gid.group(1))


def wait_until(check: Any, timeout: float, what: str, name: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert state(name)["Running"], f"{name} exited while waiting for {what}"
        result = check()
        if result:
            return result
        time.sleep(0.3)
    raise AssertionError(f"{name}: no {what} within {timeout:.0f} s")


def http(url: str) -> str:
    with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=3) as r:
        return str(r.read().decode())
    return ""


# ---------------------------------------------------------------- as built


def test_image_labels_user_volume_and_healthcheck_as_built(image: Image) -> None:
    cfg = inspect("image", image.tag)["Config"]
    labels = cfg["Labels"]
    assert labels["org.opencontainers.image.version"] == image.version  # from pyproject.toml
    assert labels["org.opencontainers.image.revision"] == image.revision
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", labels["org.opencontainers.image.created"])
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert cfg["User"] == f"{UID}:{UID}"
    assert DATA in cfg["Volumes"]
    health = inspect("image", image.tag).get("Healthcheck") or cfg.get("Healthcheck")
    assert health and "/-/healthy" in " ".join(health["Test"])
    r = podman("run", "--rm", "--pull=never", "--network", "none", "--read-only", image.tag, "--version")
    assert r.stdout.strip() == f"prime-tofu-exporter {image.version}"


def test_image_holds_no_compiler_and_none_of_our_test_files(image: Image) -> None:
    # By file name, leaving out names our shipped packages use too (bench/web.py, exporter/web/routes.py).
    # Inside installed packages (third-party ones hold an aiohttp/web.py) names say nothing: our
    # distribution's own files are checked by its RECORD below; top-level site-packages files are
    # still searched.
    shipped = {p.name for d in ("exporter", "pilab") for p in (ROOT / d).rglob("*.py")}
    ours = sorted({p.name for d in ("tests", "bench") for p in (ROOT / d).rglob("*.py")} - shipped)
    find_ours = " -o ".join(f"-name '{n}'" for n in ours)
    script = (
        "for c in gcc cc c++ g++ clang tcc x86_64-linux-gnu-gcc aarch64-linux-gnu-gcc; do "
        "command -v $c; done; "
        "ls /usr/bin /usr/local/bin | grep -E '^(gcc|g\\+\\+|cc|c\\+\\+|clang)(-[0-9.]+)?$'; "
        "find / -xdev -path '*/site-packages/*/*' -prune -o "
        f"\\( {find_ours} -o -name conftest.py \\) -print; "
        "find /opt/venv -path '*site-packages/tests' -print; true"
    )
    r = podman("run", "--rm", "--pull=never", "--network", "none", "--read-only",
               "--entrypoint", "/bin/sh", image.tag, "-c", script)
    assert r.stdout.strip() == "", f"compilers or test files in the image:\n{r.stdout}"
    # Our distribution's own file list: the exporter and pilab (the demo's lab) packages and
    # the metadata, nothing else.
    record = podman("run", "--rm", "--pull=never", "--network", "none", "--read-only", "--entrypoint",
                    "/opt/venv/bin/python", image.tag, "-c",
                    "from importlib.metadata import files; "
                    "print('\\n'.join(str(f) for f in files('prime-tofu-exporter')))").stdout.split()
    assert record and all(f.split("/")[0] in ("exporter", "pilab", "prime_tofu_exporter-" + image.version
                                              + ".dist-info") or f.startswith("../") for f in record), record
    assert any(f.endswith("licenses/LICENSE") for f in record), "the wheel in the image has no LICENSE"


# ---------------------------------------------------------------- demo


def test_demo_runs_as_uid_10001_read_only_serves_the_scene_and_passes_its_healthcheck(
        image: Image) -> None:
    # A private network namespace: the demo's lab and the exporter keep their own loopback, so
    # the image's HEALTHCHECK (fixed at :9877) checks this container and no one else's.
    with container(image, image.tag, "demo", network="none", name_hint="demo") as name:
        assert process_uid(name) == (UID, UID)
        host_config = inspect("container", name)["HostConfig"]
        assert host_config["ReadonlyRootfs"] is True
        mounts = {m["Destination"]: m for m in inspect("container", name)["Mounts"]}
        assert mounts[DATA]["Type"] == "volume" and mounts[DATA]["RW"] is True

        def sh(cmd: str) -> subprocess.CompletedProcess[str]:
            return podman("exec", name, "/bin/sh", "-c", cmd, check=False)

        root_write = sh("touch /opt/venv/written-at-run-time")
        assert root_write.returncode != 0 and "Read-only file system" in root_write.stderr
        data_write = sh(f"touch {DATA}/.write-check && rm {DATA}/.write-check && id -u")
        assert data_write.returncode == 0 and data_write.stdout.strip() == str(UID), data_write.stderr

        # The seed's scene, checked from inside the container's network namespace by the same
        # standard-library script .ci/run uses on the host.
        check = subprocess.run(
            [PODMAN, "exec", "-i", name, "/opt/venv/bin/python", "-", "http://127.0.0.1:9877",
             "--timeout", "90"], input=(ROOT / "scripts" / "demo-check").read_text(),
            capture_output=True, text=True, timeout=150)
        assert check.returncode == 0, check.stdout + check.stderr
        print(check.stdout.strip())

        health = podman("healthcheck", "run", name, check=False)
        assert health.returncode == 0, f"HEALTHCHECK failed: {health.stdout}{health.stderr}"


# ---------------------------------------------------------------- real config, lab on the host


def _config(tmp: Path, pi_host: str, pi_port: int, known_hosts: str) -> tuple[Path, Path]:
    """config.yml + known_hosts (dir mounted read-only) and the password file (a secret)."""
    etc = tmp / "etc"
    etc.mkdir()
    (etc / "known_hosts").write_text(known_hosts + "\n")
    (etc / "config.yml").write_text(yaml.safe_dump({
        "defaults": {
            "username": "admin",
            "password_file": "/run/secrets/pi-password",
            "known_hosts": "/etc/prime-tofu-exporter/known_hosts",
            "cli_mode": "shell",
            "connect_timeout": "5s",
            "command_timeout": "10s",
            "probe_timeout": "3s",
            "store_interval": "1s",
            "probe_interval": "1s",
        },
        "stores": [{"name": "lab-pi", "host": pi_host, "port": pi_port}],
    }, sort_keys=False))
    for p in (etc, etc / "known_hosts", etc / "config.yml"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    secret = tmp / "pi-password"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o400)
    shutil.chown(secret, UID, UID)  # readable by the image's user only, as a Secret with fsGroup
    return etc, secret


def _verdict(body: str, entry: str) -> tuple[str, str] | None:
    states = [s for s in ("match", "mismatch", "unknown", "unreachable")
              if value(body, "tofu_certificate_state", store="lab-pi", entry=entry, state=s) == 1]
    evidence = [e for e in ("fingerprint", "log", "baseline", "subject", "none") if value(
        body, "tofu_certificate_evidence_info", store="lab-pi", entry=entry, evidence=e) == 1]
    return (states[0], evidence[0]) if len(states) == 1 and len(evidence) == 1 else None


def _wait_stopped(name: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (s := state(name))["Running"] and time.monotonic() < deadline:
        time.sleep(0.02)
    return s


def _db_baselines(volume: str) -> dict[str, tuple[str, str]]:
    mountpoint = Path(inspect("volume", volume)["Mountpoint"])
    # immutable: read the file as left, creating no -wal/-shm files the container could not use.
    db = sqlite3.connect(f"file:{mountpoint / 'baseline.db'}?immutable=1", uri=True)
    try:
        rows = db.execute("SELECT entry, kind, fingerprint FROM baselines WHERE store = 'lab-pi'")
        return {e: (k, fp) for e, k, fp in rows}
    finally:
        db.close()


async def test_real_config_against_a_lab_store_sigterm_and_restart_keep_baselines(
        image: Image, tmp_path: Path) -> None:
    ise = TlsEndpoint(pi_subject("ISE-server"))
    pan = TlsEndpoint(pi_subject("PAN-server"))
    await ise.start()
    await pan.start()
    pi = await start_pi("lab-pi")
    try:
        old, new = f"{ise.host}_{ise.port}", f"{pan.host}_{pan.port}"
        pi.add_peer(old, ise.host, ise.port)
        await pi.connect_peers()  # PI trusts ISE on first use, before the exporter starts
        etc, secret = _config(tmp_path, pi.host, pi.port, pi.known_hosts_line())
        port = free_port()
        cmd = [*inspect("image", image.tag)["Config"]["Cmd"], f"--web.listen-address=127.0.0.1:{port}"]
        assert "--config.file=/etc/prime-tofu-exporter/config.yml" in cmd
        url = f"http://127.0.0.1:{port}"

        async def until(check: Any, timeout: float, what: str) -> Any:
            return await asyncio.to_thread(wait_until, check, timeout, what, name)

        with container(image, "--volume", f"{etc}:/etc/prime-tofu-exporter:ro",
                       "--volume", f"{secret}:/run/secrets/pi-password:ro",
                       image.tag, *cmd, name_hint="serve") as name:
            volume = f"{name}-data"
            assert process_uid(name) == (UID, UID)
            # ISE existed when the exporter first read the store: adopted, unknown on subject.
            await until(lambda: _verdict(http(url + "/metrics"), old) == ("unknown", "none"), 60,
                        "the first read of the lab store")
            # PAN appears while it watches: a witnessed baseline, a match on it.
            pi.add_peer(new, pan.host, pan.port)
            await pi.connect_peers()
            await until(lambda: _verdict(http(url + "/metrics"), new) == ("match", "baseline"), 30,
                        "the new entry witnessed")

            t0 = time.monotonic()
            podman("kill", "--signal", "TERM", name)
            stopped = await asyncio.to_thread(_wait_stopped, name, 5.0)
            took = time.monotonic() - t0
            assert not stopped["Running"] and took <= 2.0, f"still running {took:.1f} s after SIGTERM"
            assert stopped["ExitCode"] == 0, f"exit code {stopped['ExitCode']} after SIGTERM"
            logs = podman("logs", name)
            assert "Traceback" not in logs.stdout + logs.stderr
            print(f"\nSIGTERM -> exited with 0 in {took:.2f} s")

            assert _db_baselines(volume) == {
                old: ("adopted", ise.current.fingerprint_sha256),
                new: ("witnessed", pan.current.fingerprint_sha256),
            }

            # Both peers regenerate (same subjects) while the exporter is down. Only baselines
            # kept across the restart can prove it: a lost database would adopt the new ones.
            ise.regenerate()
            pan.regenerate()
            podman("start", name)
            await until(lambda: (_verdict(b := http(url + "/metrics"), old), _verdict(b, new))
                        == (("mismatch", "baseline"), ("mismatch", "baseline")), 60,
                        "both regenerated certificates proven against the kept baselines")
    finally:
        await pi.stop()
        await ise.stop()
        await pan.stop()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-m", "image", "-s"]))
