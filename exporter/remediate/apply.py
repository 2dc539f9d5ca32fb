"""Remediation, the I/O edge: run only `deletecert` for keys that passed the listcerts key
grammar, one server at a time, re-list to verify, forget the deleted entries' baselines (so
the re-stored entry is witnessed anew) and append to an audit log."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporter.core.model import EntryView
from exporter.core.text import visible
from exporter.remediate.plan import Plan, PlanError, Step, StorePlan, deletecert_command
from exporter.service.service import Service
from exporter.sources.prime.ssh import PiSession, StoreReadError
from exporter.store.audit import AuditError, Operator, append_audit, current_operator
from exporter.store.database import StorageError

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


@dataclass
class Applier:
    service: Service
    audit_file: Path
    reason: str | None
    operator: Operator = field(default_factory=current_operator)
    say: Callable[[str], None] = print
    audit_errors: list[AuditError] = field(default_factory=list)  # each with its lost lines

    async def apply(self, plan: Plan) -> list[Outcome]:
        """One server at a time; a failure on one server leaves the later ones untouched."""
        outcomes: list[Outcome] = []
        failed = False
        for sp in plan.stores:
            if not sp.steps:
                continue
            if failed:
                why = ("the audit log could not be written" if self.audit_errors
                       else "an earlier server failed")
                outcomes += [Outcome(s, False, False, "", "not run", why) for s in sp.steps]
                continue
            done = await self._apply_store(sp)
            outcomes += done
            # No further deletes that could not be audited.
            failed = not all(o.ok for o in done) or bool(self.audit_errors)
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
            await self._run_steps(sp, session, ran)
            # Deleted for sure: forget the baseline now so a re-stored entry is witnessed anew.
            self.service.forget(
                sp.store, [s.entry for s, out, ok in ran if ok and command_confirmed(out, s.entry)]
            )
            outcomes = await self._verify(sp, ran)
        except StorageError as e:
            # The deletes ran on PI; only our own database failed (the baselines are kept): a
            # step not verified, like any other, not a configuration error.
            outcomes = [Outcome(s, True, False, out, "not verified", f"baseline kept: {e}")
                        for s, out, _ in ran]
        except BaseException as e:
            if not outcomes:
                outcomes = [Outcome(s, True, False, out, "not verified", f"{type(e).__name__}: {e}")
                            for s, out, _ in ran]
            raise
        finally:
            self._audit(outcomes)
        done = {o.step for o in outcomes}
        outcomes += [Outcome(s, False, False, "", "not run", "an earlier command on this server failed")
                     for s in sp.steps if s not in done]
        return outcomes

    def _audit(self, outcomes: list[Outcome]) -> None:
        try:
            append_audit(self.audit_file, (self._record(o) for o in outcomes if o.ran))
        except AuditError as e:  # reported with its lines by the command; the run goes on
            self.audit_errors.append(e)

    async def _run_steps(self, sp: StorePlan, session: PiSession,
                         ran: list[tuple[Step, str, bool]]) -> None:
        """deletecert for each step in order, stopping at the first failure. Appends to ran as
        it goes, so an interruption still leaves what already ran for the audit."""
        for step in sp.steps:
            command = deletecert_command(step.entry)  # rebuilt from the validated key
            self.say(f"{sp.store}# {command}")
            try:
                output = (await session.run(command)).strip()
            except StoreReadError as e:
                ran.append((step, f"session error: {e.message}", False))
                self.say(f"  failed: {visible(e.message)}")
                return  # the session is gone; do not guess what happened to the rest
            ok = not command_failed(output)
            ran.append((step, output, ok))
            self.say(f"  {visible(output) if output else '(no output)'}")
            if not ok:
                return

    async def _verify(self, sp: StorePlan, ran: list[tuple[Step, str, bool]]) -> list[Outcome]:
        cfg = self.service.config.store(sp.store)
        assert cfg is not None
        read = await self.service.read_store(cfg)  # listcerts again; re-stored entries witnessed
        if not read.ok or read.listing is None:
            return [Outcome(s, True, False, out, "not verified", f"re-list failed: {read.error}")
                    for s, out, _ in ran]
        present = {e.key for e in read.listing.entries}
        views = {v.entry.key: v for v in self.service.snapshot().views if v.store == sp.store}
        return [self._judge(sp.store, step, out, ok, present, views) for step, out, ok in ran]

    def _judge(self, store: str, step: Step, out: str, ok: bool, present: set[str],
               views: dict[str, EntryView]) -> Outcome:
        """One command's outcome from the keys listed again after the deletions."""
        if not ok:
            return Outcome(step, True, False, out, "still present" if step.entry in present
                           else "gone", "deletecert reported an error")
        if step.entry not in present:
            self.service.forget(store, [step.entry])
            return Outcome(step, True, True, out, "gone",
                           "absent from listcerts; PI stores the live certificate "
                           "on its next connection")
        if command_confirmed(out, step.entry):
            return _restored(step, out, views.get(step.entry))
        return Outcome(step, True, False, out, "still present",
                       "listed again and PI did not confirm a delete; baseline kept")

    def _record(self, o: Outcome) -> dict[str, Any]:
        s = o.step
        return {
            "time": _now(), "unix_time": round(time.time(), 3), **self.operator.audit_fields(),
            "store": s.store, "entry": s.entry, "endpoint": s.endpoint, "role": s.role,
            "evidence": s.evidence, "evidence_reason": s.reason, "reason": self.reason,
            "command": s.command, "output": o.output[:2000],
            "result": "deleted" if o.ok else "failed", "verified": o.verified, "detail": o.detail,
            "live_fingerprint_sha256": o.live_fingerprint_sha256 or s.live_fingerprint_sha256,
        }


def _restored(step: Step, out: str, v: EntryView | None) -> Outcome:
    """PI confirmed the delete but lists the key again: it has already reconnected."""
    fp = v.probe.cert.fingerprint_sha256 if v and v.probe and v.probe.cert else None
    state = v.verdict.state.value if v else "unknown"
    return Outcome(
        step, True, True, out, "re-stored",
        f"PI confirmed the delete and has already reconnected and stored the certificate "
        f"it sees now; witnessed live sha256 {fp[:16] + '…' if fp else 'not yet probed'}, "
        f"state {state}", fp)


def outcome_json(o: Outcome) -> dict[str, Any]:
    return {"store": o.step.store, "entry": o.step.entry, "command": o.step.command, "ran": o.ran,
            "ok": o.ok, "output": o.output, "verified": o.verified, "detail": o.detail}
