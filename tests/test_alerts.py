"""The shipped alert rules: promtool accepts them and their unit tests pass; every alert follows
the monitoring-mixins conventions and links to a runbook heading that exists."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = ROOT / "deploy" / "prometheus" / "rules"
RULES = RULES_DIR / "prime-tofu.rules.yml"
RULE_TESTS = RULES_DIR / "prime-tofu.rules.test.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="needs promtool (Debian package prometheus; .ci/run installs it)")

EXPECTED = {
    "TofuCertificateMismatch": "critical",
    "TofuHAPeerMismatch": "critical",
    "TofuCertificateStateUnknown": "info",
    "TofuStoreDown": "warning",
    "TofuStoreStale": "warning",
    "TofuProbeFailing": "warning",
    "TofuLiveCertificateExpiringSoon": "warning",
    "TofuLiveCertificateExpired": "critical",
    "TofuExporterDown": "warning",
    "TofuExporterConfigReloadFailed": "warning",
}


def alerts() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def github_anchors(markdown: str) -> set[str]:
    """Heading anchors as GitHub renders them: lowercase, punctuation dropped, spaces to '-'."""
    anchors = set()
    for line in markdown.splitlines():
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            text = m[1].strip().lower().replace("`", "")
            anchors.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return anchors


def run(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL
    return subprocess.run([PROMTOOL, *args], cwd=RULES_DIR, capture_output=True, text=True,
                          timeout=120)


@needs_promtool
def test_promtool_check_rules() -> None:
    res = run("check", "rules", RULES.name)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in res.stdout


@needs_promtool
def test_promtool_unit_tests_pass() -> None:
    res = run("test", "rules", RULE_TESTS.name)
    assert res.returncode == 0, res.stdout + res.stderr


def test_every_alert_has_severity_annotations_and_a_runbook_anchor() -> None:
    anchors = github_anchors(RUNBOOK.read_text())
    found = {a["alert"]: a for a in alerts()}
    assert {n: a["labels"]["severity"] for n, a in found.items()} == EXPECTED
    for name, rule in found.items():
        notes = rule["annotations"]
        assert notes["summary"].strip() and notes["description"].strip(), name
        url = notes["runbook_url"]
        assert url.endswith(f"docs/runbook.md#{name.lower()}"), (name, url)
        assert name.lower() in anchors, f"docs/runbook.md has no heading for {name}"


def test_runbook_internal_links_resolve() -> None:
    text = RUNBOOK.read_text()
    anchors = github_anchors(text)
    links = re.findall(r"\]\(#([^)]+)\)", text)
    assert links
    assert not [a for a in links if a not in anchors]


def test_every_alert_has_a_firing_unit_test() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    cases = [c for t in tests for c in t.get("alert_rule_test", [])]
    for name in EXPECTED:
        mine = [c for c in cases if c["alertname"] == name]
        assert any(c["exp_alerts"] for c in mine), f"{name}: no case where it fires"
        assert any(not c["exp_alerts"] for c in mine), f"{name}: no case where it stays silent"


def test_mismatch_annotations_carry_the_fix() -> None:
    rule = next(a for a in alerts() if a["alert"] == "TofuCertificateMismatch")
    fix = "ncs certvalidation tofu-certs deletecert host {{ $labels.entry }}"
    assert rule["annotations"]["command"] == fix
    assert fix in rule["annotations"]["description"]
    for label in ("store", "entry", "evidence", "stored_subject", "live_subject", "fingerprint_sha256"):
        assert f"$labels.{label}" in rule["annotations"]["description"], label
