"""Pure: a known_hosts store's entries and their probes -> entry views, judged host by host.

The generic per-entry path (core.verdict.decide) weighs subjects, baselines and pins; a
known_hosts line holds the exact key, so none of that applies: every entry of one host is
judged together by `verdict.judge` (a stale type is `unknown` only when another entry of the
host matches; @revoked lines constrain the others), with evidence `stored`. Baselines are
still recorded by the service (history, the previous fingerprint), never consulted here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from exporter.core.endpoint import ANY_CERTIFICATE, split_hostkey_endpoint
from exporter.core.model import (
    EntryView,
    Evidence,
    Listing,
    ProbeResult,
    State,
    StoredEntry,
    Verdict,
)
from exporter.sources.known_hosts.entries import Entry, Store
from exporter.sources.known_hosts.keys import canonical_type, is_cert_type
from exporter.sources.known_hosts.match import line_matches
from exporter.sources.known_hosts.parse import REVOKE_MARKER, KeyLine
from exporter.sources.known_hosts.verdict import NO_KEX, Offer, judge

_ANY_CERT_SLOT = "ssh-ed25519-cert-v01@openssh.com"  # where an unreachable CA probe is noted


def _offered_types(probe: ProbeResult) -> set[str]:
    """The key types the server named (rsa-sha2-512 counts as ssh-rsa)."""
    return {canonical_type(a) or a for a in probe.offered}


def offer_of(probe: ProbeResult | None, variant: str) -> tuple[str, Offer] | None:
    """The (key type, Offer) a probe tells `verdict.judge`; None: the type is not offered."""
    if probe is not None and probe.cert is not None:
        # the prober verified a certificate's CA signature before returning it
        return probe.cert.key_type, Offer(probe.cert.blob, ca_verified=True)
    slot = _ANY_CERT_SLOT if variant == ANY_CERTIFICATE else variant
    if probe is None or not probe.offered:
        return slot, NO_KEX
    types = _offered_types(probe)
    wanted = any(is_cert_type(t) for t in types) if variant == ANY_CERTIFICATE else variant in types
    return (slot, NO_KEX) if wanted else None


def host_offers(probes: Sequence[tuple[str, ProbeResult | None]]) -> dict[str, Offer]:
    """One host's offers from its probes: (variant, probe) pairs."""
    offers: dict[str, Offer] = {}
    for variant, probe in probes:
        got = offer_of(probe, variant)
        if got is not None and (got[0] not in offers or offers[got[0]].no_kex):
            offers[got[0]] = got[1]
    return offers


def _reason(state: State, reason: str, probe: ProbeResult | None) -> str:
    if state is State.UNREACHABLE:
        why = probe.error if probe is not None and probe.error else "not probed yet"
        return f"no key exchange: {why}"
    return reason


def store_views(store: str, listing: Listing, endpoints: Sequence[str],
                probes: Mapping[str, ProbeResult], now: float) -> tuple[EntryView, ...]:
    """Every listed entry's view; `listing` must carry the parsed file (KnownHostsListing)."""
    known: Store | None = getattr(listing, "known", None)
    if known is None or not listing.entries:
        return ()
    endpoint_of = dict(zip((e.key for e in listing.entries), endpoints, strict=True))
    by_key = {e.key: e for e in known.entries}
    decided: dict[str, Verdict] = {}
    revoked = revoked_lines(known)
    hosts: dict[str, list[Entry]] = {}  # lookup -> its entries (Store.for_lookup, once for all)
    for e in known.entries:
        hosts.setdefault(e.lookup, []).append(e)
    for lookup in dict.fromkeys(by_key[e.key].lookup for e in listing.entries):
        host = with_revoked(hosts[lookup], revoked)
        decided.update(_judge_host(host, endpoint_of, probes, now))
    return tuple(_view(store, e, endpoint_of[e.key], probes.get(endpoint_of[e.key]), decided[e.key])
                 for e in listing.entries)


def revoked_lines(known: Store) -> tuple[KeyLine, ...]:
    """Every @revoked line of the file, resolved or not: OpenSSH applies one to every host its
    patterns match (`@revoked * KEY` revokes the key everywhere), not only to resolve names."""
    lines = [line for e in known.entries if e.marker == REVOKE_MARKER for line in e.lines]
    lines += [u.line for u in known.unresolved if u.line.marker == REVOKE_MARKER]
    return tuple(dict.fromkeys(lines))


def with_revoked(entries: Sequence[Entry], revoked: Sequence[KeyLine]) -> tuple[Entry, ...]:
    """A host's entries plus the @revoked lines that match its lookup string but were grouped
    under other names (a pattern resolved against the resolve list only)."""
    if not entries or not revoked:
        return tuple(entries)
    first = entries[0]
    have = {line for e in entries if e.marker == REVOKE_MARKER for line in e.lines}
    extra = tuple(line for line in revoked if line not in have and line_matches(line, first.lookup))
    if not extra:
        return tuple(entries)
    return (*entries, Entry(f"{REVOKE_MARKER} {first.key}", first.host, first.port, first.lookup,
                            REVOKE_MARKER, "", extra))


def _judge_host(entries: Sequence[Entry], endpoint_of: Mapping[str, str],
                probes: Mapping[str, ProbeResult], now: float) -> dict[str, Verdict]:
    pairs = []
    for e in entries:
        ep = endpoint_of.get(e.key)
        parts = split_hostkey_endpoint(ep) if ep is not None else None
        if parts is not None:
            pairs.append((parts[1], probes.get(ep) if ep is not None else None))
    out = {}
    for key, v in judge(entries, host_offers(pairs), int(now)).items():
        state = State(v.state)
        ep = endpoint_of.get(key)
        out[key] = Verdict(state, Evidence.STORED,
                           _reason(state, v.reason, probes.get(ep) if ep is not None else None))
    return out


def _view(store: str, entry: StoredEntry, endpoint: str, probe: ProbeResult | None,
          verdict: Verdict) -> EntryView:
    return EntryView(store, entry, endpoint, verdict, probe, None)
