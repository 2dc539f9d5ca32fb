"""The Prober seam: what a peer presents now. One signature for every prober, as
blackbox_exporter's prober/ has one: a Target in, a ProbeResult out, never raising.

- probes.tls: the TLS leaf certificate an endpoint serves to a Java client (PI stores).
- probes.ssh_hostkey: the SSH host key of one type a host proves it holds (known_hosts stores).

A Prober turns every failure into a result with `error` set (connect, timeout, junk from the
peer); only cancellation ends one early. The live credential is described by LiveCert: for a
host key, `fingerprint_sha256` is the hex SHA-256 of the key blob (`ssh-keygen -lf` prints its
base64), `subject_text` the `SHA256:` form and `key_type` the key type. Pure: typing only.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Protocol

from exporter.core.model import ProbeResult


@dataclass(frozen=True, slots=True)
class Target:
    """One thing to probe. `endpoint` ("host:port", IPv6 as "[addr]:port") names the result;
    `connect` overrides where to connect; `variant` is the prober's own choice: the JSSE profile
    for TLS ("jsse8"), the host key type for SSH ("ssh-ed25519")."""

    endpoint: str
    timeout: float
    variant: str
    sni: str | None = None
    connect: str | None = None


class Prober(Protocol):
    def __call__(self, target: Target) -> Awaitable[ProbeResult]: ...
