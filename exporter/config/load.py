"""YAML configuration -> frozen dataclasses. Every error is collected, none is fatal alone.

Secrets are read here (from files or the environment) and kept out of every repr.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from exporter.config.model import (
    DEFAULT_TLS_CLIENT_PROFILE,
    KNOWN_HOSTS,
    PI,
    STORE_KINDS,
    TLS_CLIENT_PROFILES,
    Config,
    ConfigError,
    EndpointConfig,
    HistoryConfig,
    PairConfig,
    StoreConfig,
)
from exporter.config.secrets import loose_permissions
from exporter.core.endpoint import parse_endpoint
from exporter.core.pi_commands import LISTCERTS

# A configuration file (or web config) is read whole and parsed by PyYAML in pure Python:
# 4 MiB (about 38,000 pins) takes 6 s of CPU, in a worker thread; a 50 MB file took 30 s and
# a config symlinked to /dev/zero 9.8 GB of memory. Secret files hold one line.
MAX_CONFIG_BYTES = 4 << 20
MAX_SECRET_BYTES = 64 << 10
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$")
_HEX = re.compile(r"^[0-9a-f]{64}$")


def parse_duration(value: object) -> float:
    """'30s', '5m', '1h30m', '250ms' or a bare number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError("must be a duration like 30s or 5m")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("must not be negative")
        return float(value)
    if not isinstance(value, str) or not value:
        raise ValueError("must be a duration like 30s or 5m")
    pos, total = 0, 0.0
    for m in _DURATION.finditer(value):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(value):
        raise ValueError(f"{value!r} is not a duration like 30s, 5m or 1h30m")
    return total


def normalise_fingerprint(value: str) -> str:
    fp = value.replace(":", "").replace(" ", "").lower()
    if not _HEX.match(fp):
        raise ValueError("must be 64 hex digits (SHA-256), colons allowed")
    return fp


# Every number in the file has a range, checked at load like any other problem: v0.1 took
# `history.max_records: 99999999999999999999999`, and `check` then died of SQLite's
# OverflowError with exit 1 ("mismatch"). Inclusive; durations in seconds.
SECOND, HOUR, DAY = 1.0, 3600.0, 86400.0
BOUNDS: dict[str, tuple[float, float]] = {
    "port": (1, 65535),
    "connect_timeout": (0.001, HOUR),
    "command_timeout": (0.001, HOUR),
    "probe_timeout": (0.001, HOUR),
    "store_interval": (0.001, 7 * DAY),
    "probe_interval": (0.001, 7 * DAY),
    "max_entries": (1, 1_000_000),
    "probe_concurrency": (1, 10_000),
    "store_concurrency": (1, 1_000),
    "history.max_age": (0.001, 3650 * DAY),
    "history.max_records": (1, 10_000_000),
}


def human_duration(seconds: float) -> str:
    """3600.0 -> '1h', 0.001 -> '1ms': the largest unit that divides it."""
    if seconds == 0:
        return "0s"
    for unit in ("d", "h", "m", "s"):
        if seconds >= _UNITS[unit] and seconds % _UNITS[unit] == 0:
            return f"{seconds / _UNITS[unit]:g}{unit}"
    return f"{seconds * 1000:g}ms"


def whole_number(lo: int, hi: int, noun: str = "a whole number") -> Callable[[object], int]:
    def big(n: int) -> str:
        return f"{n:,}" if n >= 100_000 else str(n)

    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ValueError(f"must be {noun} from {big(lo)} to {big(hi)}")
        return value
    return check


def duration_between(lo: float, hi: float) -> Callable[[object], float]:
    def check(value: object) -> float:
        seconds = parse_duration(value)
        if not lo <= seconds <= hi:  # also NaN (YAML .nan)
            raise ValueError(f"must be a duration from {human_duration(lo)} "
                             f"to {human_duration(hi)}")
        return seconds
    return check


def _bounded(key: str) -> Callable[[object], Any]:
    lo, hi = BOUNDS[key]
    if key.endswith(("_timeout", "_interval", "max_age")):
        return duration_between(lo, hi)
    return whole_number(int(lo), int(hi), "a port number" if key == "port" else "a whole number")


