"""The one place that names concrete sources and probers. A store's kind picks its Source;
the Source's `prober` names the Prober its entries' peers are probed with. A new kind of
store is one line in each dict (and its own files under exporter/sources and exporter/probes).

Where the generic per-entry path differs by kind, the branch is here too: where an entry is
probed (ENDPOINTS) and how a store's entries are judged (VIEWS). PI: the entry's `host:port`
(its own loopback entries at `self_address`), core.views.store_views per entry (subject,
baseline, pin, log). known_hosts: `host:port TYPE`, and each host's entries judged together
with evidence `stored` (exporter.sources.known_hosts.judge). A kind listed in neither takes
PI's: the entry's host:port, the generic per-entry verdict.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from exporter.config.model import StoreConfig
from exporter.core.endpoint import entry_endpoint as _pi_endpoint
from exporter.core.model import Attested, Baseline, EntryView, Listing, ProbeResult, StoredEntry
from exporter.core.views import store_views as _pi_views
from exporter.probes import ssh_hostkey
from exporter.probes.seam import Prober
from exporter.probes.tls import probe_target
from exporter.sources.known_hosts import judge as known_hosts_judge
from exporter.sources.known_hosts import source as known_hosts
from exporter.sources.prime.source import PiSource
from exporter.sources.prime.ssh import PiSession
from exporter.sources.seam import Offload, Source

SourceFactory = Callable[[StoreConfig, Offload], Source]

# store kind -> how to open one store of that kind
SOURCES: dict[str, SourceFactory] = {
    "pi": PiSource,  # a PI server's TOFU list over SSH
    "known_hosts": known_hosts.KnownHostsSource,  # an OpenSSH known_hosts file, local or over SSH
}

# a Source's `prober` -> what reads the credential its entries' peers present now
PROBERS: dict[str, Prober] = {
    "tls": probe_target,  # the TLS leaf certificate, as the store's Java client sees it
    known_hosts.PROBER: ssh_hostkey.probe_target,  # one SSH host key type, its signature verified
}

# store kind -> where to probe an entry from here
ENDPOINTS: dict[str, Callable[[StoreConfig, StoredEntry], str]] = {
    "pi": lambda store, e: _pi_endpoint(store.self_address, e.host, e.port),
    "known_hosts": lambda store, e: known_hosts.entry_endpoint(e),
}


@dataclass(frozen=True, slots=True)
class Inputs:
    """What a store's verdicts may read besides its entries, endpoints and probes (PI's
    rules read them all; a known_hosts verdict none: the file holds the key)."""

    baselines: Mapping[str, Baseline]
    pins: Mapping[str, str]
    log_seen: Mapping[str, float]
    attested: Mapping[str, Attested] | None


Views = Callable[[str, Listing, Sequence[str], Mapping[str, ProbeResult], Inputs],
                 tuple[EntryView, ...]]

# store kind -> how its entries are judged
VIEWS: dict[str, Views] = {
    "pi": lambda name, listing, eps, probes, i: _pi_views(
        name, listing.entries, eps, probes, i.baselines, i.pins, i.log_seen, i.attested),
    "known_hosts": lambda name, listing, eps, probes, i: known_hosts_judge.store_views(
        name, listing, eps, probes, time.time()),
}


def kind(cfg: StoreConfig) -> str:
    """The store's kind: `pi` unless the config says otherwise."""
    return str(getattr(cfg, "kind", "pi"))


def open_source(cfg: StoreConfig, offload: Offload) -> Source:
    return SOURCES[kind(cfg)](cfg, offload)


def entry_endpoint(store: StoreConfig, entry: StoredEntry) -> str:
    return ENDPOINTS.get(kind(store), ENDPOINTS["pi"])(store, entry)


def store_views(store: StoreConfig, listing: Listing, endpoints: Sequence[str],
                probes: Mapping[str, ProbeResult], inputs: Inputs) -> tuple[EntryView, ...]:
    return VIEWS.get(kind(store), VIEWS["pi"])(store.name, listing, endpoints, probes, inputs)


def pi_session(source: Source) -> PiSession:
    """The SSH session of a PI store's source (remediation runs its commands on it)."""
    if not isinstance(source, PiSource):
        raise TypeError(f"not a PI store: {type(source).__name__}")
    return source.session
