"""`prime-tofu-exporter accept`: read the store now, show what will be recorded, confirm,
record the attested baselines in the database and the audit log.

It runs beside a serving exporter on the same --storage.path: the attestation is one SQLite
transaction, and the running exporter notices the commit (PRAGMA data_version) on its next
probe cycle.
"""

from __future__ import annotations

import asyncio
import dataclasses
import getpass
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from exporter import exitcodes
from exporter.accept.plan import AcceptError, AcceptPlan, make_accept_plan, render_accept
from exporter.baseline import StorageError
from exporter.config import Config
from exporter.confirm import confirm
from exporter.history import Attestation, Change
from exporter.remediate.apply import AuditError, append_audit, check_audit, report_lost_audit
from exporter.service import Service
from exporter.text import visible

EXIT_OK, EXIT_FAILED, EXIT_ERROR = exitcodes.OK, exitcodes.FAILED, exitcodes.ERROR
AUDIT_NAME = "remediation-audit.jsonl"  # one audit log for every change an operator makes


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
    operator: str | None = None  # default: the OS user running the command


def _audit_record(a: Attestation, c: Change, subject: str) -> dict[str, Any]:
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(a.time)),
        "unix_time": round(a.time, 3), "action": "accept", "operator": a.operator,
        "store": a.store, "entry": a.entry, "endpoint": a.endpoint, "reason": a.reason,
        "fingerprint_sha256": a.fingerprint_sha256, "spki_sha256": a.spki_sha256,
        "live_subject": subject,
        "state_before": c.before.state if c.before else None,
        "evidence_before": c.before.evidence if c.before else None,
        "result": "attested",
    }


def _record(service: Service, plan: AcceptPlan, args: Options, operator: str,
            audit: Path) -> list[Change]:
    """One transaction for all of them (all or none), then the audit lines."""
    now = time.time()
    items = [Attestation(c.store, c.entry, c.endpoint, c.fingerprint_sha256, c.spki_sha256,
                         operator, args.reason, now) for c in plan.candidates]
    changes = service.db.attest(items)
    subjects = [c.live_subject for c in plan.candidates]
    append_audit(audit, (_audit_record(a, ch, subj)
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
    operator = args.operator or getpass.getuser()
    as_json = args.output == "json"
    human = sys.stderr if as_json else sys.stdout
    store_cfg = config.store(args.store)
    assert store_cfg is not None
    service = Service(config, args.storage_path)
    try:
        snap = await service.run_once([args.store])
        interval = store_cfg.probe_interval
        recent = service.db.history(store=args.store, since=time.time() - interval)
        try:
            plan = make_accept_plan(snap, args.store, args.entries, args.all_unknown, recent, interval)
        except AcceptError as e:
            print(f"{e}; nothing recorded", file=sys.stderr)
            return EXIT_ERROR
        return _decide_and_record(service, plan, args, operator, human)
    finally:
        await service.stop()


def _decide_and_record(service: Service, plan: AcceptPlan, args: Options, operator: str,
                       human: TextIO) -> int:
    text = render_accept(plan, operator, args.reason)
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
    audit = Path(args.audit_file or Path(args.storage_path) / AUDIT_NAME)
    try:
        check_audit(audit)  # no attestation that could not be audited
    except AuditError as e:
        print(f"{e}; nothing recorded", file=sys.stderr)
        return EXIT_ERROR
    try:
        changes = _record(service, plan, args, operator, audit)
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
        print(json.dumps({"store": args.store, "operator": visible(operator), "reason": args.reason,
                          "accepted": [asdict(c) for c in plan.candidates],
                          "audit_file": str(audit)}, indent=2))
    return EXIT_OK


def run(config: Config, args: Options) -> int:
    try:
        return asyncio.run(accept(config, args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_FAILED
