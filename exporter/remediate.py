"""Remediation: from `mismatch` to fixed, in the order the seed's runbook does it.

Pure in the middle: a snapshot becomes a Plan (which entries to delete on which server, in
what order, why), and a Plan becomes text or JSON; the CLI and the landing page print the
same text. I/O at the edge: `apply` runs only `deletecert` for keys that passed the listcerts
key grammar, one server at a time, re-lists to verify, forgets the deleted entries'
baselines (so the re-stored entry is witnessed anew) and appends to an audit log.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO

from exporter import exitcodes
from exporter.commands import LISTCERTS, deletecert, is_key
from exporter.config import Config
from exporter.model import Evidence, State
from exporter.pairs import ABSENT, PairView
from exporter.prime.ssh import PiSession, StoreReadError
from exporter.report import Row, rows
from exporter.service import Service
from exporter.snapshot import Snapshot

_ISE_RE = re.compile(r"(?<![a-z0-9])ise(?![a-z0-9])", re.IGNORECASE)
_EVIDENCE_RANK = {e.value: i for i, e in enumerate(Evidence)}  # strongest first

EXIT_OK, EXIT_FAILED, EXIT_ERROR = exitcodes.OK, exitcodes.FAILED, exitcodes.ERROR


class PlanError(ValueError):
    """The operator named something that is not there; nothing is done."""


def deletecert_command(key: str) -> str:
    if not is_key(key):
        raise PlanError(f"{key!r} is not a listcerts key (<address>_<port>); refusing to build a command")
    return deletecert(key)


class Role(StrEnum):
    HA_PEER = "ha-peer"  # the other PI server of an HA pair
    SELF = "self"  # the PI server's own certificate (127.0.0.1_8082 and the like)
    ISE = "ise"
    OTHER = "other"  # DNA Center or anything else PI connects to


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


def _roles(pairs: Iterable[PairView]) -> dict[tuple[str, str], tuple[Role, str]]:
    roles: dict[tuple[str, str], tuple[Role, str]] = {}
    for p in pairs:
        for link in p.links:
            role = Role.SELF if link.peer == link.store else Role.HA_PEER
            for key in link.entries:
                roles[(link.store, key)] = (role, link.peer)
    return roles


def _step(r: Row, roles: dict[tuple[str, str], tuple[Role, str]]) -> Step:
    role, peer = roles.get((r.store, r.entry), (None, None))
    if role is None:
        ise = _ISE_RE.search(r.stored_subject) or _ISE_RE.search(r.live_subject or "")
        role = Role.ISE if ise else Role.OTHER
    deletecert_command(r.entry)  # a key outside the grammar never enters a plan
    return Step(r.store, r.entry, r.endpoint, r.evidence, r.reason, role.value, peer,
                r.stored_subject, r.live_fingerprint_sha256)


def make_plan(
    snap: Snapshot,
    store: str | None = None,
    entry: str | None = None,
    min_evidence: str = Evidence.SUBJECT.value,
) -> Plan:
    """Which entries to delete where, in the seed's order. Only `mismatch` entries, ever."""
    if store is not None and store not in snap.stores:
        known = ", ".join(snap.stores) or "none"
        raise PlanError(f"--store {store!r}: no such store in the configuration (stores: {known})")
    selected = [r for r in rows(snap.views) if store is None or r.store == store]
    if entry is not None:
        selected = [r for r in selected if r.entry == entry]
        if not selected:
            where = f"store {store!r}" if store else "any readable store"
            raise PlanError(f"--entry {entry!r}: no such entry in {where}; run listcerts to see the keys")
    floor = _EVIDENCE_RANK[min_evidence]
    roles = _roles(snap.pairs)
    by_store: dict[str, list[Step]] = {}
    skipped: list[Skip] = []
    for r in selected:
        if r.state != State.MISMATCH.value:
            if entry is not None:  # named explicitly: say why it stays
                skipped.append(Skip(r.store, r.entry, r.state, r.evidence,
                                    f"state {r.state}, not mismatch: {r.reason}"))
            continue
        if _EVIDENCE_RANK.get(r.evidence, len(_EVIDENCE_RANK)) > floor:
            skipped.append(Skip(r.store, r.entry, r.state, r.evidence,
                                f"evidence {r.evidence} is weaker than --min-evidence {min_evidence}"))
            continue
        try:
            step = _step(r, roles)
        except PlanError as e:  # parsed, but not a key we would hand to a CLI
            skipped.append(Skip(r.store, r.entry, r.state, r.evidence, str(e)))
            continue
        by_store.setdefault(r.store, []).append(step)
    plans = []
    for name, pair, pair_role in _store_order(snap):
        if store is not None and name != store:
            continue
        st = snap.stores[name]
        error = None
        if st.last is not None and not st.last.ok:
            error = st.last.error or "unreadable"
        elif st.last_success is None:
            error = "never read"
        plans.append(StorePlan(name, tuple(by_store.get(name, ())), pair, pair_role, error))
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


