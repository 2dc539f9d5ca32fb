"""Remediation, text and JSON (pure): the CLI and the landing page print the same text.

Every piece of PI- or peer-supplied text (reasons, subjects, error strings) goes through
exporter.core.text.visible, so it stays on its own line; the only lines that hold a command are
the steps' own, built from validated keys of `mismatch` entries (exporter.remediate.plan)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from exporter.core.text import visible
from exporter.fleet.pairs import ABSENT, PairView
from exporter.remediate.plan import Plan, Role, StorePlan

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
        return f"{sp.store}{role}: UNREADABLE ({visible(sp.error)}); no plan for this server"
    if not sp.steps:
        return f"{sp.store}{role}: nothing to delete"
    noun = "entry" if len(sp.steps) == 1 else "entries"
    lines = [f"{sp.store}{role}: {len(sp.steps)} stale {noun}"]
    for s in sp.steps:
        what = f"{s.role} {s.peer}" if s.role == Role.HA_PEER else s.role
        lines.append(f"  {s.entry}  [{what}, {visible(s.endpoint)}]  evidence {s.evidence}: "
                     f"{visible(s.reason)}")
    lines.append("  commands (one per stale entry, verdict mismatch):")
    lines += [f"    {s.command}" for s in sp.steps]
    return "\n".join(lines)


def render_next(plan: Plan) -> str:
    parts = []
    if plan.followups:
        parts.append("Then:\n" + "\n".join(f"  - {f}" for f in plan.followups))
    if plan.verify:
        parts.append("Verify:\n" + "\n".join(f"  - {v}" for v in plan.verify))
    return "\n\n".join(parts)


def _render_pair(p: PairView) -> str:
    return (
        f"HA pair {p.name} (primary {p.primary}, secondary {p.secondary}):\n"
        + "\n".join(f"  {line}" for line in pair_health(p))
    )


def _render_deletions(plan: Plan) -> list[str]:
    """How many entries go, each server's part, then the servers with nothing to delete."""
    n = len(plan.steps)
    if n:
        parts = [f"Delete {n} stale {'entry' if n == 1 else 'entries'}, one server at a time, "
                 "in this order (in each server's admin CLI):"]
    else:
        parts = ["No entry is proven stale: nothing to delete."]
    parts += [render_store(sp) for sp in plan.stores if sp.steps or sp.error]
    idle = [sp.store for sp in plan.stores if not sp.steps and not sp.error]
    if idle and n:
        parts.append(f"Nothing to delete on: {', '.join(idle)}.")
    return parts


def render_plan(plan: Plan, with_next: bool = True) -> str:
    parts = [_render_pair(p) for p in plan.pairs]
    parts += _render_deletions(plan)
    for sk in plan.skipped:
        parts.append(f"Not deleting {visible(sk.entry)} on {sk.store}: {visible(sk.why)}")
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
