"""What a scrape, the landing page, `check` and `remediate` read: one moment of everything
the exporter knows. Frozen, comparable, free of I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from exporter.core.model import EntryView, ProbeResult, StoreStatus
from exporter.fleet.pairs import PairView
from exporter.fleet.shard import ALL, Shard

_V = TypeVar("_V")

LOOPS = ("start", "store", "probe")  # the exporter's supervised loops (exporter.service.service)


@dataclass(frozen=True)
class Snapshot:
    stores: Mapping[str, StoreStatus]
    views: tuple[EntryView, ...]
    probes: Mapping[str, ProbeResult]
    changed: Mapping[str, float]  # endpoint -> when its fingerprint last changed
    capped: Mapping[str, int] = field(default_factory=dict)  # store -> entries not shown
    bad_lines: Mapping[str, int] = field(default_factory=dict)
    config_reload_ok: bool = True
    ready: bool = False
    pairs: tuple[PairView, ...] = ()
    # store -> version of its views (exporter.service.state): renderers cache per (store, version).
    versions: Mapping[str, int] = field(default_factory=dict)
    # loop ("start", "store", "probe") -> unexpected exceptions so far (exporter.service.service)
    loop_errors: Mapping[str, int] = field(default_factory=dict)
    shard: Shard = ALL  # which stores this replica owns (exporter.fleet.shard)
    kinds: Mapping[str, str] = field(default_factory=dict)  # store -> its kind ("pi", "known_hosts")
    # store -> lines of its last read that name nothing to probe (known_hosts: unresolved hashed
    # lines and patterns)
    unresolved: Mapping[str, int] = field(default_factory=dict)

    def for_store(self, name: str) -> Snapshot:
        """One store's series (/probe?target=): its store and entry series, the endpoints its
        entries point at, and the HA pairs whose primary it is. A pair's series (both
        directions) belong to the pair, so a multi-target job carries them once."""
        views = tuple(v for v in self.views if v.store == name)
        eps = {v.endpoint for v in views}
        return Snapshot(
            _only(self.stores, {name}), views, _only(self.probes, eps), _only(self.changed, eps),
            _only(self.capped, {name}), _only(self.bad_lines, {name}), self.config_reload_ok,
            self.ready, tuple(p for p in self.pairs if p.primary == name),
            _only(self.versions, {name}), shard=self.shard, kinds=_only(self.kinds, {name}),
            unresolved=_only(self.unresolved, {name}),
        )


def _only(mapping: Mapping[str, _V], keys: set[str]) -> dict[str, _V]:
    return {k: v for k, v in mapping.items() if k in keys}
