"""Pure views of a snapshot for people: rows for `check`, the landing page and remediation.

Rows hold the text as it came (JSON escapes it); `table` shows every piece of PI- or
peer-supplied text through exporter.core.text.visible, so one value is one line, and the only
fix lines are the ones built here from validated keys of `mismatch` entries."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from exporter.core import exitcodes
from exporter.core.model import Attested, EntryView, State
from exporter.core.pi_commands import deletecert, is_key
from exporter.core.subject import format_subject
from exporter.core.text import visible
from exporter.fleet.snapshot import Snapshot


@dataclass(frozen=True)
class Row:
    store: str
    entry: str
    endpoint: str
    state: str
    evidence: str
    reason: str
    stored_subject: str
    live_subject: str | None
    live_fingerprint_sha256: str | None
    live_not_after: float | None
    probe_error: str | None
    baseline: str | None  # "witnessed" | "adopted" | "attested" | None
    remediation: str | None  # the deletecert command, for mismatches only
    live_spki_sha256: str | None = None
    state_since: float | None = None  # when the current state began (the history)
    previous_fingerprint_sha256: str | None = None  # the live fingerprint before this one
    # An attested baseline's who (`by`), when (`at`) and why (`reason`, operator-typed text).
    attestation: Attested | None = None
    # A store that holds the exact key (known_hosts): the entry's key type, its first line in
    # the file and the stored key's hex SHA-256 (stored_subject then holds its SHA256: form).
    key_type: str | None = None
    line: int | None = None
    stored_fingerprint_sha256: str | None = None
    # The host and port the entry names (remediation builds `ssh-keyscan` from them).
    host: str = ""
    port: int = 0

    @property
    def is_host_key(self) -> bool:
        """A known_hosts entry (None for PI's), which remediation and the page treat apart."""
        return self.key_type is not None or self.stored_fingerprint_sha256 is not None


def row(v: EntryView) -> Row:
    cert = v.probe.cert if v.probe is not None else None
    return Row(
        store=v.store,
        entry=v.entry.key,
        endpoint=v.endpoint,
        state=v.verdict.state.value,
        evidence=v.verdict.evidence.value,
        reason=v.verdict.reason,
        stored_subject=_stored(v),
        live_subject=cert.subject_text if cert else None,
        live_fingerprint_sha256=cert.fingerprint_sha256 if cert else None,
        live_not_after=cert.not_after if cert else None,
        probe_error=v.probe.error if v.probe is not None else "not probed yet",
        baseline=v.baseline.kind.value if v.baseline is not None else None,
        remediation=_fix(v),
        live_spki_sha256=cert.spki_sha256 if cert else None,
        state_since=v.state_since,
        previous_fingerprint_sha256=v.previous_fingerprint,
        attestation=v.attestation,
        key_type=v.entry.key_type or None,
        line=v.entry.line or None,
        stored_fingerprint_sha256=v.entry.stored_fingerprint,
        host=v.entry.host,
        port=v.entry.port,
    )


def _stored(v: EntryView) -> str:
    """What the store holds: PI's subject, or a known_hosts key's `SHA256:` fingerprint."""
    if v.entry.stored_fingerprint is not None:
        return v.entry.subject_text
    return format_subject(v.entry.subject)


def _fix(v: EntryView) -> str | None:
    """The fix, built only from a key inside the deletecert grammar, only for a mismatch."""
    if v.verdict.state is not State.MISMATCH or not is_key(v.entry.key):
        return None
    return deletecert(v.entry.key)


def rows(views: Iterable[EntryView]) -> list[Row]:
    return [row(v) for v in views]


def table(items: list[Row]) -> str:
    """Fixed-width text table for terminals."""
    cols = ("store", "entry", "state", "evidence", "stored_subject", "live_subject")
    data = [[visible(str(getattr(r, c) or "-")) for c in cols] for r in items]
    widths = [max([len(c), *(len(d[i]) for d in data)]) for i, c in enumerate(cols)]
    widths = [min(w, 60) for w in widths]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True))]
    for d in data:
        lines.append("  ".join(v[:w].ljust(w) for v, w in zip(d, widths, strict=True)))
    for r in items:
        if r.remediation:  # marked: only a mismatch with a valid key gets one
            lines.append(f"fix (mismatch) on {visible(r.store)}: {r.remediation}   "
                         f"({r.evidence}: {visible(r.reason)})")
    return "\n".join(lines)


def exit_code(snap: Snapshot) -> int:
    """`check` and `doctor`: 1 any mismatch (actionable first), 2 any store unreadable,
    3 unknowns left, 0 all match."""
    states = {v.verdict.state for v in snap.views}
    if State.MISMATCH in states:
        return exitcodes.MISMATCH
    if any(st.last is None or not st.last.ok for st in snap.stores.values()):
        return exitcodes.ERROR
    if states - {State.MATCH}:
        return exitcodes.UNKNOWN
    return exitcodes.OK
