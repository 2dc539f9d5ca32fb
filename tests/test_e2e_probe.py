"""Both scrape forms at once, through real servers: every stale direction pages once.

lab -> exporter -> Prometheus scraping /metrics (the compose job) and the shipped multi-target
/probe job (deploy/prometheus/probe-scrape.yml, as shipped but pointed at this exporter and
scraped every 2 s) -> the shipped rules (`for:` cut to 1s) -> Alertmanager -> webhook. Beside
them, the rules a /probe-only site generates (`--selector 'job="prime-tofu-probe"'`), their
alert names prefixed with ProbeJob so they are counted apart: evaluated over the /probe job
alone, they too fire once per stale direction (the pair series are on the primary's target
only).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoring import rules
from monitoring.settings import PROBE_JOB, Settings
from tests.kit.monitoring import JOB, MISSING, ROOT, SKIP_REASON, running_stack, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(bool(MISSING), reason=SKIP_REASON)]

PROBE_SCRAPE = ROOT / "deploy" / "prometheus" / "probe-scrape.yml"
PREFIX = "ProbeJob"
HA, MISMATCH = "TofuHAPeerMismatch", "TofuCertificateMismatch"


def probe_jobs(address: str) -> list[dict[str, Any]]:
    """The shipped /probe job, its relabelling pointed at `address`, scraped every 2 s."""
    jobs: list[dict[str, Any]] = copy.deepcopy(yaml.safe_load(PROBE_SCRAPE.read_text())["scrape_configs"])
    for job in jobs:
        job.update(scrape_interval="2s", scrape_timeout="2s")
        for rc in job["relabel_configs"]:
            if rc.get("target_label") == "__address__":
                rc["replacement"] = address
    return jobs


def probe_site_rules(dst: Path) -> Path:
    doc = yaml.safe_load(rules.render(Settings(selector=f'job="{PROBE_JOB}"')))
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "alert" not in rule:  # a recording rule
                continue
            rule["alert"] = PREFIX + rule["alert"]
            if "for" in rule:
                rule["for"] = "1s"
    dst.write_text(yaml.safe_dump(doc, sort_keys=False, width=1000))
    return dst


def test_metrics_and_probe_jobs_page_each_stale_direction_once(tmp_path: Path) -> None:
    extra = probe_site_rules(tmp_path / "probe-site.rules.yml")
    with running_stack(tmp_path, more_jobs=probe_jobs, more_rules=(extra,)) as stack:
        up = f'up{{job="{PROBE_JOB}"}} == 1'
        targets = wait_until(lambda: (r := stack.query(up)) and len(r) == 2 and r, 30, "both targets up")
        assert {t["metric"]["instance"] for t in targets} == {"prime-pri", "prime-sec"}
        wait_until(lambda: stack.query(f'tofu_store_up{{job="{PROBE_JOB}",store="prime-sec"}} == 1'),
                   30, "the /probe job's series in Prometheus")

        stack.loop.call(lambda: stack.lab.regenerate("prime-sec"))

        def firing(alertname: str) -> list[dict[str, Any]]:
            return stack.query(f'ALERTS{{alertname="{alertname}",alertstate="firing"}}')

        try:
            for name in (HA, PREFIX + HA):
                wait_until(lambda n=name: len(firing(n)) >= 2, 45, f"{name} firing for both directions")
        except AssertionError:
            print(stack.process_logs())
            raise
        time.sleep(6)  # three /probe scrapes and six rule evaluations more

        directions = {("prime-pri", "prime-sec"), ("prime-sec", "prime-sec")}
        for name, job in ((HA, JOB), (PREFIX + HA, PROBE_JOB)):
            # At no evaluation since the regeneration was any direction pending or firing twice.
            most = stack.query(
                f'max_over_time((count by (store, peer) (ALERTS{{alertname="{name}"}}))[20s:1s])')
            assert {(r["metric"]["store"], r["metric"]["peer"]): r["value"][1] for r in most} == {
                d: "1" for d in directions}, (name, most)
            now = firing(name)
            assert {(a["metric"]["job"], a["metric"]["store"], a["metric"]["peer"]) for a in now} == {
                (job, *d) for d in directions} and len(now) == 2, now
        # The stale entries' own alerts: once per (store, entry), from one job per rule set.
        for name, job in ((MISMATCH, JOB), (PREFIX + MISMATCH, PROBE_JOB)):
            now = firing(name)
            keys = [(a["metric"]["store"], a["metric"]["entry"]) for a in now]
            assert len(keys) == len(set(keys)) >= 2 and {a["metric"]["job"] for a in now} == {job}, now

        # What the pager received from the shipped rules: one alert per stale direction.
        delivered = wait_until(lambda: (d := {
            (a["labels"]["job"], a["labels"]["store"], a["labels"]["peer"])
            for _, a in stack.webhook.alerts(HA, "firing")}) and len(d) >= 2 and d, 15,
            "TofuHAPeerMismatch at the webhook")
        assert delivered == {(JOB, *d) for d in directions}
