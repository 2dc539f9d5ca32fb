"""Which stores one replica of a sharded exporter owns (`--shard N --total-shards M`). Pure.

As kube-state-metrics does it: every replica has the whole config and keeps the stores whose
key hashes to its shard; the replicas together cover every store exactly once. The hash is
the first 8 bytes of SHA-256 of the key, modulo M: stable across processes, versions and
machines (Python's hash() is salted per process).

The key is the store's name, except for the stores of an HA pair: they share the pair's name
as key, so both sides of a pair land on one replica and its pair metrics see both.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

from exporter.config.model import Config


@dataclass(frozen=True)
class Shard:
    index: int = 0
    total: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.total:
            raise ValueError(
                f"--shard {self.index} --total-shards {self.total}: "
                f"expected 0 <= shard < total-shards")

    @property
    def sharded(self) -> bool:
        return self.total > 1

    def owns(self, key: str) -> bool:
        return owner(key, self.total) == self.index


ALL = Shard()


def owner(key: str, total: int) -> int:
    """The shard (0..total-1) a key belongs to."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % total


def keys(config: Config) -> dict[str, str]:
    """store name -> the key it is assigned by: its own name, or its HA pair's name. Stores
    linked by pairs (a store in two pairs links them) share the smallest of their pair names."""
    parent = {s.name: s.name for s in config.stores}

    def root(name: str) -> str:
        while parent[name] != name:
            name = parent[name]
        return name

    for p in config.pairs:
        a, b = root(p.primary), root(p.secondary)
        parent[b] = a
    pair_key: dict[str, str] = {}
    for p in config.pairs:
        r = root(p.primary)
        pair_key[r] = min(pair_key.get(r, p.name), p.name)
    return {name: pair_key.get(root(name), name) for name in parent}


def select(config: Config, shard: Shard) -> Config:
    """The config of one replica: its own stores and the pairs between them (both sides of
    a pair are always on the same shard)."""
    if not shard.sharded:
        return config
    key = keys(config)
    own = {name for name, k in key.items() if shard.owns(k)}
    return dataclasses.replace(
        config,
        stores=tuple(s for s in config.stores if s.name in own),
        pairs=tuple(p for p in config.pairs if p.primary in own),
    )


def owns_none(config: Config, shard: Shard) -> str | None:
    """Why this shard has nothing to do, when it owns none of the config's stores (more
    replicas than stores, or an unlucky hash); None when it owns some."""
    if select(config, shard).stores:
        return None
    return (f"shard {shard.index} of {shard.total} owns none of the {len(config.stores)} "
            f"stores in {config.source}")
