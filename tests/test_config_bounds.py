"""Every number in the configuration and the web config has a range, checked at load with the
file and key path, exit 2. v0.1 accepted `history.max_records: 99999999999999999999999`;
`check` then died of SQLite's OverflowError with exit 1, which means "mismatch".

The walk below puts an absurd number in every key the schema allows (the same sets refuse any
other key as unknown), so a key added later without a bound fails here."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest

from exporter.config import load as cfgmod
from exporter.config.load import BOUNDS, parse_config
from exporter.config.model import ConfigError
from exporter.web import config as webconfig
from exporter.web.config import parse_web_config
from tests.kit.lab import offline_config
from tests.kit.processes import cli

HUGE = 10**30
ABSURD: list[Any] = [HUGE, -HUGE, math.inf, math.nan]


@pytest.fixture
def base(tmp_path: Path) -> tuple[dict[str, Any], Path]:
    (tmp_path / "pw").write_text("a-password\n")
    (tmp_path / "pw").chmod(0o600)
    (tmp_path / "kh").write_text("")
    doc = {"defaults": {"password_file": "pw", "known_hosts": "kh"},
           "stores": [{"name": "a", "host": "192.0.2.1"}, {"name": "b", "host": "192.0.2.2"}],
           "pins": [{"endpoint": "192.0.2.9:443", "sha256": "ab" * 32}],
           "endpoints": [{"endpoint": "192.0.2.9:443"}],
           "pairs": [{"primary": "a", "secondary": "b"}],
           "history": {}}
    parse_config(doc, "t.yml", tmp_path)  # valid as it is
    return doc, tmp_path


def _problems(doc: dict[str, Any], base: Path) -> list[str]:
    try:
        parse_config(doc, "t.yml", base)
    except ConfigError as e:
        return e.problems
    return []


def _set(doc: dict[str, Any], section: str, key: str, value: Any) -> str:
    """Put `value` at section/key (`x[]`: the first item of list x); -> its key path."""
    if section == "":
        doc[key] = value
        return key
    if section.endswith("[]"):
        name = section[:-2]
        doc[name][0][key] = value
        return f"{name}[0].{key}"
    doc[section][key] = value
    return f"{section}.{key}"


def _walk(schema: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted((section, key) for section, keys in schema.items() for key in keys)


def test_the_walk_covers_every_bounded_key() -> None:
    keys = {k for _, k in _walk(cfgmod.schema())} | {f"history.{k}" for k in
                                                     cfgmod.schema()["history"]}
    assert set(BOUNDS) <= keys  # every bound belongs to a real key
    assert len(_walk(cfgmod.schema())) >= 40


@pytest.mark.parametrize(("section", "key"), _walk(cfgmod.schema()))
def test_every_key_refuses_an_absurd_number(base: tuple[dict[str, Any], Path], section: str,
                                            key: str) -> None:
    doc, tmp = base
    for value in ABSURD:
        d = copy.deepcopy(doc)
        path = _set(d, section, key, value)
        problems = _problems(d, tmp)
        assert any(p.startswith(f"{path}: ") for p in problems), (path, value, problems)


def _where(key: str) -> list[tuple[str, str]]:
    """The sections a BOUNDS key can be written in."""
    if key.startswith("history."):
        return [("history", key.split(".", 1)[1])]
    if key in cfgmod.schema()[""]:
        return [("", key)]
    return [(s, key) for s in ("defaults", "stores[]") if key in cfgmod.schema()[s]]


@pytest.mark.parametrize("key", sorted(BOUNDS))
def test_each_bound_is_inclusive_and_named(base: tuple[dict[str, Any], Path], key: str) -> None:
    doc, tmp = base
    lo, hi = BOUNDS[key]
    duration = isinstance(lo, float)
    step = 0.0005 if duration else 1
    for section, name in _where(key):
        for value, ok in ((lo, True), (hi, True), (lo - step, False), (hi + step, False)):
            d = copy.deepcopy(doc)
            path = _set(d, section, name, value if duration else int(value))
            problems = [p for p in _problems(d, tmp) if p.startswith(f"{path}: ")]
            assert (problems == []) is ok, (path, value, problems)
            if not ok:
                assert " from " in problems[0] and " to " in problems[0], problems


def test_web_config_walk() -> None:
    """Header values are text (`X-XSS-Protection: 1` is read as a number and sent as "1"):
    left out; the values each header allows are tested in test_webconfig_conformance."""
    keys = [*_walk(webconfig.schema()), ("basic_auth_users", "alice")]
    assert ("rate_limit", "burst") in keys and ("rate_limit", "interval") in keys
    for section, key in keys:
        for value in ABSURD:
            doc: dict[str, Any] = {"tls_server_config": {}, "http_server_config": {},
                                   "rate_limit": {}, "basic_auth_users": {}}
            path = _set(doc, section, key, value)
            with pytest.raises(ConfigError) as err:
                parse_web_config(doc, Path("."))
            assert any(p.startswith(f"{path}: ") for p in err.value.problems), (
                path, value, err.value.problems)


@pytest.mark.parametrize(("key", "value", "ok"), [
    ("interval", "0s", True), ("interval", "1h", True), ("interval", "3601s", False),
    ("burst", 0, True), ("burst", 1_000_000, True), ("burst", 1_000_001, False),
    ("burst", -1, False)])
def test_web_rate_limit_bounds(key: str, value: object, ok: bool) -> None:
    try:
        parse_web_config({"rate_limit": {key: value}}, Path("."))
    except ConfigError as e:
        assert not ok, e
        assert e.problems[0].startswith(f"rate_limit.{key}: must be ")
    else:
        assert ok


@pytest.mark.parametrize(("defaults", "top", "key"), [
    ("", "history: {max_records: 99999999999999999999999}", "history.max_records"),  # the issue's
    ("", "history: {max_age: 99999999999999999999999d}", "history.max_age"),
    ("", "probe_concurrency: 1.0e+400", "probe_concurrency"),
    (", connect_timeout: .nan", "", "defaults.connect_timeout"),
    (", store_interval: .inf", "", "defaults.store_interval"),
    (", max_entries: 99999999999999999999999", "", "defaults.max_entries"),
    (", username: 5", "", "defaults.username"),  # crashed in secret_collisions (TypeError)
    # Beyond Python's int-from-text limit: YAML itself cannot read it.
    ("", "store_concurrency: " + "9" * 5000, "(yaml) a number too long to read"),
])
def test_config_check_refuses_huge_numbers(tmp_path: Path, defaults: str, top: str,
                                           key: str) -> None:
    """As the operator runs it: exit 2 (configuration), never 1 (mismatch), no traceback."""
    cfg = offline_config(tmp_path)
    cfg.write_text("defaults: {password_file: pw, known_hosts: kh" + defaults + "}\n"
                   "stores: [{name: pri, host: 192.0.2.1}]\n" + top + "\n")
    res = cli("--config.check", "--config.file", str(cfg))
    assert res.returncode == 2, res.stderr
    assert "(1 problems)" in res.stderr, res.stderr
    assert f"{cfg}: {key}" in res.stderr and "Traceback" not in res.stderr, res.stderr
