"""Every metric the exporter exposes, declared once: name, type, help, labels and where the
values come from. Pure: the exposition (exporter.exposition.writer) is generated from this table.

A family's samples come either from the whole snapshot (`of_snapshot`) or from one entry
view (`of_entry`); the per-entry families are rendered per store, so a store whose version
did not move reuses its bytes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from exporter.core.model import EntryView, ErrorReason, State, Subject
from exporter.core.subject import format_subject
from exporter.core.text import is_plain, visible
from exporter.fleet.pairs import LINK_STATES
from exporter.fleet.snapshot import LOOPS, Snapshot

LABEL_MAX = 256

Sample = tuple[tuple[str, ...], float]  # label values in the family's label order, value


def bound(value: str, limit: int = LABEL_MAX) -> str:
    """Label values from the network (subjects, issuers) are bounded in length."""
    return value if len(value) <= limit else value[: limit - 1] + "…"


@functools.lru_cache(maxsize=65536)  # subjects repeat across entries, probes and scrapes
def text_label(value: str) -> str:
    """A label value from the network: no raw control, separator or bidi character (shown
    as escapes by exporter.core.text.visible), bounded in length. A value without any such
    character is unchanged, backslashes included (`/O=A\\/B` is a plain OpenSSL subject)."""
    return bound(value if is_plain(value.replace("\\", "")) else visible(value))


@functools.lru_cache(maxsize=65536)  # stored subjects repeat across entries and scrapes
def subject_label(subject: Subject) -> str:
    return text_label(format_subject(subject))


@dataclass(frozen=True)
class Metric:
    name: str
    type: str  # "gauge" | "counter"
    help: str
    labels: tuple[str, ...]
    of_snapshot: Callable[[Snapshot], Iterable[Sample]] | None = None
    of_entry: Callable[[EntryView], Iterable[Sample]] | None = None

    @property
    def exposed(self) -> str:
        """The name the text format shows (counters carry `_total`)."""
        return self.name + "_total" if self.type == "counter" else self.name


def _flag(cond: bool) -> float:
    return 1.0 if cond else 0.0


# ---- value functions ---------------------------------------------------------------------

def _store_up(snap: Snapshot) -> Iterator[Sample]:
    for name, st in snap.stores.items():
        yield (name,), _flag(st.last is not None and st.last.ok)


def _store_entries(snap: Snapshot) -> Iterator[Sample]:
    for name, st in snap.stores.items():
        if st.last_success is not None and st.last_success.listing is not None:
            yield (name,), float(len(st.last_success.listing.entries))


def _store_duration(snap: Snapshot) -> Iterator[Sample]:
    for name, st in snap.stores.items():
        if st.last is not None:
            yield (name,), st.last.duration_seconds


def _store_success(snap: Snapshot) -> Iterator[Sample]:
    for name, st in snap.stores.items():
        if st.last_success is not None and st.last_success.listing is not None:
            yield (name,), st.last_success.timestamp


def _store_errors(snap: Snapshot) -> Iterator[Sample]:
    for name, st in snap.stores.items():
        for reason in ErrorReason:
            yield (name, reason.value), float(st.errors_total.get(reason.value, 0))


def _loop_errors(snap: Snapshot) -> Iterator[Sample]:
    for loop in LOOPS:
        yield (loop,), float(snap.loop_errors.get(loop, 0))


def _store_capped(snap: Snapshot) -> Iterator[Sample]:
    for name in snap.stores:
        yield (name,), float(snap.capped.get(name, 0))


def _store_bad(snap: Snapshot) -> Iterator[Sample]:
    for name in snap.stores:
        yield (name,), float(snap.bad_lines.get(name, 0))


def _store_unresolved(snap: Snapshot) -> Iterator[Sample]:
    for name in snap.stores:
        yield (name,), float(snap.unresolved.get(name, 0))


def _store_info(snap: Snapshot) -> Iterator[Sample]:
    for name in snap.stores:
        yield (name, snap.kinds.get(name, "pi")), 1.0


def _entry_info(v: EntryView) -> Iterator[Sample]:
    e = v.entry
    # What the store holds: PI's subject, or a known_hosts line's key as `SHA256:...`.
    held = text_label(e.subject_text) if e.stored_fingerprint is not None else subject_label(e.subject)
    yield (v.store, e.key, e.host, str(e.port), held, v.endpoint), 1.0


def _entry_mismatch(v: EntryView) -> Iterator[Sample]:
    yield (v.store, v.entry.key), _flag(v.verdict.state is State.MISMATCH)


_STATES = tuple((s, s.value) for s in State)  # enum iteration is slow; 20,000 entries ask


def _entry_state(v: EntryView) -> Iterator[Sample]:
    cur, store, key = v.verdict.state, v.store, v.entry.key
    for s, value in _STATES:
        yield (store, key, value), 1.0 if cur is s else 0.0


def _entry_evidence(v: EntryView) -> Iterator[Sample]:
    yield (v.store, v.entry.key, v.verdict.evidence.value), 1.0


def _entry_since(v: EntryView) -> Iterator[Sample]:
    if v.state_since is not None:
        yield (v.store, v.entry.key), v.state_since


def _entry_line(v: EntryView) -> Iterator[Sample]:
    if v.entry.line:
        yield (v.store, v.entry.key), float(v.entry.line)


def _entry_previous(v: EntryView) -> Iterator[Sample]:
    if v.previous_fingerprint is not None:
        yield (v.store, v.entry.key, v.previous_fingerprint), 1.0


def _probe_success(snap: Snapshot) -> Iterator[Sample]:
    for ep, r in sorted(snap.probes.items()):
        yield (ep,), _flag(r.cert is not None)


def _probe_duration(snap: Snapshot) -> Iterator[Sample]:
    for ep, r in sorted(snap.probes.items()):
        yield (ep,), r.duration_seconds


def _live_info(snap: Snapshot) -> Iterator[Sample]:
    for ep, r in sorted(snap.probes.items()):
        if (c := r.cert) is not None:
            yield (ep, c.fingerprint_sha256, c.spki_sha256, text_label(c.subject_text),
                   text_label(c.issuer_text), bound(c.serial, 64)), 1.0


def _live_expiry(snap: Snapshot) -> Iterator[Sample]:
    for ep, r in sorted(snap.probes.items()):
        if r.cert is not None and r.cert.not_after != math.inf:  # a plain host key never expires
            yield (ep,), r.cert.not_after


def _live_changed(snap: Snapshot) -> Iterator[Sample]:
    for ep, t in sorted(snap.changed.items()):
        yield (ep,), t


def _pair_info(snap: Snapshot) -> Iterator[Sample]:
    for p in snap.pairs:
        yield (p.name, p.primary, p.secondary), 1.0


def _pair_state(snap: Snapshot) -> Iterator[Sample]:
    for p in snap.pairs:
        for link in p.links:
            for ls in LINK_STATES:
                yield (p.name, link.store, link.peer, ls), _flag(link.state == ls)


def _pair_mismatch(snap: Snapshot) -> Iterator[Sample]:
    for p in snap.pairs:
        for link in p.links:
            yield (p.name, link.store, link.peer), _flag(link.state == State.MISMATCH.value)


# ---- the table, in exposition order ------------------------------------------------------

STORE, ENTRY, EP = ("store",), ("store", "entry"), ("endpoint",)

METRICS: tuple[Metric, ...] = (
    Metric("tofu_store_info", "gauge",
           "One series per store: its kind (pi: a PI server's TOFU list; known_hosts: an OpenSSH "
           "known_hosts file); join on store to split any per-entry family by kind",
           ("store", "kind"), _store_info),
    Metric("tofu_store_up", "gauge", "1 if the last read of this store succeeded",
           STORE, _store_up),
    Metric("tofu_store_entries", "gauge", "Entries in the last successful read", STORE,
           _store_entries),
    Metric("tofu_store_read_duration_seconds", "gauge", "Duration of the last read", STORE,
           _store_duration),
    Metric("tofu_store_last_success_timestamp_seconds", "gauge", "When the last read succeeded",
           STORE, _store_success),
    Metric("tofu_store_read_errors", "counter", "Failed reads by reason", ("store", "reason"),
           _store_errors),
    Metric("tofu_store_entries_dropped", "gauge",
           "Entries beyond max_entries, not exported (the series cap bit)", STORE, _store_capped),
    Metric("tofu_store_unparsed_lines", "gauge",
           "Lines of the last listing that looked like entries but did not parse", STORE, _store_bad),
    Metric("tofu_store_unresolved_lines", "gauge",
           "known_hosts lines that name no host to probe: hashed lines and patterns that no name "
           "of the store's resolve list matches (always 0 for a PI store)", STORE, _store_unresolved),
    Metric("tofu_entry_info", "gauge",
           "One series per stored entry (PI: a TOFU certificate; known_hosts: a host and key type); "
           "subject is what the store holds (PI's subject, or the key's SHA256: fingerprint)",
           ("store", "entry", "host", "port", "subject", "endpoint"), of_entry=_entry_info),
    Metric("tofu_certificate_mismatch", "gauge",
           "1 when evidence proves the live certificate differs from the stored one", ENTRY,
           of_entry=_entry_mismatch),
    Metric("tofu_certificate_state", "gauge", "Verdict per entry; exactly one state is 1",
           ("store", "entry", "state"), of_entry=_entry_state),
    Metric("tofu_certificate_evidence_info", "gauge", "The strongest evidence the verdict used",
           ("store", "entry", "evidence"), of_entry=_entry_evidence),
    Metric("tofu_certificate_state_since_timestamp_seconds", "gauge",
           "When the entry's current state began (the history; survives restarts)", ENTRY,
           of_entry=_entry_since),
    Metric("tofu_certificate_previous_fingerprint_info", "gauge",
           "The live certificate the entry's endpoint presented before the current one",
           ("store", "entry", "fingerprint_sha256"), of_entry=_entry_previous),
    Metric("tofu_entry_line", "gauge",
           "The line of the store's file that holds the entry (known_hosts stores; PI entries have "
           "none)", ENTRY, of_entry=_entry_line),
    Metric("tofu_probe_success", "gauge",
           "1 if the last probe delivered a certificate (TLS handshake, verified or not) or a host "
           "key (SSH key exchange, its signature verified)", EP,
           _probe_success),
    Metric("tofu_probe_duration_seconds", "gauge", "Duration of the last probe", EP,
           _probe_duration),
    Metric("tofu_live_certificate_info", "gauge", "The certificate the endpoint presents now",
           ("endpoint", "fingerprint_sha256", "spki_sha256", "subject", "issuer", "serial"),
           _live_info),
    Metric("tofu_live_certificate_not_after_timestamp_seconds", "gauge", "Leaf certificate expiry",
           EP, _live_expiry),
    Metric("tofu_live_certificate_changed_timestamp_seconds", "gauge",
           "When the exporter last saw this endpoint's fingerprint change", EP, _live_changed),
    Metric("tofu_ha_pair_info", "gauge", "A configured HA pair", ("pair", "primary", "secondary"),
           _pair_info),
    Metric("tofu_ha_pair_trust_state", "gauge",
           "Whether `store` still trusts `peer` (peer may be store itself); one state is 1",
           ("pair", "store", "peer", "state"), _pair_state),
    Metric("tofu_ha_pair_peer_mismatch", "gauge",
           "1 when `store` holds a stale entry for `peer` of its HA pair", ("pair", "store", "peer"),
           _pair_mismatch),
    Metric("tofu_exporter_config_last_reload_successful", "gauge",
           "1 if the last config reload succeeded", (),
           lambda snap: [((), _flag(snap.config_reload_ok))]),
    Metric("tofu_exporter_loop_errors", "counter",
           "Unexpected exceptions in the exporter's own loops (first pass, store loops, probe "
           "loop), each logged and retried with backoff", ("loop",), _loop_errors),
    Metric("tofu_exporter_shard_info", "gauge",
           "This replica's shard; it exports only the stores that hash to it",
           ("shard", "total_shards"),
           lambda snap: [((str(snap.shard.index), str(snap.shard.total)), 1.0)]),
)
