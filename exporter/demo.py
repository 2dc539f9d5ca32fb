"""`prime-tofu-exporter demo`: the seed's scene on loopback, with the exporter serving against it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from exporter.cli import parse_listen, serve
from exporter.config import load_config
from pilab.scene import Lab, start_demo_scene
from exporter.logs import setup

log = logging.getLogger("exporter.demo")


def demo_config(lab: Lab, interval: str = "5s") -> dict[str, Any]:
    """The config an operator would write for this lab; dnac-1 pinned with its true fingerprint."""
    stores = [
        {"name": name, "host": pi.host, "port": pi.port} for name, pi in lab.pis.items()
    ]
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


async def prepare(workdir: Path, fixed_ports: bool = True) -> tuple[Lab, Path]:
    lab = await start_demo_scene(workdir, fixed_ports=fixed_ports)
    lab.write_known_hosts(workdir / "known_hosts")
    cfg = workdir / "prime-tofu-exporter.yml"
    cfg.write_text(yaml.safe_dump(demo_config(lab), sort_keys=False))
    return lab, cfg


async def _run(args: argparse.Namespace, workdir: Path) -> None:
    lab, cfg_path = await prepare(workdir)
    args.config_file = str(cfg_path)
    if args.storage_path == "data":  # the default: keep the demo's baselines with the demo
        args.storage_path = str(workdir / "data")
    config = load_config(cfg_path)
    handler = setup(args.log_level, args.log_format, config.secrets)
    listen = parse_listen(args.listen)
    shown = f"http://{listen[0] or '127.0.0.1'}:{listen[1]}/"
    print(f"demo lab in {workdir}; config {cfg_path}", flush=True)
    for name, pi in lab.pis.items():
        print(f"  PI {name}: ssh -p {pi.port} admin@{pi.host}", flush=True)
    for name, ep in lab.endpoints.items():
        print(f"  TLS {name}: {ep.endpoint} sha256={ep.current.fingerprint_sha256[:16]}…",
              flush=True)
    print(f"exporter: {shown} (metrics at {shown}metrics)", flush=True)

    stop = asyncio.Event()

    async def regenerate() -> None:
        await asyncio.sleep(args.regen_after)
        new = lab.regenerate("prime-sec")
        print(
            f"lab: regenerated prime-sec's certificate, same subject, new sha256="
            f"{new.fingerprint_sha256[:16]}… (PI still holds the old one)",
            flush=True,
        )

    async def stop_later() -> None:
        await asyncio.sleep(args.demo_duration)
        stop.set()

    tasks = [asyncio.create_task(regenerate())]
    if args.demo_duration > 0:
        tasks.append(asyncio.create_task(stop_later()))
    try:
        await serve(config, args, listen, handler, stop=stop)
    finally:
        for t in tasks:
            t.cancel()
        await lab.stop()


def run_demo(args: argparse.Namespace) -> int:
    with contextlib.ExitStack() as stack:
        if args.demo_dir:
            workdir = Path(args.demo_dir)
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tofu-demo-")))
        try:
            asyncio.run(_run(args, workdir))
        except KeyboardInterrupt:
            pass
        except OSError as e:
            print(f"demo failed: {e}", file=sys.stderr)
            return 2
    return 0
