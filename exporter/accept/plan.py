"""`accept`, planning (pure): which `unknown` entries may be attested now, which are refused
and why, and the integration check the operator must see working first.

Why an attestation proves something: PI's TOFU check rejects every certificate but the stored
one, so while PI's connection to a peer works, the certificate the peer presents is the one PI
stored. The operator checks that connection (in the seed's terms, below) and accepts the
live certificate; the exporter records it as an `attested` baseline.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from exporter.core.history import Change, Status, fingerprint_moved
from exporter.core.model import Baseline, State
from exporter.core.pi_commands import is_key
from exporter.core.text import visible
from exporter.fleet.report import Row, rows
from exporter.fleet.roles import Role, entry_role, roles_of
from exporter.fleet.snapshot import Snapshot


class AcceptError(ValueError):
    """The request names something that is not there; nothing is recorded."""


@dataclass(frozen=True)
class Candidate:
    """One entry whose live certificate will be recorded as attested."""

    store: str
    entry: str
    endpoint: str
    fingerprint_sha256: str
    spki_sha256: str
    stored_subject: str
    live_subject: str
    role: str
    peer: str | None  # the PI server the entry points at, for HA roles
    check: str  # what the operator must have seen working, in the seed's terms
    # What the plan saw besides the live certificate, compared again after the "yes".
    state: str = State.UNKNOWN.value
    evidence: str = "none"
    baseline: Baseline | None = None


@dataclass(frozen=True)
class Refusal:
    store: str
    entry: str
    why: str


@dataclass(frozen=True)
class AcceptPlan:
    store: str
    candidates: tuple[Candidate, ...]
    refusals: tuple[Refusal, ...]


def integration_check(role: Role, pair: str | None = None) -> str:
    """The page that shows PI's connection to this peer working, in the seed's terms."""
    if role in (Role.HA_PEER, Role.SELF):
        where = f" of HA pair {pair}" if pair else ""
        return (f"on the primary{where}, Administration > Settings > High Availability shows "
                "Primary Active and the secondary synced")
    if role is Role.ISE:
        return ("Administration > Servers > ISE Servers: the connection test to this ISE server "
                "passes")
    return ("the DNA Center co-existence page (or the integration that uses this peer) shows "
            "PI connected")


def accept_command(store: str, entry: str, config_file: str | None = None,
                   storage_path: str | None = None) -> str:
    """The command to paste once the check passed; every argument shell-quoted."""
    args = ["prime-tofu-exporter", "accept"]
    if config_file:
        args += ["--config.file", config_file]
    if storage_path:
        args += ["--storage.path", storage_path]
    args += ["--store", store, "--entry", entry, "--reason", "<what you checked>"]
    return visible(shlex.join(args))


def _pair_of(snap: Snapshot, store: str) -> str | None:
    return next((p.name for p in snap.pairs if store in (p.primary, p.secondary)), None)


def check_for(snap: Snapshot, r: Row) -> str:
    role, _ = entry_role(r, roles_of(snap.pairs))
    return integration_check(role, _pair_of(snap, r.store))


def _refusal(r: Row, recent: Change | None, interval: float) -> str | None:
    """Why `r` may not be accepted now, or None."""
    if r.stored_fingerprint_sha256 is not None:
        return ("a known_hosts entry: the file holds the key itself, so there is nothing to "
                "accept; a stale line is removed (remediate), never accepted")
    if r.state == State.MISMATCH.value:
        return (f"state mismatch ({r.evidence}: {visible(r.reason)}): PI holds another "
                "certificate; fix it with `prime-tofu-exporter remediate`, do not accept it")
    if r.state == State.UNREACHABLE.value or r.live_fingerprint_sha256 is None:
        return f"unreachable ({visible(r.probe_error or r.reason)}): there is no live certificate to accept"
    if r.state == State.MATCH.value:
        return f"already match ({r.evidence}): nothing to accept"
    if recent is not None:
        before = recent.before.fingerprint if recent.before else None
        return (f"the live certificate changed within the last probe interval ({interval:g}s: "
                f"{(before or '-')[:16]}… -> {r.live_fingerprint_sha256[:16]}…): the integration "
                "you checked may have used the old one; check it again and accept after the "
                "next probe")
    if not is_key(r.entry):
        return "not a listcerts key (<address>_<port>); refusing to record it"
    return None


def _rows(snap: Snapshot, store: str) -> dict[str, Row]:
    """The store's rows by key; AcceptError when the store is not there or not readable now."""
    if store not in snap.stores:
        known = ", ".join(snap.stores) or "none"
        raise AcceptError(f"--store {store!r}: no such store in the configuration (stores: {known})")
    st = snap.stores[store]
    if st.last is None or not st.last.ok:
        why = st.last.error if st.last is not None else "never read"
        raise AcceptError(f"store {store} unreadable ({visible(why or 'unknown error')}): "
                          "cannot see its entries now")
    return {r.entry: r for r in rows(v for v in snap.views if v.store == store)}


