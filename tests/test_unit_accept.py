"""`accept`'s planning, in-process (exporter.accept.plan): which entries may be attested now,
each refusal on its own, and the integration check the operator is told to see working, per
role."""

from __future__ import annotations

import dataclasses

import pytest

from exporter.accept.plan import (
    AcceptError,
    AcceptPlan,
    Candidate,
    Now,
    Refusal,
    accept_command,
    check_for,
    integration_check,
    make_accept_plan,
    render_accept,
    render_changed,
    what_changed,
)
from exporter.core.history import Change, Status
from exporter.core.model import Baseline, BaselineKind, EntryView, Evidence, State
from exporter.fleet.pairs import pair_views
from exporter.fleet.report import row
from exporter.remediate.plan import Role
from tests.kit.builders import FP_A, FP_B, config, snapshot, status, subj, view

pytestmark = pytest.mark.unit

PRI, SEC = "prime-pri", "prime-sec"
CFG = config({PRI: "10.0.0.1", SEC: "10.0.0.2"}, [("prime-ha", PRI, SEC)])
HA_CHECK = ("on the primary of HA pair prime-ha, Administration > Settings > High Availability "
            "shows Primary Active and the secondary synced")
ISE_CHECK = "Administration > Servers > ISE Servers: the connection test to this ISE server passes"
OTHER_CHECK = ("the DNA Center co-existence page (or the integration that uses this peer) shows "
               "PI connected")


def unknown(store: str, key: str, **kw: object) -> EntryView:
    return view(store, key, State.UNKNOWN, Evidence.NONE, "subjects match", **kw)  # type: ignore[arg-type]


def scene(*extra: EntryView, sec: object = None) -> object:
    views = [
        unknown(SEC, "10.0.0.1_8082", stored=subj("prime-pri")),  # HA peer
        unknown(SEC, "127.0.0.1_8082", endpoint="10.0.0.2:8082", stored=subj("prime-sec")),  # self
        unknown(SEC, "10.0.0.9_443", stored=subj("ise-01")),
        unknown(SEC, "10.0.0.8_443", stored=subj("dnac-1")),
        view(PRI, "10.0.0.2_8082", State.UNKNOWN, Evidence.NONE, stored=subj("prime-sec")),
        *extra,
    ]
    stores = {PRI: status(PRI), SEC: sec if sec is not None else status(SEC)}
    return snapshot(views, stores, pair_views(CFG, views))


def refusal_of(v: EntryView, changes: list[Change] = (), interval: float = 60.0) -> str:  # type: ignore[assignment]
    plan = make_accept_plan(scene(v), SEC, [v.entry.key], False, changes, interval)
    assert plan.candidates == ()
    (r,) = plan.refusals
    assert (r.store, r.entry) == (SEC, v.entry.key)
    return r.why


def test_every_unknown_entry_with_its_role_peer_and_check() -> None:
    plan = make_accept_plan(scene(), SEC, [], True, [], 60.0)
    assert plan.store == SEC and plan.refusals == ()
    assert [(c.entry, c.role, c.peer, c.check) for c in plan.candidates] == [
        ("10.0.0.1_8082", "ha-peer", PRI, HA_CHECK),
        ("127.0.0.1_8082", "self", SEC, HA_CHECK),
        ("10.0.0.9_443", "ise", None, ISE_CHECK),
        ("10.0.0.8_443", "other", None, OTHER_CHECK),
    ]
    c = plan.candidates[0]
    assert c == Candidate(SEC, "10.0.0.1_8082", "10.0.0.1:8082", FP_A, FP_A[::-1],
                          "/C=US/O=Cisco Systems/CN=prime-pri", "/C=US/O=Cisco Systems/CN=prime-pri",
                          "ha-peer", PRI, HA_CHECK)


