"""Skips are errors in CI. A test that skips because a tool or file is missing hides a gap that
scripts/test should have filled, so under CI (the CI environment variable set, as .ci/run
runs) or with --strict-skips, a skip fails unless its reason names why a machine cannot have
what the test needs, with the marker MACHINE_CANNOT, e.g.
    pytest.skip(f"{MACHINE_CANNOT} needs a GPU")
The hooks that apply this are in tests/conftest.py."""

from __future__ import annotations

import os

import pytest

MACHINE_CANNOT = "machine cannot have it:"


def strict_skips(config: pytest.Config) -> bool:
    ci = os.environ.get("CI", "").strip().lower()
    return bool(config.getoption("--strict-skips")) or ci not in ("", "0", "false", "no")


def fail_unexplained_skip(config: pytest.Config, report: pytest.TestReport | pytest.CollectReport) -> None:
    if not report.skipped or hasattr(report, "wasxfail") or not strict_skips(config):
        return
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    if MACHINE_CANNOT in reason:
        return
    report.outcome = "failed"
    report.longrepr = (
        f"skipped under CI: {reason}\n"
        f"Install what the test needs in scripts/test, or, if no machine of ours can have it, "
        f"say why in the skip reason with {MACHINE_CANNOT!r}."
    )