# ---- text and JSON (pure) ---------------------------------------------------------------

_DIRECTION = {
    ("primary", "secondary"): "primary trusts secondary",
    ("primary", "primary"): "primary trusts itself",
    ("secondary", "primary"): "secondary trusts primary",
    ("secondary", "secondary"): "secondary trusts itself",
}


def _side(p: PairView, name: str) -> str:
    return "primary" if name == p.primary else "secondary"


def pair_health(p: PairView) -> list[str]:
    """The pair in the seed's terms, one line per direction (and each side's self entry)."""
    out = []
    for link in p.links:
        words = _DIRECTION[(_side(p, link.store), _side(p, link.peer))]
        if link.state == ABSENT:
            detail = f"no entry on {link.store}"
        else:
            noun = "entry" if len(link.entries) == 1 else "entries"
            detail = f"{noun} {', '.join(link.entries)} on {link.store}"
        out.append(f"{words}: {link.state} ({detail})")
    return out


def render_store(sp: StorePlan) -> str:
    """One PI server's part of the plan: why each entry goes, then the commands to paste."""
    role = f" ({sp.pair_role} of {sp.pair})" if sp.pair else ""
    if sp.error:
        return f"{sp.store}{role}: UNREADABLE ({sp.error}); no plan for this server"
    if not sp.steps:
        return f"{sp.store}{role}: nothing to delete"
    noun = "entry" if len(sp.steps) == 1 else "entries"
    lines = [f"{sp.store}{role}: {len(sp.steps)} stale {noun}"]
    for s in sp.steps:
        what = f"{s.role} {s.peer}" if s.role == Role.HA_PEER else s.role
        lines.append(f"  {s.entry}  [{what}, {s.endpoint}]  evidence {s.evidence}: {s.reason}")
    lines += [f"    {s.command}" for s in sp.steps]
    return "\n".join(lines)


def render_next(plan: Plan) -> str:
    parts = []
    if plan.followups:
        parts.append("Then:\n" + "\n".join(f"  - {f}" for f in plan.followups))
    if plan.verify:
        parts.append("Verify:\n" + "\n".join(f"  - {v}" for v in plan.verify))
    return "\n\n".join(parts)


def render_plan(plan: Plan, with_next: bool = True) -> str:
    parts = []
    for p in plan.pairs:
        parts.append(
            f"HA pair {p.name} (primary {p.primary}, secondary {p.secondary}):\n"
            + "\n".join(f"  {line}" for line in pair_health(p))
        )
    n = len(plan.steps)
    if n:
        parts.append(f"Delete {n} stale {'entry' if n == 1 else 'entries'}, one server at a time, "
                     "in this order (in each server's admin CLI):")
    else:
        parts.append("No entry is proven stale: nothing to delete.")
    parts += [render_store(sp) for sp in plan.stores if sp.steps or sp.error]
    idle = [sp.store for sp in plan.stores if not sp.steps and not sp.error]
    if idle and n:
        parts.append(f"Nothing to delete on: {', '.join(idle)}.")
    for sk in plan.skipped:
        parts.append(f"Not deleting {sk.entry} on {sk.store}: {sk.why}")
    rest = render_next(plan) if with_next else ""
    if rest:
        parts.append(rest)
    return "\n\n".join(parts)


def plan_json(plan: Plan) -> dict[str, Any]:
    return {
        "pairs": [
            {"name": p.name, "primary": p.primary, "secondary": p.secondary,
             "health": pair_health(p),
             "links": [asdict(link) | {"direction": _DIRECTION[(_side(p, link.store), _side(p, link.peer))]}
                       for link in p.links]}
            for p in plan.pairs
        ],
        "stores": [
            {"store": sp.store, "pair": sp.pair, "pair_role": sp.pair_role, "error": sp.error,
             "steps": [asdict(s) | {"command": s.command} for s in sp.steps]}
            for sp in plan.stores
        ],
        "skipped": [asdict(s) for s in plan.skipped],
        "followups": list(plan.followups),
        "verify": list(plan.verify),
    }


# ---- applying (the I/O edge) ------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    step: Step
    ran: bool
    ok: bool  # the deletion is proven: gone from the list, or PI confirmed it and re-stored
    output: str
    verified: str  # gone | re-stored | still present | not verified | not run
    detail: str
    live_fingerprint_sha256: str | None = None


