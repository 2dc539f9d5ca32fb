"""`--web.config.file`: TLS, basic auth, response headers and a rate limit for our own
endpoints, in the Prometheus exporter-toolkit file format (docs/web.md lists every key).

Strict: every key the toolkit documents is either implemented or refused with a reason
("not supported: ..."), and an unknown key is an error; nothing is accepted and ignored.
Pure parsing here; the runtime parts (auth gate, TLS reload) live in exporter.webauth.
"""

from __future__ import annotations

import os
import re
import ssl
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from exporter.config.load import (
    HOUR,
    MAX_CONFIG_BYTES,
    FileTooLarge,
    duration_between,
    read_text_limited,
    whole_number,
)
from exporter.config.model import ConfigError
from exporter.config.secrets import loose_permissions

TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
# Go's crypto/tls client auth policies. The two that accept a certificate nobody verified
# have no equivalent in Python's ssl (it verifies whatever certificate it asks for).
CLIENT_AUTH = {"NoClientCert": ssl.CERT_NONE, "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
               "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}
_UNVERIFIED_AUTH = {"RequestClientCert", "RequireAnyClientCert"}
# Go's tls.CipherSuites() names -> OpenSSL names. Only forward-secret AEAD suites; TLS 1.3
# suites are always on (as in Go, where they are not configurable either).
CIPHERS = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
}
TLS13_CIPHERS = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
_LEGACY_CIPHERS = {  # in Go's secure list, but CBC or without forward secrecy
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA", "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256", "TLS_RSA_WITH_AES_256_GCM_SHA384",
}
_CURVES = {"CurveP256", "CurveP384", "CurveP521", "X25519", "X25519MLKEM768"}
# http_server_config.headers: the toolkit's list, with its value rules.
HEADERS: dict[str, Callable[[str], bool]] = {
    "Content-Security-Policy": lambda v: True,
    "X-Frame-Options": lambda v: v.lower() in ("deny", "sameorigin"),
    "X-Content-Type-Options": lambda v: v.lower() == "nosniff",
    "X-XSS-Protection": lambda v: True,
    "Strict-Transport-Security": lambda v: True,
}
# RFC 9110 5.1 field-name (a token) and 5.5 field-value, without obs-text: what may be sent
# as a response header. A value may be blank (the key then unsets the header).
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_FIELD_VALUE = re.compile(r"(?:[\x21-\x7e]+(?:[ \t]+[\x21-\x7e]+)*)?")
_TOP = {"tls_server_config", "http_server_config", "basic_auth_users", "rate_limit",
        "auth_excluded_paths"}
_TLS_KEYS = {"cert_file", "key_file", "cert", "key", "client_ca_file", "client_ca",
             "client_auth_type", "client_allowed_sans", "min_version", "max_version",
             "cipher_suites", "prefer_server_cipher_suites", "curve_preferences"}
_HTTP_KEYS = {"http2", "headers"}
# Bounded like every number of the main config (exporter.config.load.BOUNDS); interval 0: no limit.
_RATE_KEYS: dict[str, Callable[[object], float | int]] = {
    "interval": duration_between(0.0, HOUR), "burst": whole_number(0, 1_000_000)}
# Keys of newer or forked toolkit versions we know and refuse, with why.
_REFUSED = {
    "bearer_auth_tokens": "not supported: use basic_auth_users or client certificates",
    "ip_socket_config": "not supported: set TTL/DSCP on the host",
}
_REFUSED_TLS = {
    "curve_preferences": "not supported: Python's ssl module cannot set a list of curves; "
                         "remove it to use OpenSSL's defaults (X25519, P-256, P-384, P-521)",
}
BCRYPT_RE = re.compile(rb"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")
MIN_COST = 10


@dataclass(frozen=True)
class TlsSettings:
    cert_file: str | None = None
    key_file: str | None = None
    cert_pem: str | None = field(default=None, repr=False)
    key_pem: str | None = field(default=None, repr=False)
    client_ca_file: str | None = None
    client_ca_pem: str | None = field(default=None, repr=False)
    client_auth_type: str = "NoClientCert"
    client_allowed_sans: tuple[str, ...] = ()
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    ciphers: tuple[str, ...] = ()  # OpenSSL names, for TLS 1.2 and below
    prefer_server_ciphers: bool = True

    def files(self) -> tuple[str, ...]:
        """Files whose content the context holds: a change means a renewed certificate."""
        return tuple(f for f in (self.cert_file, self.key_file, self.client_ca_file) if f)

    def context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = TLS_VERSIONS[self.min_version]
        ctx.maximum_version = TLS_VERSIONS[self.max_version]
        if self.ciphers:
            ctx.set_ciphers(":".join(self.ciphers))
        if self.prefer_server_ciphers:
            ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        else:
            ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
        if self.cert_file and self.key_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        else:
            _load_inline(ctx, self.cert_pem, self.key_pem, self.cert_file, self.key_file)
        if self.client_ca_file:
            ctx.load_verify_locations(cafile=self.client_ca_file)
        if self.client_ca_pem:
            ctx.load_verify_locations(cadata=self.client_ca_pem)
        ctx.verify_mode = CLIENT_AUTH[self.client_auth_type]
        return ctx


