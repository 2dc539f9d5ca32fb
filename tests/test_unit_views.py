"""Entry views and HA pairs, in-process (exporter.core.views, exporter.fleet.pairs): which probe, baseline,
pin and attestation each entry gets, when PI's log counts as evidence, and each direction of
an HA pair with its worst state."""

from __future__ import annotations

import pytest

from exporter.core.model import (
    Attested,
    Baseline,
    BaselineKind,
    Evidence,
    ProbeResult,
    State,
    Subject,
)
from exporter.core.views import logged_failure, store_views
from exporter.fleet.pairs import ABSENT, LINK_STATES, PairLink, pair_views
from tests.kit.builders import FP_A, FP_B, cert, config, entry, subj, view

pytestmark = pytest.mark.unit


X = subj("x")


def probe(endpoint: str, fp: str | None, subject: Subject = X) -> ProbeResult:
    return ProbeResult(endpoint, cert(fp, subject) if fp else None, None if fp else "refused", 0.1, 9.0)


# ---- views ------------------------------------------------------------------------------------


def test_each_entry_gets_its_own_probe_baseline_pin_and_attestation() -> None:
    e1, e2 = entry("10.0.0.1_443", subj("one")), entry("10.0.0.2_443", subj("two"))
    who = Attested("ops", 5.0, "saw it work")
    got = store_views(
        "pi", [e1, e2], ["10.0.0.1:443", "10.0.0.2:443"],
        probes={"10.0.0.1:443": probe("10.0.0.1:443", FP_A, subj("one")),
                "10.0.0.2:443": probe("10.0.0.2:443", FP_B, subj("two"))},
        baselines={"10.0.0.2_443": Baseline(BaselineKind.ATTESTED, FP_B, 5.0)},
        pins={"10.0.0.1:443": FP_A},
        log_seen={}, attested={"10.0.0.2_443": who})
    assert [(v.store, v.entry, v.endpoint) for v in got] == [
        ("pi", e1, "10.0.0.1:443"), ("pi", e2, "10.0.0.2:443")]
    assert [(v.verdict.state, v.verdict.evidence) for v in got] == [
        (State.MATCH, Evidence.FINGERPRINT), (State.MATCH, Evidence.ATTESTED)]
    assert [v.pinned for v in got] == [FP_A, None]
    assert [v.baseline for v in got] == [None, Baseline(BaselineKind.ATTESTED, FP_B, 5.0)]
    assert [v.attestation for v in got] == [None, who]
    assert [v.probe.cert.fingerprint_sha256 for v in got] == [FP_A, FP_B]  # type: ignore[union-attr]


def test_an_unprobed_entry_is_unreachable_and_attested_is_optional() -> None:
    (v,) = store_views("pi", [entry("10.0.0.1_443")], ["10.0.0.1:443"], {}, {}, {}, {})
    assert (v.probe, v.attestation, v.verdict.state) == (None, None, State.UNREACHABLE)
    assert v.verdict.reason == "no live certificate: not probed yet"


def test_entries_and_endpoints_must_pair_up() -> None:
    with pytest.raises(ValueError):
        store_views("pi", [entry("10.0.0.1_443")], [], {}, {}, {}, {})


def logged(seen: dict[str, float], stored_cn: str = "prime-sec", since: float | None = 40.0,
           others: tuple[str, ...] = ()) -> bool:
    """store_views' verdict for one entry, with the CNs of its store's other entries."""
    entries = [entry("10.0.0.2_8082", subj(stored_cn))]
    entries += [entry(f"10.0.1.{i}_443", subj(cn)) for i, cn in enumerate(others)]
    eps = [f"{e.host}:{e.port}" for e in entries]
    probes = {"10.0.0.2:8082": probe("10.0.0.2:8082", FP_A, subj(stored_cn))}
    base = {} if since is None else {"10.0.0.2_8082": Baseline(BaselineKind.ADOPTED, FP_A, since)}
    v = store_views("pi", entries, eps, probes, base, {}, seen)[0]
    return (v.verdict.state, v.verdict.evidence) == (State.MISMATCH, Evidence.LOG)


def test_the_log_counts_only_after_the_baseline_and_for_a_unique_cn() -> None:
    assert logged({"prime-sec": 41.0})
    assert not logged({"prime-sec": 40.0})  # at the baseline's time: not after it
    assert not logged({"prime-sec": 39.0})
    assert logged({"prime-sec": 0.5}, since=None)  # no baseline: any failure counts
    assert not logged({})
    assert not logged({"other": 99.0})
    assert not logged({"prime-sec": 99.0}, others=("prime-sec",))  # two entries share the CN
    assert logged({"prime-sec": 99.0}, others=("prime-pri",))


def log_states(seen: dict[str, float], stored: list[str], live: list[str | None]) -> list[bool]:
    """Per entry of one store (stored CN, live CN or None when down): is it a mismatch by log?"""
    entries = [entry(f"10.0.0.{i}_443", subj(cn)) for i, cn in enumerate(stored)]
    eps = [f"10.0.0.{i}:443" for i in range(len(stored))]
    probes = {ep: probe(ep, FP_A, subj(cn)) for ep, cn in zip(eps, live, strict=True) if cn}
    return [(v.verdict.state, v.verdict.evidence) == (State.MISMATCH, Evidence.LOG)
            for v in store_views("pi", entries, eps, probes, {}, {}, seen)]


def test_the_log_names_a_renewed_cn_no_entry_stores() -> None:
    # prime-sec came back with a certificate for a new name; PI logs TOFU failed for that name.
    # Only this entry's endpoint presents it: the log is about this entry.
    assert log_states({"prime-sec-2026": 9.0}, ["prime-sec", "ise"], ["prime-sec-2026", "ise"]) == [
        True, False]


