"""The history's every field, in-process (exporter.core.history): when a state began, the
fingerprint before, what an appeared or a gone entry records, the JSON and the text."""

from __future__ import annotations

import json

import pytest

from exporter.core.history import (
    GONE_REASON,
    Change,
    EntryStatus,
    Status,
    accepted,
    advance,
    change_json,
    diff,
    fingerprint_moved,
    render_history,
    status_text,
    view_status,
)
from exporter.core.model import EntryView, Evidence, State
from tests.kit.builders import FP_A, FP_B, FP_C, view

pytestmark = pytest.mark.unit

UNK_A = Status("unknown", "none", FP_A)
MATCH_A = Status("match", "baseline", FP_A)
MIS_B = Status("mismatch", "baseline", FP_B)


def unprobed(key: str = "k_1") -> EntryView:
    """An entry the prober has not reached yet: no probe result at all."""
    v = view("pri", key, State.UNREACHABLE, Evidence.NONE, "no live certificate: not probed yet")
    return EntryView(v.store, v.entry, v.endpoint, v.verdict, None, None)


def test_advance_from_nothing_starts_the_state_now() -> None:
    assert advance(None, UNK_A, 5.0) == EntryStatus(UNK_A, 5.0, None)


def test_advance_to_the_same_status_keeps_the_very_same_record() -> None:
    prev = EntryStatus(MATCH_A, 5.0, FP_C)
    assert advance(prev, Status("match", "baseline", FP_A), 9.0) is prev


@pytest.mark.parametrize(("after", "since", "previous"), [
    (Status("match", "log", FP_A), 5.0, FP_C),  # evidence moved: same state, same start
    (Status("mismatch", "baseline", FP_A), 9.0, FP_C),  # state moved: starts now
    (Status("match", "baseline", FP_B), 5.0, FP_A),  # certificate moved: previous is the old one
    (Status("mismatch", "baseline", FP_B), 9.0, FP_A),
    (Status("unreachable", "none", None), 9.0, FP_A),  # no certificate now: previous is FP_A
])
def test_advance_moves_since_and_previous_fingerprint(after: Status, since: float,
                                                      previous: str | None) -> None:
    assert advance(EntryStatus(MATCH_A, 5.0, FP_C), after, 9.0) == EntryStatus(after, since, previous)


def test_view_status_of_a_probed_down_and_unprobed_entry() -> None:
    assert view_status(view("pri", "k_1", fp=FP_B), UNK_A) == Status("mismatch", "subject", FP_B)
    down = view("pri", "k_1", State.UNREACHABLE, Evidence.NONE, fp=None)
    assert view_status(down, UNK_A) == Status("unreachable", "none", FP_A)  # last seen is kept
    assert view_status(down, None) == Status("unreachable", "none", None)
    assert view_status(unprobed(), UNK_A) == Status("unreachable", "none", FP_A)
    assert view_status(unprobed(), None) == Status("unreachable", "none", None)


def test_an_unprobed_entry_is_recorded_without_a_fingerprint() -> None:
    new, changes = diff("pri", [unprobed()], {}, 7.0)
    assert new == {"k_1": EntryStatus(Status("unreachable", "none", None), 7.0)} and changes == []
    new, changes = diff("pri", [unprobed()], {"k_1": EntryStatus(UNK_A, 1.0)}, 7.0)
    assert changes == [Change(7.0, "pri", "k_1", UNK_A, Status("unreachable", "none", FP_A),
                              "no live certificate: not probed yet")]