def _load_inline(ctx: ssl.SSLContext, cert_pem: str | None, key_pem: str | None,
                 cert_file: str | None, key_file: str | None) -> None:
    """ssl loads chains from files only: an inline PEM goes through a private temporary
    file (0600, in a 0700 directory) that is removed at once."""
    with tempfile.TemporaryDirectory(prefix="tofu-web-") as d:
        cert = cert_file
        if cert is None:
            cert = os.path.join(d, "cert.pem")
            Path(cert).write_text(cert_pem or "")
        key = key_file
        if key is None:
            key = os.path.join(d, "key.pem")
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(key_pem or "")
        ctx.load_cert_chain(cert, key)


@dataclass(frozen=True)
class WebConfig:
    path: str | None = None
    tls: TlsSettings | None = None
    users: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    headers: tuple[tuple[str, str], ...] = ()
    excluded_paths: frozenset[str] = frozenset()
    rate_interval: float = 0.0  # seconds between requests; 0: no limit
    rate_burst: int = 0
    warnings: tuple[str, ...] = ()

    @property
    def dummy_cost(self) -> int:
        """The cost of the hash an unknown user is checked against: the users' usual one."""
        costs = Counter(bcrypt_cost(h) for h in self.users.values())
        return max(costs.items(), key=lambda kv: (kv[1], kv[0]))[0] if costs else MIN_COST

    def ssl_context(self) -> ssl.SSLContext | None:
        return self.tls.context() if self.tls is not None else None


def bcrypt_cost(hashed: bytes) -> int:
    m = BCRYPT_RE.fullmatch(hashed)
    assert m is not None, "validated at load"
    return int(m.group(1))


class _Problems(list[str]):
    def add(self, where: str, what: str) -> None:
        self.append(f"{where}: {what}")


def _mapping(value: Any, where: str, problems: _Problems) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.add(where, "must be a mapping")
        return {}
    return value


def _str_list(value: Any, where: str, problems: _Problems) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.add(where, "must be a list of strings")
        return []
    return value


def _tls_path(tls: dict[str, Any], name: str, base: Path, problems: _Problems) -> str | None:
    v = tls.get(name)
    if v is None:
        return None
    if not isinstance(v, str) or not v:
        problems.add(f"tls_server_config.{name}", "must be a file name")
        return None
    f = Path(v) if Path(v).is_absolute() else base / v
    if not f.is_file():
        problems.add(f"tls_server_config.{name}", f"cannot read {f}")
    return str(f)


def _tls_inline(tls: dict[str, Any], name: str, problems: _Problems) -> str | None:
    v = tls.get(name)
    if v is None:
        return None
    if not isinstance(v, str) or "-----BEGIN" not in v:
        problems.add(f"tls_server_config.{name}", "must be PEM text")
        return None
    return v


def _key_mode_warning(key_file: str | None, warnings: list[str]) -> None:
    if key_file:
        w = loose_permissions(key_file, "tls_server_config.key_file")
        if w:
            warnings.append(w)


def _tls_client_auth(tls: dict[str, Any], has_ca: bool,
                     problems: _Problems) -> tuple[str, tuple[str, ...]]:
    auth = tls.get("client_auth_type", "NoClientCert")
    if auth in _UNVERIFIED_AUTH:
        problems.add("tls_server_config.client_auth_type",
                     f"{auth} not supported: it accepts client certificates nobody verified; "
                     "use RequireAndVerifyClientCert (or VerifyClientCertIfGiven) with client_ca_file")
    elif auth not in CLIENT_AUTH:
        problems.add("tls_server_config.client_auth_type",
                     f"one of {sorted(CLIENT_AUTH)} (got {auth!r})")
    elif auth == "RequireAndVerifyClientCert" and not has_ca:
        problems.add("tls_server_config", "RequireAndVerifyClientCert needs client_ca_file or client_ca")
    sans = _str_list(tls.get("client_allowed_sans"), "tls_server_config.client_allowed_sans", problems)
    if sans and auth != "RequireAndVerifyClientCert":
        problems.add("tls_server_config.client_allowed_sans",
                     "needs client_auth_type RequireAndVerifyClientCert (without a required "
                     "certificate there is no SAN to check)")
    return auth, tuple(sans)


