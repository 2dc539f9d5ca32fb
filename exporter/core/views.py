"""Pure: one store's entries, with everything known about them, -> its entry views."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from exporter.core.model import Attested, Baseline, EntryView, ProbeResult, StoredEntry
from exporter.core.subject import common_name
from exporter.core.verdict import decide


def logged_failure(seen: Mapping[str, float], entry: StoredEntry, unique_cns: set[str],
                   base: Baseline | None, probe: ProbeResult | None) -> bool:
    """Did PI log a TOFU failure for this entry after its baseline was taken?"""
    if not seen:
        return False
    since = base.since if base is not None else 0.0
    names = {common_name(entry.subject)}
    if probe is not None and probe.cert is not None:
        names.add(common_name(probe.cert.subject))
    # The log names a CN, not a host: only trust it where that CN is unique in the store.
    return any(n in unique_cns and seen.get(n, 0.0) > since for n in names if n)


def store_views(
    store: str,
    entries: Sequence[StoredEntry],
    endpoints: Sequence[str],
    probes: Mapping[str, ProbeResult],
    baselines: Mapping[str, Baseline],
    pins: Mapping[str, str],
    log_seen: Mapping[str, float],
    attested: Mapping[str, Attested] | None = None,
) -> tuple[EntryView, ...]:
    """`attested`: entry key -> who attested it, when, why (only attested entries)."""
    unique: set[str] = set()
    if log_seen:  # only log evidence needs the CN census
        cns = Counter(common_name(e.subject) for e in entries)
        unique = {cn for cn, n in cns.items() if n == 1 and cn}
    views = []
    for entry, ep in zip(entries, endpoints, strict=True):
        pin = pins.get(ep)
        probe = probes.get(ep)
        base = baselines.get(entry.key)
        logged = logged_failure(log_seen, entry, unique, base, probe)
        views.append(EntryView(
            store, entry, ep, decide(entry, probe, base, pin, logged), probe, base, pin,
            attestation=attested.get(entry.key) if attested else None,
        ))
    return tuple(views)
