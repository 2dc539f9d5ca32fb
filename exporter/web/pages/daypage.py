"""Pure: the landing page's day-one parts, as HTML fragments: the recent changes, when each
entry's state began, who attested an `attested` entry, when and why (the help for `unknown`
entries is exporter.web.pages.landing's). Every PI, peer or operator text goes through `visible`, then
HTML escaping."""

from __future__ import annotations

import html
import time
from collections.abc import Sequence

from exporter.core.history import Change, status_text
from exporter.core.text import visible
from exporter.fleet.report import Row

RECENT = 20  # changes shown on the page; the rest: `history`, /api/v1/history


def _e(text: str) -> str:
    return html.escape(visible(text))


def when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t)) if t is not None else "-"


def since_cell(r: Row) -> str:
    return f"<td class='since'>{_e(when(r.state_since))}</td>"


def attestation_note(r: Row) -> str:
    """For an entry with an attested baseline: who accepted it, when, and the reason they
    typed (inert text: escaped, one line, never in a `fix` or `cmd` element). Else empty."""
    a = r.attestation
    if a is None:
        return ""
    return (f"<div class='attested'>attested by {_e(a.by)} at {_e(when(a.at))}: "
            f"{_e(a.reason)}</div>")


def recent_changes(changes: Sequence[Change], total_hint: str = "", base: str = "") -> str:
    """The newest changes first, as a table (or a sentence when there are none)."""
    if not changes:
        return "<h2 id='changes'>Recent changes</h2><p>No changes recorded yet.</p>"
    out = ["<h2 id='changes'>Recent changes</h2>",
           f"<p>Newest first{html.escape(total_hint)}; all of them: "
           "<code>prime-tofu-exporter history</code> or "
           f"<a href='{html.escape(base)}/api/v1/history'>{html.escape(base)}/api/v1/history</a>.</p>",
           "<table><tr><th>time</th><th>store</th><th>entry</th><th>before</th><th>after</th>"
           "<th>why</th></tr>"]
    for c in changes:
        out.append(f"<tr><td>{_e(when(c.time))}</td><td>{_e(c.store)}</td><td>{_e(c.entry)}</td>"
                   f"<td>{_e(status_text(c.before))}</td><td>{_e(status_text(c.after))}</td>"
                   f"<td>{_e(c.reason)}</td></tr>")
    out.append("</table>")
    return "\n".join(out)
