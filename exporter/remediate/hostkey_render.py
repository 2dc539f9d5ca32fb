"""Remediation of known_hosts stores, text and JSON (pure): what `remediate` prints and the
landing page shows. Host-supplied text (entries, host names, reasons) goes through
exporter.core.text.visible; the only command lines are built from validated parts
(exporter.remediate.hostkey_plan)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from exporter.core.text import visible
from exporter.remediate.hostkey_plan import FilePlan, HostKeyPlan, StaleLine

VERIFY_WARNING = (
    "Verify each new fingerprint out of band (the host's console, its administrator, its "
    "provider's published keys) before trusting it: a changed key is also what an attacker "
    "in the middle presents. This command never adds a key."
)


def _where(fp: FilePlan) -> str:
    if not fp.file:
        return visible(fp.store)
    return f"{visible(fp.store)} ({visible(fp.file)}{' on its host, over SSH' if fp.remote else ''})"


def render_line(s: StaleLine) -> list[str]:
    live = s.live_fingerprint or "not seen"
    return [
        f"  line {s.line}: {visible(s.host)} port {s.port} {visible(s.key_type)}",
        f"    stored {s.stored_sha256}",
        f"    live   {visible(live)}",
        f"    why    {visible(s.reason)}",
        f"    see the key it presents now: {s.keyscan}",
    ]


def render_file(fp: FilePlan) -> str:
    if not fp.lines:
        return f"{_where(fp)}: no stale host key line"
    noun = "line" if len(fp.lines) == 1 else "lines"
    out = [f"{_where(fp)}: {len(fp.lines)} stale host key {noun}"]
    for s in fp.lines:
        out += render_line(s)
    numbers = ",".join(str(s.line) for s in fp.lines)
    out.append(f"  `remediate --apply` removes exactly line(s) {numbers} and keeps every other "
               "byte; the file as it was stays in FILE.old (as `ssh-keygen -R` leaves it)")
    return "\n".join(out)


def render_hostkey_plan(plan: HostKeyPlan) -> str:
    parts = [render_file(fp) for fp in plan.files]
    for sk in plan.skipped:
        parts.append(f"Not removing {visible(sk.entry)} from {visible(sk.store)}: {visible(sk.why)}")
    if plan.lines:
        parts.append(VERIFY_WARNING)
    return "\n\n".join(parts)


def hostkey_plan_json(plan: HostKeyPlan) -> dict[str, Any]:
    return {
        "files": [
            {"store": fp.store, "file": fp.file,
             "lines": [asdict(s) | {"stored_sha256": s.stored_sha256, "keyscan": s.keyscan}
                       for s in fp.lines]}
            for fp in plan.files
        ],
        "skipped": [asdict(s) for s in plan.skipped],
        "warning": VERIFY_WARNING if plan.lines else None,
    }
