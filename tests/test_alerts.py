"""The shipped alert rules: promtool accepts them and their unit tests pass; every alert follows
the monitoring-mixins conventions (labels identify, annotations describe, a static summary)
and links to a runbook heading, in the on-call layout, that exists."""

from __future__ import annotations

import json
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
    "TofuHostKeyMismatch": "critical",
    "TofuHostKeyUnknown": "info",
    "TofuKnownHostsUnparsedLines": "warning",
    "TofuKnownHostsUnresolvedLines": "info",
    "TofuStoreDown": "warning",
    "TofuStoreStale": "warning",
    "TofuStoreEntriesDropped": "warning",
    "TofuStoreUnparsedLines": "warning",
    "TofuProbeFailing": "warning",
    "TofuLiveCertificateExpiringSoon": "warning",
    "TofuLiveCertificateExpired": "critical",
    "TofuExporterDown": "warning",
    "TofuExporterConfigReloadFailed": "warning",
    "TofuBaselineDatabaseReset": "warning",
    "TofuExporterLoopErrors": "warning",
}
# What may identify an alert: the target (job, instance), the object it is about, severity.
# Anything else (a fingerprint, a subject, the evidence) changes while the problem persists
# and would end the alert and restart its `for:`.
IDENTITY = {"alertname", "severity", "job", "instance", "store", "entry", "endpoint", "pair", "peer",
            "reason", "loop"}
RUNBOOK_PARTS = ("Meaning", "Impact", "Diagnosis", "Mitigation")


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
    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    assert f"SUCCESS: {len(rules)} rules found" in res.stdout


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


def test_mismatch_annotations_carry_the_fix_and_the_details() -> None:
    rule = next(a for a in alerts() if a["alert"] == "TofuCertificateMismatch")
    notes = rule["annotations"]
    fix = "ncs certvalidation tofu-certs deletecert host {{ $labels.entry }}"
    assert notes["command"] == fix
    assert fix in notes["description"]
    # The details are labels of the series the alert reads (tofu:certificate_mismatch:details),
    # read into the annotations and dropped from the alert's labels: no `query` per alert.
    assert "tofu:certificate_mismatch:details{" in rule["expr"]
    for key in ("evidence", "stored_subject", "live_subject", "fingerprint_sha256",
                "previous_fingerprint_sha256"):
        assert f"$labels.{key}" in notes[key] and f"$labels.{key}" in notes["description"], key
        assert rule["labels"][key] == "", key  # an empty label is no label: not the identity
    assert not [k for k, v in notes.items() if "query" in v]


def fired_label_sets() -> list[tuple[str, set[str]]]:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    return [(c["alertname"], set(a["exp_labels"]))
            for t in tests for c in t.get("alert_rule_test", []) for a in c["exp_alerts"]]


def test_alert_labels_only_identify() -> None:
    """promtool compares label sets exactly, so the unit tests' expected labels are the labels."""
    fired = fired_label_sets()
    assert {name for name, _ in fired} == set(EXPECTED)
    for name, labels in fired:
        assert labels <= IDENTITY, (name, labels - IDENTITY)
    for rule in alerts():  # besides severity only labels the rule drops (set empty)
        assert {k for k, v in rule["labels"].items() if v} == {"severity"}, rule["alert"]


def test_summary_is_static_per_alert() -> None:
    """Alertmanager groups by alert name; a summary that varies per alert reads as noise."""
    for rule in alerts():
        assert "{{" not in rule["annotations"]["summary"], rule["alert"]


def runbook_sections(markdown: str) -> dict[str, str]:
    parts = re.split(r"^### (\w+)\s*$", markdown, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def test_runbook_entries_have_the_on_call_layout() -> None:
    sections = runbook_sections(RUNBOOK.read_text())
    for name in EXPECTED:
        assert name in sections, f"docs/runbook.md: no '### {name}' section"
        found = re.findall(r"^\*\*(\w+)\*\*", sections[name], flags=re.M)
        assert tuple(found) == RUNBOOK_PARTS, (name, found)


# Series that count entries the exporter holds no verdict for: each needs an alert and a panel,
# or the entries it counts are silently unmonitored.
HIDDEN_ENTRIES = {"tofu_store_entries_dropped": "TofuStoreEntriesDropped",
                  "tofu_store_unparsed_lines": "TofuStoreUnparsedLines",
                  "tofu_store_unresolved_lines": "TofuKnownHostsUnresolvedLines"}


def test_entries_the_exporter_cannot_see_alert_and_show() -> None:
    board = json.loads((ROOT / "grafana" / "dashboards" / "prime-tofu.json").read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    for metric, alertname in HIDDEN_ENTRIES.items():
        rule = next(a for a in alerts() if a["alert"] == alertname)
        assert re.match(rf"{metric}\{{[^}}]*\}} > 0\n", rule["expr"]), rule["expr"]
        assert any(metric in e for e in exprs), f"no panel shows {metric}"


def test_host_key_mismatch_annotations_carry_the_line_the_keyscan_and_the_warning() -> None:
    rule = next(a for a in alerts() if a["alert"] == "TofuHostKeyMismatch")
    notes = rule["annotations"]
    assert "ssh-keyscan -t {{ $labels.key_type }}" in notes["command"]
    # Valued at the entry's line (tofu_entry_line): the line is $value, not a label.
    assert "$value" in notes["line"] and "on line {{ $value" in notes["description"]
    assert rule["expr"].lstrip("(\n ").startswith('tofu_entry_line{')
    assert "out of band" in notes["verify"] and "out of band" in notes["description"]
    assert "--apply" in notes["remove"]
    # The host and key type reach a command only through the plain-name check.
    for key in ("command", "remove", "description"):
        assert notes[key].startswith("{{- $plain := and (match"), key
    for key in ("host", "port", "key_type", "endpoint", "stored_fingerprint", "live_fingerprint"):
        assert rule["labels"][key] == "", key
    assert "for" not in rule  # the file holds the exact key: proof, not a transient
    # PI's alerts leave known_hosts stores to these.
    for name in ("TofuCertificateMismatch", "TofuCertificateStateUnknown", "TofuStoreUnparsedLines"):
        pi = next(a for a in alerts() if a["alert"] == name)
        kh = 'tofu_store_info{job="prime-tofu-exporter", kind="known_hosts"}'
        assert f"unless on(job, instance, store) {kh}" in pi["expr"], name
