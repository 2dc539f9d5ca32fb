"""The remediation plan's decisions, in-process (exporter.remediate.plan and .render): which
entries go, on which server first, in what role, and the text the operator pastes from.

Orders are compared as lists: the seed's procedure deletes on an HA pair's primary before its
secondary, and a wrong order breaks HA."""

from __future__ import annotations

import dataclasses

import pytest

from exporter.core.model import Evidence, State
from exporter.fleet.pairs import ABSENT, PairLink, PairView, pair_views
from exporter.fleet.report import row
from exporter.remediate.plan import (
    PlanError,
    Role,
    Skip,
    Step,
    StorePlan,
    _triage,
    deletecert_command,
    followups,
    make_plan,
    verify_steps,
)
from exporter.remediate.render import pair_health, plan_json, render_next, render_plan, render_store
from exporter.web.pages.landing import landing_page
from tests.kit.builders import FP_B, config, snapshot, status, subj, view

pytestmark = pytest.mark.unit

PRI, SEC, LONE = "prime-pri", "prime-sec", "pi-system-184"
# Configuration order puts the secondary first: the plan must not follow it.
CFG = config({LONE: "10.0.0.3", SEC: "10.0.0.2", PRI: "10.0.0.1"}, [("prime-ha", PRI, SEC)])
DEL = "ncs certvalidation tofu-certs deletecert host"


def seed_views() -> list:
    return [
        view(LONE, "10.0.0.9_443", reason="ise changed", stored=subj("ise-01.example.com")),
        view(LONE, "10.0.0.8_443", reason="dnac changed", stored=subj("dnac-2")),
        view(LONE, "10.0.0.7_443", State.UNKNOWN, Evidence.NONE, stored=subj("dnac-1")),
        view(SEC, "127.0.0.1_8082", endpoint="10.0.0.2:8082", reason="self changed",
             stored=subj("prime-sec")),
        view(SEC, "10.0.0.1_8082", State.MISMATCH, Evidence.BASELINE, "pri changed",
             stored=subj("prime-pri")),
        view(PRI, "10.0.0.2_8082", State.MISMATCH, Evidence.FINGERPRINT, "sec changed",
             stored=subj("prime-sec")),
        view(PRI, "127.0.0.1_8082", State.MATCH, Evidence.BASELINE, endpoint="10.0.0.1:8082",
             stored=subj("prime-pri")),
    ]


def seed_snapshot(**stores: object) -> object:
    views = seed_views()
    st = {n: stores.get(n.replace("-", "_"), status(n)) for n in (LONE, SEC, PRI)}
    return snapshot(views, st, pair_views(CFG, views))


def test_primary_then_secondary_then_unpaired_whatever_the_configuration_order() -> None:
    plan = make_plan(seed_snapshot())
    assert [(sp.store, sp.pair, sp.pair_role) for sp in plan.stores] == [
        (PRI, "prime-ha", "primary"), (SEC, "prime-ha", "secondary"), (LONE, None, None)]
    assert [(s.store, s.entry) for s in plan.steps] == [
        (PRI, "10.0.0.2_8082"),
        (SEC, "127.0.0.1_8082"), (SEC, "10.0.0.1_8082"),  # within a store: as listed
        (LONE, "10.0.0.9_443"), (LONE, "10.0.0.8_443"),
    ]


def test_each_step_has_its_role_and_peer() -> None:
    plan = make_plan(seed_snapshot())
    assert [(s.entry, s.role, s.peer) for s in plan.steps] == [
        ("10.0.0.2_8082", "ha-peer", SEC),  # the primary's entry for the secondary
        ("127.0.0.1_8082", "self", SEC),  # the secondary's own certificate
        ("10.0.0.1_8082", "ha-peer", PRI),
        ("10.0.0.9_443", "ise", None),  # by the stored subject's name
        ("10.0.0.8_443", "other", None),
    ]
    step = plan.steps[2]
    assert step == Step(SEC, "10.0.0.1_8082", "10.0.0.1:8082", "baseline", "pri changed", "ha-peer",
                        PRI, "/C=US/O=Cisco Systems/CN=prime-pri", "a" * 64)
    assert step.command == f"{DEL} 10.0.0.1_8082"


