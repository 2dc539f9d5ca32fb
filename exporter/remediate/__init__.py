"""Remediation, from `mismatch` to fixed, in the order the seed's runbook does it.

plan (pure): a snapshot becomes a Plan (which entries to delete on which server, in what
order, why); render (pure): a Plan becomes text or JSON, the same for the CLI and the landing
page; apply (I/O): the SSH applier; command: `prime-tofu-exporter remediate`.
"""

from exporter.remediate.apply import Applier, Outcome, command_confirmed, command_failed
from exporter.remediate.plan import (
    Plan,
    PlanError,
    Role,
    Skip,
    Step,
    StorePlan,
    deletecert_command,
    followups,
    make_plan,
    verify_steps,
)
from exporter.remediate.render import pair_health, plan_json, render_next, render_plan, render_store

__all__ = [
    "Applier", "Outcome", "Plan", "PlanError", "Role", "Skip", "Step", "StorePlan",
    "command_confirmed", "command_failed", "deletecert_command", "followups",
    "make_plan", "pair_health", "plan_json", "render_next", "render_plan", "render_store",
    "verify_steps",
]
