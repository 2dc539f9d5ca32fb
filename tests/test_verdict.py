"""The evidence rules of design.md, one case each; pure, no I/O."""

from __future__ import annotations

import pytest

from exporter.core.model import (
    Baseline,
    BaselineKind,
    Evidence,
    LiveCert,
    ProbeResult,
    State,
    StoredEntry,
)
from exporter.core.verdict import decide

pytestmark = pytest.mark.unit

PRI = (("C", "US"), ("O", "Cisco Systems"), ("CN", "prime-sec"))
ENTRY = StoredEntry("10.0.0.2_8082", "10.0.0.2", 8082, "/C=US/O=Cisco Systems/CN=prime-sec", PRI)
FP_OLD, FP_NEW = "a" * 64, "b" * 64


def live(fp: str, subject=PRI) -> ProbeResult:  # type: ignore[no-untyped-def]
    cert = LiveCert(fp, "c" * 64, subject, "/x", "/x", "1", 0.0, 1.0)
    return ProbeResult("10.0.0.2:8082", cert, None, 0.01, 0.0)


def base(kind: BaselineKind, fp: str | None) -> Baseline:
    return Baseline(kind, fp, 0.0)


def test_unreachable_wins_over_everything() -> None:
    failed = ProbeResult("10.0.0.2:8082", None, "connection refused", 0.0, 0.0)
    v = decide(ENTRY, failed, base(BaselineKind.WITNESSED, FP_OLD), pin=FP_OLD)
    assert (v.state, v.evidence) == (State.UNREACHABLE, Evidence.NONE)
    assert "connection refused" in v.reason


def test_pin_match_and_mismatch() -> None:
    # The pin decides even against a witnessed baseline saying the opposite.
    v = decide(ENTRY, live(FP_OLD), base(BaselineKind.WITNESSED, FP_NEW), pin=FP_OLD)
    assert (v.state, v.evidence) == (State.MATCH, Evidence.FINGERPRINT)
    assert "pin" in v.reason
    v = decide(ENTRY, live(FP_NEW), base(BaselineKind.WITNESSED, FP_NEW), pin=FP_OLD)
    assert (v.state, v.evidence) == (State.MISMATCH, Evidence.FINGERPRINT)
    assert FP_NEW[:16] in v.reason and FP_OLD[:16] in v.reason  # both fingerprints, as evidence


def test_logged_failure_is_mismatch_by_log() -> None:
    v = decide(ENTRY, live(FP_OLD), base(BaselineKind.WITNESSED, FP_OLD), logged_failure=True)
    assert (v.state, v.evidence) == (State.MISMATCH, Evidence.LOG)


def test_witnessed_baseline_equal_is_match_different_is_mismatch() -> None:
    assert decide(ENTRY, live(FP_OLD), base(BaselineKind.WITNESSED, FP_OLD)).evidence is Evidence.BASELINE
    assert decide(ENTRY, live(FP_OLD), base(BaselineKind.WITNESSED, FP_OLD)).state is State.MATCH
    v = decide(ENTRY, live(FP_NEW), base(BaselineKind.WITNESSED, FP_OLD))
    assert (v.state, v.evidence) == (State.MISMATCH, Evidence.BASELINE)


def test_adopted_baseline_equal_proves_nothing() -> None:
    v = decide(ENTRY, live(FP_OLD), base(BaselineKind.ADOPTED, FP_OLD))
    assert (v.state, v.evidence) == (State.UNKNOWN, Evidence.NONE)


def test_adopted_baseline_changed_is_mismatch_even_with_same_subject() -> None:
    v = decide(ENTRY, live(FP_NEW), base(BaselineKind.ADOPTED, FP_OLD))
    assert (v.state, v.evidence) == (State.MISMATCH, Evidence.BASELINE)


def test_subject_differs_is_mismatch_by_subject() -> None:
    other = (("C", "US"), ("O", "Cisco Systems"), ("CN", "ISE-server-2024"))
    v = decide(ENTRY, live(FP_NEW, other), base(BaselineKind.ADOPTED, FP_NEW))
    assert (v.state, v.evidence) == (State.MISMATCH, Evidence.SUBJECT)
    assert "ISE-server-2024" in v.reason


def test_pending_baseline_falls_back_to_subject() -> None:
    v = decide(ENTRY, live(FP_NEW), base(BaselineKind.WITNESSED, None))
    assert (v.state, v.evidence) == (State.UNKNOWN, Evidence.NONE)


def test_subject_match_alone_is_never_match() -> None:
    v = decide(ENTRY, live(FP_NEW), None)
    assert (v.state, v.evidence) == (State.UNKNOWN, Evidence.NONE)  # not Evidence.SUBJECT
    assert "never seen" in v.reason and "pin" in v.reason  # says why, and what would prove it


def test_attested_baseline_equal_is_match_different_is_mismatch() -> None:
    v = decide(ENTRY, live(FP_OLD), base(BaselineKind.ATTESTED, FP_OLD))
    assert (v.state, v.evidence) == (State.MATCH, Evidence.ATTESTED)
    v = decide(ENTRY, live(FP_NEW), base(BaselineKind.ATTESTED, FP_OLD))
    assert (v.state, v.evidence) == (State.MISMATCH, Evidence.ATTESTED)
    assert FP_OLD[:16] in v.reason and FP_NEW[:16] in v.reason


def test_attested_ranks_below_pin_and_log_and_above_subject() -> None:
    assert decide(ENTRY, live(FP_OLD), base(BaselineKind.ATTESTED, FP_OLD), pin=FP_NEW).evidence \
        is Evidence.FINGERPRINT
    assert decide(ENTRY, live(FP_OLD), base(BaselineKind.ATTESTED, FP_OLD),
                  logged_failure=True).evidence is Evidence.LOG
    other = (("CN", "someone-else"),)
    # A stored subject that differs from the accepted certificate's: PI holds another one.
    v = decide(ENTRY, live(FP_OLD, other), base(BaselineKind.ATTESTED, FP_OLD))
    assert (v.state, v.evidence) == (State.MISMATCH, Evidence.SUBJECT)
    order = list(Evidence)
    assert order.index(Evidence.BASELINE) < order.index(Evidence.ATTESTED) < order.index(Evidence.SUBJECT)