def _str(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty string")
    return value


def _cli_mode(value: object) -> str:
    if value not in ("shell", "exec"):
        raise ValueError("must be 'shell' or 'exec'")
    return str(value)


def _prompt(value: object) -> str:
    text = _str(value)
    try:
        re.compile(text)
    except re.error as e:
        raise ValueError(f"is not a valid regular expression: {e}") from None
    return text


def _tls_client_profile(value: object) -> str:
    if not isinstance(value, str) or value not in TLS_CLIENT_PROFILES:
        raise ValueError(f"must be one of {' | '.join(TLS_CLIENT_PROFILES)}")
    return str(value)


def _kind(value: object) -> str:
    if not isinstance(value, str) or value not in STORE_KINDS:
        raise ValueError(f"must be one of {' | '.join(STORE_KINDS)}")
    return value


# A resolve name as `ssh-keygen -F` takes it: a host name or address, or `[host]:port`
# (port 22 is written bare: ssh never looks up `[host]:22`).
_RESOLVE_NAME = re.compile(r"[^\s,\[\]]+|\[([^\s,\[\]]+)\]:([1-9][0-9]{0,4})")
MAX_RESOLVE = 10_000


def _resolve_names(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError("must be a non-empty list of host names, addresses or [host]:port")
    if len(value) > MAX_RESOLVE:
        raise ValueError(f"must hold at most {MAX_RESOLVE:,} names")
    names = []
    for i, name in enumerate(value):
        m = _RESOLVE_NAME.fullmatch(name) if isinstance(name, str) else None
        if m is None or (m.group(2) is not None and not 1 <= int(m.group(2)) <= 65535):
            raise ValueError(f"item {i + 1}: must be a host name, an address or [host]:port "
                             "(port 1-65535), without spaces or commas")
        if m.group(2) == "22":
            raise ValueError(f"item {i + 1}: write port 22 as the bare host {m.group(1)}, as "
                             "known_hosts does")
        names.append(name)
    return tuple(dict.fromkeys(names))


def normalise_endpoint(value: object) -> str:
    """'10.0.0.3:443', '[2001:db8::1]:443', 'ise.example.com:443' -> canonical host:port."""
    return parse_endpoint(_str(value))


# key -> (validator, default). A default of None means optional.
_STORE_KEYS: dict[str, tuple[Callable[[object], Any], Any]] = {
    "username": (_str, "admin"),
    "password_file": (_str, None),
    "password_env": (_str, None),
    "private_key_file": (_str, None),
    "private_key_passphrase_file": (_str, None),
    "known_hosts": (_str, None),
    "cli_mode": (_cli_mode, "shell"),
    "connect_timeout": (_bounded("connect_timeout"), 10.0),
    "command_timeout": (_bounded("command_timeout"), 60.0),
    "probe_timeout": (_bounded("probe_timeout"), 5.0),
    "store_interval": (_bounded("store_interval"), 300.0),
    "probe_interval": (_bounded("probe_interval"), 60.0),
    "listcerts_command": (_str, LISTCERTS),
    "prompt": (_prompt, None),
    "max_entries": (_bounded("max_entries"), 5000),
    "log_command": (_str, None),
    "tls_client_profile": (_tls_client_profile, DEFAULT_TLS_CLIENT_PROFILE),
}
_STORE_ONLY = {"name": _str, "host": _str, "port": _bounded("port"), "self_address": _str,
               "kind": _kind, "path": _str, "resolve": _resolve_names}
# What only a PI store reads: set on a known_hosts store, it is a mistake worth naming.
_PI_ONLY = ("listcerts_command", "prompt", "log_command", "tls_client_profile", "cli_mode",
            "self_address")
_LIMITS = {"probe_concurrency": 64, "store_concurrency": 32}
_HISTORY_KEYS = {"max_age", "max_records"}
_PIN_KEYS = {"endpoint", "sha256"}
_ENDPOINT_KEYS = {"endpoint", "sni", "connect"}
_PAIR_KEYS = {"name", "primary", "secondary"}
_TOP_KEYS = {"defaults", "stores", "pins", "endpoints", "pairs", "history", *_LIMITS}


def schema() -> dict[str, set[str]]:
    """Where -> the keys allowed there (`[]`: each item of a list). Any other key is an error
    (_Collector.mapping), so this is every key a file can hold: the bounds test walks it."""
    return {"": set(_TOP_KEYS), "defaults": set(_STORE_KEYS),
            "stores[]": set(_STORE_KEYS) | set(_STORE_ONLY), "pins[]": set(_PIN_KEYS),
            "endpoints[]": set(_ENDPOINT_KEYS), "pairs[]": set(_PAIR_KEYS),
            "history": set(_HISTORY_KEYS)}


class _Collector:
    def __init__(self) -> None:
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.mode_checked: set[str] = set()

    def add(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def check(self, path: str, fn: Callable[[object], Any], value: object) -> Any:
        try:
            return fn(value)
        except (ValueError, TypeError) as e:
            self.add(path, str(e))
            return None

    def items(self, top: dict[str, Any], key: str, allowed: set[str]) -> list[dict[str, Any]]:
        """An optional top-level list of mappings, each checked for unknown keys."""
        raw = top.get(key) or []
        if not isinstance(raw, list):
            self.add(key, "must be a list")
            return []
        return [self.mapping(f"{key}[{i}]", item, allowed) for i, item in enumerate(raw)]

    def mapping(self, path: str, value: object, allowed: set[str]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.add(path, "must be a mapping")
            return {}
        for key in value:
            if key not in allowed:
                self.add(f"{path}.{key}", "unknown key")
        return value


def _read_secret_file(c: _Collector, path: str, filename: str, base: Path) -> str | None:
    filename = os.path.expandvars(filename)  # ${CREDENTIALS_DIRECTORY}/x under systemd LoadCredential
    p = (base / filename) if not os.path.isabs(filename) else Path(filename)
    try:
        text = read_text_limited(p, MAX_SECRET_BYTES).strip()
    except OSError as e:
        c.add(path, f"cannot read {p}: {e.strerror or e}")
        return None
    except FileTooLarge as e:
        c.add(path, f"{p} {e}")
        return None
    except UnicodeDecodeError:
        c.add(path, f"{p} is not UTF-8 text")
        return None
    if not text:
        c.add(path, f"{p} is empty")
        return None
    _check_mode(c, path, p)
    return text


def _check_mode(c: _Collector, path: str, file: str | Path) -> None:
    """One warning per file, however many stores share it through defaults."""
    key = os.path.realpath(file)
    if key not in c.mode_checked:
        c.mode_checked.add(key)
        if (warning := loose_permissions(file, path)) is not None:
            c.warnings.append(warning)


def _resolve(filename: str | None, base: Path) -> str | None:
    if filename is not None:
        filename = os.path.expandvars(filename)
    if filename is None or os.path.isabs(filename):
        return filename
    return str(base / filename)


def _merge(c: _Collector, path: str, raw: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for key, (fn, default) in _STORE_KEYS.items():
        src = f"{path}.{key}" if key in raw else f"defaults.{key}"
        value = raw.get(key, defaults.get(key))
        merged[key] = default if value is None else c.check(src, fn, value)
    for key, fn in _STORE_ONLY.items():
        if key in raw:
            merged[key] = c.check(f"{path}.{key}", fn, raw[key])
    required = ("name", "path") if merged.get("kind") == KNOWN_HOSTS else ("name", "host")
    for key in required:
        if key not in raw:
            why = " (the known_hosts file to watch)" if key == "path" else ""
            c.add(f"{path}.{key}", f"is required{why}")
    name = merged.get("name")
    if isinstance(name, str) and not _NAME.match(name):
        c.add(f"{path}.name", "must be 1-63 characters of letters, digits, _ . : -")
    return merged


def _password(
    c: _Collector, path: str, raw: dict[str, Any], merged: dict[str, Any], base: Path
) -> tuple[str | None, list[str]]:
    """Exactly one way to get a password; read now so a missing file fails early."""
    password = None
    pw_sources = [k for k in ("password_file", "password_env") if merged.get(k)]
    if len(pw_sources) > 1:
        c.add(path, "set only one of password_file and password_env")
    if merged.get("password_file"):
        where = f"{path}.password_file" if "password_file" in raw else "defaults.password_file"
        password = _read_secret_file(c, where, merged["password_file"], base)
    elif merged.get("password_env"):
        var = merged["password_env"]
        password = os.environ.get(var)
        if not password:
            c.add(f"{path}.password_env", f"environment variable {var} is not set or empty")
    return password, pw_sources


def _secrets(
    c: _Collector, path: str, raw: dict[str, Any], merged: dict[str, Any], base: Path
) -> tuple[str | None, str | None, str | None]:
    """(password, private key file, key passphrase), or problems noted in `c`."""
    passphrase = None
    password, pw_sources = _password(c, path, raw, merged, base)
    key_file = _resolve(merged.get("private_key_file"), base)
    if key_file and not os.access(key_file, os.R_OK):
        c.add(f"{path}.private_key_file", f"cannot read {key_file}")
    elif key_file:
        _check_mode(c, f"{path}.private_key_file", key_file)
    if merged.get("private_key_passphrase_file"):
        passphrase = _read_secret_file(
            c, f"{path}.private_key_passphrase_file", merged["private_key_passphrase_file"], base
        )
    if not password and not key_file and not pw_sources:
        c.add(path, "no credentials: set password_file, password_env or private_key_file")
    return password, key_file, passphrase


def _known_hosts(c: _Collector, path: str, merged: dict[str, Any], base: Path) -> str | None:
    known_hosts = _resolve(merged.get("known_hosts"), base)
    if known_hosts is None:
        c.add(f"{path}.known_hosts", "is required: the exporter never trusts SSH host keys on first use")
    elif not os.access(known_hosts, os.R_OK):
        c.add(f"{path}.known_hosts", f"cannot read {known_hosts}")
    return known_hosts


def _kind_keys(c: _Collector, path: str, raw: dict[str, Any], merged: dict[str, Any],
               base: Path) -> str | None:
    """The keys that depend on the store's kind: a known_hosts store's `path` (local: readable
    now; remote: read over SSH each cycle) and `resolve`, and no PI-only key on it."""
    if merged.get("kind", PI) == PI:
        for key in ("path", "resolve"):
            if key in raw:
                c.add(f"{path}.{key}", "applies only to kind: known_hosts")
        return None
    for key in _PI_ONLY:
        if key in raw:
            c.add(f"{path}.{key}", "applies only to kind: pi")
    file = merged.get("path")
    if not isinstance(file, str):
        return None
    if "host" in raw:
        return file  # on the remote host, as its SSH user sees it
    local = _resolve(file, base)
    if local is not None and not os.access(local, os.R_OK):
        c.add(f"{path}.path", f"cannot read {local}")
    return local


def _build_store(
    c: _Collector, path: str, raw: dict[str, Any], defaults: dict[str, Any], base: Path
) -> StoreConfig | None:
    merged = _merge(c, path, raw, defaults)
    name = merged.get("name")
    file = _kind_keys(c, path, raw, merged, base)
    local = merged.get("kind") == KNOWN_HOSTS and "host" not in raw
    if local:  # a local file: no SSH session, so no credentials or host keys to check
        password = key_file = passphrase = known_hosts = None
    else:
        password, key_file, passphrase = _secrets(c, path, raw, merged, base)
        known_hosts = _known_hosts(c, path, merged, base)

    if any(v is None for k, v in merged.items() if k in _STORE_ONLY) or not isinstance(name, str):
        return None
    host = "" if local else merged.get("host")
    if not isinstance(host, str):
        return None
    return StoreConfig(
        name=name,
        host=host,
        port=merged.get("port", 22),
        username=merged["username"],
        password=password,
        private_key_file=key_file,
        private_key_passphrase=passphrase,
        known_hosts=known_hosts,
        cli_mode=merged["cli_mode"],
        connect_timeout=merged["connect_timeout"],
        command_timeout=merged["command_timeout"],
        probe_timeout=merged["probe_timeout"],
        store_interval=merged["store_interval"],
        probe_interval=merged["probe_interval"],
        self_address=merged.get("self_address") or host,
        listcerts_command=merged["listcerts_command"],
        prompt=merged["prompt"],
        max_entries=merged["max_entries"],
        log_command=merged["log_command"],
        tls_client_profile=merged["tls_client_profile"],
        kind=merged.get("kind", PI),
        path=file,
        resolve=merged.get("resolve", ()),
    )


def _stores(
    c: _Collector, data: object, top: dict[str, Any], defaults: dict[str, Any], base: Path
) -> tuple[list[StoreConfig], set[str]]:
    stores: list[StoreConfig] = []
    raw_stores = top.get("stores")
    if not isinstance(raw_stores, list) or not raw_stores:
        if data is not None:
            c.add("stores", "must be a non-empty list of PI servers")
        raw_stores = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_stores):
        path = f"stores[{i}]"
        if raw is None or raw == {}:  # `- ` alone in YAML: a store nobody would read
            c.add(path, "is empty: a store needs at least name and host (or kind: known_hosts "
                        "and path)")
            continue
        raw = c.mapping(path, raw, set(_STORE_KEYS) | set(_STORE_ONLY))
        if not raw:
            continue
        name = raw.get("name")
        if isinstance(name, str):
            if name in seen:
                c.add(f"{path}.name", f"duplicate store name {name!r}")
            seen.add(name)
        st = _build_store(c, path, raw, defaults, base)
        if st is not None:
            stores.append(st)
    return stores, seen


def _pins(c: _Collector, top: dict[str, Any]) -> dict[str, str]:
    pins: dict[str, str] = {}
    for i, raw in enumerate(c.items(top, "pins", _PIN_KEYS)):
        ep = c.check(f"pins[{i}].endpoint", normalise_endpoint, raw.get("endpoint"))
        fp = c.check(f"pins[{i}].sha256", lambda v: normalise_fingerprint(_str(v)), raw.get("sha256"))
        if ep and fp:
            if ep in pins:
                c.add(f"pins[{i}].endpoint", f"{ep} is pinned twice")
            pins[ep] = fp
    return pins


def _endpoints(c: _Collector, top: dict[str, Any]) -> dict[str, EndpointConfig]:
    endpoints: dict[str, EndpointConfig] = {}
    for i, raw in enumerate(c.items(top, "endpoints", _ENDPOINT_KEYS)):
        ep = c.check(f"endpoints[{i}].endpoint", normalise_endpoint, raw.get("endpoint"))
        sni = c.check(f"endpoints[{i}].sni", _str, raw["sni"]) if "sni" in raw else None
        dial = (
            c.check(f"endpoints[{i}].connect", normalise_endpoint, raw["connect"])
            if "connect" in raw
            else None
        )
        if ep:
            endpoints[ep] = EndpointConfig(ep, sni, dial)
    return endpoints


def _pairs(c: _Collector, top: dict[str, Any], seen: set[str]) -> list[PairConfig]:
    pairs: list[PairConfig] = []
    for i, raw in enumerate(c.items(top, "pairs", _PAIR_KEYS)):
        values = {k: c.check(f"pairs[{i}].{k}", _str, raw.get(k)) for k in ("primary", "secondary")}
        for k, v in values.items():
            if v and v not in seen:
                c.add(f"pairs[{i}].{k}", f"no store named {v!r}")
        if values["primary"] and values["secondary"]:
            if values["primary"] == values["secondary"]:
                c.add(f"pairs[{i}]", "primary and secondary must differ")
            name = c.check(f"pairs[{i}].name", _str, raw["name"]) if "name" in raw else None
            name = name or f"{values['primary']}+{values['secondary']}"
            pairs.append(PairConfig(name, values["primary"], values["secondary"]))
    return pairs


def _limit(c: _Collector, top: dict[str, Any], key: str) -> int:
    if key not in top:
        return _LIMITS[key]
    return c.check(key, _bounded(key), top[key]) or _LIMITS[key]


def _history(c: _Collector, top: dict[str, Any]) -> HistoryConfig:
    raw = c.mapping("history", top.get("history"), _HISTORY_KEYS)
    d = HistoryConfig()
    age, n = (c.check(f"history.{k}", _bounded(f"history.{k}"), raw[k]) if k in raw else None
              for k in ("max_age", "max_records"))
    return HistoryConfig(age or d.max_age, n or d.max_records)


def parse_config(data: object, source: str = "<config>", base: Path | None = None) -> Config:
    """Validate a parsed YAML document; raise ConfigError listing every problem."""
    base = base or Path.cwd()
    c = _Collector()
    top = c.mapping("(top)", data, _TOP_KEYS) if data is not None else {}
    if data is None:
        c.add("(top)", "the file is empty")
    defaults = c.mapping("defaults", top.get("defaults"), set(_STORE_KEYS))
    stores, seen = _stores(c, data, top, defaults, base)
    pins = _pins(c, top)
    endpoints = _endpoints(c, top)
    pairs = _pairs(c, top, seen)
    concurrency = _limit(c, top, "probe_concurrency")
    readers = _limit(c, top, "store_concurrency")
    history = _history(c, top)
    c.problems.extend(secret_collisions(stores))
    if c.problems:
        raise ConfigError(source, c.problems)
    return Config(
        tuple(stores), pins, endpoints, tuple(pairs), concurrency, source, store_concurrency=readers,
        history=history,
        warnings=tuple(c.warnings),
    )


def secret_collisions(stores: Iterable[StoreConfig]) -> list[str]:
    """Secrets that equal (or hide inside) a store name, host or username.

    Logs blank every configured secret out; a secret that is also a name would turn each
    `<redacted>` where that name belongs into a tell. Refused, naming the store by its
    position and the fields, never the secret (which here would be the name itself)."""
    stores = list(stores)
    problems = []
    for i, st in enumerate(stores):
        for field_name, secret in (("password", st.password),
                                   ("private key passphrase", st.private_key_passphrase)):
            if not secret:
                continue
            for j, other in enumerate(stores):
                for what, public in (("name", other.name), ("host", other.host),
                                     ("username", other.username)):
                    if public and secret in public:  # None: that key had its own error
                        whose = "its" if i == j else f"stores[{j}]'s"
                        problems.append(
                            f"stores[{i}]: the {field_name} equals or appears in {whose} {what}; "
                            f"log redaction would give it away: choose another {field_name}")
    return problems


class FileTooLarge(ValueError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"is larger than {_size(limit)}, the limit for this file "
                         "(docs/configuration.md)")


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n % (1 << 20) == 0 else f"{n >> 10} KiB"


def read_text_limited(path: str | Path, limit: int) -> str:
    """The file as text (UTF-8, universal newlines, as Path.read_text), read with a bounded
    read: a larger file, or a device that never ends (/dev/zero), fails once `limit` + 1 bytes
    are in, never read() of all of it. Opened non-blocking so a FIFO without a writer reads
    as empty instead of hanging the reader. Raises OSError, FileTooLarge, UnicodeDecodeError."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    with open(fd, "rb", buffering=0, closefd=True) as f:
        os.set_blocking(fd, True)
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_size > limit:
            raise FileTooLarge(limit)
        data = bytearray()
        while len(data) <= limit:
            chunk = f.read(min(1 << 20, limit + 1 - len(data)))
            if not chunk:
                break
            data += chunk
    if len(data) > limit:
        raise FileTooLarge(limit)
    return data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")


def load_config(path: str | Path) -> Config:
    """Reads files: off the event loop when serving (exporter.cli.serve's reload)."""
    p = Path(path)
    try:
        text = read_text_limited(p, MAX_CONFIG_BYTES)
    except OSError as e:
        raise ConfigError(str(p), [f"cannot read: {e.strerror or e}"]) from None
    except FileTooLarge as e:
        raise ConfigError(str(p), [str(e)]) from None
    except UnicodeDecodeError:
        raise ConfigError(str(p), ["is not UTF-8 text"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(str(p), [f"(yaml) {where}{problem}"]) from None
    except ValueError as e:  # an integer of more than 4300 digits (sys.int_info)
        raise ConfigError(str(p), [f"(yaml) a number too long to read: {e}"]) from None
    except RecursionError:  # PyYAML composes nested collections recursively
        raise ConfigError(str(p), ["(yaml) collections nested too deeply"]) from None
    return parse_config(data, str(p), p.parent.resolve())
