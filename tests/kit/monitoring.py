"""A real monitoring stack on loopback: lab -> exporter -> Prometheus -> Alertmanager -> webhook.

Shared by the alerting end-to-end test and the dashboard proof. The lab (simulated PI servers,
TLS endpoints) and the webhook receiver run on an asyncio loop in a background thread so the
tests themselves stay synchronous; the exporter, Prometheus and Alertmanager are real
processes, started exactly as an operator would start them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from exporter.cli.demo import prepare
from pilab.scene import Lab
from tests.kit.lab import ROOT, LoopThread, free_port

RULES = ROOT / "deploy" / "prometheus" / "rules" / "prime-tofu.rules.yml"
SHIPPED_PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
SHIPPED_ALERTMANAGER = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
JOB = "prime-tofu-exporter"  # the job name the shipped rules expect

T = TypeVar("T")


def binary(*names: str) -> str | None:
    """First of `names` on PATH (Debian names Alertmanager prometheus-alertmanager)."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


PROMETHEUS = binary("prometheus")
ALERTMANAGER = binary("prometheus-alertmanager", "alertmanager")
MISSING = [n for n, b in (("prometheus", PROMETHEUS), ("alertmanager", ALERTMANAGER)) if b is None]
SKIP_REASON = (
    f"needs the real {' and '.join(MISSING)} binaries (Debian: apt-get install prometheus "
    "prometheus-alertmanager; .ci/run installs them)"
)




@dataclass
class Webhook:
    """Alertmanager's webhook receiver: every notification with its arrival time."""

    received: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((time.monotonic(), await request.json()))
        return web.Response(text="ok")

    def alerts(self, alertname: str, status: str, **labels: str) -> list[tuple[float, dict[str, Any]]]:
        """(arrival time, alert) for every delivered alert with that name, status and labels."""
        out = []
        for t, payload in list(self.received):
            for alert in payload.get("alerts", []):
                lab = alert.get("labels", {})
                if (alert.get("status") == status and lab.get("alertname") == alertname
                        and all(lab.get(k) == v for k, v in labels.items())):
                    out.append((t, alert))
        return out


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return bytes(resp.read())


def wait_until(check: Callable[[], T | None], timeout: float, what: str, step: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except (OSError, ValueError) as e:  # not up yet
            last_error = e
            result = None
        if result:
            return result
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error})")


