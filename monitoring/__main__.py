"""prime-tofu-monitoring (python -m monitoring) [--check] [--out DIR] [settings flags]: write or
check the generated rules, promtool tests, PrometheusRule, dashboard and ConfigMap."""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

from monitoring.settings import CHECKOUT, ROOT, Settings


def parse(argv: list[str]) -> tuple[argparse.Namespace, Settings]:
    d = Settings()
    p = argparse.ArgumentParser(prog="prime-tofu-monitoring", description=__doc__)
    p.add_argument("--check", action="store_true", help="exit 1 (with a diff) when a file differs")
    p.add_argument("--out", type=Path, default=ROOT if CHECKOUT else Path("."),
                   help="root to write under (default: the checkout; when installed: the current directory)")
    p.add_argument("--selector", default=d.selector, help=f"PromQL label matchers (default: {d.selector})")
    p.add_argument("--runbook-url-pattern", default=d.runbook_url_pattern,
                   help="%%(anchor)s is the alert's runbook heading anchor")
    p.add_argument("--cluster-label", default=None, help="label telling clusters apart (default: none)")
    p.add_argument("--test-labels", default=d.test_labels,
                   help="labels of the promtool tests' input series; must satisfy --selector")
    a = p.parse_args(argv)
    return a, Settings(selector=a.selector, runbook_url_pattern=a.runbook_url_pattern,
                       cluster_label=a.cluster_label, test_labels=a.test_labels)


def main(argv: list[str]) -> int:
    args, settings = parse(argv)
    try:
        from monitoring.generate import outputs  # the dashboard needs the Grafana SDK
    except ModuleNotFoundError as e:
        print(f"prime-tofu-monitoring: {e.name} is missing; install the extra:"
              " pip install 'prime-tofu-exporter[monitoring]'", file=sys.stderr)
        return 2
    stale = 0
    for rel, text in outputs(settings).items():
        path = args.out / rel
        if args.check:
            current = path.read_text(encoding="utf-8") if path.exists() else ""
            if current != text:
                stale += 1
                sys.stdout.writelines(difflib.unified_diff(
                    current.splitlines(True), text.splitlines(True), str(rel), "generated", n=1))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    if stale:
        print(f"{stale} generated file(s) are stale: run `python -m monitoring`", file=sys.stderr)
        return 1
    return 0


def cli() -> None:
    """The prime-tofu-monitoring command."""
    sys.exit(main(sys.argv[1:]))


if __name__ == "__main__":
    cli()
