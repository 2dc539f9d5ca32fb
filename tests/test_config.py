"""Configuration: every error at once with its key path; secrets never in repr."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.config.load import load_config, parse_duration
from exporter.config.model import ConfigError
from tests.kit.processes import cli


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "pw").write_text("s3cret-Pa55\n")
    (tmp_path / "known_hosts").write_text("")
    return tmp_path


def write(tmp: Path, text: str) -> Path:
    p = tmp / "cfg.yml"
    p.write_text(text)
    return p


def test_minimal_config_from_design_inherits_defaults(files: Path) -> None:
    cfg = load_config(write(files, """
defaults:
  username: admin
  password_file: pw
  known_hosts: known_hosts
  cli_mode: shell
  connect_timeout: 10s
  command_timeout: 60s
  probe_timeout: 5s
  store_interval: 5m
  probe_interval: 1m
stores:
  - name: prime-pri
    host: 10.0.0.1
    port: 22
  - name: prime-sec
    host: 10.0.0.2
    cli_mode: exec
    store_interval: 1h30m
pins:
  - endpoint: 10.0.0.3:443
    sha256: "3F:9C:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:01"
"""))
    pri, sec = cfg.stores
    assert (pri.name, pri.port, pri.cli_mode, pri.store_interval) == ("prime-pri", 22, "shell", 300)
    assert (sec.port, sec.cli_mode, sec.store_interval, sec.probe_interval) == (22, "exec", 5400, 60)
    assert pri.password == "s3cret-Pa55"
    assert pri.self_address == "10.0.0.1"
    assert cfg.pins == {"10.0.0.3:443": "3f9c" + "00" * 29 + "01"}
    assert "s3cret" not in repr(cfg)


def test_every_error_reported_at_once_with_key_paths(files: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(files, """
defaults:
  password_file: missing-file
  known_hosts: known_hosts
  store_interval: soon
  colour: blue
stores:
  - name: a
    host: 10.0.0.1
    port: 70000
    cli_mode: telnet
  - host: 10.0.0.2
  - name: a
    host: 10.0.0.3
pins:
  - endpoint: nope
    sha256: xyz
"""))
    text = str(err.value)
    for expected in [
        "defaults.colour: unknown key",
        "defaults.store_interval: 'soon' is not a duration",
        "stores[0].port: must be a port number",
        "stores[0].cli_mode: must be 'shell' or 'exec'",
        "stores[1].name: is required",
        "stores[2].name: duplicate store name 'a'",
        "defaults.password_file: cannot read",
        "pins[0].endpoint: must be host:port",
        "pins[0].sha256: must be 64 hex digits",
    ]:
        assert expected in text, f"{expected!r} missing from:\n{text}"
    assert text.startswith(str(files / "cfg.yml"))


def test_password_env_missing_and_known_hosts_required(files: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PI_PW_UNSET", raising=False)
    with pytest.raises(ConfigError) as err:
        load_config(write(files, "stores:\n  - {name: a, host: h, password_env: PI_PW_UNSET}\n"))
    text = str(err.value)
    assert "stores[0].password_env: environment variable PI_PW_UNSET is not set" in text
    assert "stores[0].known_hosts: is required" in text


def test_password_from_env(files: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PI_PW", "from-env")
    text = "stores:\n  - {name: a, host: h, password_env: PI_PW, known_hosts: known_hosts}\n"
    cfg = load_config(write(files, text))
    assert cfg.stores[0].password == "from-env"


def test_yaml_syntax_error_names_line(files: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(files, "stores:\n  - name: [a\n"))
    assert "line" in str(err.value) and "cfg.yml" in str(err.value)


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25), (7, 7)]
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "5", "m5", "5 m", "-1s", True, -3])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_config_check_flag_exit_codes_and_message(files: Path) -> None:
    good = write(files, "stores:\n  - {name: a, host: h, password_file: pw, known_hosts: known_hosts}\n")
    ok = cli("--config.check", "--config.file", str(good))
    assert ok.returncode == 0, ok.stderr
    bad = files / "bad.yml"
    bad.write_text("stores:\n  - {name: a, host: h, port: x, known_hosts: nope}\n")
    res = cli("--config.check", "--config.file", str(bad))
    assert res.returncode == 2
    assert "stores[0].port" in res.stderr and "stores[0].known_hosts" in res.stderr
    assert "no credentials" in res.stderr


def test_a_secret_file_that_never_ends_is_refused(files: Path) -> None:
    """Read with a bounded read (64 KiB), like the config file itself (4 MiB)."""
    (files / "zero").symlink_to("/dev/zero")
    with pytest.raises(ConfigError) as err:
        load_config(write(files, "stores:\n  - {name: a, host: h, password_file: zero, "
                                 "known_hosts: known_hosts}\n"))
    assert err.value.problems == [
        f"stores[0].password_file: {files / 'zero'} is larger than 64 KiB, the limit for this "
        "file (docs/configuration.md)"]
