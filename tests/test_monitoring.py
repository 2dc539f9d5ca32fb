"""The monitoring generator (monitoring/): the committed files are what it builds, other
settings give rules and a dashboard that work, and the dashboard fits Grafana's own schema."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoring import generate
from monitoring.settings import ROOT, Settings

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="needs promtool (Debian package prometheus)")


def test_committed_files_are_what_the_generator_builds() -> None:
    r = subprocess.run([sys.executable, "-m", "monitoring", "--check"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, f"{r.stdout[-3000:]}\n{r.stderr}"


def test_defaults_point_at_this_projects_runbook() -> None:
    s = Settings()
    url = s.runbook_url("TofuStoreDown")
    assert url.endswith("/blob/main/docs/runbook.md#tofustoredown")
    assert "example" not in url


def test_prometheusrule_spec_is_the_rule_file() -> None:
    rules = yaml.safe_load((ROOT / generate.RULES).read_text())
    crd = yaml.safe_load((ROOT / generate.PROMETHEUSRULE).read_text())
    assert crd["kind"] == "PrometheusRule" and crd["spec"] == rules


CUSTOM = Settings(selector='job="tofu", env="prod"', cluster_label="cluster",
                  runbook_url_pattern="https://wiki.example.net/tofu#%(anchor)s",
                  test_labels='job="tofu", env="prod"')


@pytest.fixture(scope="module")
def custom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("custom")
    for rel, text in generate.outputs(CUSTOM).items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text)
    return out


@needs_promtool
def test_custom_settings_rules_pass_their_promtool_tests(custom: Path) -> None:
    """Another job name, an extra matcher and a cluster label: every join and every test case
    still holds (the tests' series carry the custom labels, the alerts the cluster label)."""
    rules_dir = custom / generate.RULES.parent
    assert PROMTOOL
    r = subprocess.run([PROMTOOL, "test", "rules", generate.RULE_TESTS.name], cwd=rules_dir,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr
    text = (custom / generate.RULES).read_text()
    assert "prime-tofu-exporter|prime-tofu-probe" not in text
    assert "on(cluster, job, instance, store, entry)" in text
    assert "https://wiki.example.net/tofu#tofucertificatemismatch" in text


def dashboard_queries(doc: dict[str, Any]) -> list[str]:
    out = [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]
    out += [a["expr"] for a in doc["annotations"]["list"] if "expr" in a]
    return out


def test_custom_settings_dashboard_has_a_cluster_variable_on_every_query(custom: Path) -> None:
    doc = json.loads((custom / generate.DASHBOARD).read_text())
    names = [v["name"] for v in doc["templating"]["list"]]
    assert names == ["datasource", "cluster", "job", "instance", "store", "entry"]
    job = next(v for v in doc["templating"]["list"] if v["name"] == "job")
    assert 'job="tofu", env="prod", cluster="$cluster"' in job["query"]["query"]
    for expr in dashboard_queries(doc):
        for metric in re.findall(r"\b(?:tofu_[a-z_]+|up)\{([^}]*)\}", expr):
            assert 'cluster="$cluster"' in metric, expr


def schema_unknown_keys(doc: dict[str, Any]) -> list[str]:
    """Keys of doc that Grafana's dashboard schema (the SDK's generated models) does not know:
    decoding drops them, so they are missing after a round trip."""
    from grafana_foundation_sdk.cog import plugins
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models import dashboard as dm

    plugins.register_default_plugins()  # panel options and queries by plugin type
    back = json.loads(json.dumps(dm.Dashboard.from_json(doc), cls=JSONEncoder))
    lost: list[str] = []

    def walk(a: Any, b: Any, path: str) -> None:
        if isinstance(a, dict):
            for k, v in a.items():
                if not isinstance(b, dict) or k not in b:
                    lost.append(f"{path}.{k}")
                else:
                    walk(v, b[k], f"{path}.{k}")
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                walk(x, y, f"{path}[{i}]")
        elif a != b:
            lost.append(f"{path}: {a!r} became {b!r}")

    walk(doc, back, "")
    return lost


def test_dashboard_fits_grafanas_schema() -> None:
    doc = json.loads((ROOT / generate.DASHBOARD).read_text())
    assert schema_unknown_keys(doc) == []
    # The check has teeth: a field Grafana does not know is found.
    doc["panels"][1]["fieldConfig"]["defaults"]["colour"] = "red"
    doc["templating"]["list"][1]["definiton"] = "typo"
    assert len(schema_unknown_keys(doc)) == 2