def _tls_versions(tls: dict[str, Any], problems: _Problems) -> tuple[str, str]:
    versions = []
    for name, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        v = tls.get(name, default)
        if v not in TLS_VERSIONS:
            problems.add(f"tls_server_config.{name}", f"one of {sorted(TLS_VERSIONS)} (got {v!r})")
            v = default
        versions.append(v)
    if TLS_VERSIONS[versions[0]] > TLS_VERSIONS[versions[1]]:
        problems.add("tls_server_config", "min_version is above max_version")
    return versions[0], versions[1]


def _tls_ciphers(tls: dict[str, Any], problems: _Problems) -> tuple[tuple[str, ...], bool]:
    ciphers: list[str] = []
    for c in _str_list(tls.get("cipher_suites"), "tls_server_config.cipher_suites", problems):
        if c in CIPHERS:
            ciphers.append(CIPHERS[c])
        elif c in _LEGACY_CIPHERS:
            problems.add("tls_server_config.cipher_suites",
                         f"{c} not supported: CBC or no forward secrecy; use the ECDHE GCM or "
                         "CHACHA20 suites")
        elif c not in TLS13_CIPHERS:
            problems.add("tls_server_config.cipher_suites", f"unknown cipher suite {c!r}")
    prefer = tls.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        problems.add("tls_server_config.prefer_server_cipher_suites", "must be true or false")
        prefer = True
    curves = tls.get("curve_preferences")
    for c in curves if isinstance(curves, list) else ():
        if c not in _CURVES:
            problems.add("tls_server_config.curve_preferences", f"unknown curve {c!r}")
    return tuple(ciphers), prefer


def _parse_tls(tls: dict[str, Any], base: Path, problems: _Problems,
               warnings: list[str]) -> TlsSettings | None:
    for key in tls:
        if key in _REFUSED_TLS:
            problems.add(f"tls_server_config.{key}", _REFUSED_TLS[key])
        elif key not in _TLS_KEYS:
            problems.add(f"tls_server_config.{key}", "unknown key")
    if not tls:
        return None
    cert_file, key_file, ca_file = (_tls_path(tls, n, base, problems)
                                    for n in ("cert_file", "key_file", "client_ca_file"))
    cert_pem, key_pem, ca_pem = (_tls_inline(tls, n, problems) for n in ("cert", "key", "client_ca"))
    for a, b in (("cert", "cert_file"), ("key", "key_file"), ("client_ca", "client_ca_file")):
        if a in tls and b in tls:
            problems.add("tls_server_config", f"{a} and {b} exclude each other")
    if not ({"cert", "cert_file"} & set(tls) and {"key", "key_file"} & set(tls)):
        problems.add("tls_server_config", "needs a certificate (cert_file or cert) and its key "
                                          "(key_file or key)")
    _key_mode_warning(key_file, warnings)
    auth, sans = _tls_client_auth(tls, bool(ca_file or ca_pem), problems)
    min_version, max_version = _tls_versions(tls, problems)
    ciphers, prefer = _tls_ciphers(tls, problems)
    return TlsSettings(cert_file, key_file, cert_pem, key_pem, ca_file, ca_pem, auth, sans,
                       min_version, max_version, ciphers, prefer)


def _parse_http(http: dict[str, Any], problems: _Problems) -> tuple[tuple[str, str], ...]:
    for key in http:
        if key not in _HTTP_KEYS:
            problems.add(f"http_server_config.{key}", "unknown key")
    h2 = http.get("http2", False)
    if h2 is not False:
        problems.add("http_server_config.http2",
                     "HTTP/2 not supported (the server speaks HTTP/1.1); set http2: false")
    out = []
    for name, v in _mapping(http.get("headers"), "http_server_config.headers", problems).items():
        check = HEADERS.get(name)
        if isinstance(v, int | float) and not isinstance(v, bool):
            v = str(v)  # YAML reads `X-XSS-Protection: 1` as a number
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            problems.add("http_server_config.headers",
                         f"{name!r} is not a header name (RFC 9110 5.1: a token)")
        elif check is None:
            problems.add(f"http_server_config.headers.{name}",
                         f"not a header the web config may set (one of {sorted(HEADERS)})")
        elif not isinstance(v, str) or not _FIELD_VALUE.fullmatch(v):
            # CR/LF would end the header early or fail every response, /-/healthy included.
            problems.add(f"http_server_config.headers.{name}",
                         f"invalid value {v!r}: visible ASCII characters with spaces or "
                         "tabs between them (RFC 9110 5.5), no CR, LF, NUL or other control "
                         "character, no leading or trailing space")
        elif not check(v):
            problems.add(f"http_server_config.headers.{name}", f"invalid value {v!r}")
        elif v:  # blank: unset
            out.append((name, v))
    return tuple(out)


