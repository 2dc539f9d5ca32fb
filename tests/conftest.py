"""The fixtures, and only fixtures (and pytest's hooks): what they wrap lives in tests/kit/
(the lab, faults, processes, the monitoring stack, mounts, sshd, web), one definition each.

Skips are errors in CI (tests/kit/skips.py): under CI or with --strict-skips, a skip fails
unless its reason says why no machine of ours can have what the test needs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from exporter.core.subject import format_subject, parse_subject
from tests.kit.lab import free_port
from tests.kit.skips import MACHINE_CANNOT, fail_unexplained_skip

if TYPE_CHECKING:
    from pilab.scene import Lab
    from tests.kit.sshd import SshdKit


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
async def demo_lab(tmp_path: Path) -> AsyncIterator[tuple[Lab, Path]]:
    """The demo's lab (`exporter demo`'s PI servers and peers, on free ports) and the config
    that reads it, under tmp_path/lab; stopped after the test."""
    from exporter.cli.demo import prepare

    lab, cfg = await prepare(tmp_path / "lab", fixed_ports=False)
    try:
        yield lab, cfg
    finally:
        await lab.stop()


@pytest.fixture
def sshd(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdKit]:
    """A `tests.kit.sshd.SshdKit`: Debian's sshd variants on loopback, stopped after the test.
    Host keys and CAs are made once per session and shared (RSA keygen is the slow part)."""
    from tests.kit.sshd import SSHD, KeyStore, SshdKit

    if not SSHD.exists():
        pytest.skip("openssh-server is not installed (scripts/test installs it)")
    kit = SshdKit(KeyStore(tmp_path_factory.getbasetemp() / "sshd-keys"), tmp_path / "sshd")
    yield kit
    kit.stop_all()


@pytest.fixture(autouse=True)
def _fresh_subject_caches() -> None:
    """exporter.core.subject caches its parses and prints per process. Each test starts with them
    empty, so it runs the code as it is: scripts/mutation (mutmut) forks every mutant from a
    process whose caches already hold the unmutated results, which hid every mutant under
    parse_subject (the escapes, the byte decoding) from the tests that feed it."""
    parse_subject.cache_clear()
    format_subject.cache_clear()


# ---------------------------------------------------------------- tiers

TIERS = ("unit", "integration", "e2e", "browser", "image")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test is in one tier: a test marked with none is `integration` (it drives the lab
    or a subprocess), so `-m integration` selects the middle tier. `slow` is orthogonal."""
    for item in items:
        if not any(item.get_closest_marker(t) for t in TIERS):
            item.add_marker(pytest.mark.integration)


# ---------------------------------------------------------------- skips in CI

def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--strict-skips", action="store_true", default=False,
                     help=f"fail on skips whose reason lacks {MACHINE_CANNOT!r} (on when CI is set)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    fail_unexplained_skip(item.config, outcome.get_result())  # type: ignore[attr-defined]


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    """Module-level skips (pytest.skip(allow_module_level=True), importorskip at import)."""
    outcome = yield
    fail_unexplained_skip(collector.config, outcome.get_result())  # type: ignore[attr-defined]
