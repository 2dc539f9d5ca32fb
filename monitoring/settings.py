"""The few knobs a site changes, as in the monitoring mixins (kubernetes-mixin's _config).

Everything the rules and the dashboard say about which series they read comes from here, so
a site with another job name, a per-cluster Prometheus or its own runbook copy generates its
own files instead of editing ours.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# A source checkout (the generated files are committed under it), or site-packages of an install.
CHECKOUT = (ROOT / "pyproject.toml").is_file() and (ROOT / "exporter").is_dir()


def _project_url() -> str:
    """The project's home, declared once in pyproject.toml ([project.urls] Source): read from the
    checkout when there is one (its metadata may be older than an editable install's), else from
    the installed package's metadata."""
    if CHECKOUT:
        meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
        url: str = meta["project"]["urls"]["Source"]
    else:
        urls = metadata.metadata("prime-tofu-exporter").get_all("Project-URL") or []
        url = dict(u.split(", ", 1) for u in urls)["Source"]
    return url.rstrip("/")


# One job: the /metrics job (one exporter, or every replica of a sharded StatefulSet:
# docs/sharding.md; the Kubernetes Service's name, so a ServiceMonitor's job too). A store
# scraped by two jobs (/metrics and a multi-target /probe?target=<store> job,
# deploy/prometheus/probe-scrape.yml) is two sets of series, and rules selecting both jobs
# page twice for every problem; the /probe job (PROBE_JOB) gets rules of its own, generated
# with --selector 'job="prime-tofu-probe"', never both (docs/monitoring.md).
DEFAULT_SELECTOR = 'job="prime-tofu-exporter"'
PROBE_JOB = "prime-tofu-probe"


@dataclass(frozen=True)
class Settings:
    # PromQL label matchers (without braces) every rule and dashboard query applies.
    selector: str = DEFAULT_SELECTOR
    # %(anchor)s is the alert's heading anchor in docs/runbook.md (its name, lower-cased).
    runbook_url_pattern: str = field(
        default_factory=lambda: _project_url() + "/blob/main/docs/runbook.md#%(anchor)s")
    # Label that tells clusters apart in a shared Prometheus (e.g. "cluster"); None: one cluster.
    cluster_label: str | None = None
    # Labels the generated promtool tests give their input series; must satisfy `selector`.
    test_labels: str = 'job="prime-tofu-exporter"'
    dashboard_uid: str = "prime-tofu"
    dashboard_title: str = "Prime Infrastructure TOFU certificates"

    @property
    def ids(self) -> list[str]:
        """Labels that identify one exporter target: joins and aggregations keep them."""
        return ([self.cluster_label] if self.cluster_label else []) + ["job", "instance"]

    def on(self, *more: str) -> str:
        """'job, instance, store' (cluster first when configured) for on(...) and by(...)."""
        return ", ".join([*self.ids, *more])

    def m(self, metric: str, *matchers: str) -> str:
        """metric{selector, extra matchers}."""
        return f"{metric}{{{', '.join([self.selector, *matchers])}}}"

    def runbook_url(self, alert: str) -> str:
        return self.runbook_url_pattern % {"anchor": alert.lower()}

    def is_default(self) -> bool:
        return self == Settings()
