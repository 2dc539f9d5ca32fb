"""The data the exporter passes around: frozen, comparable, free of I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from exporter.core.pi_commands import deletecert


class State(StrEnum):
    MATCH = "match"
    MISMATCH = "mismatch"
    UNKNOWN = "unknown"
    UNREACHABLE = "unreachable"


class Evidence(StrEnum):
    """Strongest evidence first; the verdict names the one it used."""

    # The store itself holds the exact credential (a known_hosts line holds the key): the
    # strongest evidence there is.
    STORED = "stored"
    FINGERPRINT = "fingerprint"
    LOG = "log"
    BASELINE = "baseline"
    # An operator saw the integration work and accepted the live certificate (`accept`):
    # weaker than a witnessed baseline, stronger than a subject.
    ATTESTED = "attested"
    SUBJECT = "subject"
    NONE = "none"


class ErrorReason(StrEnum):
    CONNECT = "connect"
    TIMEOUT = "timeout"
    AUTH = "auth"
    HOSTKEY = "hostkey"
    COMMAND = "command"
    PARSE = "parse"
    STORAGE = "storage"  # read fine, but its baselines could not be recorded (disk full, I/O)


# An RDN sequence in certificate (DER) order, e.g. (("C", "US"), ..., ("CN", "prime-pri")).
Subject = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """One line of `ncs certvalidation tofu-certs listcerts`."""

    key: str  # raw `host=` value, e.g. "10.0.0.2_8082"; the deletecert argument
    host: str  # address or name, IPv6 without brackets
    port: int
    subject_text: str  # the subject exactly as printed (stripped)
    subject: Subject  # parsed, normalised for comparison
    # What a store that holds the exact credential holds (known_hosts: hex SHA-256 of the key
    # blob; evidence `stored`); None where the store holds only a subject (PI).
    stored_fingerprint: str | None = None
    key_type: str = ""  # known_hosts: the entry's key type ("ssh-ed25519"); "" for PI
    line: int = 0  # known_hosts: the 1-based line in the file that holds it; 0 for PI


@dataclass(frozen=True, slots=True)
class Listing:
    entries: tuple[StoredEntry, ...]
    bad_lines: tuple[str, ...] = ()  # lines that looked like entries but did not parse
    # Lines that parse but name nothing to probe (known_hosts: a hashed line or pattern that no
    # name of the store's `resolve:` list matches), each shown as "line N: ... (why)".
    unresolved: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LiveCert:
    fingerprint_sha256: str  # lowercase hex of SHA-256 over the leaf DER
    spki_sha256: str
    subject: Subject
    subject_text: str  # OpenSSL one-line style, "/C=US/.../CN=x"
    issuer_text: str
    serial: str  # hex
    not_before: float  # unix seconds
    not_after: float
    key_type: str = ""  # "RSA 2048", "EC secp256r1", "Ed25519": which key a dual-cert peer chose
    # SSH: the host key or host certificate blob as presented, whole (the known_hosts verdict
    # reads a certificate's CA, validity and principals from it); b"" for TLS.
    blob: bytes = b""


@dataclass(frozen=True, slots=True)
class ProbeResult:
    endpoint: str  # "host:port", IPv6 as "[addr]:port"
    cert: LiveCert | None
    error: str | None  # short, secret-free reason when cert is None
    duration_seconds: float
    timestamp: float  # unix seconds when the probe finished
    tls_version: str | None = None  # "TLSv1.2", "TLSv1.3": what the handshake that got cert spoke
    # SSH: the host key algorithms the server named in its KEXINIT (empty when not seen): a
    # failed probe whose type is not among them is "not offered", not "unreachable".
    offered: tuple[str, ...] = ()

    @property
    def success(self) -> bool:
        return self.cert is not None


class BaselineKind(StrEnum):
    WITNESSED = "witnessed"  # the entry appeared while the exporter watched
    ADOPTED = "adopted"  # the entry existed when the exporter first read the store
    ATTESTED = "attested"  # an operator accepted the live certificate (`accept`)


@dataclass(frozen=True, slots=True)
class Baseline:
    kind: BaselineKind
    fingerprint_sha256: str | None  # None until a probe succeeded after the entry appeared
    since: float


@dataclass(frozen=True, slots=True)
class Attested:
    """Who accepted an entry's live certificate (`accept`), when and why, as the views show it.
    Only attested entries hold one; the entries of one `accept` share one object."""

    by: str  # the operator (OS user running `accept`)
    at: float  # unix seconds; the attested baseline's `since`
    reason: str  # operator-typed text, verbatim: show it through exporter.core.text.visible


@dataclass(frozen=True, slots=True)
class Verdict:
    state: State
    evidence: Evidence
    reason: str  # one human sentence: why


@dataclass(frozen=True, slots=True)
class StoreRead:
    """The outcome of one read of one store (exporter.sources.seam.Source.read)."""

    store: str
    ok: bool
    listing: Listing | None
    duration_seconds: float
    timestamp: float
    error_reason: ErrorReason | None = None
    error: str | None = None  # secret-free message
    beyond: int = 0  # entries past the store's max_entries: counted, never held


@dataclass(frozen=True, slots=True)
class EntryView:
    """Everything known about one stored entry at one moment: what the page and metrics show."""

    store: str
    entry: StoredEntry
    endpoint: str
    verdict: Verdict
    probe: ProbeResult | None
    baseline: Baseline | None
    pinned: str | None = None
    # From the history (exporter.core.history): when the current state began, and the live
    # fingerprint the entry's endpoint presented before the current one.
    state_since: float | None = None
    previous_fingerprint: str | None = None
    attestation: Attested | None = None  # for an `attested` baseline: who, when, why

    @property
    def remediation(self) -> str:
        return deletecert(self.entry.key)


@dataclass(frozen=True, slots=True)
class StoreStatus:
    name: str
    last: StoreRead | None  # latest attempt
    last_success: StoreRead | None
    errors_total: dict[str, int] = field(default_factory=dict)
