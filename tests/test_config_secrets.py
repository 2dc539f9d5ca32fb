"""Secrets in the configuration: never equal to a name that logs print, never in files the
whole machine can read."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.config.load import load_config
from exporter.config.model import ConfigError
from exporter.config.secrets import loose_permissions
from tests.kit.processes import cli


def _write(tmp: Path, secret: str, stores: str, passphrase: str | None = None) -> Path:
    (tmp / "pw").write_text(secret + "\n")
    (tmp / "pw").chmod(0o600)
    (tmp / "kh").write_text("")
    extra = ""
    if passphrase is not None:
        (tmp / "key").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot really\n")
        (tmp / "key").chmod(0o600)
        (tmp / "pp").write_text(passphrase + "\n")
        (tmp / "pp").chmod(0o600)
        extra = ", private_key_file: key, private_key_passphrase_file: pp"
    cfg = tmp / "exporter.yml"
    cfg.write_text("defaults: {password_file: pw, known_hosts: kh" + extra + "}\n" + stores)
    return cfg


TWO = "stores:\n  - {name: pri, host: 10.0.0.1, username: admin}\n" \
      "  - {name: sec-pi, host: pi.example.com, username: operator}\n"


@pytest.mark.parametrize(("secret", "store", "field"), [
    ("pri", 0, "its name"),
    ("10.0.0.1", 0, "its host"),
    ("admin", 0, "its username"),
    ("sec-pi", 0, "stores[1]'s name"),  # another store's name is printed in the same logs
    ("example", 0, "stores[1]'s host"),  # inside a host name: the redaction would show it
])
def test_password_equal_to_a_logged_name_is_refused(
    tmp_path: Path, secret: str, store: int, field: str
) -> None:
    cfg = _write(tmp_path, secret, TWO)
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    text = str(err.value)
    assert f"stores[{store}]: the password equals or appears in {field}" in text, text
    assert secret not in text.replace(str(cfg), ""), "the error must never show the secret"
    done = cli("--config.check", "--config.file", str(cfg))
    assert done.returncode == 2
    assert f"the password equals or appears in {field}" in done.stderr
    assert secret not in done.stderr.replace(str(cfg), "")


def test_passphrase_equal_to_a_username_is_refused(tmp_path: Path) -> None:
    cfg = _write(tmp_path, "a-fine-password-1", TWO, passphrase="operator")
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert "the private key passphrase equals or appears in stores[1]'s username" in str(err.value)
    assert "password equals" not in str(err.value)


def test_unrelated_secrets_pass(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, "Xq7-unrelated-Pa55", TWO, passphrase="another-Pa55phrase"))
    assert [s.name for s in cfg.stores] == ["pri", "sec-pi"] and cfg.warnings == ()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_secret_files_readable_by_others_are_named_in_a_warning(tmp_path: Path, mode: int) -> None:
    secret = "Zk9-only-in-the-file"
    cfg = _write(tmp_path, secret, TWO, passphrase="pp-Zk9-secret")
    for name in ("pw", "key", "pp"):
        (tmp_path / name).chmod(mode)
    got = load_config(cfg).warnings
    assert len(got) == 3, got
    for name in ("pw", "key", "pp"):
        assert any(str(tmp_path / name) in w and f"{mode:04o}" in w for w in got), got
    assert not any(secret in w or "pp-Zk9" in w or "not really" in w for w in got)

    done = cli("--config.check", "--config.file", str(cfg))
    assert done.returncode == 0, done.stderr  # a warning, not an error
    warned = [ln for ln in done.stderr.splitlines() if ln.startswith("warning: ")]
    assert len(warned) == 3 and str(tmp_path / "pw") in done.stderr, done.stderr
    assert secret not in done.stderr + done.stdout


def test_loose_permissions_is_quiet_for_private_files(tmp_path: Path) -> None:
    f = tmp_path / "tls.key"
    f.write_text("key")
    f.chmod(0o600)
    assert loose_permissions(f) is None
    f.chmod(0o400)
    assert loose_permissions(f) is None
    f.chmod(0o644)
    assert loose_permissions(f, "web TLS key") == (
        f"web TLS key {str(f)!r} is accessible by group or others (mode 0644); "
        "it holds a secret: chmod 600 it")
    assert loose_permissions(tmp_path / "missing") is None
