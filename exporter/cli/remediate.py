"""`prime-tofu-exporter remediate`: plan, print, confirm, apply."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import TextIO

from exporter.cli.confirm import confirm
from exporter.cli.loop import run_async
from exporter.config.model import Config
from exporter.core import exitcodes
from exporter.core.text import visible
from exporter.remediate.apply import Applier, Outcome, outcome_json
from exporter.remediate.plan import Plan, PlanError, make_plan
from exporter.remediate.render import plan_json, render_next, render_plan
from exporter.service.service import Service
from exporter.store.audit import AuditError, audit_path, check_audit, report_lost_audit

# ---- the command ------------------------------------------------------------------------


def _confirm(plan: Plan, assume_yes: bool, out: TextIO) -> int | None:
    """None to go on; an exit code otherwise."""
    print(f"\nAbout to run {len(plan.steps)} commands, one server at a time:", file=out)
    for sp in plan.stores:
        for s in sp.steps:
            print(f"  on {sp.store}: {s.command}", file=out)
    return confirm("delete", "nothing deleted", assume_yes, out)

EXIT_OK, EXIT_FAILED, EXIT_ERROR = exitcodes.OK, exitcodes.FAILED, exitcodes.ERROR


@dataclass(frozen=True)
class Options:
    """What `remediate` was asked to do (the CLI fills it from its flags)."""

    storage_path: str
    store: str | None = None
    entry: str | None = None
    output: str = "table"
    min_evidence: str = "subject"
    apply: bool = False
    yes: bool = False
    reason: str | None = None
    audit_file: str | None = None


def _status(unreadable: bool) -> int:
    return EXIT_ERROR if unreadable else EXIT_OK


async def _apply(service: Service, plan: Plan, args: Options, human: TextIO, as_json: bool,
                 unreadable: bool) -> int:
    """--apply: confirm, run one server at a time, report and audit."""
    if not plan.steps:
        if as_json:
            print(json.dumps(plan_json(plan) | {"applied": []}, indent=2))
        print("nothing deleted", file=human)
        return EXIT_FAILED if plan.skipped else _status(unreadable)
    stop = _confirm(plan, args.yes, human)
    if stop is not None:
        return stop
    audit = audit_path(args.audit_file, args.storage_path)
    try:
        check_audit(audit)  # no delete that could not be audited
    except AuditError as e:
        print(f"{e}; nothing deleted", file=sys.stderr)
        return EXIT_ERROR
    applier = Applier(service, audit, args.reason, say=lambda s: print(s, file=human, flush=True))
    print("", file=human)
    outcomes = await applier.apply(plan)
    _report(plan, outcomes, applier, human, as_json)
    if not all(o.ok for o in outcomes) or plan.skipped or applier.audit_errors:
        return EXIT_FAILED
    return _status(unreadable)


def _report(plan: Plan, outcomes: list[Outcome], applier: Applier, human: TextIO,
            as_json: bool) -> None:
    print("\nResult:", file=human)
    for o in outcomes:
        mark = "ok  " if o.ok else "FAIL"
        print(f"  {mark} {o.step.store} {o.step.entry}: {o.verified}; {visible(o.detail)}",
              file=human)
    for lost in applier.audit_errors:
        report_lost_audit(lost, sys.stderr)
    if not applier.audit_errors:
        print(f"audit log: {applier.audit_file} (+{sum(o.ran for o in outcomes)} lines)",
              file=human)
    rest = render_next(plan)
    if rest:
        print(f"\n{rest}", file=human)
    if as_json:
        print(json.dumps(plan_json(plan) | {"applied": [outcome_json(o) for o in outcomes],
                                            "audit_file": str(applier.audit_file)}, indent=2))


async def remediate(config: Config, args: Options) -> int:
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
                print(f"store {sp.store} unreadable: {visible(sp.error)}", file=sys.stderr)
        if not args.apply:
            print(json.dumps(plan_json(plan), indent=2) if as_json else render_plan(plan))
            return _status(unreadable)
        print(render_plan(plan, with_next=False), file=human)
        return await _apply(service, plan, args, human, as_json, unreadable)
    finally:
        await service.stop()


def run(config: Config, args: Options) -> int:
    try:
        return run_async(remediate(config, args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_FAILED
