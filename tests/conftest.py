"""Suite-wide hooks.

Skips in CI are errors. A test that skips because a tool or file is missing hides a gap that
scripts/test should have filled, so under CI (the CI environment variable set, as .ci/run
runs) or with --strict-skips, a skip fails unless its reason names why a machine cannot have
what the test needs, with the marker below, e.g.
    pytest.skip(f"{MACHINE_CANNOT} needs a GPU")
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

MACHINE_CANNOT = "machine cannot have it:"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--strict-skips", action="store_true", default=False,
                     help=f"fail on skips whose reason lacks {MACHINE_CANNOT!r} (on when CI is set)")


def strict_skips(config: pytest.Config) -> bool:
    ci = os.environ.get("CI", "").strip().lower()
    return bool(config.getoption("--strict-skips")) or ci not in ("", "0", "false", "no")


def _fail_unexplained_skip(config: pytest.Config, report: pytest.TestReport | pytest.CollectReport) -> None:
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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    _fail_unexplained_skip(item.config, outcome.get_result())  # type: ignore[attr-defined]


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    """Module-level skips (pytest.skip(allow_module_level=True), importorskip at import)."""
    outcome = yield
    _fail_unexplained_skip(collector.config, outcome.get_result())  # type: ignore[attr-defined]
