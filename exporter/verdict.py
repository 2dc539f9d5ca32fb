"""Pure: what is known about one stored entry -> match, mismatch, unknown or unreachable.

The rules are design.md's table, first that applies wins. The one rule that matters most:
a matching subject, or an adopted baseline that still equals the live certificate, proves
nothing about what PI stored, so it is `unknown`, never `match`.
"""

from __future__ import annotations

from exporter.model import (
    Baseline,
    BaselineKind,
    Evidence,
    ProbeResult,
    State,
    StoredEntry,
    Verdict,
)
from exporter.subject import format_subject, subjects_equal

# Verdicts whose reason names no value: one shared object each, not one per entry (20,000
# entries mostly decide the same few ways).
_PINNED = Verdict(State.MATCH, Evidence.FINGERPRINT, "live fingerprint equals the pin")
_LOGGED = Verdict(State.MISMATCH, Evidence.LOG, "the PI server logged 'TOFU failed' for this peer")
_WITNESSED = Verdict(State.MATCH, Evidence.BASELINE,
                     "live certificate equals the one seen when the entry appeared")
_UNPROVEN = Verdict(State.UNKNOWN, Evidence.NONE,
                    "subjects match but the stored certificate was never seen; pin its fingerprint")


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
        base = baseline.fingerprint_sha256
        if baseline.kind is BaselineKind.WITNESSED:
            if base == fp:
                return _WITNESSED
            return Verdict(
                State.MISMATCH,
                Evidence.BASELINE,
                f"live certificate changed since the entry appeared ({base[:16]}… -> {fp[:16]}…)",
            )
        if base != fp:
            return Verdict(
                State.MISMATCH,
                Evidence.BASELINE,
                f"live certificate changed while the entry stayed ({base[:16]}… -> {fp[:16]}…)",
            )
    if not subjects_equal(entry.subject, live.subject):
        return Verdict(
            State.MISMATCH,
            Evidence.SUBJECT,
            f"live subject {format_subject(live.subject)} differs from the stored "
            f"{format_subject(entry.subject)}",
        )
    return _UNPROVEN