@pytest.mark.parametrize(("stored", "live", "role"), [
    ("ise-01.example.com", "ise-01.example.com", Role.ISE),
    ("node", "ISE.example.com", Role.ISE),  # the live subject alone names it
    ("ise", "x", Role.ISE),
    ("my-ise-2", "x", Role.ISE),
    ("wise", "x", Role.OTHER),  # a word that merely contains "ise"
    ("ise2", "x", Role.OTHER),
    ("dnac", "rise", Role.OTHER),
])
def test_ise_is_named_by_a_word_in_either_subject(stored: str, live: str, role: Role) -> None:
    v = view(LONE, "10.0.0.9_443", stored=subj(stored), live=subj(live))
    (step,) = make_plan(snapshot([v], [LONE])).steps
    assert (step.role, step.peer) == (role.value, None)


def test_an_unreachable_live_side_is_ise_by_the_stored_subject_alone() -> None:
    v = view(LONE, "10.0.0.9_443", fp=None, stored=subj("ise-01"))
    (step,) = make_plan(snapshot([v], [LONE])).steps
    assert step.role == "ise" and step.live_fingerprint_sha256 is None


@pytest.mark.parametrize(("st", "error"), [
    (status(PRI, ok=False, error="authentication failed"), "authentication failed"),
    (status(PRI, ok=False, error=None), "unreadable"),
    (status(PRI, ok=False, error="timeout", ever=False), "timeout"),
    (status(PRI, ok=None, ever=False), "never read"),
    (status(PRI, ok=True), None),
])
def test_an_unreadable_store_is_flagged_not_planned_as_clean(st: object, error: str | None) -> None:
    plan = make_plan(seed_snapshot(prime_pri=st))
    assert [sp.error for sp in plan.stores] == [error, None, None]


def test_an_unreadable_store_gets_no_steps_and_every_count_agrees_with_its_commands() -> None:
    # prime-sec's two mismatches are as last read: its listing now is unknown, so no delete is
    # planned there (`--apply` must not run commands the printed plan never showed).
    snap = seed_snapshot(prime_sec=status(SEC, ok=False, error="auth failed"))
    plan = make_plan(snap)
    assert [(sp.store, sp.error, len(sp.steps)) for sp in plan.stores] == [
        (PRI, None, 1), (SEC, "auth failed", 0), (LONE, None, 2)]
    text = render_plan(plan)
    assert "Delete 3 stale entries" in text and text.count(DEL) == 3
    assert f"On {PRI}, {LONE}: `" in text  # verify where something was deleted
    page = landing_page(snap, "1").decode()
    fixes = page[page.index("<h2 id='fixes'>"):page.index("<h2", page.index("<h2 id='fixes'>") + 1)]
    assert "Fixes: 3 entries proven stale" in fixes and fixes.count("class='fix'") == 3
    assert f"{SEC} (secondary of prime-ha): unreadable (auth failed); no plan for this server" in fixes


def test_a_store_in_two_pairs_is_planned_once_at_its_first_place() -> None:
    cfg = config({"a": "10.0.0.1", "b": "10.0.0.2", "c": "10.0.0.3", "d": "10.0.0.4"},
                 [("p1", "b", "a"), ("p2", "c", "b")])
    views = [view(n, f"10.0.0.9{i}_443") for i, n in enumerate("abcd")]
    snap = snapshot(views, ["d", "c", "b", "a"], pair_views(cfg, views))
    plan = make_plan(snap)
    assert [(sp.store, sp.pair, sp.pair_role) for sp in plan.stores] == [
        ("b", "p1", "primary"), ("a", "p1", "secondary"), ("c", "p2", "primary"), ("d", None, None)]
    assert [s.store for s in plan.steps] == ["b", "a", "c", "d"]
    # A pair naming a store this snapshot does not hold (one store's snapshot): not planned.
    only_a = snapshot(views[:1], ["a"], pair_views(cfg, views))
    assert [sp.store for sp in make_plan(only_a).stores] == ["a"]