def shortened_rules(src: Path, dst: Path, for_: str = "1s") -> Path:
    """The shipped rules with every `for:` cut to `for_`: a test cannot wait 5 minutes.

    Expressions, labels and annotations stay exactly as shipped.
    """
    doc = yaml.safe_load(src.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = for_
    dst.write_text(yaml.safe_dump(doc, sort_keys=False, width=1000))
    return dst


@dataclass
class Stack:
    lab: Lab
    loop: LoopThread
    webhook: Webhook
    exporter: str  # base URLs
    prometheus: str
    alertmanager: str
    config_path: Path
    procs: dict[str, subprocess.Popen[bytes]]
    logs: Path

    def scrape(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        """The exporter's /metrics as sample name -> [(labels, value)]."""
        out: dict[str, list[tuple[dict[str, str], float]]] = {}
        text = http_get(self.exporter + "/metrics").decode()
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                out.setdefault(s.name, []).append((dict(s.labels), s.value))
        return out

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = self.prometheus + "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        body = json.loads(http_get(url))
        if body.get("status") != "success":
            raise AssertionError(f"query {promql!r} failed: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def query_range(self, promql: str, seconds: float, step: float = 1.0) -> list[dict[str, Any]]:
        end = time.time()
        params = {"query": promql, "start": end - seconds, "end": end, "step": step}
        url = self.prometheus + "/api/v1/query_range?" + urllib.parse.urlencode(params)
        body = json.loads(http_get(url))
        if body.get("status") != "success":
            raise AssertionError(f"query_range {promql!r} failed: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def process_logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.logs.glob("*.log"))
        )


def shipped_alertmanager(hook_url: str) -> dict[str, Any]:
    """deploy/alertmanager/alertmanager.yml as shipped (routes, group_wait, inhibitions), every
    receiver's webhook pointed at the test's receiver."""
    doc: dict[str, Any] = yaml.safe_load(SHIPPED_ALERTMANAGER.read_text())
    for receiver in doc["receivers"]:
        receiver["webhook_configs"] = [{"url": hook_url, "send_resolved": True}]
    return doc


def _spawn(name: str, argv: list[str], logs: Path) -> subprocess.Popen[bytes]:
    log = (logs / f"{name}.log").open("wb")
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=logs,
                            env={**os.environ, "PYTHONUNBUFFERED": "1",
                                 # the checkout's package, installed or not
                                 "PYTHONPATH": os.pathsep.join(
                                     filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})


def _stop(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for p in procs.values():
        if p.poll() is None:
            p.terminate()
    for p in procs.values():
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


@contextlib.contextmanager
def running_stack(tmp: Path, *, for_: str = "1s", interval: str = "1s", automation: bool = False,
                  more_jobs: Callable[[str], list[dict[str, Any]]] | None = None,
                  more_rules: tuple[Path, ...] = (), shipped: bool = False) -> Iterator[Stack]:
    """Lab + exporter + Prometheus (shipped rules, `for:` shortened) + Alertmanager + webhook;
    `automation`: the demo's automation host and its known_hosts store too.

    `more_jobs(exporter host:port)` gives scrape jobs beside the /metrics job; `more_rules`
    are rule files loaded as they are, beside the shipped ones. `shipped`: every interval as
    shipped instead (the config's default store and probe intervals, the rules' `for:`, the
    example Prometheus' scrape and evaluation intervals, the example Alertmanager's routes)."""
    assert PROMETHEUS and ALERTMANAGER, SKIP_REASON
    logs = tmp / "logs"
    logs.mkdir(parents=True)
    loop = LoopThread()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    lab: Lab | None = None
    runner: web.AppRunner | None = None
    try:
        lab, cfg = loop.run(prepare(tmp / "lab", fixed_ports=False, automation=automation))
        # The demo config's defaults, made fast for a test.
        doc = yaml.safe_load(cfg.read_text())
        if shipped:
            del doc["defaults"]["store_interval"], doc["defaults"]["probe_interval"]
        else:
            doc["defaults"].update(store_interval=interval, probe_interval=interval)
        cfg.write_text(yaml.safe_dump(doc, sort_keys=False))

        webhook = Webhook()
        hook_port = free_port()

        async def start_hook() -> web.AppRunner:
            app = web.Application()
            app.router.add_post("/hook", webhook.handle)
            r = web.AppRunner(app, access_log=None)
            await r.setup()
            await web.TCPSite(r, "127.0.0.1", hook_port).start()
            return r

        runner = loop.run(start_hook())
        webhook.url = f"http://127.0.0.1:{hook_port}/hook"

        exp_port, prom_port, am_port = free_port(), free_port(), free_port()
        procs["exporter"] = _spawn("exporter", [
            sys.executable, "-m", "exporter", "serve", "--config.file", str(cfg),
            "--web.listen-address", f"127.0.0.1:{exp_port}",
            "--storage.path", str(tmp / "exporter-data"),
        ], logs)

        am_cfg = tmp / "alertmanager.yml"
        am_cfg.write_text(yaml.safe_dump(shipped_alertmanager(webhook.url) if shipped else {
            "route": {
                "receiver": "hook",
                "group_by": ["alertname", "store", "entry", "pair", "peer"],
                "group_wait": "0s",
                "group_interval": "1s",
                "repeat_interval": "1h",
            },
            "receivers": [{"name": "hook",
                           "webhook_configs": [{"url": webhook.url, "send_resolved": True}]}],
        }))
        procs["alertmanager"] = _spawn("alertmanager", [
            ALERTMANAGER, f"--config.file={am_cfg}", f"--storage.path={tmp / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=",
        ], logs)

        rules = RULES if shipped else shortened_rules(RULES, tmp / "prime-tofu.rules.yml", for_)
        fast = {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
        prom_cfg = tmp / "prometheus.yml"
        prom_cfg.write_text(yaml.safe_dump({
            "global": yaml.safe_load(SHIPPED_PROMETHEUS.read_text())["global"] if shipped else fast,
            "rule_files": [str(rules), *map(str, more_rules)],
            "alerting": {"alertmanagers": [
                {"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
            "scrape_configs": [{"job_name": JOB,
                                "static_configs": [{"targets": [f"127.0.0.1:{exp_port}"]}]},
                               *(more_jobs(f"127.0.0.1:{exp_port}") if more_jobs else [])],
        }))
        procs["prometheus"] = _spawn("prometheus", [
            PROMETHEUS, f"--config.file={prom_cfg}", f"--storage.tsdb.path={tmp / 'prom-data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ], logs)

        stack = Stack(lab, loop, webhook, f"http://127.0.0.1:{exp_port}",
                      f"http://127.0.0.1:{prom_port}", f"http://127.0.0.1:{am_port}", cfg, procs, logs)
        for name, url in (("exporter", stack.exporter), ("alertmanager", stack.alertmanager),
                          ("prometheus", stack.prometheus)):
            def ready(name: str = name, url: str = url) -> bool:
                if procs[name].poll() is not None:
                    raise AssertionError(f"{name} exited:\n{stack.process_logs()}")
                return bool(http_get(url + "/-/ready"))
            wait_until(ready, 30, f"{name} ready")
        yield stack
    finally:
        _stop(procs)
        if runner is not None:
            loop.run(runner.cleanup())
        if lab is not None:
            loop.run(lab.stop())
        loop.close()
