"""Pure: the history of each entry's verdict: what changed, when, from what to what.

The service keeps one status per stored entry (its state, evidence and the live fingerprint
last seen, with when the state began) and records a change whenever one of those three moves,
or an entry appears or leaves its store's list. The database (exporter.store.database) persists
both; this module only compares and formats.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from exporter.core.model import EntryView, Evidence, State
from exporter.core.text import visible

GONE_REASON = "the entry left the store's list (deleted on the PI server)"


@dataclass(frozen=True)
class Status:
    """What the history compares: an entry's verdict and the live fingerprint last seen."""

    state: str
    evidence: str
    fingerprint: str | None  # the live certificate last seen; kept while the endpoint is down


@dataclass(frozen=True)
class EntryStatus:
    status: Status
    since: float  # when `status.state` began
    previous_fingerprint: str | None = None  # the live fingerprint seen before `fingerprint`


@dataclass(frozen=True)
class Change:
    time: float
    store: str
    entry: str
    before: Status | None  # None: the entry appeared
    after: Status | None  # None: the entry left the list
    reason: str


@dataclass(frozen=True)
class Attestation:
    """An operator's `accept` of one entry's live certificate."""

    store: str
    entry: str
    endpoint: str
    fingerprint_sha256: str
    spki_sha256: str
    operator: str
    reason: str
    time: float


def advance(prev: EntryStatus | None, st: Status, now: float) -> EntryStatus:
    """`prev` moved to `st` at `now`: the state's start and the previous fingerprint follow."""
    if prev is None:
        return EntryStatus(st, now)
    if prev.status == st:
        return prev
    since = prev.since if prev.status.state == st.state else now
    moved = st.fingerprint != prev.status.fingerprint
    return EntryStatus(st, since, prev.status.fingerprint if moved else prev.previous_fingerprint)


def view_status(v: EntryView, before: Status | None) -> Status:
    cert = v.probe.cert if v.probe is not None else None
    fp = cert.fingerprint_sha256 if cert is not None else (before.fingerprint if before else None)
    return Status(v.verdict.state.value, v.verdict.evidence.value, fp)


def diff(
    store: str,
    views: Iterable[EntryView],
    old: Mapping[str, EntryStatus],
    now: float,
) -> tuple[dict[str, EntryStatus], list[Change]]:
    """The new status of every entry of `views`, and the changes since `old`.

    An entry seen for the first time in a store the history already knows appeared (a
    change); on a store's first recording every entry is simply the starting point.
    """
    new: dict[str, EntryStatus] = {}
    changes: list[Change] = []
    for v in views:
        key = v.entry.key
        prev = old.get(key)
        st = view_status(v, prev.status if prev else None)
        if prev is None:
            new[key] = EntryStatus(st, now)
            if old:
                changes.append(Change(now, store, key, None, st, f"the entry appeared: {v.verdict.reason}"))
        elif prev.status == st:
            new[key] = prev
        else:
            new[key] = advance(prev, st, now)
            changes.append(Change(now, store, key, prev.status, st, v.verdict.reason))
    for key in sorted(old.keys() - new.keys()):
        changes.append(Change(now, store, key, old[key].status, None, GONE_REASON))
    return new, changes


def fingerprint_moved(c: Change) -> bool:
    """The live certificate changed from one to another (not: appeared, or came back)."""
    return (c.before is not None and c.after is not None and c.before.fingerprint is not None
            and c.before.fingerprint != c.after.fingerprint)


def accepted(fingerprint: str) -> Status:
    """The status an accepted entry takes: the live certificate is the attested one."""
    return Status(State.MATCH.value, Evidence.ATTESTED.value, fingerprint)


def status_text(s: Status | None) -> str:
    if s is None:
        return "absent"
    fp = s.fingerprint[:16] + "…" if s.fingerprint else "-"
    return f"{s.state} ({s.evidence}, {fp})"


def change_json(c: Change) -> dict[str, object]:
    def side(s: Status | None) -> dict[str, object] | None:
        if s is None:
            return None
        return {"state": s.state, "evidence": s.evidence, "fingerprint_sha256": s.fingerprint}

    return {"time": c.time, "time_utc": _when(c.time), "store": c.store, "entry": c.entry,
            "before": side(c.before), "after": side(c.after), "reason": c.reason}


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def render_history(changes: Sequence[Change]) -> str:
    """Newest first, one change per line, every PI, peer or operator text through `visible`."""
    if not changes:
        return "no changes recorded"
    lines = []
    for c in changes:
        lines.append(f"{_when(c.time)}  {c.store}  {visible(c.entry)}  {status_text(c.before)} -> "
                     f"{status_text(c.after)}  {visible(c.reason)}")
    return "\n".join(lines)