def test_naming_a_store_keeps_its_pair_and_only_its_steps() -> None:
    snap = seed_snapshot()
    sec = make_plan(snap, store=SEC)
    assert [sp.store for sp in sec.stores] == [SEC]
    assert [p.name for p in sec.pairs] == ["prime-ha"]
    assert [s.entry for s in sec.steps] == ["127.0.0.1_8082", "10.0.0.1_8082"]
    lone = make_plan(snap, store=LONE)
    assert lone.pairs == () and [s.store for s in lone.steps] == [LONE, LONE]
    assert [sp.store for sp in make_plan(snap).stores] == [PRI, SEC, LONE]
    assert len(make_plan(snap).pairs) == 1


def test_unknown_store_or_entry_is_a_plan_error_naming_what_exists() -> None:
    snap = seed_snapshot()
    with pytest.raises(PlanError, match=r"^--store 'nope': no such store in the configuration "
                                        r"\(stores: pi-system-184, prime-sec, prime-pri\)$"):
        make_plan(snap, store="nope")
    with pytest.raises(PlanError, match=r"stores: none\)$"):
        make_plan(snapshot([], []), store="x")
    with pytest.raises(PlanError, match=r"^--entry 'x_1': no such entry in store 'prime-sec'; run "):
        make_plan(snap, store=SEC, entry="x_1")
    with pytest.raises(PlanError, match=r"^--entry 'x_1': no such entry in any readable store; "):
        make_plan(snap, entry="x_1")
    with pytest.raises(PlanError, match="no such entry"):  # exists, but on another store
        make_plan(snap, store=SEC, entry="10.0.0.2_8082")


def test_a_named_entry_that_is_not_a_mismatch_is_skipped_with_its_state() -> None:
    snap = seed_snapshot()
    plan = make_plan(snap, store=LONE, entry="10.0.0.7_443")
    assert plan.steps == ()
    assert plan.skipped == (Skip(LONE, "10.0.0.7_443", "unknown", "none",
                                 "state unknown, not mismatch: unknown by none"),)
    # Not named: an unknown entry is simply not stale, no skip line.
    assert make_plan(snap, store=LONE).skipped == ()
    named = make_plan(snap, entry="10.0.0.9_443")
    assert [(s.store, s.entry) for s in named.steps] == [(LONE, "10.0.0.9_443")]
    assert [sp.store for sp in named.stores] == [PRI, SEC, LONE]


@pytest.mark.parametrize(("floor", "kept"), [
    ("fingerprint", ["10.0.0.2_8082"]),
    ("log", ["10.0.0.2_8082"]),
    ("baseline", ["10.0.0.2_8082", "10.0.0.1_8082"]),
    ("attested", ["10.0.0.2_8082", "10.0.0.1_8082"]),
    ("subject", ["10.0.0.2_8082", "127.0.0.1_8082", "10.0.0.1_8082", "10.0.0.9_443", "10.0.0.8_443"]),
])
def test_min_evidence_keeps_that_evidence_and_stronger(floor: str, kept: list[str]) -> None:
    plan = make_plan(seed_snapshot(), min_evidence=floor)
    assert [s.entry for s in plan.steps] == kept
    weak = [(sk.entry, sk.why) for sk in plan.skipped]
    assert [e for e, _ in weak] == [e for e in ("10.0.0.9_443", "10.0.0.8_443", "127.0.0.1_8082",
                                                 "10.0.0.1_8082") if e not in kept]
    assert all(w.startswith("evidence ") and w.endswith(f"weaker than --min-evidence {floor}")
               for _, w in weak)


def test_evidence_outside_the_ranking_is_never_enough() -> None:
    r = dataclasses.replace(row(view(LONE, "10.0.0.9_443")), evidence="hearsay")
    got = _triage(r, {}, False, "subject")
    assert got == Skip(LONE, "10.0.0.9_443", "mismatch", "hearsay",
                       "evidence hearsay is weaker than --min-evidence subject")