def test_all_unknown_takes_only_unknown_entries() -> None:
    plan = make_accept_plan(scene(view(SEC, "10.0.0.7_443", State.MATCH, Evidence.BASELINE),
                                  view(SEC, "10.0.0.6_443")), SEC, [], True, [], 60.0)
    assert [c.entry for c in plan.candidates] == ["10.0.0.1_8082", "127.0.0.1_8082", "10.0.0.9_443",
                                                  "10.0.0.8_443"]
    assert plan.refusals == ()


def test_a_refusal_does_not_stop_the_entries_after_it() -> None:
    plan = make_accept_plan(scene(view(SEC, "10.0.0.6_443")), SEC, ["10.0.0.6_443", "10.0.0.9_443"],
                            False, [], 60.0)
    assert [r.entry for r in plan.refusals] == ["10.0.0.6_443"]
    assert [c.entry for c in plan.candidates] == ["10.0.0.9_443"]


def test_named_entries_in_the_order_given_once_each() -> None:
    plan = make_accept_plan(scene(), SEC, ["10.0.0.8_443", "10.0.0.1_8082", "10.0.0.8_443"], False,
                            [], 60.0)
    assert [c.entry for c in plan.candidates] == ["10.0.0.8_443", "10.0.0.1_8082"]


def test_a_mismatch_is_refused_and_sent_to_remediate() -> None:
    why = refusal_of(view(SEC, "10.0.0.6_443", State.MISMATCH, Evidence.BASELINE, "changed\nnow"))
    assert why == ("state mismatch (baseline: changed\\nnow): PI holds another certificate; fix it "
                   "with `prime-tofu-exporter remediate`, do not accept it")


def test_unreachable_alone_is_refused() -> None:
    # The state says unreachable though a certificate is known: still refused.
    v = view(SEC, "10.0.0.6_443", State.UNREACHABLE, Evidence.NONE, "down", fp=FP_B)
    assert refusal_of(v) == "unreachable (down): there is no live certificate to accept"


def test_no_live_fingerprint_alone_is_refused() -> None:
    # `unknown` by the verdict, but the endpoint gave no certificate now.
    v = unknown(SEC, "10.0.0.6_443", fp=None, error="handshake\rfailed")
    assert refusal_of(v) == ("unreachable (handshake\\rfailed): there is no live certificate to accept")


def test_unreachable_without_a_probe_error_names_the_reason() -> None:
    v = unknown(SEC, "10.0.0.6_443", fp=None)
    v = dataclasses.replace(v, probe=dataclasses.replace(v.probe, error=None))
    assert refusal_of(v) == "unreachable (subjects match): there is no live certificate to accept"


def test_a_match_is_refused_as_nothing_to_accept() -> None:
    assert refusal_of(view(SEC, "10.0.0.6_443", State.MATCH, Evidence.BASELINE)) == (
        "already match (baseline): nothing to accept")


def test_a_certificate_that_just_changed_is_refused_until_the_next_probe() -> None:
    v = unknown(SEC, "10.0.0.6_443", fp=FP_B)
    moved = Change(10.0, SEC, "10.0.0.6_443", Status("unknown", "none", FP_A),
                   Status("unknown", "none", FP_B), "r")
    assert refusal_of(v, [moved], 30.0) == (
        "the live certificate changed within the last probe interval (30s: aaaaaaaaaaaaaaaa… -> "
        "bbbbbbbbbbbbbbbb…): the integration you checked may have used the old one; check it again "
        "and accept after the next probe")


def test_only_this_stores_moves_of_this_entry_count() -> None:
    v = unknown(SEC, "10.0.0.6_443", fp=FP_B)
    other_store = Change(10.0, PRI, "10.0.0.6_443", Status("unknown", "none", FP_A),
                         Status("unknown", "none", FP_B), "r")
    not_a_move = Change(10.0, SEC, "10.0.0.6_443", Status("unreachable", "none", None),
                        Status("unknown", "none", FP_B), "r")  # first certificate, not a change
    other_entry = dataclasses.replace(other_store, store=SEC, entry="10.0.0.5_443")
    plan = make_accept_plan(scene(v), SEC, ["10.0.0.6_443"], False,
                            [other_store, not_a_move, other_entry], 60.0)
    assert [c.entry for c in plan.candidates] == ["10.0.0.6_443"] and plan.refusals == ()


