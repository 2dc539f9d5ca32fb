"""The history's comparison (pure): what counts as a change, when a state began, what the
live fingerprint was before."""

from __future__ import annotations

import pytest

from exporter.core.history import GONE_REASON, EntryStatus, Status, diff, fingerprint_moved
from exporter.core.model import (
    EntryView,
    Evidence,
    LiveCert,
    ProbeResult,
    State,
    StoredEntry,
    Verdict,
)

pytestmark = pytest.mark.unit

SUBJ = (("CN", "prime-sec"),)


def view(key: str, state: State, evidence: Evidence, fp: str | None) -> EntryView:
    cert = LiveCert(fp, "s" * 64, SUBJ, "/CN=x", "/CN=x", "1", 0.0, 1.0) if fp else None
    probe = ProbeResult("h:1", cert, None if fp else "refused", 0.0, 0.0)
    return EntryView("pri", StoredEntry(key, "h", 1, "/CN=prime-sec", SUBJ), "h:1",
                     Verdict(state, evidence, f"why {state}"), probe, None)


A, B = "a" * 64, "b" * 64


def test_the_first_recording_of_a_store_is_the_starting_point_not_a_change() -> None:
    new, changes = diff("pri", [view("k_1", State.UNKNOWN, Evidence.NONE, A)], {}, 10.0)
    assert changes == []
    assert new["k_1"] == EntryStatus(Status("unknown", "none", A), 10.0)


def test_state_evidence_and_fingerprint_changes_are_recorded_with_since_and_previous() -> None:
    old = {"k_1": EntryStatus(Status("match", "attested", A), 10.0)}
    new, changes = diff("pri", [view("k_1", State.MISMATCH, Evidence.ATTESTED, B)], old, 20.0)
    (c,) = changes
    assert (c.before, c.after) == (Status("match", "attested", A), Status("mismatch", "attested", B))
    assert c.reason == "why mismatch"
    assert new["k_1"] == EntryStatus(Status("mismatch", "attested", B), 20.0, A)
    # The evidence moves, the state stays: a change, but the state began at 20 still.
    new2, changes2 = diff("pri", [view("k_1", State.MISMATCH, Evidence.LOG, B)], new, 30.0)
    assert len(changes2) == 1 and new2["k_1"].since == 20.0 and new2["k_1"].previous_fingerprint == A
    # Nothing moved: no change, the same status object.
    new3, changes3 = diff("pri", [view("k_1", State.MISMATCH, Evidence.LOG, B)], new2, 40.0)
    assert changes3 == [] and new3["k_1"] is new2["k_1"]


def test_unreachable_keeps_the_last_fingerprint_so_coming_back_is_no_fingerprint_change() -> None:
    old = {"k_1": EntryStatus(Status("match", "attested", A), 10.0)}
    down, changes = diff("pri", [view("k_1", State.UNREACHABLE, Evidence.NONE, None)], old, 20.0)
    assert changes[0].after == Status("unreachable", "none", A)
    back, changes = diff("pri", [view("k_1", State.MATCH, Evidence.ATTESTED, A)], down, 30.0)
    assert back["k_1"].previous_fingerprint is None  # the certificate never changed
    assert not any(map(fingerprint_moved, changes))


def test_appearing_and_leaving_entries_are_changes_with_an_absent_side() -> None:
    old = {"k_1": EntryStatus(Status("match", "baseline", A), 10.0)}
    new, changes = diff("pri", [view("k_2", State.MATCH, Evidence.BASELINE, B)], old, 20.0)
    appeared, gone = changes
    assert (appeared.entry, appeared.before, appeared.after) == ("k_2", None, Status("match", "baseline", B))
    assert (gone.entry, gone.after, gone.reason) == ("k_1", None, GONE_REASON)
    assert set(new) == {"k_2"}


def test_fingerprint_moved_is_only_a_change_from_one_certificate_to_another() -> None:
    _, changes = diff("pri", [view("k_1", State.MISMATCH, Evidence.BASELINE, B)],
                      {"k_1": EntryStatus(Status("match", "baseline", A), 1.0)}, 50.0)
    assert fingerprint_moved(changes[0])
    _, changes = diff("pri", [view("k_1", State.MISMATCH, Evidence.BASELINE, B)],
                      {"k_1": EntryStatus(Status("unknown", "none", None), 1.0)}, 50.0)
    assert not fingerprint_moved(changes[0])  # first sight of a certificate, not a change


def test_remediate_min_evidence_ranks_attested_between_baseline_and_subject() -> None:
    from exporter.core.model import Listing, StoreRead, StoreStatus
    from exporter.fleet.snapshot import Snapshot
    from exporter.remediate.plan import make_plan

    v = view("10.0.0.2_8082", State.MISMATCH, Evidence.ATTESTED, B)
    read = StoreRead("pri", True, Listing((v.entry,)), 0.1, 1.0)
    snap = Snapshot({"pri": StoreStatus("pri", read, read)}, (v,), {}, {})
    assert [s.entry for s in make_plan(snap, min_evidence="attested").steps] == ["10.0.0.2_8082"]
    assert [s.entry for s in make_plan(snap, min_evidence="subject").steps] == ["10.0.0.2_8082"]
    skipped = make_plan(snap, min_evidence="baseline")
    assert not skipped.steps and "weaker than --min-evidence baseline" in skipped.skipped[0].why