def test_a_logged_cn_two_entries_claim_counts_for_neither() -> None:
    # Two endpoints present the same new name: the log cannot say which one failed.
    assert log_states({"lb": 9.0}, ["a", "b", "c"], ["lb", "lb", "c"]) == [False, False, False]
    # One entry presents the name another entry stores (down or not): either may be the one
    # PI logged.
    assert log_states({"ise": 9.0}, ["prime-sec", "ise"], ["ise", None]) == [False, False]
    assert log_states({"ise": 9.0}, ["prime-sec", "ise"], ["ise", "ise"]) == [False, False]
    # The same entry stores and presents it: still one entry, the log is about it.
    assert log_states({"ise": 9.0}, ["prime-sec", "ise"], ["prime-sec", "ise"]) == [False, True]


def test_logged_failure_needs_a_name() -> None:
    e = entry("10.0.0.1_443", (("O", "no cn"),))
    assert not logged_failure({"": 9.0}, e, {""}, None, None)
    assert logged_failure({"x": 9.0}, entry("10.0.0.1_443", (("CN", "x"),)), {"x"}, None, None)
    assert not logged_failure({"x": 9.0}, entry("10.0.0.1_443", (("CN", "x"),)), set(), None, None)
    live = probe("10.0.0.1:443", FP_A, (("CN", "new"),))  # the live certificate's CN counts too
    assert logged_failure({"new": 9.0}, entry("10.0.0.1_443", (("CN", "x"),)), {"x", "new"}, None, live)
    assert not logged_failure({"new": 9.0}, entry("10.0.0.1_443", (("CN", "x"),)), {"x"}, None, live)
    down = ProbeResult("10.0.0.1:443", None, "refused", 0.1, 1.0)
    assert logged_failure({"x": 9.0}, entry("10.0.0.1_443", (("CN", "x"),)), {"x"}, None, down)


# ---- pairs ------------------------------------------------------------------------------------

PAIR_CFG = config({"pri": "10.0.0.1", "sec": "Prime-Sec.Example", "v6": "2001:DB8::5", "lone": "10.0.0.9"},
                  [("ha", "pri", "sec"), ("ha6", "v6", "pri")])


def test_each_direction_of_a_pair_with_its_entries_and_worst_state() -> None:
    views = [
        view("pri", "prime-sec.example_8082", State.MATCH, Evidence.BASELINE,
             endpoint="prime-sec.example:8082"),
        view("pri", "PRIME-SEC.EXAMPLE_443", State.UNKNOWN, Evidence.NONE,
             endpoint="PRIME-SEC.EXAMPLE:443"),  # case-insensitive
        view("pri", "127.0.0.1_8082", State.UNREACHABLE, Evidence.NONE, endpoint="10.0.0.1:8082"),
        view("pri", "10.0.0.1_443", State.MATCH, Evidence.BASELINE, endpoint="10.0.0.1:443"),
        view("pri", "10.0.0.7_443", State.MISMATCH, endpoint="10.0.0.7:443"),  # nobody's address
        view("sec", "10.0.0.1_8082", State.MISMATCH, endpoint="10.0.0.1:8082"),
        view("sec", "10.0.0.10_8082", State.MISMATCH, endpoint="10.0.0.10:8082"),  # not 10.0.0.1
        view("lone", "10.0.0.1_8082", State.MISMATCH, endpoint="10.0.0.1:8082"),  # not in the pair
        view("v6", "[2001:db8::5]_8082", State.MATCH, Evidence.BASELINE,
             endpoint="[2001:db8::5]:8082"),
    ]
    ha, ha6 = pair_views(PAIR_CFG, views)
    assert (ha.name, ha.primary, ha.secondary) == ("ha", "pri", "sec")
    assert ha.links == (
        PairLink("pri", "sec", "unknown", ("prime-sec.example_8082", "PRIME-SEC.EXAMPLE_443")),
        PairLink("pri", "pri", "unreachable", ("127.0.0.1_8082", "10.0.0.1_443")),
        PairLink("sec", "pri", "mismatch", ("10.0.0.1_8082",)),
        PairLink("sec", "sec", ABSENT, ()),
    )
    assert ha6.links == (
        PairLink("v6", "pri", ABSENT, ()),
        PairLink("v6", "v6", "match", ("[2001:db8::5]_8082",)),
        PairLink("pri", "v6", ABSENT, ()),
        PairLink("pri", "pri", "unreachable", ("127.0.0.1_8082", "10.0.0.1_443")),
    )


@pytest.mark.parametrize(("states", "worst"), [
    ([State.MATCH, State.UNKNOWN, State.UNREACHABLE, State.MISMATCH], "mismatch"),
    ([State.MATCH, State.UNKNOWN, State.UNREACHABLE], "unreachable"),
    ([State.UNREACHABLE, State.UNKNOWN], "unreachable"),
    ([State.MATCH, State.UNKNOWN], "unknown"),
    ([State.MATCH], "match"),
    ([], ABSENT),
])
def test_a_link_shows_its_worst_state(states: list[State], worst: str) -> None:
    views = [view("sec", f"10.0.0.1_{i + 1}", s, endpoint=f"10.0.0.1:{i + 1}")
             for i, s in enumerate(states)]
    (ha, _) = pair_views(PAIR_CFG, views)
    assert ha.links[2].state == worst
    assert LINK_STATES == ("mismatch", "unreachable", "unknown", "match", "absent")


def test_no_pairs_no_views() -> None:
    assert pair_views(config(["a"]), []) == ()
    (ha, _) = pair_views(PAIR_CFG, [])
    assert [lk.state for lk in ha.links] == [ABSENT] * 4