def test_the_latest_move_is_the_one_named() -> None:
    v = unknown(SEC, "10.0.0.6_443", fp=FP_B)
    first = Change(20.0, SEC, "10.0.0.6_443", Status("unknown", "none", "c" * 64),
                   Status("unknown", "none", FP_A), "r")
    last = Change(30.0, SEC, "10.0.0.6_443", Status("unknown", "none", FP_A),
                  Status("unknown", "none", FP_B), "r")
    why = refusal_of(v, [last, first], 60.0)  # given newest first, as the history reads them
    assert "(60s: aaaaaaaaaaaaaaaa… -> bbbbbbbbbbbbbbbb…)" in why


def test_a_key_outside_the_grammar_is_refused() -> None:
    v = unknown(SEC, "10.0.0.6_443")
    v = dataclasses.replace(v, entry=dataclasses.replace(v.entry, key="10.0.0.6 443"))
    assert refusal_of(v) == "not a listcerts key (<address>_<port>); refusing to record it"


def test_unknown_store_unknown_entries_and_unreadable_stores_are_errors() -> None:
    with pytest.raises(AcceptError, match=r"^--store 'x': no such store in the configuration "
                                          r"\(stores: prime-pri, prime-sec\)$"):
        make_accept_plan(scene(), "x", [], True, [], 60.0)
    with pytest.raises(AcceptError, match=r"\(stores: none\)$"):
        make_accept_plan(snapshot([], []), "x", [], True, [], 60.0)
    with pytest.raises(AcceptError, match=r"^--entry 'a_1', 'b\\\\n_1': no such entry in store "
                                          r"prime-pri; its keys are: 10.0.0.2_8082$"):
        make_accept_plan(scene(), PRI, ["a_1", "10.0.0.2_8082", "b\n_1"], False, [], 60.0)
    with pytest.raises(AcceptError, match=r"its keys are: 10.0.0.1_8082, 10.0.0.8_443, 10.0.0.9_443, "
                                          r"127.0.0.1_8082$"):
        make_accept_plan(scene(), SEC, ["a_1"], False, [], 60.0)
    with pytest.raises(AcceptError, match=r"its keys are: none$"):
        make_accept_plan(snapshot([], [PRI]), PRI, ["a_1"], False, [], 60.0)
    with pytest.raises(AcceptError, match=r"^store prime-sec unreadable \(auth\\nfailed\): cannot "
                                          r"see its entries now$"):
        make_accept_plan(scene(sec=status(SEC, ok=False, error="auth\nfailed")), SEC, [], True, [], 1)
    with pytest.raises(AcceptError, match=r"unreadable \(never read\)"):
        make_accept_plan(scene(sec=status(SEC, ok=None, ever=False)), SEC, [], True, [], 1)
    with pytest.raises(AcceptError, match=r"unreadable \(unknown error\)"):
        make_accept_plan(scene(sec=status(SEC, ok=False, error=None)), SEC, [], True, [], 1)


@pytest.mark.parametrize(("role", "pair", "check"), [
    (Role.HA_PEER, "ha", "on the primary of HA pair ha, Administration > Settings > High "
                         "Availability shows Primary Active and the secondary synced"),
    (Role.SELF, "ha", "on the primary of HA pair ha, Administration > Settings > High "
                      "Availability shows Primary Active and the secondary synced"),
    (Role.HA_PEER, None, "on the primary, Administration > Settings > High Availability shows "
                         "Primary Active and the secondary synced"),
    (Role.ISE, "ha", ISE_CHECK),
    (Role.ISE, None, ISE_CHECK),
    (Role.OTHER, None, OTHER_CHECK),
    (Role.OTHER, "ha", OTHER_CHECK),
])
def test_integration_check_per_role(role: Role, pair: str | None, check: str) -> None:
    assert integration_check(role, pair) == check


