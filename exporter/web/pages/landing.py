"""The landing page and the entries JSON: pure functions of a snapshot.

Built for an operator with 20,000 entries: the overall and per-store summaries come first,
then what needs action (unreadable stores, mismatches and their fixes), then a bounded
number of rows per store, worst first, with a link to the full list as JSON.

Every peer- or PI-supplied string (subjects, SANs, reasons, error text, keys) goes through
`exporter.core.text.visible` and then HTML escaping, so it is one line of inert text. A fix line
(class `fix`) is only ever built by `deletecert_command` from the key of an entry whose
verdict is `mismatch`; a key outside the listcerts grammar gets no command at all.

Host-key entries (known_hosts stores) show the stored and live `SHA256:` fingerprints and, for
a stale line, its number and the `ssh-keyscan` command (class `cmd`) built by
exporter.remediate.hostkey_plan from a validated host name only, with the out-of-band warning.
"""

from __future__ import annotations

import html
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import quote

from exporter.accept.plan import accept_command, check_for
from exporter.core.history import Change
from exporter.core.model import EntryView, State
from exporter.fleet.report import Row, row, rows
from exporter.fleet.snapshot import Snapshot
from exporter.remediate.hostkey_plan import (
    HostKeyPlan,
    HostKeyPlanError,
    StaleLine,
    make_hostkey_plan,
    sha256_text,
)
from exporter.remediate.hostkey_render import VERIFY_WARNING
from exporter.remediate.plan import Plan, PlanError, Step, deletecert_command, make_plan
from exporter.remediate.render import pair_health
from exporter.web.pages import daypage
from exporter.web.pages.markup import breakable, hex_groups, inert, with_code

ROWS_PER_STORE = 100  # at most; fewer when there are many stores (PAGE_ROWS in all)
PAGE_ROWS = 2000
_ORDER = {State.MISMATCH.value: 0, State.UNREACHABLE.value: 1, State.UNKNOWN.value: 2,
          State.MATCH.value: 3}
