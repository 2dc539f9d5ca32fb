"""`--web.config.file`: TLS and basic auth for our own endpoints, in the Prometheus
exporter-toolkit file format (tls_server_config, basic_auth_users with bcrypt hashes)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt
import yaml
from aiohttp import web

from exporter.config import ConfigError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OPEN_PATHS = frozenset({"/-/healthy"})  # liveness probes carry no credentials
_TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                 "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
_CLIENT_AUTH = {"NoClientCert", "RequestClientCert", "RequireAnyClientCert",
                "VerifyClientCertIfGiven", "RequireAndVerifyClientCert"}


@dataclass(frozen=True)
class WebConfig:
    cert_file: str | None = None
    key_file: str | None = None
    client_ca_file: str | None = None
    client_auth_type: str = "NoClientCert"
    min_version: str = "TLS12"
    users: dict[str, bytes] = field(default_factory=dict, repr=False)

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.cert_file:
            return None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = _TLS_VERSIONS[self.min_version]
        ctx.load_cert_chain(self.cert_file, self.key_file)
        if self.client_ca_file:
            ctx.load_verify_locations(self.client_ca_file)
        if self.client_auth_type in ("RequireAndVerifyClientCert", "RequireAnyClientCert"):
            ctx.verify_mode = ssl.CERT_REQUIRED
        elif self.client_auth_type != "NoClientCert":
            ctx.verify_mode = ssl.CERT_OPTIONAL
        return ctx

    def middlewares(self) -> list[Callable[..., Awaitable[web.StreamResponse]]]:
        if not self.users:
            return []
        users = self.users
        verified: set[bytes] = set()  # digests of credentials bcrypt already accepted

        # bcrypt costs ~0.1 s of CPU per check: run it off the event loop, two at a time,
        # so a flood of wrong passwords cannot stall /metrics for the rightful scraper.
        checks = asyncio.Semaphore(2)

        @web.middleware
        async def basic_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.path in OPEN_PATHS:
                return await handler(request)
            if await _authorised(request.headers.get("Authorization", ""), users, verified,
                                 checks):
                return await handler(request)
            return web.Response(
                status=401, text="Unauthorized\n",
                headers={"WWW-Authenticate": 'Basic realm="prime-tofu-exporter"'},
            )

        return [basic_auth]


async def _authorised(
    header: str, users: dict[str, bytes], verified: set[bytes], checks: asyncio.Semaphore
) -> bool:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    hashed = users.get(user)
    if not sep or hashed is None:
        return False
    digest = hashlib.sha256(hashed + b"\0" + password.encode()).digest()
    if any(hmac.compare_digest(digest, d) for d in verified):
        return True
    async with checks:
        ok = await asyncio.to_thread(bcrypt.checkpw, password.encode(), hashed)
    if ok:
        verified.add(digest)
    return ok


def load_web_config(path: str | Path) -> WebConfig:
    p = Path(path)
    problems: list[str] = []
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(str(p), [f"cannot read: {e}"]) from None
    if not isinstance(data, dict):
        raise ConfigError(str(p), ["(top): must be a mapping"])
    for key in data:
        if key not in {"tls_server_config", "basic_auth_users", "http_server_config"}:
            problems.append(f"{key}: unknown key")
    tls = data.get("tls_server_config") or {}
    users_raw = data.get("basic_auth_users") or {}
    if not isinstance(tls, dict):
        problems.append("tls_server_config: must be a mapping")
        tls = {}
    if not isinstance(users_raw, dict):
        problems.append("basic_auth_users: must be a mapping of user to bcrypt hash")
        users_raw = {}
    known_tls = {"cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version"}
    for key in tls:
        if key not in known_tls:
            problems.append(f"tls_server_config.{key}: unknown key")

    def resolve(name: str) -> str | None:
        v = tls.get(name)
        if v is None:
            return None
        f = Path(v) if Path(v).is_absolute() else p.parent / v
        if not f.is_file():
            problems.append(f"tls_server_config.{name}: cannot read {f}")
        return str(f)

    cert, key, ca = resolve("cert_file"), resolve("key_file"), resolve("client_ca_file")
    if bool(cert) != bool(key):
        problems.append("tls_server_config: cert_file and key_file go together")
    auth = tls.get("client_auth_type", "NoClientCert")
    if auth not in _CLIENT_AUTH:
        problems.append(f"tls_server_config.client_auth_type: one of {sorted(_CLIENT_AUTH)}")
    min_version = tls.get("min_version", "TLS12")
    if min_version not in _TLS_VERSIONS:
        problems.append(f"tls_server_config.min_version: one of {sorted(_TLS_VERSIONS)}")
    users: dict[str, bytes] = {}
    for user, hashed in users_raw.items():
        if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            problems.append(f"basic_auth_users.{user}: must be a bcrypt hash ($2y$...)")
            continue
        users[str(user)] = hashed.encode()
    if problems:
        raise ConfigError(str(p), problems)
    cfg = WebConfig(cert, key, ca, auth, min_version, users)
    try:
        cfg.ssl_context()  # a key that does not fit its certificate fails here, not at start
    except (ssl.SSLError, OSError, ValueError) as e:
        raise ConfigError(str(p), [f"tls_server_config: cannot load certificate/key: {e}"]) from None
    return cfg