def command_failed(output: str) -> bool:
    """PI (IOS-style) starts error lines with `%`; a key may contain `%` (IPv6 zone id)."""
    return any(line.strip().startswith("%") for line in output.splitlines()) or (
        "invalid input" in output.lower()
    )


def command_confirmed(output: str, key: str) -> bool:
    return not command_failed(output) and "deleted" in output.lower() and key in output


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def append_audit(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Append-only JSON lines, flushed to disk before we go on to the next server."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, sort_keys=True, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


@dataclass
class Applier:
    service: Service
    audit_file: Path
    reason: str | None
    operator: str = field(default_factory=getpass.getuser)
    say: Callable[[str], None] = print

    async def apply(self, plan: Plan) -> list[Outcome]:
        """One server at a time; a failure on one server leaves the later ones untouched."""
        outcomes: list[Outcome] = []
        failed = False
        for sp in plan.stores:
            if not sp.steps:
                continue
            if failed:
                outcomes += [Outcome(s, False, False, "", "not run", "an earlier server failed")
                             for s in sp.steps]
                continue
            done = await self._apply_store(sp)
            outcomes += done
            failed = not all(o.ok for o in done)
        return outcomes

    def _session(self, name: str) -> PiSession:
        cfg = self.service.config.store(name)
        if cfg is None:
            raise PlanError(f"store {name!r} left the configuration")
        return self.service.session(name)  # closed by service.stop()

    async def _apply_store(self, sp: StorePlan) -> list[Outcome]:
        cfg = self.service.config.store(sp.store)
        assert cfg is not None
        session = self._session(sp.store)
        ran: list[tuple[Step, str, bool]] = []  # step, output, command ok
        outcomes: list[Outcome] = []
        try:
            for step in sp.steps:
                command = deletecert_command(step.entry)  # rebuilt from the validated key
                self.say(f"{sp.store}# {command}")
                try:
                    output = (await session.run(command)).strip()
                except StoreReadError as e:
                    ran.append((step, f"session error: {e.message}", False))
                    self.say(f"  failed: {e.message}")
                    break  # the session is gone; do not guess what happened to the rest
                ok = not command_failed(output)
                ran.append((step, output, ok))
                self.say(f"  {output or '(no output)'}")
                if not ok:
                    break
            # Deleted for sure: forget the baseline now so a re-stored entry is witnessed anew.
            self.service.forget(
                sp.store, [s.entry for s, out, ok in ran if ok and command_confirmed(out, s.entry)]
            )
            outcomes = await self._verify(sp, ran)
        except BaseException as e:
            if not outcomes:
                outcomes = [Outcome(s, True, False, out, "not verified", f"{type(e).__name__}: {e}")
                            for s, out, _ in ran]
            raise
        finally:
            append_audit(self.audit_file, (self._record(o) for o in outcomes if o.ran))
        done = {o.step for o in outcomes}
        outcomes += [Outcome(s, False, False, "", "not run", "an earlier command on this server failed")
                     for s in sp.steps if s not in done]
        return outcomes

    async def _verify(self, sp: StorePlan, ran: list[tuple[Step, str, bool]]) -> list[Outcome]:
        cfg = self.service.config.store(sp.store)
        assert cfg is not None
        read = await self.service.read_store(cfg)  # listcerts again; re-stored entries witnessed
        if not read.ok or read.listing is None:
            return [Outcome(s, True, False, out, "not verified", f"re-list failed: {read.error}")
                    for s, out, _ in ran]
        present = {e.key for e in read.listing.entries}
        views = {v.entry.key: v for v in self.service.snapshot().views if v.store == sp.store}
        outcomes = []
        for step, out, ok in ran:
            if not ok:
                outcomes.append(Outcome(step, True, False, out, "still present" if step.entry in present
                                        else "gone", "deletecert reported an error"))
            elif step.entry not in present:
                self.service.forget(sp.store, [step.entry])
                outcomes.append(Outcome(step, True, True, out, "gone",
                                        "absent from listcerts; PI stores the live certificate "
                                        "on its next connection"))
            elif command_confirmed(out, step.entry):
                v = views.get(step.entry)
                fp = v.probe.cert.fingerprint_sha256 if v and v.probe and v.probe.cert else None
                state = v.verdict.state.value if v else "unknown"
                outcomes.append(Outcome(
                    step, True, True, out, "re-stored",
                    f"PI confirmed the delete and has already reconnected and stored the certificate "
                    f"it sees now; witnessed live sha256 {fp[:16] + '…' if fp else 'not yet probed'}, "
                    f"state {state}", fp))
            else:
                outcomes.append(Outcome(step, True, False, out, "still present",
                                        "listed again and PI did not confirm a delete; baseline kept"))
        return outcomes

    def _record(self, o: Outcome) -> dict[str, Any]:
        s = o.step
        return {
            "time": _now(), "unix_time": round(time.time(), 3), "operator": self.operator,
            "store": s.store, "entry": s.entry, "endpoint": s.endpoint, "role": s.role,
            "evidence": s.evidence, "evidence_reason": s.reason, "reason": self.reason,
            "command": s.command, "output": o.output[:2000],
            "result": "deleted" if o.ok else "failed", "verified": o.verified, "detail": o.detail,
            "live_fingerprint_sha256": o.live_fingerprint_sha256 or s.live_fingerprint_sha256,
        }


def outcome_json(o: Outcome) -> dict[str, Any]:
    return {"store": o.step.store, "entry": o.step.entry, "command": o.step.command, "ran": o.ran,
            "ok": o.ok, "output": o.output, "verified": o.verified, "detail": o.detail}


# ---- the command ------------------------------------------------------------------------


def _confirm(plan: Plan, assume_yes: bool, out: TextIO) -> int | None:
    """None to go on; an exit code otherwise."""
    print(f"\nAbout to run {len(plan.steps)} commands, one server at a time:", file=out)
    for sp in plan.stores:
        for s in sp.steps:
            print(f"  on {sp.store}: {s.command}", file=out)
    if assume_yes:
        return None
    if not sys.stdin.isatty():
        print("refusing to delete without confirmation: no terminal; pass --yes to confirm",
              file=sys.stderr)
        return EXIT_ERROR
    print("Type 'yes' to run them: ", end="", file=out, flush=True)
    try:
        answer = sys.stdin.readline().strip().lower()
    except KeyboardInterrupt:
        answer = ""
    if answer != "yes":
        print("not confirmed; nothing deleted", file=out)
        return EXIT_FAILED
    return None


async def remediate(config: Config, args: argparse.Namespace) -> int:
    if args.store is not None and config.store(args.store) is None:
        known = ", ".join(s.name for s in config.stores)
        print(f"--store {args.store!r}: no such store in the configuration (stores: {known})",
              file=sys.stderr)
        return EXIT_ERROR
    as_json = args.output == "json"
    human = sys.stderr if as_json else sys.stdout
    service = Service(config, args.storage_path)
    try:
        snap = await service.run_once([args.store] if args.store else None)
        try:
            plan = make_plan(snap, args.store, args.entry, args.min_evidence)
        except PlanError as e:
            print(f"{e}; nothing deleted", file=sys.stderr)
            return EXIT_ERROR
        unreadable = any(sp.error for sp in plan.stores)
        for sp in plan.stores:
            if sp.error:
                print(f"store {sp.store} unreadable: {sp.error}", file=sys.stderr)
        if not args.apply:
            print(json.dumps(plan_json(plan), indent=2) if as_json else render_plan(plan))
            return EXIT_ERROR if unreadable else EXIT_OK
        print(render_plan(plan, with_next=False), file=human)
        if not plan.steps:
            if as_json:
                print(json.dumps(plan_json(plan) | {"applied": []}, indent=2))
            print("nothing deleted", file=human)
            return EXIT_FAILED if plan.skipped else (EXIT_ERROR if unreadable else EXIT_OK)
        stop = _confirm(plan, args.yes, human)
        if stop is not None:
            return stop
        audit = Path(args.audit_file or Path(args.storage_path) / "remediation-audit.jsonl")
        applier = Applier(service, audit, args.reason, say=lambda s: print(s, file=human, flush=True))
        print("", file=human)
        outcomes = await applier.apply(plan)
        print("\nResult:", file=human)
        for o in outcomes:
            mark = "ok  " if o.ok else "FAIL"
            print(f"  {mark} {o.step.store} {o.step.entry}: {o.verified}; {o.detail}", file=human)
        print(f"audit log: {audit} (+{sum(o.ran for o in outcomes)} lines)", file=human)
        rest = render_next(plan)
        if rest:
            print(f"\n{rest}", file=human)
        if as_json:
            print(json.dumps(plan_json(plan) | {"applied": [outcome_json(o) for o in outcomes],
                                                "audit_file": str(audit)}, indent=2))
        if not all(o.ok for o in outcomes) or plan.skipped:
            return EXIT_FAILED
        return EXIT_ERROR if unreadable else EXIT_OK
    finally:
        await service.stop()


def run(config: Config, args: argparse.Namespace) -> int:
    try:
        return asyncio.run(remediate(config, args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_FAILED
