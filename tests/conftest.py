"""Shared test helpers: free ports, lab PI servers, and the exporter config that reads them.

Plain functions (imported by the kits and tests as `tests.conftest`) plus the fixtures that
wrap them: one definition each, instead of one per test module.

Skips are errors in CI. A test that skips because a tool or file is missing hides a gap that
scripts/test should have filled, so under CI (the CI environment variable set, as .ci/run
runs) or with --strict-skips, a skip fails unless its reason names why a machine cannot have
what the test needs, with the marker MACHINE_CANNOT, e.g.
    pytest.skip(f"{MACHINE_CANNOT} needs a GPU")
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from exporter.core.subject import format_subject, parse_subject
from pilab.pi import PiServer
from pilab.tls import TlsEndpoint

if TYPE_CHECKING:
    from tests.kit.sshd import SshdKit

PASSWORD = "Lab-Pa55-word!"


def free_port() -> int:
    """A TCP port free right now on loopback (never a fixed port: helpers run in parallel)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def refused_keys(count: int) -> list[str]:
    """`count` TOFU keys on loopback ports nothing listens on, so every probe is refused at once.

    The ports lie below the kernel's ephemeral range, which bind(0) never hands out: a fixed
    range inside it (41000+) once collided with a lab peer's own port, and the store then
    held one key fewer than the test counted.
    """
    low = _ephemeral_low()
    if count > low - 1024:
        raise ValueError(f"{count} keys do not fit below the ephemeral range ({low})")
    return [f"127.0.0.1_{low - count + i}" for i in range(count)]


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


async def start_pi(hostname: str, password: str = PASSWORD,
                   entries: Mapping[str, TlsEndpoint] | None = None, **kwargs: Any) -> PiServer:
    """A started lab PI server with one admin login, holding `entries` (key -> endpoint)."""
    pi = PiServer(hostname, users={"admin": password}, **kwargs)
    for key, ep in (entries or {}).items():
        pi.add_entry(key, ep.current)
    await pi.start()
    return pi


def offline_config(tmp: Path) -> Path:
    """A valid config of one store, `pri`, whose PI (192.0.2.1, TEST-NET) is never reached:
    for tests that stop at the database or drive the service by hand."""
    (tmp / "pw").write_text("a-password\n")
    (tmp / "pw").chmod(0o600)
    (tmp / "kh").write_text("")
    cfg = tmp / "exporter.yml"
    cfg.write_text("defaults: {password_file: pw, known_hosts: kh}\n"
                   "stores: [{name: pri, host: 192.0.2.1}]\n")
    return cfg


def write_config(
    tmp: Path,
    pis: Mapping[str, PiServer],
    *,
    interval: str = "1s",
    probe_timeout: str = "2s",
    extra: Mapping[str, Any] | None = None,
    store_extra: Mapping[str, Mapping[str, Any]] | None = None,
    name: str = "exporter.yml",
    password: str = PASSWORD,
) -> Path:
    """A config reading every PI in `pis` (store name -> server), secrets in files."""
    (tmp / "pi-password").write_text(password + "\n")
    (tmp / "pi-password").chmod(0o600)
    kh = tmp / "known_hosts"
    kh.write_text("".join(pi.known_hosts_line() + "\n" for pi in pis.values()))
    stores = []
    for store, pi in pis.items():
        st: dict[str, Any] = {"name": store, "host": pi.host, "port": pi.port}
        st.update((store_extra or {}).get(store, {}))
        stores.append(st)
    data: dict[str, Any] = {
        "defaults": {
            "username": "admin",
            "password_file": "pi-password",
            "known_hosts": "known_hosts",
            "cli_mode": "shell",
            "connect_timeout": "3s",
            "command_timeout": "5s",
            "probe_timeout": probe_timeout,
            "store_interval": interval,
            "probe_interval": interval,
        },
        "stores": stores,
    }
    data.update(extra or {})
    path = tmp / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def sshd(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdKit]:
    """A `tests.kit.sshd.SshdKit`: Debian's sshd variants on loopback, stopped after the test.
    Host keys and CAs are made once per session and shared (RSA keygen is the slow part)."""
    from tests.kit.sshd import SSHD, KeyStore, SshdKit  # the kit imports nothing from here

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


# ---------------------------------------------------------------- skips in CI

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
