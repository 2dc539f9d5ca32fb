"""The dashboard and the rules only name metrics the exporter exposes, and every panel shows data.

Every panel query (and the annotation and variable queries) runs, with its template variables
substituted, against a real Prometheus that scraped the real exporter serving the demo lab.
The dashboard is built by monitoring/dashboard.py (grafana-foundation-sdk); tests/test_monitoring.py
checks the committed JSON is what it builds and fits Grafana's schema.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.kit.monitoring import (
    JOB,
    MISSING,
    ROOT,
    RULES,
    SKIP_REASON,
    Stack,
    http_get,
    running_stack,
    wait_until,
)

DASHBOARD = ROOT / "grafana" / "dashboards" / "prime-tofu.json"
# Grafana's built-in variables, at values that suit a 1s scrape interval.
BUILTINS = {"$__rate_interval": "30s", "$__interval": "1s", "$__range": "5m"}
METRIC = re.compile(r"\b(tofu_[a-z0-9_]+|up)\b")


# known_hosts stores (issue 22): the rules and the "SSH host keys" row read these; the demo
# exports them once its known_hosts store is wired (exporter/sources/known_hosts/source.py).
HOST_KEY_METRICS = ("tofu_store_info", "tofu_store_unresolved_lines", "tofu_entry_line")
KNOWN_HOSTS_SOURCE = ROOT / "exporter" / "sources" / "known_hosts" / "source.py"


def pending_metrics() -> set[str]:
    """Metrics the rules and docs already name whose exporter code lands from a parallel branch
    (the baseline storage work, the known_hosts store). Checked as soon as exporter/ defines them
    (the host-key ones once the known_hosts source exists too): this set then empties by itself."""
    source = " ".join(p.read_text() for p in (ROOT / "exporter").rglob("*.py"))
    pending = {m for m in ("tofu_baseline_db_resets_total", *HOST_KEY_METRICS)
               if m.removesuffix("_total") not in source}
    if not KNOWN_HOSTS_SOURCE.exists():
        pending |= set(HOST_KEY_METRICS)
    return pending


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def queries(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target, annotation and query variable."""
    out = []
    for p in doc["panels"]:
        for t in p.get("targets", []):
            out.append((f"panel {p['title']!r} {t['refId']}", t["expr"]))
    for a in doc["annotations"]["list"]:
        if "expr" in a:
            out.append((f"annotation {a['name']!r}", a["expr"]))
    for v in doc["templating"]["list"]:
        if v["type"] == "query":
            m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", v["query"]["query"])
            assert m, f"variable {v['name']}: expected label_values(metric, label)"
            out.append((f"variable {v['name']!r}", f"count by ({m[2]}) ({m[1]})"))
    return out


def substitute(expr: str, values: dict[str, str]) -> str:
    for name, value in {**BUILTINS, **{f"${k}": v for k, v in values.items()}}.items():
        expr = expr.replace(name, value)
    # $1, $2 ...: label_replace's capture groups, not variables (Grafana has none named so).
    assert "$" not in re.sub(r"\$\d", "", expr), f"unsubstituted variable in {expr!r}"
    return expr


def test_dashboard_is_importable_with_variables() -> None:
    doc = dashboard()
    assert doc["uid"] == "prime-tofu"
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert list(variables) == ["datasource", "job", "instance", "store", "entry"]
    assert "$job" in variables["instance"]["query"]["query"]
    assert "$instance" in variables["store"]["query"]["query"]
    assert "$store" in variables["entry"]["query"]["query"]  # entries follow the chosen store
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    for p in doc["panels"]:
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", p["title"]
    # The one-glance questions: stale entries by store, and the fix command in the table.
    exprs = " ".join(e for _, e in queries(doc))
    assert "sum by (store) (tofu_certificate_mismatch" in exprs
    assert "ncs certvalidation tofu-certs deletecert host $1" in exprs


SELECTOR = re.compile(r"\b(tofu_[a-z0-9_]+|up)\{([^}]*)\}")


def test_every_query_follows_the_job_and_instance_variables() -> None:
    """Every series a panel or annotation reads is narrowed by $job and $instance; those about
    endpoints (probes, expiry, changes) follow $store and $entry through the entries."""
    doc = dashboard()
    for p in doc["panels"]:
        for t in p.get("targets", []):
            found = SELECTOR.findall(t["expr"])
            assert found and all('job=~"$job"' in m and 'instance=~"$instance"' in m for _, m in found), \
                (p["title"], t["expr"])
            if "endpoint" in t["expr"] and "tofu_entry_info" not in t["expr"]:
                raise AssertionError(f"{p['title']}: endpoint panel ignores $store/$entry")
            if "tofu_probe" in t["expr"]:
                assert 'store=~"$store"' in t["expr"] and 'entry=~"$entry"' in t["expr"], p["title"]


