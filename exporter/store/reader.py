"""What the pages, the api and the commands may do with the stored evidence: read it, and
(`accept` only) attest. They get these from the service (Service.evidence, Service.attester),
never the database itself, so the database's other operations stay the service's own."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from exporter.core.history import Attestation, Change
from exporter.core.model import Baseline
from exporter.store.attestations import Recorded


class EvidenceReader(Protocol):
    def history(self, store: str | None = None, entry: str | None = None,
                since: float | None = None, limit: int | None = None) -> list[Change]:
        """Changes, newest first."""
        ...

    def baselines(self, store: str) -> dict[str, Baseline]: ...

    def attestations(self, store: str) -> dict[str, Attestation]: ...


class Attester(Protocol):
    def attest(self, items: Sequence[Attestation],
               verify: Callable[[dict[tuple[str, str], Recorded]], None] | None = None,
               ) -> list[Change]:
        """All or none; see exporter.store.attestations.Attestations.attest."""
        ...