def _parse_users(raw: dict[str, Any], problems: _Problems,
                 warnings: list[str]) -> dict[str, bytes]:
    users: dict[str, bytes] = {}
    for user, hashed in raw.items():
        where = f"basic_auth_users.{user}"
        if not isinstance(hashed, str) or not BCRYPT_RE.fullmatch(hashed.encode()):
            problems.add(where, "must be a bcrypt hash ($2y$<cost>$ and 53 characters), "
                                "e.g. from `htpasswd -nBC 10 '' | tr -d ':\\n'`")
            continue
        cost = bcrypt_cost(hashed.encode())
        if not 4 <= cost <= 31:
            problems.add(where, f"bcrypt cost {cost} out of range 4..31")
            continue
        if cost < MIN_COST:
            warnings.append(f"{where}: bcrypt cost {cost} is below {MIN_COST}; a stolen web "
                            "config is cheap to brute-force")
        users[str(user)] = hashed.encode()
    return users


def _parse_rate(rate: dict[str, Any], problems: _Problems) -> tuple[float, int]:
    for key in rate:
        if key not in _RATE_KEYS:
            problems.add(f"rate_limit.{key}", "unknown key")
    values = {"interval": 0.0, "burst": 0}
    for key, check in _RATE_KEYS.items():
        if key in rate:
            try:
                values[key] = check(rate[key])
            except ValueError as e:
                problems.add(f"rate_limit.{key}", str(e))
    return float(values["interval"]), int(values["burst"])


def schema() -> dict[str, set[str]]:
    """Where -> the keys allowed there (any other key is an error): every key a web config can
    hold, for the bounds test. basic_auth_users and headers are keyed by user and header name."""
    return {"": _TOP | set(_REFUSED), "tls_server_config": set(_TLS_KEYS),
            "http_server_config": set(_HTTP_KEYS), "rate_limit": set(_RATE_KEYS)}


def parse_web_config(data: Any, base: Path, source: str = "web config") -> WebConfig:
    """The parsed document -> WebConfig, or ConfigError naming every problem."""
    problems = _Problems()
    warnings: list[str] = []
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, ["(top): must be a mapping"])
    for key in data:
        if key in _REFUSED:
            problems.add(key, _REFUSED[key])
        elif key not in _TOP:
            problems.add(key, "unknown key")
    tls = _parse_tls(_mapping(data.get("tls_server_config"), "tls_server_config", problems),
                     base, problems, warnings)
    headers = _parse_http(_mapping(data.get("http_server_config"), "http_server_config", problems),
                          problems)
    users = _parse_users(
        _mapping(data.get("basic_auth_users"), "basic_auth_users", problems), problems, warnings)
    excluded = _str_list(data.get("auth_excluded_paths"), "auth_excluded_paths", problems)
    for p in excluded:
        if not p.startswith("/"):
            problems.add("auth_excluded_paths", f"{p!r} must start with /")
    interval, burst = _parse_rate(_mapping(data.get("rate_limit"), "rate_limit", problems), problems)
    if problems:
        raise ConfigError(source, list(problems))
    cfg = WebConfig(source, tls, users, headers, frozenset(excluded), interval, burst,
                    tuple(warnings))
    try:
        cfg.ssl_context()  # a key that does not fit its certificate fails here, not at start
    except (ssl.SSLError, OSError, ValueError) as e:
        raise ConfigError(source, [f"tls_server_config: cannot load certificate/key: {e}"]) from None
    return cfg


def load_web_config(path: str | Path) -> WebConfig:
    """Reads files: off the event loop when serving (WebServer.reload_web_config)."""
    p = Path(path)
    try:
        # ValueError: an integer too long for int() (and UnicodeDecodeError).
        data = yaml.safe_load(read_text_limited(p, MAX_CONFIG_BYTES))
    except FileTooLarge as e:
        raise ConfigError(str(p), [str(e)]) from None
    except (OSError, yaml.YAMLError, ValueError, RecursionError) as e:
        raise ConfigError(str(p), [f"cannot read: {e}"]) from None
    return parse_web_config(data, p.parent, str(p))
