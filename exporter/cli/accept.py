"""`prime-tofu-exporter accept`: read the store now, show what will be recorded, confirm,
check that nothing shown has changed, record the attested baselines in the database and the
audit log.

It runs beside a serving exporter on the same --storage.path: the attestation is one SQLite
transaction, and the running exporter notices the commit (PRAGMA data_version) on its next
probe cycle. The confirmation may take minutes, and the world moves meanwhile (a certificate
regenerated, an entry deleted and re-stored and witnessed by the running exporter): after the
"yes" each entry is probed again, and the transaction that writes the attestations first
re-reads each entry's baseline and recorded state; if anything the operator was shown has
changed, it records nothing at all (all or nothing: the "yes" was for that list) and says
what changed, exit 2.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from exporter.accept.plan import (
    AcceptError,
    AcceptPlan,
    Candidate,
    Now,
    make_accept_plan,
    render_accept,
    render_changed,
    what_changed,
)
from exporter.cli.confirm import confirm
from exporter.cli.loop import run_async
from exporter.config.model import Config
from exporter.core import exitcodes
from exporter.core.history import Attestation, Change
from exporter.core.model import ProbeResult
from exporter.core.text import visible
from exporter.service.service import Service
from exporter.store.audit import (
    AuditError,
    Operator,
    append_audit,
    audit_path,
    check_audit,
    current_operator,
    report_lost_audit,
)
from exporter.store.database import Recorded, StorageError

EXIT_OK, EXIT_FAILED, EXIT_ERROR = exitcodes.OK, exitcodes.FAILED, exitcodes.ERROR


@dataclass(frozen=True)
class Options:
    storage_path: str
    store: str
    entries: Sequence[str] = ()
    all_unknown: bool = False
    reason: str = ""
    yes: bool = False
    output: str = "table"
    audit_file: str | None = None


class Changed(Exception):
    """Something the operator was shown changed before it could be recorded."""

    def __init__(self, changed: Mapping[str, Sequence[str]]) -> None:
        super().__init__(f"{len(changed)} entries changed")
        self.changed = changed


def _audit_record(a: Attestation, c: Change, subject: str, operator: Operator) -> dict[str, Any]:
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(a.time)),
        "unix_time": round(a.time, 3), "action": "accept", **operator.audit_fields(),
        "store": a.store, "entry": a.entry, "endpoint": a.endpoint, "reason": a.reason,
        "fingerprint_sha256": a.fingerprint_sha256, "spki_sha256": a.spki_sha256,
        "live_subject": subject,
        "state_before": c.before.state if c.before else None,
        "evidence_before": c.before.evidence if c.before else None,
        "result": "attested",
    }


async def _probe_again(service: Service, plan: AcceptPlan) -> dict[str, ProbeResult | None]:
    """Each candidate's endpoint, probed after the "yes": the certificate recorded must be
    the one presented now, not the one shown before the operator answered."""
    endpoints = {c.endpoint for c in plan.candidates}
    await service.probe_endpoints(endpoints)
    return {ep: service.probes.get(ep) for ep in endpoints}


def _verifier(plan: AcceptPlan, probes: Mapping[str, ProbeResult | None],
              ) -> Callable[[dict[tuple[str, str], Recorded]], None]:
    """The check run inside the attestation's transaction: raises Changed, rolling it back,
    when any candidate differs from what was shown."""
    def verify(recorded: dict[tuple[str, str], Recorded]) -> None:
        changed = {}
        for c in plan.candidates:
            diffs = what_changed(c, _now(c, recorded.get((c.store, c.entry)), probes.get(c.endpoint)))
            if diffs:
                changed[c.entry] = diffs
        if changed:
            raise Changed(changed)
    return verify


def _now(c: Candidate, rec: Recorded | None, probe: ProbeResult | None) -> Now:
    cert = probe.cert if probe is not None else None
    return Now(rec.endpoint if rec else None, rec.baseline if rec else None,
               rec.status if rec else None, cert.fingerprint_sha256 if cert else None,
               probe.error if probe is not None else "not probed")


def _record(service: Service, plan: AcceptPlan, args: Options, operator: Operator, audit: Path,
            probes: Mapping[str, ProbeResult | None]) -> list[Change]:
    """One transaction for all of them (all or none; Changed when anything shown changed),
    then the audit lines."""
    now = time.time()
    items = [Attestation(c.store, c.entry, c.endpoint, c.fingerprint_sha256, c.spki_sha256,
                         operator.name, args.reason, now) for c in plan.candidates]
    changes = service.attester.attest(items, _verifier(plan, probes))
    subjects = [c.live_subject for c in plan.candidates]
    append_audit(audit, (_audit_record(a, ch, subj, operator)
                         for a, ch, subj in zip(items, changes, subjects, strict=True)))
    return changes


async def accept(config: Config, args: Options) -> int:
    if config.store(args.store) is None:
        known = ", ".join(s.name for s in config.stores)
        print(f"--store {args.store!r}: no such store in the configuration (stores: {known}); "
              "nothing recorded", file=sys.stderr)
        return EXIT_ERROR
    reason = args.reason.strip()
    if not reason:
        print("--reason: say what you checked (e.g. 'HA page: Primary Active, secondary synced')",
              file=sys.stderr)
        return EXIT_ERROR
    args = dataclasses.replace(args, reason=reason)
    operator = current_operator()  # the real uid's account, never $USER or $LOGNAME
    as_json = args.output == "json"
    human = sys.stderr if as_json else sys.stdout
    store_cfg = config.store(args.store)
    assert store_cfg is not None
    service = Service(config, args.storage_path)
    try:
        snap = await service.run_once([args.store])
        interval = store_cfg.probe_interval
        recent = service.evidence.history(store=args.store, since=time.time() - interval)
        try:
            plan = make_accept_plan(snap, args.store, args.entries, args.all_unknown, recent, interval)
        except AcceptError as e:
            print(f"{e}; nothing recorded", file=sys.stderr)
            return EXIT_ERROR
        return await _decide_and_record(service, plan, args, operator, human)
    finally:
        await service.stop()


async def _decide_and_record(service: Service, plan: AcceptPlan, args: Options,
                             operator: Operator, human: TextIO) -> int:
    text = render_accept(plan, str(operator), args.reason)
    if text:
        print(text, file=human)
    if plan.refusals:
        print("nothing recorded: accept only entries that are `unknown`, reachable and steady",
              file=sys.stderr)
        return EXIT_ERROR
    if not plan.candidates:
        print(f"no unknown entries on {args.store}; nothing to accept", file=human)
        return EXIT_OK
    stop = confirm("record", "nothing recorded", args.yes, human)
    if stop is not None:
        return stop
    audit = audit_path(args.audit_file, args.storage_path)
    try:
        check_audit(audit)  # no attestation that could not be audited
    except AuditError as e:
        print(f"{e}; nothing recorded", file=sys.stderr)
        return EXIT_ERROR
    probes = await _probe_again(service, plan)
    try:
        changes = _record(service, plan, args, operator, audit, probes)
    except Changed as e:
        print(render_changed(plan.store, e.changed), file=human)
        print("nothing recorded: what you were shown is no longer so; look again "
              "(`prime-tofu-exporter check`), check the integration again, then accept again",
              file=sys.stderr)
        return EXIT_ERROR
    except (ValueError, StorageError) as e:
        print(f"{e}; nothing recorded, run accept again", file=sys.stderr)
        return EXIT_ERROR
    except AuditError as e:  # recorded in the database; only the audit lines are at risk
        report_lost_audit(e, sys.stderr)
        print(f"recorded: {len(plan.candidates)} entries attested on {args.store}, but not "
              "in the audit log", file=human)
        return EXIT_FAILED
    for ch in changes:
        print(f"recorded: {ch.store} {ch.entry} is attested (match, attested)", file=human)
    print(f"audit log: {audit} (+{len(changes)} lines); a running exporter on this "
          "--storage.path picks it up on its next probe cycle", file=human)
    if args.output == "json":
        print(json.dumps({"store": args.store, "operator": visible(operator.name),
                          **({"via_sudo_by": visible(operator.via_sudo)} if operator.via_sudo else {}),
                          "reason": args.reason,
                          "accepted": [asdict(c) for c in plan.candidates],
                          "audit_file": str(audit)}, indent=2))
    return EXIT_OK


def run(config: Config, args: Options) -> int:
    try:
        return run_async(accept(config, args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_FAILED
