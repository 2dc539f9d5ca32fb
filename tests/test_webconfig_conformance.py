"""Conformance with exporter-toolkit's own example web configs (tests/data/exporter-toolkit,
copied from its web/testdata): every `good` file is accepted or refused with a clear "not
supported" reason, every `bad` one is rejected. v0.1 accepted http_server_config and
ignored it, and accepted the bad header, cipher, curve and SAN examples."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from exporter.config.model import ConfigError
from exporter.web.config import load_web_config, parse_web_config
from pilab.pki import make_cert
from tests.kit.lab import offline_config
from tests.kit.processes import cli

DATA = Path(__file__).parent / "data" / "exporter-toolkit"
GOOD = {"web_config_rate_limiter_one_second.yaml"}  # named without .good, passes upstream
BAD = {"web_config_junk_key.yml"}
# Good upstream, refused here, each with its reason (docs/web.md lists them).
NOT_SUPPORTED = {
    "web_config_noAuth_allCiphers.good.yml": "CBC or no forward secrecy",
    "web_config_noAuth_allCurves.good.yml": "cannot set a list of curves",
    "web_config_tokens.good.yml": "bearer_auth_tokens: not supported",
    "web_config_ip_socket.good.yml": "ip_socket_config: not supported",
}


def examples() -> list[str]:
    return sorted(p.name for p in DATA.glob("*.y*ml"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("toolkit")
    server = make_cert([("CN", "localhost")], sans=["localhost", "127.0.0.1"], key_type="rsa")
    client = make_cert([("CN", "test3")], sans=["test3"])
    (d / "server.crt").write_bytes(server.cert_pem)
    (d / "server.key").write_bytes(server.key_pem)
    (d / "server.key").chmod(0o600)
    (d / "client2_selfsigned.pem").write_bytes(client.cert_pem)
    for name in examples():
        shutil.copy(DATA / name, d / name)
    return d


def test_every_example_is_classified() -> None:
    names = examples()
    assert len(names) >= 25
    for n in names:
        assert (".good." in n or n in GOOD) != (".bad." in n or n in BAD), n


@pytest.mark.parametrize("name", examples())
def test_toolkit_example(workdir: Path, name: str) -> None:
    good = ".good." in name or name in GOOD
    try:
        cfg = load_web_config(workdir / name)
    except ConfigError as e:
        text = "\n".join(e.problems)
        assert "Traceback" not in text
        if good:
            assert name in NOT_SUPPORTED, f"good example rejected: {text}"
            assert "not supported" in text and NOT_SUPPORTED[name] in text, text
        return
    assert good, f"bad example accepted: {name}"
    assert name not in NOT_SUPPORTED
    if cfg.tls is not None:
        assert cfg.ssl_context() is not None


@pytest.mark.parametrize(("doc", "problem"), [
    ({"junk": 1}, "junk: unknown key"),
    ({"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key",
                            "cert_filse": "server.crt"}}, "tls_server_config.cert_filse: unknown key"),
    ({"http_server_config": {"headers": {"X-Frame-Options": "deny"}, "header": {}}},
     "http_server_config.header: unknown key"),
    ({"rate_limit": {"interval": "1s", "burst": 2, "brust": 3}}, "rate_limit.brust: unknown key"),
])
def test_an_unknown_key_alone_is_refused(workdir: Path, doc: dict[str, object], problem: str) -> None:
    """Each document is valid but for one misspelt key, so only the unknown-key check can
    refuse it (the toolkit's junk-key example also lacks its cert_file)."""
    with pytest.raises(ConfigError) as refused:
        parse_web_config(doc, workdir)
    assert refused.value.problems == [problem]
    fixed = {k: {kk: vv for kk, vv in v.items() if kk not in ("cert_filse", "header", "brust")}
             for k, v in doc.items() if k != "junk"}
    parse_web_config(fixed, workdir)  # the same document without the typo is accepted


def test_inline_certificate_and_key(tmp_path: Path) -> None:
    """The toolkit's tlsInline example, with a certificate of our own."""
    server = make_cert([("CN", "localhost")])
    cfg = parse_web_config(yaml.safe_load(yaml.safe_dump({"tls_server_config": {
        "cert": server.cert_pem.decode(), "key": server.key_pem.decode(),
        "client_auth_type": "VerifyClientCertIfGiven"}})), tmp_path)
    assert cfg.ssl_context() is not None
    assert not list(tmp_path.iterdir())  # the key went through a removed temporary file


def test_headers_and_rate_limit_are_kept() -> None:
    cfg = parse_web_config({"http_server_config": {"headers": {"X-Frame-Options": "deny",
                                                               "X-XSS-Protection": ""}},
                            "rate_limit": {"interval": "100ms", "burst": 3}}, Path("."))
    assert cfg.headers == (("X-Frame-Options", "deny"),)  # blank means unset
    assert (cfg.rate_interval, cfg.rate_burst) == (0.1, 3)


@pytest.mark.parametrize("value", ["default-src 'self'\r\nSet-Cookie: a=b", "a\nb", "a\rb",
                                   "a\x00b", "a\x1bb", "a\x7fb", " a", "a ", "caf\u00e9",
                                   "a\u2028b"])
def test_header_values_that_would_break_every_response_are_refused(value: str) -> None:
    """v0.1 (and the previous commit) accepted them: --config.check said valid, then every
    response, /-/healthy included, failed with HTTP 500."""
    with pytest.raises(ConfigError) as err:
        parse_web_config({"http_server_config": {"headers": {"Content-Security-Policy": value}}},
                         Path("."))
    (problem,) = err.value.problems
    assert problem.startswith("http_server_config.headers.Content-Security-Policy: invalid value")
    assert "RFC 9110" in problem and repr(value) in problem  # shown escaped, one line
    assert "\n" not in problem and "\r" not in problem


def test_header_values_with_inner_spaces_and_tabs_are_kept() -> None:
    csp = "default-src 'self';\tscript-src  'none'"
    cfg = parse_web_config({"http_server_config": {"headers": {
        "Content-Security-Policy": csp, "Strict-Transport-Security": "max-age=31536000"}}},
        Path("."))
    assert cfg.headers == (("Content-Security-Policy", csp),
                           ("Strict-Transport-Security", "max-age=31536000"))


def test_a_header_name_that_is_not_a_token_is_named_escaped() -> None:
    with pytest.raises(ConfigError) as err:
        parse_web_config({"http_server_config": {"headers": {"X-A\r\nB": "x", 7: "y"}}}, Path("."))
    assert err.value.problems == [
        "http_server_config.headers: 'X-A\\r\\nB' is not a header name (RFC 9110 5.1: a token)",
        "http_server_config.headers: 7 is not a header name (RFC 9110 5.1: a token)"]


def test_config_check_refuses_a_header_value_with_a_line_break(tmp_path: Path) -> None:
    """The whole command, as an operator runs it before a restart: exit 2, the key path."""
    web = tmp_path / "web.yml"
    web.write_text('http_server_config:\n  headers:\n'
                   '    Content-Security-Policy: "default-src \'self\'\\r\\nX-Injected: 1"\n')
    res = cli("--config.check", "--config.file", str(offline_config(tmp_path)),
              "--web.config.file", str(web))
    assert res.returncode == 2, res.stderr
    assert f"{web}: http_server_config.headers.Content-Security-Policy: invalid value" in res.stderr
    assert "Traceback" not in res.stderr
