"""The configuration as frozen data: what every wing reads. Pure (no YAML, no files);
exporter.config.load builds it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from exporter.core.pi_commands import LISTCERTS


class ConfigError(Exception):
    """Raised with every problem found; str() lists them one per line."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = list(dict.fromkeys(problems))  # defaults' errors repeat per store
        super().__init__("\n".join(f"{source}: {p}" for p in self.problems))


# The kinds of store (exporter.sources): a PI server's TOFU list, or an OpenSSH known_hosts file.
STORE_KINDS = ("pi", "known_hosts")
PI, KNOWN_HOSTS = STORE_KINDS

# The Java TLS clients the probe can imitate (exporter.probes.jsse holds what each one offers).
TLS_CLIENT_PROFILES = ("jsse8", "jsse11")
DEFAULT_TLS_CLIENT_PROFILE = "jsse8"


@dataclass(frozen=True)
class StoreConfig:
    name: str
    host: str
    port: int
    username: str
    password: str | None = field(repr=False)
    private_key_file: str | None
    private_key_passphrase: str | None = field(repr=False)
    known_hosts: str | None
    cli_mode: str  # "shell" | "exec"
    connect_timeout: float
    command_timeout: float
    probe_timeout: float
    store_interval: float
    probe_interval: float
    # Where this PI server's own loopback entries (127.0.0.1_8082) really live, seen from here.
    self_address: str
    listcerts_command: str = LISTCERTS
    prompt: str | None = None  # regex; default detects `<host>/<user>#`
    max_entries: int = 5000
    # A CLI command printing PI's health-monitor log (site-specific; unset = no log evidence).
    log_command: str | None = None
    # What this PI's Java TLS client offers (exporter.probes.jsse): a dual-certificate peer chooses by it.
    tls_client_profile: str = DEFAULT_TLS_CLIENT_PROFILE
    # What the store is (STORE_KINDS). A known_hosts store reads the file at `path`: local when
    # `host` is "", else over SSH with this store's session settings (SFTP, or `cat`).
    kind: str = PI
    path: str | None = None
    # known_hosts: names (host, address or [host]:port) that hashed lines and patterns are
    # matched against, as `ssh-keygen -F NAME` matches them.
    resolve: tuple[str, ...] = ()

    @property
    def remote(self) -> bool:
        """Read over SSH: every PI store, and a known_hosts store with a host."""
        return bool(self.host)

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.password, self.private_key_passphrase) if s)


@dataclass(frozen=True)
class EndpointConfig:
    endpoint: str  # as it appears from stored entries, "host:port"
    sni: str | None = None
    connect: str | None = None  # "host:port" actually dialled (NAT, proxies)


@dataclass(frozen=True)
class PairConfig:
    name: str
    primary: str
    secondary: str


@dataclass(frozen=True)
class HistoryConfig:
    """How much of the entries' change history the database keeps (newest kept)."""

    max_age: float = 90 * 86400.0
    max_records: int = 50_000


@dataclass(frozen=True)
class Config:
    stores: tuple[StoreConfig, ...]
    pins: Mapping[str, str]  # endpoint -> lowercase hex sha256
    endpoints: Mapping[str, EndpointConfig]
    pairs: tuple[PairConfig, ...] = ()
    probe_concurrency: int = 64
    source: str = "<config>"
    # SSH reads at once: 200 PI servers are not logged into in the same instant (memory, AAA).
    store_concurrency: int = 32
    history: HistoryConfig = field(default_factory=lambda: HistoryConfig())
    # Not errors, but an operator should know (secret files readable by others).
    warnings: tuple[str, ...] = ()

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(s for st in self.stores for s in st.secrets)

    def store(self, name: str) -> StoreConfig | None:
        return next((s for s in self.stores if s.name == name), None)