def _select(by_key: Mapping[str, Row], store: str, entries: Sequence[str],
            all_unknown: bool) -> list[Row]:
    if all_unknown:
        return [r for r in by_key.values() if r.state == State.UNKNOWN.value]
    missing = [e for e in entries if e not in by_key]
    if missing:
        raise AcceptError(f"--entry {', '.join(visible(repr(e)) for e in missing)}: no such entry "
                          f"in store {store}; its keys are: {', '.join(sorted(by_key)) or 'none'}")
    return [by_key[e] for e in dict.fromkeys(entries)]


def make_accept_plan(
    snap: Snapshot,
    store: str,
    entries: Sequence[str],
    all_unknown: bool,
    recent_changes: Iterable[Change],
    interval: float,
) -> AcceptPlan:
    """`entries` named (or every `unknown` one) -> candidates and refusals. Raises AcceptError
    for an unknown store or key, or a store that could not be read."""
    selected = _select(_rows(snap, store), store, entries, all_unknown)
    bases = {v.entry.key: v.baseline for v in snap.views if v.store == store}
    changed: Mapping[str, Change] = {c.entry: c for c in sorted(recent_changes, key=lambda c: c.time)
                                     if c.store == store and fingerprint_moved(c)}
    roles = roles_of(snap.pairs)
    candidates, refusals = [], []
    for r in selected:
        why = _refusal(r, changed.get(r.entry), interval)
        if why is not None:
            refusals.append(Refusal(store, r.entry, why))
            continue
        assert r.live_fingerprint_sha256 is not None and r.live_spki_sha256 is not None
        role, peer = entry_role(r, roles)
        candidates.append(Candidate(
            store, r.entry, r.endpoint, r.live_fingerprint_sha256, r.live_spki_sha256,
            r.stored_subject, r.live_subject or "", role.value, peer,
            integration_check(role, _pair_of(snap, store)), r.state, r.evidence,
            bases.get(r.entry)))
    return AcceptPlan(store, tuple(candidates), tuple(refusals))


def render_accept(plan: AcceptPlan, operator: str, reason: str) -> str:
    """What will be recorded, for the operator to confirm. Peer text shown through `visible`."""
    lines = []
    if plan.candidates:
        n = len(plan.candidates)
        lines.append(f"About to record {n} attested {'baseline' if n == 1 else 'baselines'} on "
                     f"{plan.store} (operator {visible(operator)}, reason {visible(reason)!r}):")
        for c in plan.candidates:
            lines += [
                f"  {c.entry}  [{c.role}{' ' + c.peer if c.peer else ''}, {c.endpoint}]",
                f"      live certificate sha256 {c.fingerprint_sha256}",
                f"      live SPKI sha256        {c.spki_sha256}",
                f"      subject                 {visible(c.live_subject)}",
                f"      you checked that        {c.check}",
            ]
    for rf in plan.refusals:
        lines.append(f"refused: {rf.entry} on {rf.store}: {rf.why}")
    return "\n".join(lines)


# ---- after the "yes": has anything the operator was shown changed? ------------------------


@dataclass(frozen=True)
class Now:
    """One candidate entry as found after the confirmation: the database's record (read in
    the transaction that would write the attestation) and accept's own probe."""

    endpoint: str | None  # None: the entry left its store
    baseline: Baseline | None
    status: Status | None  # the last recorded verdict (any exporter on this storage path)
    live_fingerprint_sha256: str | None
    probe_error: str | None = None


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def _baseline_text(b: Baseline | None) -> str:
    if b is None:
        return "none"
    fp = f"{b.fingerprint_sha256[:16]}…" if b.fingerprint_sha256 else "pending"
    return f"{b.kind.value} since {_when(b.since)} (sha256 {fp})"


def _live_text(fp: str | None, error: str | None) -> str:
    return f"{fp[:16]}…" if fp else f"none ({visible(error or 'no certificate')})"


def what_changed(c: Candidate, now: Now) -> list[str]:
    """What differs between what was shown for `c` and `now`; empty when nothing did."""
    if now.endpoint is None:
        return ["the entry left the store (or its baseline was forgotten)"]
    diffs = []
    if now.endpoint != c.endpoint:
        diffs.append(f"endpoint {visible(c.endpoint)} -> {visible(now.endpoint)}")
    shown = (c.state, c.evidence)
    if now.status is None or (now.status.state, now.status.evidence) != shown:
        after = (f"{now.status.state} ({now.status.evidence})" if now.status is not None
                 else "not recorded")
        diffs.append(f"state {c.state} ({c.evidence}) -> {visible(after)}")
    if now.baseline != c.baseline:
        diffs.append(f"baseline {_baseline_text(c.baseline)} -> {_baseline_text(now.baseline)}")
    if now.live_fingerprint_sha256 != c.fingerprint_sha256:
        diffs.append(f"live sha256 {c.fingerprint_sha256[:16]}… -> "
                     f"{_live_text(now.live_fingerprint_sha256, now.probe_error)}")
    return diffs


def render_changed(store: str, changed: Mapping[str, Sequence[str]]) -> str:
    """The refusal after the "yes": each changed entry and what changed in it."""
    lines = []
    for entry, diffs in changed.items():
        lines.append(f"refused: {visible(entry)} on {store} changed after it was shown:")
        lines += [f"      {d}" for d in diffs]
    return "\n".join(lines)
