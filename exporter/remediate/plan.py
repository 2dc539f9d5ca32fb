"""Remediation, planning (pure): a snapshot becomes a Plan: which entries to delete on
which server, in what order, and why."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from exporter.core.model import Evidence, State, StoreStatus
from exporter.core.pi_commands import LISTCERTS, deletecert, is_key
from exporter.fleet.pairs import PairView
from exporter.fleet.report import Row, rows
from exporter.fleet.roles import Role, entry_role, roles_of
from exporter.fleet.snapshot import Snapshot

_EVIDENCE_RANK = {e.value: i for i, e in enumerate(Evidence)}  # strongest first



class PlanError(ValueError):
    """The operator named something that is not there; nothing is done."""


def deletecert_command(key: str) -> str:
    if not is_key(key):
        raise PlanError(f"{key!r} is not a listcerts key (<address>_<port>); refusing to build a command")
    return deletecert(key)


@dataclass(frozen=True)
class Step:
    """One deletecert of one entry proven stale."""

    store: str
    entry: str
    endpoint: str
    evidence: str
    reason: str
    role: str
    peer: str | None  # the PI server the entry points at, for HA roles
    stored_subject: str
    live_fingerprint_sha256: str | None

    @property
    def command(self) -> str:
        return deletecert_command(self.entry)


@dataclass(frozen=True)
class StorePlan:
    store: str
    steps: tuple[Step, ...]
    pair: str | None = None
    pair_role: str | None = None  # "primary" | "secondary"
    error: str | None = None  # the store could not be read: its plan is unknown


@dataclass(frozen=True)
class Skip:
    """An entry the operator named (or the evidence floor excluded) that will not be deleted."""

    store: str
    entry: str
    state: str
    evidence: str
    why: str


@dataclass(frozen=True)
class Plan:
    stores: tuple[StorePlan, ...]
    pairs: tuple[PairView, ...]
    followups: tuple[str, ...]
    verify: tuple[str, ...]
    skipped: tuple[Skip, ...] = ()

    @property
    def steps(self) -> tuple[Step, ...]:
        return tuple(s for sp in self.stores for s in sp.steps)


# ---- planning (pure) --------------------------------------------------------------------


def _store_order(snap: Snapshot) -> list[tuple[str, str | None, str | None]]:
    """The seed's order: each pair's primary, then its secondary; then unpaired stores."""
    out: list[tuple[str, str | None, str | None]] = []
    seen: set[str] = set()
    for p in snap.pairs:
        for name, role in ((p.primary, "primary"), (p.secondary, "secondary")):
            if name not in seen and name in snap.stores:
                out.append((name, p.name, role))
                seen.add(name)
    out += [(name, None, None) for name in snap.stores if name not in seen]
    return out


def _step(r: Row, roles: dict[tuple[str, str], tuple[Role, str]]) -> Step:
    role, peer = entry_role(r, roles)
    deletecert_command(r.entry)  # a key outside the grammar never enters a plan
    return Step(r.store, r.entry, r.endpoint, r.evidence, r.reason, role.value, peer,
                r.stored_subject, r.live_fingerprint_sha256)


def _select(snap: Snapshot, store: str | None, entry: str | None) -> list[Row]:
    if store is not None and store not in snap.stores:
        known = ", ".join(snap.stores) or "none"
        raise PlanError(f"--store {store!r}: no such store in the configuration (stores: {known})")
    # Host-key entries (known_hosts) have their own plan: exporter.remediate.hostkey_plan.
    selected = [r for r in rows(snap.views)
                if (store is None or r.store == store) and not r.is_host_key]
    if entry is not None:
        selected = [r for r in selected if r.entry == entry]
        if not selected:
            where = f"store {store!r}" if store else "any readable store"
            raise PlanError(f"--entry {entry!r}: no such entry in {where}; run listcerts to see the keys")
    return selected


def _triage(r: Row, roles: dict[tuple[str, str], tuple[Role, str]], named: bool,
            min_evidence: str) -> Step | Skip | None:
    """One row: a step, a reason to leave it (Skip), or None when it is simply not stale."""
    if r.state != State.MISMATCH.value:
        if named:  # named explicitly: say why it stays
            return Skip(r.store, r.entry, r.state, r.evidence,
                        f"state {r.state}, not mismatch: {r.reason}")
        return None
    if _EVIDENCE_RANK.get(r.evidence, len(_EVIDENCE_RANK)) > _EVIDENCE_RANK[min_evidence]:
        return Skip(r.store, r.entry, r.state, r.evidence,
                    f"evidence {r.evidence} is weaker than --min-evidence {min_evidence}")
    try:
        return _step(r, roles)
    except PlanError as e:  # parsed, but not a key we would hand to a CLI
        return Skip(r.store, r.entry, r.state, r.evidence, str(e))


def _read_error(st: StoreStatus) -> str | None:
    if st.last is not None and not st.last.ok:
        return st.last.error or "unreadable"
    if st.last_success is None:
        return "never read"
    return None


def make_plan(
    snap: Snapshot,
    store: str | None = None,
    entry: str | None = None,
    min_evidence: str = Evidence.SUBJECT.value,
    exclude: frozenset[str] = frozenset(),
) -> Plan:
    """Which entries to delete where, in the seed's order. Only `mismatch` entries, ever.
    `exclude`: stores that are no PI server (known_hosts files): no part of this plan."""
    selected = _select(snap, store, entry)
    roles = roles_of(snap.pairs)
    by_store: dict[str, list[Step]] = {}
    skipped: list[Skip] = []
    for r in selected:
        got = _triage(r, roles, entry is not None, min_evidence)
        if isinstance(got, Skip):
            skipped.append(got)
        elif got is not None:
            by_store.setdefault(r.store, []).append(got)
    plans = []
    for name, pair, pair_role in _store_order(snap):
        if (store is None or name == store) and name not in exclude:
            error = _read_error(snap.stores[name])
            # An unreadable store's entries are as last read: what it holds now is unknown, so
            # nothing is planned there (its StorePlan says why) until it reads again.
            held = () if error else tuple(by_store.get(name, ()))
            plans.append(StorePlan(name, held, pair, pair_role, error))
    pairs = tuple(p for p in snap.pairs if store is None or store in (p.primary, p.secondary))
    steps = [s for sp in plans for s in sp.steps]
    return Plan(tuple(plans), pairs, followups(steps, pairs), verify_steps(steps), tuple(skipped))


def followups(steps: list[Step], pairs: Iterable[PairView]) -> tuple[str, ...]:
    out = []
    for p in pairs:
        ha = [s for s in steps if s.store in (p.primary, p.secondary)
              and s.role in (Role.HA_PEER, Role.SELF)]
        if ha:
            out.append(
                f"Re-register HA once, from the primary {p.primary} (pair {p.name}), after the "
                f"deletes on both servers: Administration > Settings > High Availability."
            )
    for s in steps:
        if s.role == Role.ISE:
            out.append(f"Re-add ISE on {s.store} ({s.endpoint}): Administration > Servers > ISE Servers.")
        elif s.role == Role.OTHER:
            out.append(
                f"Reconnect {s.endpoint} from {s.store} (e.g. re-run the DNA Center integration): "
                f"PI stores the current certificate on the next connection."
            )
        elif s.role == Role.HA_PEER and not any(s.store in (p.primary, p.secondary) for p in pairs):
            out.append(f"Re-register HA on {s.store}: Administration > Settings > High Availability.")
    return tuple(dict.fromkeys(out))


def verify_steps(steps: list[Step]) -> tuple[str, ...]:
    if not steps:
        return ()
    servers = ", ".join(dict.fromkeys(s.store for s in steps))
    return (
        f"On {servers}: `{LISTCERTS}` again: each deleted entry is gone until PI reconnects, "
        f"then back with the peer's current certificate.",
        "`prime-tofu-exporter check` (same --storage.path as the running exporter): the re-stored "
        "entries show `match`, evidence baseline (witnessed), once the exporter has seen them again.",
    )
