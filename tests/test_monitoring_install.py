"""The rule and dashboard generator as a user installs it: the wheel with the [monitoring] extra in
a fresh virtual environment, away from the source tree, then the documented command.

Before it was shipped, `python -m monitoring` after `./scripts/demo` failed with
ModuleNotFoundError (grafana_foundation_sdk came only with the test extra) and the wheel held
no `monitoring` package at all.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import venv
from pathlib import Path

import pytest
import yaml

from tests.kit.processes import run, source_copy

PROMTOOL = shutil.which("promtool")
pytestmark = [pytest.mark.timeout(600),
              pytest.mark.skipif(PROMTOOL is None, reason="needs promtool (Debian package prometheus)")]


def test_fresh_install_generates_rules_promtool_accepts(tmp_path: Path) -> None:
    src = source_copy(tmp_path / "src")
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(src)])
    (wheel,) = dist.glob("*.whl")
    shutil.rmtree(src)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    py = str(env_dir / "bin" / "python")
    run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", f"{wheel}[monitoring]"], env=env)

    site = tmp_path / "site"
    site.mkdir()
    selector = 'job="tofu", env="prod"'
    args = ["--selector", selector, "--test-labels", selector,
            "--runbook-url-pattern", "https://wiki.example.net/tofu#%(anchor)s"]
    # The documented command (docs/monitoring.md), run where the user stands: it writes there.
    out = run([str(env_dir / "bin" / "prime-tofu-monitoring"), *args], cwd=site, env=env).stdout
    assert "wrote deploy/prometheus/rules/prime-tofu.rules.yml" in out
    rules = site / "deploy/prometheus/rules/prime-tofu.rules.yml"
    run([str(PROMTOOL), "check", "rules", str(rules)])
    run([str(PROMTOOL), "test", "rules", str(rules.with_suffix(".test.yml"))], cwd=rules.parent)
    exprs = [r["expr"] for g in yaml.safe_load(rules.read_text())["groups"] for r in g["rules"]]
    assert all(selector in e for e in exprs if "tofu_" in e)
    board = json.loads((site / "grafana/dashboards/prime-tofu.json").read_text())
    assert board["uid"] == "prime-tofu"
    runbooks = {r["annotations"]["runbook_url"] for g in yaml.safe_load(rules.read_text())["groups"]
                for r in g["rules"] if "alert" in r}  # recording rules carry no annotations
    assert all(u.startswith("https://wiki.example.net/tofu#tofu") for u in runbooks)
    # `python -m monitoring` is the same command; --check agrees with what was written.
    run([py, "-m", "monitoring", "--check", *args], cwd=site, env=env)