def test_a_key_outside_the_grammar_is_skipped_never_a_command() -> None:
    v = view(LONE, "10.0.0.9_443")
    bad = view(LONE, "10.0.0.9_443", reason="x")
    bad = type(bad)(LONE, type(bad.entry)("a b_1", "a b", 1, "/CN=x", (("CN", "x"),)), "a:1",
                    bad.verdict, bad.probe, None)
    plan = make_plan(snapshot([v, bad], [LONE]))
    assert [s.entry for s in plan.steps] == ["10.0.0.9_443"]
    assert plan.skipped == (Skip(LONE, "a b_1", "mismatch", "subject", "'a b_1' is not a listcerts "
                                 "key (<address>_<port>); refusing to build a command"),)
    with pytest.raises(PlanError):
        deletecert_command("10.0.0.1_8082; reload")
    assert deletecert_command("[::1]_8082") == f"{DEL} [::1]_8082"


def test_followups_reregister_ha_once_per_pair_then_each_integration() -> None:
    plan = make_plan(seed_snapshot())
    assert plan.followups == (
        "Re-register HA once, from the primary prime-pri (pair prime-ha), after the deletes on "
        "both servers: Administration > Settings > High Availability.",
        "Re-add ISE on pi-system-184 (10.0.0.9:443): Administration > Servers > ISE Servers.",
        "Reconnect 10.0.0.8:443 from pi-system-184 (e.g. re-run the DNA Center integration): "
        "PI stores the current certificate on the next connection.",
    )
    # No HA step, no HA line; a self entry alone is an HA step.
    assert not any("High Availability" in f for f in make_plan(seed_snapshot(), store=LONE).followups)
    self_only = make_plan(seed_snapshot(), store=SEC, entry="127.0.0.1_8082")
    assert self_only.followups[0].startswith("Re-register HA once, from the primary prime-pri")


def test_followups_for_an_ha_peer_outside_any_pair_and_duplicates() -> None:
    def step(store: str, role: str, endpoint: str = "e:1") -> Step:
        return Step(store, "k_1", endpoint, "subject", "r", role, None, "/CN=x", None)

    assert followups([step("a", "ha-peer")], ()) == (
        "Re-register HA on a: Administration > Settings > High Availability.",)
    pair = PairView("p", "a", "b", ())
    assert followups([step("a", "ha-peer")], [pair]) == (
        "Re-register HA once, from the primary a (pair p), after the deletes on both servers: "
        "Administration > Settings > High Availability.",)
    assert followups([step("c", "self")], [pair]) == ()  # self outside the pair: nothing to redo
    two = [step("a", "ise", "i:1"), step("a", "ise", "i:1"), step("a", "other", "d:1")]
    assert followups(two, ()) == (
        "Re-add ISE on a (i:1): Administration > Servers > ISE Servers.",
        "Reconnect d:1 from a (e.g. re-run the DNA Center integration): PI stores the current "
        "certificate on the next connection.")


def test_verify_names_each_server_once_in_plan_order() -> None:
    plan = make_plan(seed_snapshot())
    assert plan.verify == (
        "On prime-pri, prime-sec, pi-system-184: `ncs certvalidation tofu-certs listcerts` again: "
        "each deleted entry is gone until PI reconnects, then back with the peer's current "
        "certificate.",
        "`prime-tofu-exporter check` (same --storage.path as the running exporter): the re-stored "
        "entries show `match`, evidence baseline (witnessed), once the exporter has seen them again.",
    )
    assert verify_steps([]) == ()
    nothing = make_plan(seed_snapshot(), store=PRI, min_evidence="log", entry="127.0.0.1_8082")
    assert nothing.steps == () and nothing.verify == () and nothing.followups == ()


# ---- the text the operator reads -------------------------------------------------------------