def test_check_for_a_row_names_its_role_and_pair() -> None:
    snap = scene()
    by_key = {v.entry.key: row(v) for v in snap.views if v.store == SEC}
    assert check_for(snap, by_key["127.0.0.1_8082"]) == HA_CHECK
    assert check_for(snap, by_key["10.0.0.9_443"]) == ISE_CHECK
    assert check_for(snap, by_key["10.0.0.8_443"]) == OTHER_CHECK
    lone = snapshot([unknown("pi", "10.0.0.1_8082")], ["pi"])
    assert check_for(lone, row(lone.views[0])) == OTHER_CHECK


def test_accept_command_quotes_every_argument() -> None:
    assert accept_command("pi", "10.0.0.1_443") == (
        "prime-tofu-exporter accept --store pi --entry 10.0.0.1_443 --reason '<what you checked>'")
    assert accept_command("pi 1", "k_1", "/etc/tofu exporter.yml", "/var/lib/x") == (
        "prime-tofu-exporter accept --config.file '/etc/tofu exporter.yml' --storage.path /var/lib/x "
        "--store 'pi 1' --entry k_1 --reason '<what you checked>'")
    assert accept_command("pi", "k\n_1") == (
        "prime-tofu-exporter accept --store pi --entry 'k\\n_1' --reason '<what you checked>'")


def test_render_accept() -> None:
    plan = make_accept_plan(scene(view(SEC, "10.0.0.6_443", State.MATCH, Evidence.BASELINE)), SEC,
                            ["10.0.0.1_8082", "10.0.0.9_443", "10.0.0.6_443"], False, [], 60.0)
    assert render_accept(plan, "ops\n", "saw it\twork") == "\n".join([
        "About to record 2 attested baselines on prime-sec (operator ops\\n, reason 'saw it\\\\twork'):",
        "  10.0.0.1_8082  [ha-peer prime-pri, 10.0.0.1:8082]",
        f"      live certificate sha256 {FP_A}",
        f"      live SPKI sha256        {FP_A[::-1]}",
        "      subject                 /C=US/O=Cisco Systems/CN=prime-pri",
        f"      you checked that        {HA_CHECK}",
        "  10.0.0.9_443  [ise, 10.0.0.9:443]",
        f"      live certificate sha256 {FP_A}",
        f"      live SPKI sha256        {FP_A[::-1]}",
        "      subject                 /C=US/O=Cisco Systems/CN=ise-01",
        f"      you checked that        {ISE_CHECK}",
        "refused: 10.0.0.6_443 on prime-sec: already match (baseline): nothing to accept",
    ])
    one = AcceptPlan(SEC, plan.candidates[:1], ())
    assert render_accept(one, "ops", "r").split("\n")[0] == (
        "About to record 1 attested baseline on prime-sec (operator ops, reason 'r'):")
    assert render_accept(AcceptPlan(SEC, (), (Refusal(SEC, "k_1", "why"),)), "o", "r") == (
        "refused: k_1 on prime-sec: why")
    assert render_accept(AcceptPlan(SEC, (), ()), "o", "r") == ""


# ---- after the "yes": what changed since the plan was shown -------------------------------------

BASE = Baseline(BaselineKind.ADOPTED, FP_A, 1_764_000_000.25)


def candidate(**kw: object) -> Candidate:
    c = Candidate(SEC, "10.0.0.6_443", "10.0.0.6:443", FP_A, FP_A[::-1], "/CN=x", "/CN=x", "other",
                  None, OTHER_CHECK, "unknown", "none", BASE)
    return dataclasses.replace(c, **kw)  # type: ignore[arg-type]