def test_zero_one_panels_say_what_zero_and_one_mean() -> None:
    doc = dashboard()
    binary = {"PI store read OK", "TLS probe success", "Verdict per entry over time", "Exporter"}
    for p in doc["panels"]:
        if p["title"] not in binary:
            continue
        binary.remove(p["title"])
        maps = list(p["fieldConfig"]["defaults"].get("mappings", []))
        for o in p["fieldConfig"]["overrides"]:
            maps += [v for prop in o["properties"] if prop["id"] == "mappings" for v in prop["value"]]
        texts = {k for m in maps for k in m["options"]}
        assert "1" in texts, p["title"]
    assert not binary, f"panels not found: {binary}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if MISSING:
        pytest.skip(SKIP_REASON)
    # With the automation host's known_hosts store where this build reads it: the host-key row.
    with running_stack(tmp_path_factory.mktemp("dash"), automation=True) as s:
        # Some history first (rates need two samples), then the seed's regeneration so the
        # change timeline and the mismatch panels have something to show.
        wait_until(lambda: s.query('tofu_certificate_state{store="prime-pri",state="unknown"} == 1'),
                   30, "first verdicts in Prometheus")
        s.loop.call(lambda: s.lab.regenerate("prime-sec"))
        wait_until(lambda: s.query("changes(tofu_live_certificate_changed_timestamp_seconds[2m]) > 0"),
                   30, "the regeneration seen by Prometheus")
        yield s


@pytest.mark.e2e
def test_every_panel_query_returns_data(stack: Stack) -> None:
    doc = dashboard()
    peer = stack.lab.endpoints["prime-sec"]
    target = {"job": JOB, "instance": stack.exporter.removeprefix("http://")}
    selections = {
        "all": {"job": ".*", "instance": ".*", "store": ".*", "entry": ".*"},
        # prime-pri's stale entry for prime-sec: a user drilling into the one to delete.
        "one entry": {**target, "store": "prime-pri", "entry": f"{peer.host}_{peer.port}"},
    }
    empty = []
    pending = pending_metrics()
    for label, values in selections.items():
        for where, expr in queries(doc):
            if label != "all" and "$store" not in expr and "$entry" not in expr:
                continue
            if pending & set(METRIC.findall(expr)):
                continue  # its series land with a parallel branch (pending_metrics)
            if label == "one entry" and 'kind="known_hosts"' in expr:
                continue  # the host-key row: prime-pri is a PI server
            promql = substitute(expr, values)
            if not stack.query(promql):
                empty.append(f"[{label}] {where}: {promql}")
    assert not empty, "queries without data:\n" + "\n".join(empty)


@pytest.mark.e2e
def test_rules_and_dashboard_name_only_exposed_metrics(stack: Stack) -> None:
    exposed = set(stack.scrape()) | {"up"}
    used: dict[str, set[str]] = {}
    for source in (RULES, DASHBOARD):
        for name in METRIC.findall(Path(source).read_text()):
            used.setdefault(name, set()).add(source.name)
    assert len(used) >= 15  # the scan found the rules' and panels' metrics at all
    unknown = {n: sorted(s) for n, s in used.items() if n not in exposed | pending_metrics()}
    assert not unknown, f"named but not exposed by the exporter: {unknown}"


METRICS_DOC = ROOT / "docs" / "metrics.md"


def documented_metrics() -> dict[str, tuple[str, frozenset[str]]]:
    """docs/metrics.md's table: name -> (type, labels)."""
    out = {}
    for line in METRICS_DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`tofu_"):
            labels = frozenset(re.findall(r"`(\w+)`", cells[2]))
            out[cells[0].strip("`")] = (cells[1], labels)
    return out


@pytest.mark.e2e
def test_metrics_doc_matches_a_real_scrape(stack: Stack) -> None:
    """Every tofu_* series of the demo's /metrics is documented with its type and labels, and
    nothing documented is missing from the scrape."""
    scraped: dict[str, tuple[str, frozenset[str]]] = {}
    for fam in text_string_to_metric_families(http_get(stack.exporter + "/metrics").decode()):
        if not fam.name.startswith("tofu_"):
            continue
        name = fam.name + "_total" if fam.type == "counter" else fam.name
        if name.endswith("_created") and f"{name.removesuffix('_created')}_total" in documented_metrics():
            continue  # prometheus_client's creation time of a documented counter (docs say so)
        labels = frozenset(k for s in fam.samples for k in s.labels)
        scraped[name] = (fam.type, labels)
    pending = pending_metrics()
    documented = {n: v for n, v in documented_metrics().items() if n not in pending}
    assert len(documented) >= 20
    assert documented == {n: v for n, v in scraped.items() if n not in pending}
