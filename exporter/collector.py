"""Snapshot -> Prometheus metric families, built fresh on every scrape.

Label values that come from the network (subjects, issuers) are bounded in length; the
exposition library escapes them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from exporter import __version__
from exporter.model import EntryView, ErrorReason, State, Subject
from exporter.pairs import LINK_STATES
from exporter.snapshot import Snapshot
from exporter.subject import format_subject

LABEL_MAX = 256


def bound(value: str, limit: int = LABEL_MAX) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def families(snap: Snapshot, bulk: bool = True) -> Iterator[Metric]:
    """bulk=False: the per-entry and per-endpoint families come out empty (render_text
    writes their samples itself)."""
    up = GaugeMetricFamily(
        "tofu_store_up", "1 if the last read of this PI server's TOFU list succeeded", labels=["store"]
    )
    entries = GaugeMetricFamily(
        "tofu_store_entries", "Entries in the last successful read", labels=["store"]
    )
    duration = GaugeMetricFamily(
        "tofu_store_read_duration_seconds", "Duration of the last read", labels=["store"]
    )
    success = GaugeMetricFamily(
        "tofu_store_last_success_timestamp_seconds",
        "When the last read succeeded",
        labels=["store"],
    )
    errors = CounterMetricFamily(
        "tofu_store_read_errors", "Failed reads by reason", labels=["store", "reason"]
    )
    capped = GaugeMetricFamily(
        "tofu_store_entries_dropped",
        "Entries beyond max_entries, not exported (the series cap bit)",
        labels=["store"],
    )
    bad = GaugeMetricFamily(
        "tofu_store_unparsed_lines",
        "Lines of the last listing that looked like entries but did not parse",
        labels=["store"],
    )
    for name, st in snap.stores.items():
        up.add_metric([name], 1.0 if st.last is not None and st.last.ok else 0.0)
        if st.last is not None:
            duration.add_metric([name], st.last.duration_seconds)
        if st.last_success is not None and st.last_success.listing is not None:
            entries.add_metric([name], len(st.last_success.listing.entries))
            success.add_metric([name], st.last_success.timestamp)
        for reason in ErrorReason:
            errors.add_metric([name, reason.value], st.errors_total.get(reason.value, 0))
        capped.add_metric([name], snap.capped.get(name, 0))
        bad.add_metric([name], snap.bad_lines.get(name, 0))
    yield from (up, entries, duration, success, errors, capped, bad)

    info = GaugeMetricFamily(
        "tofu_entry_info",
        "One series per stored TOFU entry",
        labels=["store", "entry", "host", "port", "subject", "endpoint"],
    )
    mismatch = GaugeMetricFamily(
        "tofu_certificate_mismatch",
        "1 when evidence proves the live certificate differs from the stored one",
        labels=["store", "entry"],
    )
    state = GaugeMetricFamily(
        "tofu_certificate_state",
        "Verdict per entry; exactly one state is 1",
        labels=["store", "entry", "state"],
    )
    evidence = GaugeMetricFamily(
        "tofu_certificate_evidence_info",
        "The strongest evidence the verdict used",
        labels=["store", "entry", "evidence"],
    )
    for v in snap.views if bulk else ():
        e = v.entry
        info.add_metric(
            [v.store, e.key, e.host, str(e.port), bound(format_subject(e.subject)), v.endpoint], 1.0
        )
        mismatch.add_metric([v.store, e.key], 1.0 if v.verdict.state is State.MISMATCH else 0.0)
        for s in State:
            state.add_metric([v.store, e.key, s.value], 1.0 if v.verdict.state is s else 0.0)
        evidence.add_metric([v.store, e.key, v.verdict.evidence.value], 1.0)
    yield from (info, mismatch, state, evidence)

    p_ok = GaugeMetricFamily(
        "tofu_probe_success",
        "1 if the last TLS handshake delivered a certificate (verified or not)",
        labels=["endpoint"],
    )
    p_dur = GaugeMetricFamily(
        "tofu_probe_duration_seconds", "Duration of the last probe", labels=["endpoint"]
    )
    live = GaugeMetricFamily(
        "tofu_live_certificate_info",
        "The certificate the endpoint presents now",
        labels=["endpoint", "fingerprint_sha256", "spki_sha256", "subject", "issuer", "serial"],
    )
    expiry = GaugeMetricFamily(
        "tofu_live_certificate_not_after_timestamp_seconds",
        "Leaf certificate expiry",
        labels=["endpoint"],
    )
    changed = GaugeMetricFamily(
        "tofu_live_certificate_changed_timestamp_seconds",
        "When the exporter last saw this endpoint's fingerprint change",
        labels=["endpoint"],
    )
    for ep, r in sorted(snap.probes.items()) if bulk else ():
        p_ok.add_metric([ep], 1.0 if r.cert is not None else 0.0)
        p_dur.add_metric([ep], r.duration_seconds)
        if r.cert is not None:
            c = r.cert
            live.add_metric(
                [ep, c.fingerprint_sha256, c.spki_sha256, bound(c.subject_text),
                 bound(c.issuer_text), bound(c.serial, 64)],
                1.0,
            )
            expiry.add_metric([ep], c.not_after)
    for ep, t in sorted(snap.changed.items()) if bulk else ():
        changed.add_metric([ep], t)
    yield from (p_ok, p_dur, live, expiry, changed)

    pair_info = GaugeMetricFamily(
        "tofu_ha_pair_info", "A configured HA pair", labels=["pair", "primary", "secondary"]
    )
    pair_state = GaugeMetricFamily(
        "tofu_ha_pair_trust_state",
        "Whether `store` still trusts `peer` (peer may be store itself); one state is 1",
        labels=["pair", "store", "peer", "state"],
    )
    pair_mismatch = GaugeMetricFamily(
        "tofu_ha_pair_peer_mismatch",
        "1 when `store` holds a stale entry for `peer` of its HA pair",
        labels=["pair", "store", "peer"],
    )
    for p in snap.pairs:
        pair_info.add_metric([p.name, p.primary, p.secondary], 1.0)
        for link in p.links:
            for ls in LINK_STATES:
                pair_state.add_metric(
                    [p.name, link.store, link.peer, ls], 1.0 if link.state == ls else 0.0
                )
            pair_mismatch.add_metric(
                [p.name, link.store, link.peer], 1.0 if link.state == State.MISMATCH.value else 0.0
            )
    yield from (pair_info, pair_state, pair_mismatch)

    build = GaugeMetricFamily("tofu_exporter_build_info", "Build", labels=["version"])
    build.add_metric([__version__], 1.0)
    reload_ok = GaugeMetricFamily(
        "tofu_exporter_config_last_reload_successful", "1 if the last config reload succeeded"
    )
    reload_ok.add_metric([], 1.0 if snap.config_reload_ok else 0.0)
    yield from (build, reload_ok)


def _esc(value: str) -> str:
    """Label value escaping of the text format, as prometheus_client does it."""
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')
    return value


@functools.lru_cache(maxsize=65536)  # stored subjects repeat across entries and scrapes
def _subject_label(subject: Subject) -> str:
    return _esc(bound(format_subject(subject)))


# The four state lines of an entry, by its state: one format call instead of four f-strings.
_STATE_LINES = {
    cur: "".join(
        f'tofu_certificate_state{{{{entry="{{ent}}",state="{s.value}",{{st}}}}}} '
        f'{"1.0" if cur is s else "0.0"}\n'
        for s in State
    )
    for cur in State
}


# Per store: the version its blocks were written at (exporter.state; versions are unique in
# the process), and the four blocks (info, mismatch, state, evidence). A steady-state scrape
# reuses the bytes, and the body shares them instead of copying.
_BLOCKS: dict[str, tuple[int, tuple[bytes, ...]]] = {}
_BLOCKS_MAX = 100_000


def _store_runs(views: tuple[EntryView, ...]) -> Iterator[tuple[EntryView, ...]]:
    start = 0
    for i in range(1, len(views) + 1):
        if i == len(views) or views[i].store != views[start].store:
            yield views[start:i]
            start = i


def _store_blocks(run: tuple[EntryView, ...], version: int | None) -> tuple[bytes, ...]:
    store = run[0].store
    hit = _BLOCKS.get(store)
    if version is not None and hit is not None and hit[0] == version:
        return hit[1]
    lines = [_entry_lines(v) for v in run]
    blocks = tuple("".join(ln[i] for ln in lines).encode() for i in range(4))
    if version is not None:
        if len(_BLOCKS) > _BLOCKS_MAX:
            _BLOCKS.clear()
        _BLOCKS[store] = (version, blocks)
    return blocks


def _entry_lines(v: EntryView) -> tuple[str, str, str, str]:
    e, cur = v.entry, v.verdict.state
    st, ent = f'store="{_esc(v.store)}"', _esc(e.key)
    return (
        f'tofu_entry_info{{endpoint="{_esc(v.endpoint)}",entry="{ent}",host="{_esc(e.host)}",'
        f'port="{e.port}",{st},subject="{_subject_label(e.subject)}"}} 1.0\n',
        f'tofu_certificate_mismatch{{entry="{ent}",{st}}} '
        f'{"1.0" if cur is State.MISMATCH else "0.0"}\n',
        _STATE_LINES[cur].format(ent=ent, st=st),
        f'tofu_certificate_evidence_info{{entry="{ent}",evidence="{v.verdict.evidence.value}",'
        f"{st}}} 1.0\n",
    )


def _bulk_samples(snap: Snapshot) -> dict[str, list[bytes]]:
    """Sample lines of the per-entry and per-endpoint families, written directly: with
    20,000 entries the library's Sample objects and generic formatting took seconds.
    Labels in sorted order and values formatted as generate_latest does (tests compare)."""
    entry_blocks = [_store_blocks(run, snap.versions.get(run[0].store))
                    for run in _store_runs(snap.views)]
    info, mism, state, evid = ([b[i] for b in entry_blocks] for i in range(4))
    ok, dur, live, expiry, changed = [], [], [], [], []
    for ep, r in sorted(snap.probes.items()):
        lep = f'endpoint="{_esc(ep)}"'
        c = r.cert
        ok.append(f"tofu_probe_success{{{lep}}} {'1.0' if c is not None else '0.0'}\n")
        dur.append(f"tofu_probe_duration_seconds{{{lep}}} {floatToGoString(r.duration_seconds)}\n")
        if c is not None:
            live.append(
                f'tofu_live_certificate_info{{{lep},fingerprint_sha256="{_esc(c.fingerprint_sha256)}",'
                f'issuer="{_esc(bound(c.issuer_text))}",serial="{_esc(bound(c.serial, 64))}",'
                f'spki_sha256="{_esc(c.spki_sha256)}",subject="{_esc(bound(c.subject_text))}"}} 1.0\n'
            )
            expiry.append(f"tofu_live_certificate_not_after_timestamp_seconds{{{lep}}} "
                          f"{floatToGoString(c.not_after)}\n")
    for ep, t in sorted(snap.changed.items()):
        changed.append(f'tofu_live_certificate_changed_timestamp_seconds{{endpoint="{_esc(ep)}"}} '
                       f"{floatToGoString(t)}\n")
    per_endpoint = {
        "tofu_probe_success": ok, "tofu_probe_duration_seconds": dur,
        "tofu_live_certificate_info": live,
        "tofu_live_certificate_not_after_timestamp_seconds": expiry,
        "tofu_live_certificate_changed_timestamp_seconds": changed,
    }
    return {
        "tofu_entry_info": info, "tofu_certificate_mismatch": mism,
        "tofu_certificate_state": state, "tofu_certificate_evidence_info": evid,
        **{name: ["".join(lines).encode()] for name, lines in per_endpoint.items()},
    }


class _One(Collector):
    def __init__(self, metric: Metric) -> None:
        self.metric = metric

    def collect(self) -> Iterator[Metric]:
        yield self.metric


def render_chunks(snap: Snapshot) -> list[bytes]:
    """The text exposition of `families(snap)`, byte for byte, in chunks (per family, and per
    store for the per-entry families), without building a Sample per series: small families
    go through generate_latest, the bulk ones are written. Chunks, so an 18 MB body is never
    joined, copied or encoded whole, and unchanged stores' blocks are reused as they are."""
    bulk = _bulk_samples(snap)
    out: list[bytes] = []
    for fam in families(snap, bulk=False):
        out.append(generate_latest(_One(fam)))
        out.extend(c for c in bulk.get(fam.name, ()) if c)
    return out


def render_text(snap: Snapshot) -> bytes:
    return b"".join(render_chunks(snap))


class SnapshotCollector(Collector):
    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def collect(self) -> Iterator[Metric]:
        return families(self.snap)