def test_rendered_plan_of_the_seed_scene() -> None:
    assert render_plan(make_plan(seed_snapshot())) == """\
HA pair prime-ha (primary prime-pri, secondary prime-sec):
  primary trusts secondary: mismatch (entry 10.0.0.2_8082 on prime-pri)
  primary trusts itself: match (entry 127.0.0.1_8082 on prime-pri)
  secondary trusts primary: mismatch (entry 10.0.0.1_8082 on prime-sec)
  secondary trusts itself: mismatch (entry 127.0.0.1_8082 on prime-sec)

Delete 5 stale entries, one server at a time, in this order (in each server's admin CLI):

prime-pri (primary of prime-ha): 1 stale entry
  10.0.0.2_8082  [ha-peer prime-sec, 10.0.0.2:8082]  evidence fingerprint: sec changed
  commands (one per stale entry, verdict mismatch):
    ncs certvalidation tofu-certs deletecert host 10.0.0.2_8082

prime-sec (secondary of prime-ha): 2 stale entries
  127.0.0.1_8082  [self, 10.0.0.2:8082]  evidence subject: self changed
  10.0.0.1_8082  [ha-peer prime-pri, 10.0.0.1:8082]  evidence baseline: pri changed
  commands (one per stale entry, verdict mismatch):
    ncs certvalidation tofu-certs deletecert host 127.0.0.1_8082
    ncs certvalidation tofu-certs deletecert host 10.0.0.1_8082

pi-system-184: 2 stale entries
  10.0.0.9_443  [ise, 10.0.0.9:443]  evidence subject: ise changed
  10.0.0.8_443  [other, 10.0.0.8:443]  evidence subject: dnac changed
  commands (one per stale entry, verdict mismatch):
    ncs certvalidation tofu-certs deletecert host 10.0.0.9_443
    ncs certvalidation tofu-certs deletecert host 10.0.0.8_443

Then:
  - Re-register HA once, from the primary prime-pri (pair prime-ha), after the deletes on both \
servers: Administration > Settings > High Availability.
  - Re-add ISE on pi-system-184 (10.0.0.9:443): Administration > Servers > ISE Servers.
  - Reconnect 10.0.0.8:443 from pi-system-184 (e.g. re-run the DNA Center integration): PI stores \
the current certificate on the next connection.

Verify:
  - On prime-pri, prime-sec, pi-system-184: `ncs certvalidation tofu-certs listcerts` again: each \
deleted entry is gone until PI reconnects, then back with the peer's current certificate.
  - `prime-tofu-exporter check` (same --storage.path as the running exporter): the re-stored \
entries show `match`, evidence baseline (witnessed), once the exporter has seen them again."""


def test_rendered_plan_with_nothing_stale_an_unreadable_server_and_a_skip() -> None:
    snap = seed_snapshot(prime_sec=status(SEC, ok=False, error="auth\nfailed"))
    plan = make_plan(snap, store=LONE, entry="10.0.0.7_443")
    assert render_plan(plan) == (
        "No entry is proven stale: nothing to delete.\n\n"
        "Not deleting 10.0.0.7_443 on pi-system-184: state unknown, not mismatch: unknown by none")
    assert render_plan(make_plan(snap, min_evidence="fingerprint"), with_next=False).split("\n\n")[1:] == [
        "Delete 1 stale entry, one server at a time, in this order (in each server's admin CLI):",
        "prime-pri (primary of prime-ha): 1 stale entry\n"
        "  10.0.0.2_8082  [ha-peer prime-sec, 10.0.0.2:8082]  evidence fingerprint: sec changed\n"
        "  commands (one per stale entry, verdict mismatch):\n"
        f"    {DEL} 10.0.0.2_8082",
        "prime-sec (secondary of prime-ha): UNREADABLE (auth\\nfailed); no plan for this server",
        "Nothing to delete on: pi-system-184.",
        "Not deleting 10.0.0.9_443 on pi-system-184: evidence subject is weaker than --min-evidence "
        "fingerprint",
        "Not deleting 10.0.0.8_443 on pi-system-184: evidence subject is weaker than --min-evidence "
        "fingerprint",
        # its entries as last read: still judged, never planned while it cannot be read
        "Not deleting 127.0.0.1_8082 on prime-sec: evidence subject is weaker than --min-evidence "
        "fingerprint",
        "Not deleting 10.0.0.1_8082 on prime-sec: evidence baseline is weaker than --min-evidence "
        "fingerprint",
    ]


def test_servers_with_nothing_to_delete_are_named_together() -> None:
    text = render_plan(make_plan(seed_snapshot(), min_evidence="fingerprint"), with_next=False)
    assert "\n\nNothing to delete on: prime-sec, pi-system-184.\n\n" in text


