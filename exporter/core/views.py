"""Pure: one store's entries, with everything known about them, -> its entry views."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from exporter.core.model import Attested, Baseline, EntryView, ProbeResult, StoredEntry
from exporter.core.subject import common_name
from exporter.core.verdict import decide


def entry_names(entry: StoredEntry, probe: ProbeResult | None) -> set[str]:
    """The CNs PI's log could name for this entry: the stored certificate's and the live one's
    (a renewed certificate may carry a new name no entry stores)."""
    names = [common_name(entry.subject)]
    if probe is not None and probe.cert is not None:
        names.append(common_name(probe.cert.subject))
    return {n for n in names if n}


def logged_failure(seen: Mapping[str, float], entry: StoredEntry, unique_cns: set[str],
                   base: Baseline | None, probe: ProbeResult | None) -> bool:
    """Did PI log a TOFU failure for this entry after its baseline was taken? `unique_cns`:
    the names exactly one entry of the store claims (`entry_names`)."""
    if not seen:
        return False
    since = base.since if base is not None else 0.0
    # The log names a CN, not a host: only trust it where one entry alone claims that CN.
    return any(n in unique_cns and seen.get(n, 0.0) > since for n in entry_names(entry, probe))


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
    if log_seen:  # only log evidence needs the CN census: each entry's stored and live names
        cns = Counter(n for e, ep in zip(entries, endpoints, strict=True)
                      for n in entry_names(e, probes.get(ep)))
        unique = {cn for cn, n in cns.items() if n == 1}
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
