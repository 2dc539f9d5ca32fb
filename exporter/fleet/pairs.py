"""HA pairs in the seed's terms: does the primary still trust the secondary, and vice versa?

Pure: config + entry views -> one link per (store, peer) direction. A PI server also stores
itself (as 127.0.0.1_<port>), and a stale self entry breaks HA as surely as a stale peer
entry, so each side has two links: to its peer and to itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from exporter.config.model import Config
from exporter.core.endpoint import split_endpoint
from exporter.core.model import EntryView, State

# Worst first: the state a link shows when its entries disagree.
_SEVERITY = (State.MISMATCH, State.UNREACHABLE, State.UNKNOWN, State.MATCH)
ABSENT = "absent"  # the store holds no entry for that peer (HA never registered, or deleted)
LINK_STATES = (*(s.value for s in _SEVERITY), ABSENT)


@dataclass(frozen=True)
class PairLink:
    store: str  # the PI server holding the entries
    peer: str  # the PI server they point at (may equal store)
    state: str  # one of LINK_STATES
    entries: tuple[str, ...]  # the entry keys pointing at peer


@dataclass(frozen=True)
class PairView:
    name: str
    primary: str
    secondary: str
    links: tuple[PairLink, ...]


def pair_views(config: Config, views: Iterable[EntryView]) -> tuple[PairView, ...]:
    address = {s.name: s.self_address.lower() for s in config.stores}
    by_store: dict[str, list[EntryView]] = {}
    for v in views:
        by_store.setdefault(v.store, []).append(v)
    out = []
    for pair in config.pairs:
        links = []
        for store in (pair.primary, pair.secondary):
            for peer in (pair.secondary if store == pair.primary else pair.primary, store):
                hits = [
                    v for v in by_store.get(store, [])
                    if split_endpoint(v.endpoint)[0].lower() == address.get(peer)
                ]
                states = {v.verdict.state for v in hits}
                state = next((s.value for s in _SEVERITY if s in states), ABSENT)
                links.append(PairLink(store, peer, state, tuple(v.entry.key for v in hits)))
        out.append(PairView(pair.name, pair.primary, pair.secondary, tuple(links)))
    return tuple(out)
