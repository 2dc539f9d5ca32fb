"""Store kinds and probers: the one place the service branches on a store's kind.

A kind says how a store is read (its Source), where each entry is probed (its endpoint), which
Prober reads what the peer presents, and how the entries are judged:

- pi (the default): the PI server's TOFU list over SSH, the TLS prober, core.verdict's
  per-entry rules (subjects, baselines, pins, log).
- known_hosts: an OpenSSH known_hosts file (sources.known_hosts.source), the ssh_hostkey
  prober (one probe per host and key type: endpoint "host:port TYPE"), every host's entries
  judged together with evidence `stored` (sources.known_hosts.judge).

A host-key endpoint names its prober itself (core.endpoint.split_hostkey_endpoint), so probing
a set of endpoints needs no store: `probe` splits them between the probers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence

from exporter.config.model import KNOWN_HOSTS, StoreConfig
from exporter.core.endpoint import entry_endpoint as _pi_endpoint
from exporter.core.endpoint import split_hostkey_endpoint
from exporter.core.model import Attested, Baseline, EntryView, Listing, ProbeResult, StoredEntry, StoreRead
from exporter.core.views import store_views as _pi_views
from exporter.probes.seam import Prober, Target
from exporter.probes.ssh_hostkey import probe_target as _hostkey_probe
from exporter.probes.tls import probe_many
from exporter.sources.known_hosts import judge as _known_hosts
from exporter.sources.known_hosts import source as _known_hosts_source
from exporter.sources.prime.ssh import PiSession

# Prober name (Source.prober) -> the Prober for targets that name it. TLS targets go through
# tls.probe_many (its certificate cache and profiles); listed here for the name only.
PROBERS: dict[str, Prober] = {_known_hosts_source.PROBER: _hostkey_probe}
TLS = "tls"

# (endpoint, timeout, sni, connect, profile): what tls.probe_many takes
TlsTarget = tuple[str, float, str | None, str | None, str]


def is_pi(store: StoreConfig) -> bool:
    return store.kind != KNOWN_HOSTS


def entry_endpoint(store: StoreConfig, entry: StoredEntry) -> str:
    """Where to probe an entry from here."""
    if store.kind == KNOWN_HOSTS:
        return _known_hosts_source.entry_endpoint(entry)
    # PI stores itself as 127.0.0.1_8082: that is the PI server's own address, not ours
    return _pi_endpoint(store.self_address, entry.host, entry.port)


async def read(store: StoreConfig, session: PiSession | None) -> tuple[StoreRead, int]:
    """Read a store that is not PI's list (PI's read stays in the service: its log, its
    empty-listing rules): the read and how many entries max_entries left out."""
    source = _known_hosts_source.KnownHostsSource(store, session=session)
    read = await source.read()
    return read, source.capped


def store_views(
    store: StoreConfig, listing: Listing, endpoints: Sequence[str],
    probes: Mapping[str, ProbeResult], baselines: Mapping[str, Baseline], pins: Mapping[str, str],
    log_seen: Mapping[str, float], attested: Mapping[str, Attested] | None,
) -> tuple[EntryView, ...]:
    """One store's entry views, judged as its kind judges."""
    if store.kind == KNOWN_HOSTS:
        return _known_hosts.store_views(store.name, listing, endpoints, probes, time.time())
    return _pi_views(store.name, listing.entries, endpoints, probes, baselines, pins, log_seen,
                     attested)


def split(endpoints: Iterable[str]) -> tuple[list[str], list[str]]:
    """(TLS endpoints, host-key endpoints)."""
    tls: list[str] = []
    hostkey: list[str] = []
    for ep in endpoints:
        (hostkey if split_hostkey_endpoint(ep) is not None else tls).append(ep)
    return tls, hostkey


async def probe(tls: Iterable[TlsTarget], hostkey: Iterable[tuple[str, float]],
                sem: asyncio.Semaphore) -> dict[str, ProbeResult]:
    """Probe TLS targets and host-key (endpoint, timeout) targets under one shared bound."""
    async def one(endpoint: str, timeout: float) -> ProbeResult:
        parts = split_hostkey_endpoint(endpoint)
        assert parts is not None
        async with sem:
            return await PROBERS[_known_hosts_source.PROBER](Target(endpoint, timeout, parts[1]))

    keyed = asyncio.gather(*(one(ep, t) for ep, t in dict(hostkey).items()))
    tls_results, key_results = await asyncio.gather(probe_many(tls, sem), keyed)
    return {**tls_results, **{r.endpoint: r for r in key_results}}