def test_render_store_for_each_shape() -> None:
    assert render_store(StorePlan("pi", ())) == "pi: nothing to delete"
    assert render_store(StorePlan("pi", (), "ha", "primary")) == "pi (primary of ha): nothing to delete"
    assert render_store(StorePlan("pi", (), error="x")) == "pi: UNREADABLE (x); no plan for this server"
    hostile = Step("pi", "10.0.0.1_443", "10.0.0.1:443\n", "subject", "CN\x1b[2J differs", "other",
                   None, "/CN=x", None)
    assert render_store(StorePlan("pi", (hostile,))).split("\n")[1] == (
        "  10.0.0.1_443  [other, 10.0.0.1:443\\n]  evidence subject: CN\\x1b[2J differs")


def test_render_next_parts() -> None:
    plan = make_plan(seed_snapshot(), store=LONE, entry="10.0.0.7_443")
    assert render_next(plan) == ""
    only_verify = type(plan)((), (), (), ("v1", "v2"))
    assert render_next(only_verify) == "Verify:\n  - v1\n  - v2"
    only_then = type(plan)((), (), ("t",), ())
    assert render_next(only_then) == "Then:\n  - t"


def test_pair_health_states_and_absent_sides() -> None:
    p = PairView("ha", "a", "b", (
        PairLink("a", "b", ABSENT, ()),
        PairLink("a", "a", "match", ("127.0.0.1_8082",)),
        PairLink("b", "a", "unknown", ("10.0.0.1_8082", "pri_8082")),
        PairLink("b", "b", "unreachable", ("127.0.0.1_8082",)),
    ))
    assert pair_health(p) == [
        "primary trusts secondary: absent (no entry on a)",
        "primary trusts itself: match (entry 127.0.0.1_8082 on a)",
        "secondary trusts primary: unknown (entries 10.0.0.1_8082, pri_8082 on b)",
        "secondary trusts itself: unreachable (entry 127.0.0.1_8082 on b)",
    ]


def test_plan_json_keys_and_values() -> None:
    got = plan_json(make_plan(seed_snapshot()))
    assert list(got) == ["pairs", "stores", "skipped", "followups", "verify"]
    (pair,) = got["pairs"]
    assert list(pair) == ["name", "primary", "secondary", "health", "links"]
    assert [(lk["store"], lk["peer"], lk["state"], lk["direction"]) for lk in pair["links"]] == [
        (PRI, SEC, "mismatch", "primary trusts secondary"),
        (PRI, PRI, "match", "primary trusts itself"),
        (SEC, PRI, "mismatch", "secondary trusts primary"),
        (SEC, SEC, "mismatch", "secondary trusts itself"),
    ]
    assert list(pair["links"][0]["entries"]) == ["10.0.0.2_8082"]
    assert [(s["store"], s["pair"], s["pair_role"], s["error"]) for s in got["stores"]] == [
        (PRI, "prime-ha", "primary", None), (SEC, "prime-ha", "secondary", None), (LONE, None, None, None)]
    step = got["stores"][0]["steps"][0]
    assert step == {"store": PRI, "entry": "10.0.0.2_8082", "endpoint": "10.0.0.2:8082",
                    "evidence": "fingerprint", "reason": "sec changed", "role": "ha-peer",
                    "peer": SEC, "stored_subject": "/C=US/O=Cisco Systems/CN=prime-sec",
                    "live_fingerprint_sha256": "a" * 64, "command": f"{DEL} 10.0.0.2_8082"}
    assert got["followups"][0].startswith("Re-register HA once") and len(got["verify"]) == 2
    skipped = plan_json(make_plan(seed_snapshot(), min_evidence="fingerprint"))["skipped"]
    assert skipped[0] == {"store": LONE, "entry": "10.0.0.9_443", "state": "mismatch",
                          "evidence": "subject",
                          "why": "evidence subject is weaker than --min-evidence fingerprint"}


def test_a_live_fingerprint_reaches_the_step() -> None:
    v = view(LONE, "10.0.0.9_443", fp=FP_B)
    (step,) = make_plan(snapshot([v], [LONE])).steps
    assert step.live_fingerprint_sha256 == FP_B