def now(**kw: object) -> Now:
    n = Now("10.0.0.6:443", BASE, Status("unknown", "none", FP_A), FP_A)
    return dataclasses.replace(n, **kw)  # type: ignore[arg-type]


def test_a_candidate_carries_what_the_operator_was_shown() -> None:
    other = unknown(PRI, "10.0.0.6_443", baseline=Baseline(BaselineKind.WITNESSED, FP_B, 2.0))
    mine = unknown(SEC, "10.0.0.6_443", baseline=BASE)
    (c,) = make_accept_plan(scene(other, mine), SEC, ["10.0.0.6_443"], False, [], 60.0).candidates
    assert (c.state, c.evidence, c.baseline) == ("unknown", "none", BASE)  # this store's baseline
    (p,) = make_accept_plan(scene(), PRI, [], True, [], 60.0).candidates
    assert p.baseline is None


def test_nothing_changed() -> None:
    assert what_changed(candidate(), now()) == []


def test_each_change_is_named() -> None:
    assert what_changed(candidate(), now(endpoint=None)) == [
        "the entry left the store (or its baseline was forgotten)"]
    assert what_changed(candidate(), now(endpoint="10.0.0.7:443\n")) == [
        "endpoint 10.0.0.6:443 -> 10.0.0.7:443\\n"]
    assert what_changed(candidate(), now(status=Status("mismatch", "log", FP_A))) == [
        "state unknown (none) -> mismatch (log)"]
    assert what_changed(candidate(), now(status=Status("unknown", "subject", FP_A))) == [
        "state unknown (none) -> unknown (subject)"]
    assert what_changed(candidate(), now(status=Status("match", "none", FP_A))) == [
        "state unknown (none) -> match (none)"]
    assert what_changed(candidate(), now(status=None)) == ["state unknown (none) -> not recorded"]
    assert what_changed(candidate(), now(baseline=None)) == [
        "baseline adopted since 2025-11-24 16:00:00.250Z (sha256 aaaaaaaaaaaaaaaa…) -> none"]
    assert what_changed(candidate(baseline=None),
                        now(baseline=Baseline(BaselineKind.WITNESSED, None, 0.5))) == [
        "baseline none -> witnessed since 1970-01-01 00:00:00.500Z (sha256 pending)"]
    assert what_changed(candidate(), now(live_fingerprint_sha256=FP_B)) == [
        "live sha256 aaaaaaaaaaaaaaaa… -> bbbbbbbbbbbbbbbb…"]
    assert what_changed(candidate(), now(live_fingerprint_sha256=None, probe_error="reset\r")) == [
        "live sha256 aaaaaaaaaaaaaaaa… -> none (reset\\r)"]
    assert what_changed(candidate(), now(live_fingerprint_sha256=None)) == [
        "live sha256 aaaaaaaaaaaaaaaa… -> none (no certificate)"]


def test_times_are_utc_to_the_millisecond() -> None:
    odd = Baseline(BaselineKind.ATTESTED, FP_B, 3.9995)  # odd second, .9995 s: no rounding up
    assert what_changed(candidate(baseline=None), now(baseline=odd)) == [
        "baseline none -> attested since 1970-01-01 00:00:03.999Z (sha256 bbbbbbbbbbbbbbbb…)"]


def test_several_changes_in_order() -> None:
    got = what_changed(candidate(), now(endpoint="e:1", status=None, baseline=None,
                                        live_fingerprint_sha256=FP_B))
    assert [d.split(" ")[0] for d in got] == ["endpoint", "state", "baseline", "live"]


def test_render_changed() -> None:
    assert render_changed(SEC, {}) == ""
    assert render_changed(SEC, {"a_1": ["x", "y"], "b\n_1": ["z"]}) == "\n".join([
        "refused: a_1 on prime-sec changed after it was shown:",
        "      x",
        "      y",
        "refused: b\\n_1 on prime-sec changed after it was shown:",
        "      z",
    ])
