"""The fast /metrics writer must produce exactly what prometheus_client writes."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.core.model import (
    Baseline,
    BaselineKind,
    EntryView,
    Evidence,
    Listing,
    LiveCert,
    ProbeResult,
    State,
    StoredEntry,
    StoreRead,
    StoreStatus,
    Verdict,
)
from exporter.exposition.writer import SnapshotCollector, render_text
from exporter.fleet.snapshot import Snapshot

pytestmark = pytest.mark.unit

NASTY = 'a"b\\c\nd ü ' + "x" * 300  # quotes, backslash, newline, non-ASCII, over LABEL_MAX


def _snapshot() -> Snapshot:
    views = []
    probes = {}
    states = list(State)
    for i in range(40):
        ep = f"10.0.{i}.1:{8000 + i}" if i % 7 else f"[2001:db8::{i}]:443"
        subject = (("C", "US"), ("O", NASTY if i % 5 == 0 else "Cisco"), ("CN", f"peer-{i}"))
        entry = StoredEntry(f"{ep.replace(':', '_')}", ep.rsplit(":", 1)[0].strip("[]"),
                            int(ep.rsplit(":", 1)[1]), "", subject,
                            line=i * 1000 + 1 if i % 5 == 1 else 0)  # a known_hosts line
        cert = None if i % 9 == 0 else LiveCert(
            f"{i:064x}", f"{i + 1:064x}", subject, NASTY if i % 4 == 0 else f"/CN=peer-{i}",
            "/CN=issuer\\x", f"{i:x}" * (30 if i == 3 else 1), 1.7e9 + i, 1.8e9 + i / 3)
        probe = ProbeResult(ep, cert, None if cert else "timeout", 0.001 * i + 1e-7, 1.7e9)
        probes[ep] = probe
        verdict = Verdict(states[i % 4], list(Evidence)[i % 6], "why")
        views.append(EntryView(NASTY if i == 11 else f"pi-{i % 3}", entry, ep, verdict, probe,
                               Baseline(BaselineKind.ADOPTED, None, 1.0), None,
                               state_since=None if i % 6 == 0 else 1.7e9 + i / 7,
                               previous_fingerprint=f"{i + 9:064x}" if i % 3 == 0 else None))
    # A known_hosts entry: the store holds the key; `subject_text` is its SHA256: fingerprint.
    hk = StoredEntry("[10.0.9.9]:2222 ssh-ed25519", "10.0.9.9", 2222, "SHA256:AbC+/9", (),
                     stored_fingerprint="ab" * 32, key_type="ssh-ed25519", line=7)
    views.append(EntryView("automation", hk, "10.0.9.9:2222 ssh-ed25519",
                           Verdict(State.MISMATCH, Evidence.STORED, "changed"), None, None))
    read = StoreRead("pi-0", True, Listing(()), 0.25, 1.7e9)
    failed = StoreRead("pi-1", False, None, 3.5, 1.7e9)
    stores = {"pi-0": StoreStatus("pi-0", read, read, {"timeout": 2}),
              "pi-1": StoreStatus("pi-1", failed, None, {})}
    changed = {ep: 1.7e9 + n for n, ep in enumerate(probes)}
    return Snapshot(stores, tuple(views), probes, changed, {"pi-0": 3}, {"pi-0": 1}, False, True)


def test_render_text_equals_prometheus_client_output() -> None:
    snap = _snapshot()
    reg = CollectorRegistry(auto_describe=False)
    reg.register(SnapshotCollector(snap))
    expected = generate_latest(reg)
    got = render_text(snap)
    assert got == expected
    names = {f.name for f in text_string_to_metric_families(got.decode())}
    assert {"tofu_entry_info", "tofu_certificate_state", "tofu_live_certificate_info",
            "tofu_certificate_state_since_timestamp_seconds",
            "tofu_certificate_previous_fingerprint_info", "tofu_entry_line"} <= names
    assert b'tofu_entry_line{entry="10.0.1.1_8001",store="pi-1"} 1001.0' in got
    assert b'port="2222",store="automation",subject="SHA256:AbC+/9"} 1.0' in got
    assert b'tofu_entry_line{entry="10.0.31.1_8031",store="pi-1"} 31001.0' in got


def test_render_text_of_an_empty_snapshot_has_every_family_header() -> None:
    snap = Snapshot({}, (), {}, {})
    reg = CollectorRegistry(auto_describe=False)
    reg.register(SnapshotCollector(snap))
    assert render_text(snap) == generate_latest(reg)
