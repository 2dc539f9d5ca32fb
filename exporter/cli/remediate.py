"""`prime-tofu-exporter remediate`: plan, print, confirm, apply."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import asyncssh

from exporter.cli.confirm import confirm
from exporter.cli.loop import run_async
from exporter.config.model import Config
from exporter.core import exitcodes
from exporter.core.text import visible
from exporter.fleet.report import rows
from exporter.fleet.snapshot import Snapshot
from exporter.remediate.apply import Applier, Outcome, outcome_json
from exporter.remediate.hostkey_apply import FileOutcome, HostKeyApplier
from exporter.remediate.hostkey_plan import (
    FilePlan,
    HostKeyPlan,
    hostkey_files,
    make_hostkey_plan,
    remote_stores,
    with_file,
)
from exporter.remediate.hostkey_render import hostkey_plan_json, render_hostkey_plan
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


@dataclass(frozen=True)
class Plans:
    pi: Plan
    hostkeys: HostKeyPlan


def _read_files(plan: HostKeyPlan) -> HostKeyPlan:
    """Each local file's further stale lines (hostkey_plan.with_file); a file that cannot be
    read now keeps its plan, and --apply says why it stops."""
    out: list[FilePlan] = []
    for fp in plan.files:
        try:
            local = fp.file and fp.lines and not fp.remote  # a remote file: the plan as judged
            data = Path(fp.file).read_bytes() if local and fp.file else None
        except OSError:
            data = None
        out.append(with_file(fp, data) if data is not None else fp)
    return HostKeyPlan(tuple(out), plan.skipped)


def _plans(snap: Snapshot, files: dict[str, str | None], args: Options,
           remote: frozenset[str] = frozenset()) -> Plans:
    """The PI plan and the known_hosts plan of one snapshot; --store/--entry pick either."""
    all_rows = rows(snap.views)
    hk_entry = args.entry is not None and any(
        r.is_host_key and r.entry == args.entry for r in all_rows)
    hk_store = args.store is not None and (args.store in files or any(
        r.is_host_key and r.store == args.store for r in all_rows))
    hostkeys = _read_files(make_hostkey_plan(all_rows, files, args.store, args.entry, remote))
    if hk_entry or hk_store:
        return Plans(Plan((), (), (), ()), hostkeys)
    exclude = frozenset(files) | {r.store for r in all_rows if r.is_host_key}
    pi = make_plan(snap, args.store, args.entry, args.min_evidence, frozenset(exclude))
    return Plans(pi, hostkeys)


def _print_plans(plans: Plans, as_json: bool) -> None:
    if as_json:
        print(json.dumps(plan_json(plans.pi) | {"known_hosts": hostkey_plan_json(plans.hostkeys)},
                         indent=2))
        return
    parts = []
    if plans.pi.stores or plans.pi.skipped or not plans.hostkeys.files:
        parts.append(render_plan(plans.pi))
    if plans.hostkeys.files or plans.hostkeys.skipped:
        parts.append("known_hosts files:\n\n" + render_hostkey_plan(plans.hostkeys))
    print("\n\n".join(parts))


async def _apply_hostkeys(service: Service, plan: HostKeyPlan, args: Options, human: TextIO) -> int:
    """--apply for known_hosts files: confirm, remove exactly the stale lines, audit."""
    print(f"\nAbout to remove {len(plan.lines)} line(s), keeping every other byte:", file=human)
    for fp in plan.files:
        for s in fp.lines:
            print(f"  from {visible(fp.file or fp.store)}: line {s.line} ({visible(s.entry)})",
                  file=human)
    stop = confirm("delete", "nothing removed", args.yes, human)
    if stop is not None:
        return stop
    audit = audit_path(args.audit_file, args.storage_path)
    try:
        check_audit(audit)  # no removal that could not be audited
    except AuditError as e:
        print(f"{e}; nothing removed", file=sys.stderr)
        return EXIT_ERROR
    async def connect(store: str) -> asyncssh.SSHClientConnection:
        """A file on the store's host: the store's own session (host key verified)."""
        return await service.session(store).connection()

    applier = HostKeyApplier(audit, args.reason, say=lambda s: print(s, file=human, flush=True),
                             connect=connect)
    outcomes: list[FileOutcome] = await applier.apply(plan)
    for lost in applier.audit_errors:
        report_lost_audit(lost, sys.stderr)
    if not applier.audit_errors:
        print(f"audit log: {audit} (+{len(plan.lines)} lines)", file=human)
    if not all(o.ok for o in outcomes) or plan.skipped or applier.audit_errors:
        return EXIT_FAILED
    return EXIT_OK


def _report_unreadable(snap: Snapshot, plans: Plans) -> bool:
    unreadable = any(sp.error for sp in plans.pi.stores)
    for sp in plans.pi.stores:
        if sp.error:
            print(f"store {sp.store} unreadable: {visible(sp.error)}", file=sys.stderr)
    for fp in plans.hostkeys.files:
        st = snap.stores.get(fp.store)
        if st is not None and (st.last is None or not st.last.ok):
            unreadable = True
            why = st.last.error if st.last is not None and st.last.error else "never read"
            print(f"store {fp.store} unreadable: {visible(why)}", file=sys.stderr)
    return unreadable


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
            plans = _plans(snap, hostkey_files(config), args, remote_stores(config))
        except PlanError as e:
            print(f"{e}; nothing deleted", file=sys.stderr)
            return EXIT_ERROR
        unreadable = _report_unreadable(snap, plans)
        if not args.apply:
            _print_plans(plans, as_json)
            return _status(unreadable)
        if plans.hostkeys.files or plans.hostkeys.skipped:
            print(render_hostkey_plan(plans.hostkeys), file=human)
        if not plans.hostkeys.lines or plans.pi.steps:
            print(render_plan(plans.pi, with_next=False), file=human)
            code = await _apply(service, plans.pi, args, human, as_json, unreadable)
        else:
            code = _status(unreadable)
        if plans.hostkeys.lines:
            code = await _apply_hostkeys(service, plans.hostkeys, args, human) or code
        return code
    finally:
        await service.stop()


def run(config: Config, args: Options) -> int:
    try:
        return run_async(remediate(config, args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_FAILED
