"""The jsonnet mixin (mixin/), evaluated by a real jsonnet (the `jsonnet` package: the C++
implementation's Python binding), says what the generated rules and dashboard say: with its
default _config exactly the committed files, with another _config what the generator writes
for those settings."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoring import dashboard, generate, rules
from monitoring.settings import ROOT, Settings

_jsonnet = pytest.importorskip("_jsonnet", reason="needs the jsonnet package (the test extra)")

MIXIN = ROOT / "mixin"


def evaluate(snippet: str) -> Any:
    return json.loads(_jsonnet.evaluate_snippet("test.jsonnet", snippet, jpathdir=[str(MIXIN)]))


def test_default_mixin_is_the_committed_rules_and_dashboard() -> None:
    # What `jsonnet -S mixin/prometheus_alerts.jsonnet` prints: YAML text.
    alerts = yaml.safe_load(json.loads(_jsonnet.evaluate_file(str(MIXIN / "prometheus_alerts.jsonnet"))))
    assert alerts == yaml.safe_load((ROOT / generate.RULES).read_text())
    boards = json.loads(_jsonnet.evaluate_file(str(MIXIN / "dashboards.jsonnet")))
    assert boards == {"prime-tofu.json": json.loads((ROOT / generate.DASHBOARD).read_text())}


SITE = Settings(selector='job="tofu", env="prod"', dashboard_uid="tofu-prod",
                runbook_url_pattern="https://wiki.example.net/tofu%%20runbook#%(anchor)s",
                dashboard_title="TOFU (prod)")


@pytest.mark.parametrize("cluster", [None, "cluster", "k8s_cluster"])
def test_mixin_config_gives_what_the_generator_gives_for_those_settings(cluster: str | None) -> None:
    site = replace(SITE, cluster_label=cluster)
    mixin = evaluate("local m = (import 'mixin.libsonnet') + { _config+:: {"
                     f" selector: {json.dumps(site.selector)},"
                     f" clusterLabel: {json.dumps(site.cluster_label)},"
                     f" runbookURLPattern: {json.dumps(site.runbook_url_pattern)},"
                     f" dashboardUID: {json.dumps(site.dashboard_uid)},"
                     f" dashboardTitle: {json.dumps(site.dashboard_title)} }} }};"
                     " { prometheusAlerts: m.prometheusAlerts, grafanaDashboards: m.grafanaDashboards }")
    assert mixin["prometheusAlerts"] == rules.as_data(site)
    board = mixin["grafanaDashboards"]["prime-tofu.json"]
    assert board == json.loads(dashboard.render(site))
    assert board["links"][0]["url"] == "https://wiki.example.net/tofu%20runbook"
    assert any('tofu_store_up{job="tofu", env="prod"}' in r["expr"]
               for r in mixin["prometheusAlerts"]["groups"][0]["rules"])
    variables = [v["name"] for v in board["templating"]["list"]]
    assert ("cluster" in variables) == (cluster is not None), variables


def test_generator_check_covers_the_mixin(tmp_path: Path) -> None:
    """`python -m monitoring --check` fails on a stale mixin file (so CI does)."""
    r = subprocess.run([sys.executable, "-m", "monitoring", "--out", str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    stale = tmp_path / "mixin" / "alerts.libsonnet"
    stale.write_text(stale.read_text().replace("TofuStoreDown", "TofuStoreGone"))
    r = subprocess.run([sys.executable, "-m", "monitoring", "--check", "--out", str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "mixin/alerts.libsonnet" in r.stdout
