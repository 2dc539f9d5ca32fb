"""`prime-tofu-exporter demo`: the seed's scene on loopback, with the exporter serving against it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from exporter.cli.logsetup import setup
from exporter.cli.loop import run_async
from exporter.cli.serve import serve
from exporter.config.load import load_config
from exporter.web.options import WebOptions
from pilab.hosts import SSHD_BACKEND, AutomationHosts, start_automation_hosts
from pilab.scene import Lab, start_demo_scene

if TYPE_CHECKING:
    from exporter.web.config import WebConfig

log = logging.getLogger("exporter.demo")


AUTOMATION_STORE = "automation"


def automation_store(hosts: AutomationHosts) -> dict[str, Any]:
    """The automation host's known_hosts file as a store: the hashed line is found through the
    `resolve:` names."""
    return {"name": AUTOMATION_STORE, "kind": "known_hosts", "path": str(hosts.known_hosts_file),
            "resolve": hosts.resolve}


def demo_config(lab: Lab, interval: str = "5s") -> dict[str, Any]:
    """The config an operator would write for this lab; dnac-1 pinned with its true fingerprint;
    the automation host's known_hosts file as a store when the lab runs it."""
    stores = [
        {"name": name, "host": pi.host, "port": pi.port} for name, pi in lab.pis.items()
    ]
    if lab.ssh_hosts is not None:
        stores.append(automation_store(lab.ssh_hosts))
    dnac = lab.endpoints["dnac-1"]
    return {
        "defaults": {
            "username": "admin",
            "password_file": "pi-password",
            "known_hosts": "known_hosts",
            "cli_mode": "shell",
            "connect_timeout": "5s",
            "command_timeout": "10s",
            "probe_timeout": "3s",
            "store_interval": interval,
            "probe_interval": interval,
        },
        "stores": stores,
        "pins": [{"endpoint": dnac.endpoint, "sha256": dnac.current.fingerprint_sha256}],
        "pairs": [{"name": "prime-ha", "primary": "prime-pri", "secondary": "prime-sec"}],
    }


async def prepare(workdir: Path, fixed_ports: bool = True,
                  automation: bool = False) -> tuple[Lab, Path]:
    """The lab and its config. `automation`: also start the automation host's SSH targets
    (pilab.hosts; the `demo` command does, tests about the PI scene alone do not)."""
    lab = await start_demo_scene(workdir, fixed_ports=fixed_ports)
    if automation:
        try:
            lab.ssh_hosts = await start_automation_hosts(workdir / "automation",
                                                         fixed_ports=fixed_ports)
        except BaseException:
            await lab.stop()
            raise
    lab.write_known_hosts(workdir / "known_hosts")
    cfg = workdir / "prime-tofu-exporter.yml"
    cfg.write_text(yaml.safe_dump(demo_config(lab), sort_keys=False))
    return lab, cfg


@dataclass(frozen=True)
class DemoOptions:
    demo_dir: str | None
    regen_after: float
    duration: float
    web_opts: WebOptions  # every --web.* flag, as `serve` takes them
    web_cfg: WebConfig | None  # --web.config.file, loaded and checked
    storage_path: str | None  # None: <demo dir>/data
    log_level: str
    log_format: str


def _say_automation(hosts: AutomationHosts | None) -> None:
    if hosts is None:
        return
    how = ("real sshd processes (/usr/sbin/sshd)" if hosts.backend == SSHD_BACKEND else
           "asyncssh servers: this machine has no /usr/sbin/sshd (install openssh-server for real ones)")
    print(f"  automation host: {hosts.known_hosts_file}, its SSH targets on {how}", flush=True)
    for name, h in hosts.hosts.items():
        print(f"    SSH {name}: {h.lookup}", flush=True)
    print("    web1 was reinstalled (new ed25519 key: mismatch), db1 dropped its ecdsa key "
          "(a stale line: unknown), git's line is hashed (found through resolve:)", flush=True)


async def _run(opts: DemoOptions, workdir: Path) -> None:
    lab, cfg_path = await prepare(workdir, automation=True)
    storage_path = opts.storage_path or str(workdir / "data")  # the demo's baselines with the demo
    config = load_config(cfg_path)
    handler = setup(opts.log_level, opts.log_format, config.secrets)
    web, web_cfg = opts.web_opts, opts.web_cfg
    scheme = "https" if web_cfg is not None and web_cfg.tls is not None else "http"
    print(f"demo lab in {workdir}; config {cfg_path}", flush=True)
    for name, pi in lab.pis.items():
        print(f"  PI {name}: ssh -p {pi.port} admin@{pi.host}", flush=True)
    for name, ep in lab.endpoints.items():
        print(f"  TLS {name}: {ep.endpoint} sha256={ep.current.fingerprint_sha256[:16]}…",
              flush=True)
    _say_automation(lab.ssh_hosts)
    if web.systemd_socket:
        print("exporter: on the sockets systemd passed", flush=True)
    for host, port in web.listen if not web.systemd_socket else ():
        shown = f"{scheme}://{host or '127.0.0.1'}:{port}{web.route_prefix}/"
        print(f"exporter: {shown} (metrics at {shown}{web.telemetry_path.lstrip('/')})", flush=True)
    if web.health_listen:
        print(f"health: {web.health_listen} (/-/healthy, /-/ready)", flush=True)

    stop = asyncio.Event()

    async def regenerate() -> None:
        await asyncio.sleep(opts.regen_after)
        new = lab.regenerate("prime-sec")
        print(
            f"lab: regenerated prime-sec's certificate, same subject, new sha256="
            f"{new.fingerprint_sha256[:16]}… (PI still holds the old one)",
            flush=True,
        )

    async def stop_later() -> None:
        await asyncio.sleep(opts.duration)
        stop.set()

    tasks = [asyncio.create_task(regenerate())]
    if opts.duration > 0:
        tasks.append(asyncio.create_task(stop_later()))
    try:
        await serve(config, str(cfg_path), storage_path, web.listen[0], handler, web_cfg,
                    stop=stop, web_opts=web)
    finally:
        for t in tasks:
            t.cancel()
        await lab.stop()


def run_demo(**options: Any) -> int:
    opts = DemoOptions(**options)
    with contextlib.ExitStack() as stack:
        if opts.demo_dir:
            workdir = Path(opts.demo_dir)
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tofu-demo-")))
        try:
            run_async(_run(opts, workdir))
        except KeyboardInterrupt:
            pass
        except OSError as e:
            print(f"demo failed: {e}", file=sys.stderr)
            return 2
    return 0