def test_appeared_and_gone_entries_are_changes_with_time_and_the_known_side() -> None:
    old = {"gone_2": EntryStatus(MIS_B, 1.0), "gone_1": EntryStatus(MATCH_A, 2.0),
           "stays_1": EntryStatus(Status("unknown", "none", FP_A), 3.0)}
    views = [view("pri", "stays_1", State.UNKNOWN, Evidence.NONE, fp=FP_A),
             view("pri", "new_1", State.UNKNOWN, Evidence.NONE, "never seen", fp=FP_C)]
    new, changes = diff("pri", views, old, 50.0)
    assert changes == [
        Change(50.0, "pri", "new_1", None, Status("unknown", "none", FP_C),
               "the entry appeared: never seen"),
        Change(50.0, "pri", "gone_1", MATCH_A, None, GONE_REASON),  # gone: sorted by key
        Change(50.0, "pri", "gone_2", MIS_B, None, GONE_REASON),
    ]
    assert GONE_REASON == "the entry left the store's list (deleted on the PI server)"
    assert new == {"stays_1": old["stays_1"], "new_1": EntryStatus(Status("unknown", "none", FP_C), 50.0)}
    assert new["stays_1"] is old["stays_1"]


def test_a_changed_entry_records_before_after_and_the_verdicts_reason() -> None:
    old = {"k_1": EntryStatus(MATCH_A, 2.0, FP_C)}
    new, changes = diff("pri", [view("pri", "k_1", State.MISMATCH, Evidence.BASELINE, "moved",
                                     fp=FP_B)], old, 60.0)
    assert changes == [Change(60.0, "pri", "k_1", MATCH_A, MIS_B, "moved")]
    assert new == {"k_1": EntryStatus(MIS_B, 60.0, FP_A)}


@pytest.mark.parametrize(("before", "after", "moved"), [
    (MATCH_A, MIS_B, True),
    (MATCH_A, Status("mismatch", "baseline", FP_A), False),  # same certificate
    (Status("unreachable", "none", None), MATCH_A, False),  # first certificate seen
    (MATCH_A, Status("unreachable", "none", None), True),  # a certificate to none
    (None, MATCH_A, False),  # appeared
    (MATCH_A, None, False),  # gone
])
def test_fingerprint_moved(before: Status | None, after: Status | None, moved: bool) -> None:
    assert fingerprint_moved(Change(1.0, "s", "k", before, after, "r")) is moved


def test_accepted_is_a_match_by_attestation_of_that_certificate() -> None:
    assert accepted(FP_B) == Status("match", "attested", FP_B)


def test_status_text() -> None:
    assert status_text(None) == "absent"
    assert status_text(MATCH_A) == "match (baseline, aaaaaaaaaaaaaaaa…)"
    assert status_text(Status("unreachable", "none", None)) == "unreachable (none, -)"


def test_change_json_keys_and_values() -> None:
    c = Change(1_764_000_000.5, "pri", "k_1", MATCH_A, None, GONE_REASON)
    got = change_json(c)
    assert got == {
        "time": 1_764_000_000.5, "time_utc": "2025-11-24 16:00:00 UTC", "store": "pri",
        "entry": "k_1",
        "before": {"state": "match", "evidence": "baseline", "fingerprint_sha256": FP_A},
        "after": None, "reason": GONE_REASON,
    }
    assert list(got) == ["time", "time_utc", "store", "entry", "before", "after", "reason"]
    assert json.loads(json.dumps(got)) == got
    appeared = change_json(Change(0.0, "s", "k", None, MIS_B, "r"))
    assert appeared["before"] is None
    assert appeared["after"] == {"state": "mismatch", "evidence": "baseline", "fingerprint_sha256": FP_B}
    assert appeared["time_utc"] == "1970-01-01 00:00:00 UTC"


def test_render_history_one_line_per_change_hostile_text_escaped() -> None:
    assert render_history([]) == "no changes recorded"
    changes = [
        Change(86_400.0 * 365, "pri", "k_1", MATCH_A, MIS_B, "changed\nfix: deletecert"),
        Change(3_600.0, "sec", "new\x1b_1", None, Status("unknown", "none", None), "appeared"),
    ]
    assert render_history(changes) == (
        "1971-01-01 00:00:00 UTC  pri  k_1  match (baseline, aaaaaaaaaaaaaaaa…) -> "
        "mismatch (baseline, bbbbbbbbbbbbbbbb…)  changed\\nfix: deletecert\n"
        "1970-01-01 01:00:00 UTC  sec  new\\x1b_1  absent -> unknown (none, -)  appeared")