STATES = tuple(_ORDER)
_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;max-width:100%;box-sizing:border-box}
table{border-collapse:collapse;width:100%;table-layout:fixed;margin:.5em 0}
td,th{border:1px solid #ccc;padding:.25em .4em;text-align:left;vertical-align:top;
overflow-wrap:anywhere}
code,pre{background:#f6f8fa;padding:.1em .3em;overflow-wrap:anywhere;white-space:pre-wrap}
.fix,.fp,.cmd{user-select:all;-webkit-user-select:all;font-family:monospace;cursor:copy}
.fix{background:#fff8c5;display:inline-block;padding:.15em .4em}
.match{color:#1a7f37}.mismatch{color:#cf222e;font-weight:bold}.unknown{color:#9a6700}
.unreachable{color:#6e7781}.down{color:#cf222e;font-weight:bold}.up{color:#1a7f37}
.state{overflow-wrap:normal;word-break:normal}
.summary td,.summary th{text-align:right}.summary td:first-child,.summary th:first-child{text-align:left}
.states span{display:inline-block;margin-right:1.2em;font-size:1.2em}
.attested{color:#57606a;font-size:.9em;margin-top:.2em}
"""


_t = inert


def _fix(key: str) -> str:
    try:
        return f"<code class='fix'>{breakable(deletecert_command(key))}</code>"
    except PlanError:
        return "<span>no command: the key is not a listcerts key</span>"


def _store_status(snap: Snapshot, name: str) -> tuple[str, str, str]:  # Status
    """(css class, status text, last successful read) for one store."""
    st = snap.stores[name]
    when = (time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(st.last_success.timestamp))
            if st.last_success else "never")
    if st.last is None:
        return "unknown", "not read yet", when
    if st.last.ok:
        return "up", "up", when
    reason = st.last.error_reason.value if st.last.error_reason else "?"
    return "down", f"DOWN ({reason}: {st.last.error or '-'})", when


def _accept_html(snap: Snapshot, r: Row, hints: tuple[str | None, str | None]) -> str:
    """For an `unknown` entry: what to check, and the `accept` command that records it (an
    exporter command, not a fix on PI: class `cmd`, never `fix`)."""
    command = accept_command(r.store, r.entry, *hints)
    return (f"<div class='unknown'>Unknown because: {_t(r.reason)}.<br>"
            f"Once {_t(check_for(snap, r))}, record it:<br>"
            f"<code class='cmd'>{_t(command)}</code></div>")


def _keyscan(s: StaleLine) -> str:
    try:
        return f"<code class='cmd'>{_t(s.keyscan)}</code>"
    except HostKeyPlanError:
        return "<span>no command: the host is not a plain host name or address</span>"


def _hostkey_fix(r: Row) -> str:
    """A stale host-key line: its number and the command that shows the key now. Built only by
    make_hostkey_plan, which skips a host name that is not plain (then: why, no command)."""
    plan = make_hostkey_plan([r], {})
    if plan.lines:
        s = plan.lines[0]
        return (f"<div class='mismatch'>stale line {s.line}; see the key now:</div>{_keyscan(s)}"
                "<div>verify it out of band, then <code>remediate --apply</code> removes the line</div>")
    if plan.skipped:
        return f"<span>not removable here: {_t(plan.skipped[0].why)}</span>"
    return ""


def _hostkey_row_html(r: Row) -> str:
    """A known_hosts entry: the stored key's and the live key's SHA256: fingerprints in the
    subject and fingerprint columns, the stale line's fix for a mismatch."""
    live = sha256_text(r.live_fingerprint_sha256)
    fp = f"<code class='fp'>{breakable(live)}</code>" if live else _t(r.probe_error or "-")
    stored = sha256_text(r.stored_fingerprint_sha256)
    line = f"line {r.line}: " if r.line else ""
    fix = _hostkey_fix(r) if r.state == State.MISMATCH.value else ""
    return (f"<tr><td class='key'>{breakable(r.entry)}</td><td>{breakable(r.endpoint)}</td>"
            f"<td class='state {r.state}'>{_t(r.state)}</td><td>{_t(r.evidence)}: {_t(r.reason)}</td>"
            f"{daypage.since_cell(r)}<td>{line}<code class='fp'>{breakable(stored or '-')}</code></td>"
            f"<td>{_t(r.key_type or '-')}</td><td>{fp}</td><td>{fix}</td></tr>")


def _row_html(snap: Snapshot, r: Row, hints: tuple[str | None, str | None]) -> str:
    if r.is_host_key:
        return _hostkey_row_html(r)
    fp = (f"<code class='fp'>{hex_groups(r.live_fingerprint_sha256)}</code>" if r.live_fingerprint_sha256
          else _t(r.probe_error or "-"))
    if r.state == State.MISMATCH.value:
        fix = _fix(r.entry)
    elif r.state == State.UNKNOWN.value:
        fix = _accept_html(snap, r, hints)
    else:
        fix = ""
    return (f"<tr><td class='key'>{breakable(r.entry)}</td><td>{breakable(r.endpoint)}</td>"
            f"<td class='state {r.state}'>{_t(r.state)}</td><td>{_t(r.evidence)}: {_t(r.reason)}"
            f"{daypage.attestation_note(r)}</td>"
            f"{daypage.since_cell(r)}<td>{breakable(r.stored_subject)}</td>"
            f"<td>{breakable(r.live_subject or '-')}</td>"
            f"<td>{fp}</td><td>{fix}</td></tr>")


# The state column fits "unreachable" and a bold "mismatch" at 1280 px (they never wrap).
_HEAD = ("<table class='entries'><colgroup><col style='width:9%'><col style='width:9%'>"
         "<col style='width:9%'><col style='width:15%'><col style='width:8%'>"
         "<col style='width:13%'><col style='width:12%'><col style='width:11%'>"
         "<col style='width:14%'></colgroup>"
         "<tr><th>entry</th><th>endpoint</th><th>state</th><th>evidence: why</th><th>since</th>"
         "<th>stored subject</th><th>live subject</th><th>live SHA-256</th><th>fix</th></tr>")


_HK_HEAD = _HEAD.replace("<th>stored subject</th><th>live subject</th><th>live SHA-256</th>",
                         "<th>stored key (line: SHA256)</th><th>key type</th><th>live SHA256</th>")


def _step_html(s: Step) -> str:
    what = f"{s.role} {s.peer}" if s.peer and s.role == "ha-peer" else s.role
    return (f"<li>{breakable(s.entry)} [{_t(what)}, {breakable(s.endpoint)}] evidence {_t(s.evidence)}: "
            f"{_t(s.reason)}<br>{_fix(s.entry)}</li>")


def _counts(items: Iterable[EntryView]) -> Counter[str]:
    return Counter(v.verdict.state.value for v in items)


Status = tuple[str, str, str]  # css class, status text, last successful read


def _summary(snap: Snapshot, by_store: dict[str, list[EntryView]], status: dict[str, Status],
             order: list[str]) -> list[str]:
    total = _counts(r for items in by_store.values() for r in items)
    down = sum(1 for s in status.values() if s[0] == "down")
    parts = [
        "<h2 id='summary'>Summary</h2><p class='states' id='overall'>",
        *(f"<span class='{s}'>{total.get(s, 0)} {s}</span>" for s in STATES),
        f"<span class='{'down' if down else 'up'}'>{len(snap.stores) - down} of "
        f"{len(snap.stores)} stores readable</span></p>",
        "<table class='summary'><tr><th>store</th><th>status</th>",
        *(f"<th>{s}</th>" for s in STATES),
        "<th>entries</th><th>last successful read</th></tr>",
    ]
    for name in order:
        cls, text, when = status[name]
        c = _counts(by_store[name])
        parts.append(
            f"<tr><td><a href='#store-{quote(name)}'>{_t(name)}</a></td>"
            f"<td class='{cls}'>{_t(text)}</td>"
            + "".join(f"<td class='{s if c.get(s) else ''}'>{c.get(s, 0)}</td>" for s in STATES)
            + f"<td>{len(by_store[name])}</td><td>{html.escape(when)}</td></tr>")
    parts.append("</table>")
    return parts


def _fixes(plan: Plan) -> list[str]:
    if not plan.steps:
        return []
    parts = [f"<h2 id='fixes'>Fixes: {len(plan.steps)} entries proven stale</h2>"
             "<p>Delete them one server at a time, in this order, in each server's "
             "admin CLI (<code>prime-tofu-exporter remediate</code> prints the same plan; "
             "<code>--apply</code> runs it and writes an audit log).</p>"]
    for sp in plan.stores:
        role = f" ({_t(sp.pair_role)} of {_t(sp.pair)})" if sp.pair else ""
        if sp.error:
            parts.append(f"<h3>{_t(sp.store)}{role}: unreadable ({_t(sp.error)}); no plan for "
                         "this server</h3>")
        elif sp.steps:
            noun = "entry" if len(sp.steps) == 1 else "entries"
            parts.append(f"<h3>{_t(sp.store)}{role}: {len(sp.steps)} stale {noun}</h3>"
                         "<ol class='plan'>" + "".join(_step_html(s) for s in sp.steps) + "</ol>")
    if plan.followups or plan.verify:
        parts.append("<h3>Then</h3><ul class='then'>"
                     + "".join(f"<li>{with_code(f)}</li>" for f in plan.followups)
                     + "".join(f"<li>{with_code(v)}</li>" for v in plan.verify) + "</ul>")
    return parts


def _hostkey_line_html(s: StaleLine) -> str:
    return (f"<li>line {s.line}: {_t(s.host)} port {s.port} {_t(s.key_type)}<br>"
            f"stored <code class='fp'>{_t(s.stored_sha256)}</code>, live "
            f"<code class='fp'>{_t(s.live_fingerprint or 'not seen')}</code><br>"
            f"{_t(s.reason)}<br>see the key it presents now: {_keyscan(s)}</li>")


def _hostkey_fixes(plan: HostKeyPlan) -> list[str]:
    """The known_hosts files' stale lines, as `remediate` prints them."""
    if not plan.lines:
        return []
    parts = [f"<h2 id='hostkey-fixes'>Host keys: {len(plan.lines)} stale known_hosts lines</h2>"
             f"<p>{_t(VERIFY_WARNING)} <code>prime-tofu-exporter remediate --apply</code> removes "
             "exactly these lines, keeps every other byte and leaves FILE.old, as "
             "<code>ssh-keygen -R</code> does.</p>"]
    for fp in plan.files:
        if fp.lines:
            where = f" ({_t(fp.file)})" if fp.file else ""
            parts.append(f"<h3>{_t(fp.store)}{where}</h3><ol class='plan'>"
                         + "".join(_hostkey_line_html(s) for s in fp.lines) + "</ol>")
    return parts


def _pairs(plan: Plan) -> list[str]:
    parts = []
    for pair in plan.pairs:
        parts.append(f"<h2 id='pair-{quote(pair.name)}'>HA pair {_t(pair.name)}</h2><p>primary "
                     f"{_t(pair.primary)}, secondary {_t(pair.secondary)}</p><ul>")
        for line, link in zip(pair_health(pair), pair.links, strict=True):
            parts.append(f"<li class='{html.escape(link.state)}'>{with_code(line)}</li>")
        parts.append("</ul>")
    return parts


def _store_section(snap: Snapshot, name: str, items: list[EntryView], per_store: int,
                   hints: tuple[str | None, str | None], base: str) -> list[str]:
    status = _store_status(snap, name)
    cls, text, when = status
    # Sort the views, and make rows only for those shown: a 100,000-entry store shows 100.
    items = sorted(items, key=lambda v: _ORDER.get(v.verdict.state.value, 9))
    url = html.escape(f"{base}/api/v1/entries?store={quote(name)}")
    parts = [f"<h2 id='store-{quote(name)}'>{_t(name)}</h2>"
             f"<p>Store <span class='{cls}'>{_t(text)}</span>; last successful read "
             f"{html.escape(when)}; {len(items)} entries (<a href='{url}'>all as JSON</a>).</p>"]
    if items:
        host_keys = items[0].entry.key_type != "" or items[0].entry.stored_fingerprint is not None
        shown = "".join(_row_html(snap, r, hints) for r in rows(items[:per_store]))
        parts.append((_HK_HEAD if host_keys else _HEAD) + shown + "</table>")
    if len(items) > per_store:
        parts.append(f"<p>{len(items) - per_store} more entries, worst first above: "
                     f"<a href='{url}'>the full list as JSON</a>.</p>")
    return parts


def landing_page(snap: Snapshot, version: str, telemetry_path: str = "/metrics",
                 recent: Sequence[Change] = (),
                 hints: tuple[str | None, str | None] = (None, None), base: str = "",
                 files: Mapping[str, str | None] | None = None) -> bytes:
    """`recent`: the newest recorded changes; `hints`: the config file and storage path the
    `accept` commands for unknown entries name; `base`: the path every link starts with
    (--web.external-url's or --web.route-prefix's, "" at the root); `files`: each known_hosts
    store's file."""
    by_store: dict[str, list[EntryView]] = {name: [] for name in snap.stores}
    for v in snap.views:
        by_store.setdefault(v.store, []).append(v)
    status = {name: _store_status(snap, name) for name in snap.stores}
    # Unreadable stores first, then by number of mismatches.
    order = sorted(snap.stores, key=lambda n: (
        status[n][0] != "down", -_counts(by_store[n]).get(State.MISMATCH.value, 0), n))
    e = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        f"<title>prime-tofu-exporter</title><style>{_CSS}</style></head><body>",
        f"<h1>prime-tofu-exporter {e(version)}</h1>",
        f"<p><a href='{e(base + telemetry_path)}'>Metrics</a> · "
        f"<a href='{e(base)}/api/v1/entries'>Entries (JSON)</a> · "
        f"<a href='{e(base)}/api/v1/history'>History (JSON)</a> · "
        f"<a href='{e(base)}/-/healthy'>Health</a> · <a href='{e(base)}/-/ready'>Ready</a></p>",
        *_summary(snap, by_store, status, order),
    ]
    # The same plans `prime-tofu-exporter remediate` prints: PI servers', then known_hosts files'.
    host_key_rows = [row(v) for v in snap.views  # only these: 100,000 PI rows cost a scrape
                     if v.entry.key_type or v.entry.stored_fingerprint is not None]
    plan = make_plan(snap, exclude=frozenset(files or ()) | {r.store for r in host_key_rows})
    hostkeys = make_hostkey_plan(host_key_rows, files or {})
    parts += (_fixes(plan) + _hostkey_fixes(hostkeys) + _pairs(plan)
              + [daypage.recent_changes(recent, base=base)])
    per_store = max(10, min(ROWS_PER_STORE, PAGE_ROWS // max(1, len(snap.stores))))
    for name in order:
        parts += _store_section(snap, name, by_store[name], per_store, hints, base)
    parts.append("</body></html>")
    return "\n".join(parts).encode()
