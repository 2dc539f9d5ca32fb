"""The one place that names concrete sources and probers. A store's kind picks its Source;
the Source's `prober` names the Prober its entries' peers are probed with. A new kind of
store is one line in each dict (and its own files under exporter/sources and exporter/probes).
"""

from __future__ import annotations

from collections.abc import Callable

from exporter.config.model import StoreConfig
from exporter.probes.seam import Prober
from exporter.probes.tls import probe_target
from exporter.sources.prime.source import PiSource
from exporter.sources.prime.ssh import PiSession
from exporter.sources.seam import Offload, Source

SourceFactory = Callable[[StoreConfig, Offload], Source]

# store kind -> how to open one store of that kind
SOURCES: dict[str, SourceFactory] = {
    "pi": PiSource,  # a PI server's TOFU list over SSH
}

# a Source's `prober` -> what reads the credential its entries' peers present now
PROBERS: dict[str, Prober] = {
    "tls": probe_target,  # the TLS leaf certificate, as the store's Java client sees it
}


def kind(cfg: StoreConfig) -> str:
    """The store's kind: `pi` unless the config says otherwise."""
    return str(getattr(cfg, "kind", "pi"))


def open_source(cfg: StoreConfig, offload: Offload) -> Source:
    return SOURCES[kind(cfg)](cfg, offload)


def pi_session(source: Source) -> PiSession:
    """The SSH session of a PI store's source (remediation runs its commands on it)."""
    if not isinstance(source, PiSource):
        raise TypeError(f"not a PI store: {type(source).__name__}")
    return source.session
