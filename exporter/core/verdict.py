"""Pure: what is known about one stored entry -> match, mismatch, unknown or unreachable.

The rules are design.md's table, first that applies wins. The one rule that matters most:
a matching subject, or an adopted baseline that still equals the live certificate, proves
nothing about what PI stored, so it is `unknown`, never `match`. An attested baseline (an
operator saw PI's connection work and accepted the certificate presented then) ranks between
a witnessed and an adopted one: equal -> match, different -> mismatch.
"""

from __future__ import annotations

from exporter.core.model import (
    Baseline,
    BaselineKind,
    Evidence,
    ProbeResult,
    State,
    StoredEntry,
    Verdict,
)
from exporter.core.subject import format_subject, subjects_equal


def _unknown(why: str) -> Verdict:
    return Verdict(State.UNKNOWN, Evidence.NONE, f"{why}; pin its fingerprint, or accept the live "
                                                 "one once PI's connection to the peer is seen working")


# Verdicts whose reason names no value: one shared object each, not one per entry (20,000
# entries mostly decide the same few ways; bench/run.py's scale scenario).
_PINNED = Verdict(State.MATCH, Evidence.FINGERPRINT, "live fingerprint equals the pin")
_LOGGED = Verdict(State.MISMATCH, Evidence.LOG, "the PI server logged 'TOFU failed' for this peer")
_WITNESSED = Verdict(State.MATCH, Evidence.BASELINE,
                     "live certificate equals the one seen when the entry appeared")
_ACCEPTED = Verdict(State.MATCH, Evidence.ATTESTED,
                    "live certificate equals the one accepted while PI's connection to it worked")
_UNKNOWN_ADOPTED = _unknown(
    "the entry was already stored when the exporter first read this PI server, so the "
    "certificate PI stored was never seen, and a matching subject proves nothing")
_UNKNOWN_PENDING = _unknown(
    "the entry appeared but its endpoint has not delivered a certificate since")
_UNKNOWN = _unknown("subjects match but the stored certificate was never seen")


def decide(
    entry: StoredEntry,
    probe: ProbeResult | None,
    baseline: Baseline | None,
    pin: str | None = None,
    logged_failure: bool = False,
) -> Verdict:
    if probe is None or probe.cert is None:
        why = probe.error if probe is not None and probe.error else "not probed yet"
        return Verdict(State.UNREACHABLE, Evidence.NONE, f"no live certificate: {why}")
    live = probe.cert
    fp = live.fingerprint_sha256
    if pin is not None:
        if pin == fp:
            return _PINNED
        return Verdict(
            State.MISMATCH,
            Evidence.FINGERPRINT,
            f"live fingerprint {fp[:16]}… differs from the pinned {pin[:16]}…",
        )
    if logged_failure:
        return _LOGGED
    if baseline is not None and baseline.fingerprint_sha256 is not None:
        by_baseline = _by_baseline(baseline.kind, baseline.fingerprint_sha256, fp,
                                   subjects_equal(entry.subject, live.subject))
        if by_baseline is not None:
            return by_baseline
    if not subjects_equal(entry.subject, live.subject):
        return Verdict(
            State.MISMATCH,
            Evidence.SUBJECT,
            f"live subject {format_subject(live.subject)} differs from the stored "
            f"{format_subject(entry.subject)}",
        )
    return _unknown_for(baseline)


def _unknown_for(baseline: Baseline | None) -> Verdict:
    if baseline is not None and baseline.kind is BaselineKind.ADOPTED:
        return _UNKNOWN_ADOPTED
    if baseline is not None and baseline.fingerprint_sha256 is None:
        return _UNKNOWN_PENDING
    return _UNKNOWN


def _attested(base: str, fp: str) -> Verdict:
    if base == fp:
        return _ACCEPTED
    return Verdict(
        State.MISMATCH,
        Evidence.ATTESTED,
        f"live certificate changed since it was accepted ({base[:16]}… -> {fp[:16]}…)",
    )


def _by_baseline(kind: BaselineKind, base: str, fp: str, same_subject: bool) -> Verdict | None:
    """What a recorded fingerprint proves, or None when it proves nothing (an adopted or
    attested baseline that the subjects contradict or, adopted, still equals the live one)."""
    if kind is BaselineKind.WITNESSED:
        if base == fp:
            return _WITNESSED
        return Verdict(
            State.MISMATCH,
            Evidence.BASELINE,
            f"live certificate changed since the entry appeared ({base[:16]}… -> {fp[:16]}…)",
        )
    if kind is BaselineKind.ATTESTED and (base != fp or same_subject):
        # an accepted certificate whose subject differs from the stored one proves nothing
        return _attested(base, fp)
    if base != fp:
        return Verdict(
            State.MISMATCH,
            Evidence.BASELINE,
            f"live certificate changed while the entry stayed ({base[:16]}… -> {fp[:16]}…)",
        )
    return None
