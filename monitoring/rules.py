"""The alert rules, as data built from Settings, and their YAML text.

Alert labels are the alert's identity in Prometheus and Alertmanager: a label whose value
changes while the problem persists (a live fingerprint, the evidence) ends the alert and starts
a new one whose `for:` counts from zero. So labels only identify (the target's labels, then
store, entry, endpoint, pair/peer, reason, and severity); everything that describes is in the
annotations: TofuCertificateMismatch reads its details as labels of a recorded series and drops
them from its own labels (records()). Target labels a site adds (namespace, pod,
env) pass through: no expression aggregates them away. `summary` is static per alert name, so
Alertmanager groups read well; the details are in `description`.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field

import yaml

from monitoring.settings import Settings

DELETECERT = "ncs certvalidation tofu-certs deletecert host"
# The store read error counter and its reasons (exporter.core.model.ErrorReason).
READ_ERRORS = "tofu_store_read_errors_total"
READ_ERROR_REASONS = (
    "connect (TCP or SSH connection refused or unreachable), timeout, auth (user, password or "
    "key rejected), hostkey (the server's SSH host key is not the one in known_hosts), command "
    "(the CLI refused listcerts or the prompt did not match), parse (the listing was not "
    "understood), storage (the exporter could not write its own baseline database: disk full "
    "or read-only volume)"
)


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    severity: str
    summary: str
    description: str
    identity: tuple[str, ...]  # labels besides the target ids and severity
    for_: str | None = None
    comment: str = ""
    extra: dict[str, str] = field(default_factory=dict)  # annotations between description and runbook
    hidden: tuple[str, ...] = ()  # labels of the expression's series the annotations read, then dropped


def _fmt(s: Settings, metric: str, labels: tuple[str, ...], *fixed: str) -> str:
    """A Go template expression that yields the PromQL selector of this alert's own series."""
    names = [*s.ids, *labels]
    matchers = ",".join([*fixed, *(f"{n}=%q" for n in names)])
    args = " ".join(f"$labels.{n}" for n in names)
    return f"printf `{metric}{{{matchers}}}` {args}"


DETAILS = "tofu:certificate_mismatch:details"
# What the details series adds to a mismatching entry's labels. The alert reads them into its
# annotations as $labels and drops them from its own labels (an empty label is no label), so
# they describe the alert without being part of its identity.
DETAIL_LABELS = ("stored_subject", "evidence", "live_subject", "fingerprint_sha256",
                 "previous_fingerprint_sha256", "pi")
LOOPBACK = 'host=~"127[.]0[.]0[.]1|::1|localhost"'
BRIDGE = "15m"  # how long a proven mismatch stays firing while its endpoint is unreachable
# known_hosts stores: tofu_store_info{kind="known_hosts"} tells them from PI servers (kind "pi").
KNOWN_HOSTS = 'kind="known_hosts"'
# What the host-key details add to a mismatching entry's labels (read into the annotations,
# dropped from the alert's labels): the key type from the entry key; host, port, endpoint and
# the stored key's SHA256: (its `subject`) from tofu_entry_info; the live key's SHA256: from
# tofu_live_certificate_info's `subject` (the kh branch's host-key exposition).
HOSTKEY_LABELS = ("key_type", "host", "port", "endpoint", "stored_fingerprint", "live_fingerprint")
# A host name the annotations may put into a command: a plain name or an address, no leading
# "-" (an option to ssh-keyscan), nothing a shell reads (as exporter.remediate.hostkey_plan).
PLAIN_HOST = "^([A-Za-z0-9_][A-Za-z0-9_.-]*|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)$"
KEYSCAN = "ssh-keyscan -t {{ $labels.key_type }} -p {{ or $labels.port \"22\" }} {{ $labels.host }}"
REMOVE = ("prime-tofu-exporter remediate --store {{ $labels.store }} --entry '{{ $labels.entry }}'"
          " --apply")
REFUSE = "(not shown: the host name is not a plain name or address; read the line in the file)"
PLAIN = (f'{{{{- $plain := and (match "{PLAIN_HOST}" (or $labels.host ""))'
         ' (match "^[a-z0-9][a-z0-9@.-]*$" (or $labels.key_type "")) -}}')


@dataclass(frozen=True)
class Record:
    name: str
    expr: str
    comment: str = ""


def records(s: Settings) -> list[Record]:
    """The details of each mismatching entry as labels of one series, which
    TofuCertificateMismatch reads: its annotations used 13 `query` templates per alert per
    evaluation (a query costs about 0.2 ms however simple: 187 ms with 100 mismatches)."""
    on, m = s.on, s.m
    key = on("store", "entry")

    def renamed(metric: str, label: str, to: str, *matchers: str) -> str:
        return f'label_replace({m(metric, *matchers)}, "{to}", "$1", "{label}", "(.*)")'

    mismatch = f"({m('tofu_certificate_mismatch')} == 1)"
    since_metric = m("tofu_certificate_state_since_timestamp_seconds")  # group_left(): keep every label
    entry = f"{DETAILS}_entry{{{s.selector}}}"
    certificates = f"{DETAILS}_certificates{{{s.selector}}}"
    live = (f"* on({on('endpoint')}) group_left(live_subject, fingerprint_sha256)"
            f" {renamed('tofu_live_certificate_info', 'subject', 'live_subject')}")
    earlier = renamed("tofu_certificate_previous_fingerprint_info", "fingerprint_sha256",
                      "previous_fingerprint_sha256")
    previous = f"* on({key}) group_left(previous_fingerprint_sha256) {earlier}"
    # The PI server whose own address the entry's endpoint is (it stores itself under
    # 127.0.0.1_<port>); any target: with the /probe job each store is its own. topk: one per
    # endpoint, so a misconfiguration cannot make the join many-to-many.
    cluster = [s.cluster_label] if s.cluster_label else []
    by = ", ".join([*cluster, "endpoint"])
    pi = (f"* on({by}) group_left(pi) topk by ({by}) (1, "
          f"{renamed('tofu_entry_info', 'store', 'pi', LOOPBACK)})")
    return [
        Record(
            name=f"{DETAILS}_entry",
            comment=("A mismatching entry with its endpoint, stored subject and evidence, valued at\n"
                     "the time its state began (0 while the history has none)."),
            expr=(
                "(\n"
                f"  0 * {mismatch} + on({key}) group_left() floor({since_metric})\n"
                f"  or on({key}) 0 * {mismatch}\n"
                ")\n"
                f"* on({key}) group_left(endpoint, stored_subject) "
                f"{renamed('tofu_entry_info', 'subject', 'stored_subject')}\n"
                f"* on({key}) group_left(evidence) {m('tofu_certificate_evidence_info')}\n"),
        ),
        Record(
            name=f"{DETAILS}_certificates",
            comment="...with the live certificate and the one seen before it, where there are...",
            expr=(f"{entry} {live} {previous}\n"
                  f"or on({key}) {entry} {live}\n"
                  f"or on({key}) {entry} {previous}\n"
                  f"or on({key}) {entry}\n"),
        ),
        Record(
            name=DETAILS,
            comment="...and the PI server the endpoint is, if it is one.",
            expr=f"{certificates} {pi}\nor on({key}) {certificates}\n",
        ),
    ]

def _hostkey_fix() -> dict[str, str]:
    """The mismatch's fix as annotations: the line, the command that shows the host's key now,
    the removal. A host name or key type that is not plain (a hostile file) is never put into a
    command: `$plain` (set first in each template that needs it) says so, and the annotation
    says to read the line instead."""
    keyscan, remove, refuse = KEYSCAN, REMOVE, REFUSE
    return {
        "line": '{{ if gt $value 0.0 }}{{ $value | printf "%.0f" }}{{ else }}(remediate prints it){{ end }}',
        "stored_fingerprint": '{{ or $labels.stored_fingerprint "(remediate prints it)" }}',
        "live_fingerprint": '{{ or $labels.live_fingerprint "(remediate prints it)" }}',
        "command": f"{PLAIN}{{{{ if $plain }}}}{keyscan}{{{{ else }}}}{refuse}{{{{ end }}}}",
        "remove": f"{PLAIN}{{{{ if $plain }}}}{remove}{{{{ else }}}}{refuse}{{{{ end }}}}",
        "verify": ("Check the new fingerprint out of band (the host's console, its administrator, "
                   "the provider's published keys) before any client trusts it: a changed key is "
                   "also what a machine in the middle presents. remediate never adds a key."),
    }


def hostkey_alerts(s: Settings) -> list[Alert]:
    """known_hosts stores (issue 22): the same per-entry families, told apart by the store's
    kind (tofu_store_info{kind="known_hosts"}); the PI alerts leave these stores out."""
    on, m = s.on, s.m
    key = on("store", "entry")
    known_hosts = m("tofu_store_info", KNOWN_HOSTS)
    target = " on {{ $labels.instance }}"
    typed = (f'label_replace({m("tofu_certificate_mismatch")} == 1, "key_type", "$1", "entry",'
             ' ".* ([^ ]+)")')
    stored = (f'label_replace({m("tofu_entry_info")}, "stored_fingerprint", "$1", "subject",'
              ' "(.*)")')
    live = (f'label_replace({m("tofu_live_certificate_info")}, "live_fingerprint", "$1",'
            ' "subject", "(.*)")')
    where = f"{typed}\n  * on({key}) group_left(host, port, endpoint, stored_fingerprint) {stored}"
    full = f"{where}\n  * on({on('endpoint')}) group_left(live_fingerprint) {live}"
    line = m("tofu_entry_line")
    labels = ", ".join(HOSTKEY_LABELS)
    details = ", ".join(HOSTKEY_LABELS[:-1])
    fix = _hostkey_fix()
    unknown = m("tofu_certificate_state", 'state="unknown"')
    return [
        Alert(
            name="TofuHostKeyMismatch",
            comment=(
                "A known_hosts line holds a key the host no longer presents for that type: every\n"
                "batch SSH client trusting the file stops at this host. The file holds the exact key\n"
                "(evidence stored), so no `for:`. Valued at the entry's line (tofu_entry_line); host,\n"
                "port and both fingerprints joined from tofu_entry_info and tofu_live_certificate_info\n"
                "where they are, read into the annotations and dropped from the labels; without them\n"
                "the alert still fires, valued 0."),
            expr=(
                "(\n"
                f"  {line} * on({key}) group_left({labels}) (\n  {full}\n  )\n"
                f"  or on({key})\n"  # not probed yet, or unreachable: no live key
                f"  {line} * on({key}) group_left({details}) (\n  {where}\n  )\n"
                f"  or on({key})\n"  # no line exported: valued 0, the annotations say so
                f"  0 * (\n  {where}\n  )\n"
                f"  or on({key})\n"
                f"  0 * {typed}\n"
                ")\n"
                f"and on({on('store')}) {known_hosts}\n"),
            severity="critical",
            identity=("store", "entry"),
            hidden=HOSTKEY_LABELS,
            summary="A host's SSH key no longer matches known_hosts; SSH clients trusting the file stop.",
            description=(
                PLAIN + "The known_hosts file of {{ $labels.store }} holds a {{ $labels.key_type }} key for"
                " {{ $labels.entry }}{{ if gt $value 0.0 }} on line {{ $value | printf \"%.0f\" }}{{ end }}"
                " that the host"
                " no longer presents: it offers that type with another key. Every batch SSH client"
                " trusting this file (automation, CI, backups) stops at this host with `REMOTE HOST"
                " IDENTIFICATION HAS CHANGED` or `Host key verification failed`. Stored key"
                f" {fix['stored_fingerprint']}; live key {fix['live_fingerprint']}."
                " See the key it presents now:"
                f" {{{{ if $plain }}}}`{KEYSCAN}`{{{{ else }}}}{REFUSE}{{{{ end }}}}."
                f" {fix['verify']} Then remove the stale line"
                f"{{{{ if $plain }}}}: `{REMOVE}` (keeps every other byte, leaves FILE.old){{{{ end }}}}."),
            extra=fix,
        ),
        Alert(
            name="TofuHostKeyUnknown",
            comment=(
                "Usually a line of a key type the host no longer offers while another of its lines\n"
                "matches: harmless to OpenSSH's default client, fatal to one that speaks only that\n"
                "type. Never removed by remediate; context, not a page."),
            expr=(
                "max without (state) (\n"
                f"  ({unknown} == 1)\n"
                f"  * on({key}) group_left(host, port) {m('tofu_entry_info')}\n"
                ")\n"
                f"and on({on('store')}) {known_hosts}\n"),
            for_="1d",
            severity="info",
            identity=("store", "entry"),
            hidden=("host", "port"),
            summary="A known_hosts entry has been undecided for a day; usually its key type is gone.",
            description=(
                "For a day the exporter could not decide the known_hosts entry {{ $labels.entry }} of"
                " {{ $labels.store }}: usually the host no longer offers this key type while another of"
                " its lines still matches, so OpenSSH's default client connects but a client that"
                " speaks only this type fails. `prime-tofu-exporter check --store {{ $labels.store }}`"
                " gives the reason; `ssh-keyscan -p {{ or $labels.port \"22\" }} <host>` lists the types the"
                " host offers. Once you know the type was dropped on purpose, remove its line by hand"
                " (remediate removes only proven mismatches)."),
        ),
        Alert(
            name="TofuKnownHostsUnparsedLines",
            comment=(
                "Lines OpenSSH skips as invalid: a host they were meant to pin is trusted by another\n"
                "line or by none, and the exporter checks none of them."),
            expr=(f"{m('tofu_store_unparsed_lines')} > 0\n"
                  f"and on({on('store')}) {known_hosts}\n"),
            for_="15m",
            severity="warning",
            identity=("store",),
            summary="Lines of a known_hosts file do not parse; OpenSSH and the exporter skip them.",
            description=(
                "{{ $value | printf \"%.0f\" }} lines of the known_hosts file of {{ $labels.store }}"
                f"{target} do not parse. OpenSSH skips such lines too, so a host they were meant to"
                " pin is trusted by another line or by none, and no verdict covers them. The landing"
                " page and `prime-tofu-exporter check` list each with its line number and reason"
                " (escaped). Fix or delete each line; `ssh-keygen -F <host> -f <file>` shows what"
                " OpenSSH reads for a host."),
        ),
        Alert(
            name="TofuKnownHostsUnresolvedLines",
            comment=(
                "Hashed lines and patterns name no host by themselves: only the store's `resolve:`\n"
                "list tells which hosts to probe. The keys of lines it does not name are not checked."),
            expr=f"{m('tofu_store_unresolved_lines')} > 0\n",
            for_="1h",
            severity="info",
            identity=("store",),
            summary="known_hosts lines name no host the exporter probes; their keys are not checked.",
            description=(
                "{{ $value | printf \"%.0f\" }} key lines of the known_hosts file of"
                f" {{{{ $labels.store }}}}{target} name no host the exporter can probe: hashed hosts"
                " (`|1|...`) or patterns (`*`, `?`, `!`) that match no name of the store's `resolve:`"
                " list. Their keys are not checked, so a rotated host key behind them raises no"
                " TofuHostKeyMismatch. Add the host names (or `[host]:port`) to the store's"
                " `resolve:` list and reload; `ssh-keygen -F <name> -f <file>` says whether a name"
                " matches a hashed line. Lines of hosts long gone can go: `ssh-keygen -R <name> -f"
                " <file>`."),
        ),
    ]


def alerts(s: Settings) -> list[Alert]:
    on, m = s.on, s.m
    key = on("store", "entry")
    unknown = m("tofu_certificate_state", 'state="unknown"')
    unreachable = m("tofu_certificate_state", 'state="unreachable"')
    evidence = '{{ or $labels.evidence "unknown" }}'
    stored_subject = '{{ or $labels.stored_subject "unknown" }}'
    live_subject = '{{ or $labels.live_subject "(not probed)" }}'
    live_sha = '{{ or $labels.fingerprint_sha256 "(not probed)" }}'
    since = "{{ if gt $value 0.0 }}{{ humanizeTimestamp $value }}{{ else }}unknown{{ end }}"
    previous = '{{ or $labels.previous_fingerprint_sha256 "(not seen)" }}'
    target = " on {{ $labels.instance }}"
    known_hosts = m("tofu_store_info", KNOWN_HOSTS)

    return [
        Alert(
            name="TofuCertificateMismatch",
            comment=(
                "The verdict is the exporter's (evidence, not guesswork). Identity: the entry and the\n"
                "endpoint it points at; the evidence and the live certificate are read into the\n"
                "annotations, so a certificate that changes again, or evidence that moves (subject to\n"
                "baseline), keeps the alert firing.\n"
                "No `for:`: a mismatch is a successful probe that presented another certificate than\n"
                "the one PI stored (baseline, pin, log, subject: proof, not a transient), so it pages at\n"
                "the first evaluation that sees it. What is transient is not reaching the endpoint: an\n"
                "entry proven mismatched within 15m that is now `unreachable` keeps the alert firing\n"
                "(third clause; after 15m TofuProbeFailing says why). A match or the entry's removal\n"
                "(the deletecert) resolves it at once."),
            expr=(
                "(\n"
                f"  {DETAILS}{{{s.selector}}}\n"
                f"  or on({key})\n"  # the details' joins failed: alert without them
                f"  0 * ({m('tofu_certificate_mismatch')} == 1)"
                f" * on({key}) group_left(endpoint) {m('tofu_entry_info')}\n"
                f"  or on({key})\n"
                f"  0 * (max_over_time({m('tofu_certificate_mismatch')}[{BRIDGE}]) == 1"
                f" and on({key}) {unreachable} == 1)"
                f" * on({key}) group_left(endpoint) {m('tofu_entry_info')}\n"
                ")\n"
                f"unless on({on('store')}) {known_hosts}\n"),  # TofuHostKeyMismatch
            severity="critical",
            identity=("store", "entry", "endpoint"),
            hidden=DETAIL_LABELS,
            summary="A PI server holds a stale TOFU certificate and rejects the peer.",
            description=(
                "{{ $labels.store }} stored the certificate of {{ $labels.entry }} ({{ $labels.endpoint }})"
                " on first use, and the certificate that endpoint presents now differs"
                f" (evidence: {evidence}).{{{{ if gt $value 0.0 }}}} In mismatch since"
                " {{ humanizeTimestamp $value }}"
                "{{ with $labels.previous_fingerprint_sha256 }}; before that the endpoint presented SHA-256"
                " {{ . }}{{ end }}.{{ end }}"
                f" Stored subject: {stored_subject}; live subject: {live_subject}; live SHA-256: {live_sha}."
                " PI rejects this connection (HA registration, ISE or DNA Center integration) until the"
                " entry is deleted. Fix: on {{ $labels.store }} run"
                f" `{DELETECERT} {{{{ $labels.entry }}}}`."),
            extra={
                "evidence": evidence,
                "stored_subject": stored_subject,
                "live_subject": live_subject,
                "fingerprint_sha256": live_sha,
                "since": since,
                "previous_fingerprint_sha256": previous,
                "command": f"{DELETECERT} {{{{ $labels.entry }}}}",
                "follow_up": (
                    "{{- $pi := $labels.pi -}}"
                    " {{- if $pi -}}"
                    " {{ $labels.entry }} is PI server {{ $pi }} (it stores itself under this address):"
                    " after the delete, re-register HA from the primary (Administration > Settings > High"
                    " Availability > HA Configuration > Check Readiness > Register)."
                    " {{- else -}}"
                    " After the delete: if {{ $labels.entry }} is an ISE server, re-add it (Administration >"
                    " Servers > ISE Servers > Add ISE Server > Save); if it is the HA peer, re-register HA"
                    " (Administration > Settings > High Availability > Register); if it is DNA Center,"
                    " re-establish co-existence."
                    " {{- end }} Verify: `ncs certvalidation tofu-certs listcerts` on {{ $labels.store }}"
                    " shows {{ $labels.entry }} again and this alert resolves."),
            },
        ),
        Alert(
            name="TofuHAPeerMismatch",
            comment=(
                "The seed's failure: both servers of an HA pair (configured under `pairs:`) hold a\n"
                "stale entry for the pair, the peer's or their own. One alert per stale direction,\n"
                "only while both sides are stale; a one-sided stale entry is TofuCertificateMismatch."),
            expr=(
                f"({m('tofu_ha_pair_peer_mismatch')} == 1)\n"
                f"and on({on('pair')})\n"
                "(\n"
                f"  count by ({on('pair')}) (\n"
                f"    count by ({on('pair', 'store')}) ({m('tofu_ha_pair_peer_mismatch')} == 1)\n"
                "  ) >= 2\n"
                ")\n"),
            for_="5m",
            severity="critical",
            identity=("pair", "store", "peer"),
            summary="Both PI servers of an HA pair hold stale TOFU entries; HA registration fails.",
            description=(
                "Both PI servers of HA pair {{ $labels.pair }} hold stale TOFU entries;"
                " {{ $labels.store }} holds a stale entry for"
                " {{ if eq $labels.store $labels.peer }}itself{{ else }}{{ $labels.peer }}{{ end }}."
                " HA registration fails until the stale entries are deleted on both servers. Run"
                f" the `{DELETECERT} <entry>` commands of the"
                " TofuCertificateMismatch alerts for {{ $labels.store }} and for its peer, then"
                " re-register HA from the primary (Administration > Settings > High Availability)."),
        ),
        Alert(
            name="TofuCertificateStateUnknown",
            comment=(
                "A subject match on an entry the exporter did not see being stored proves nothing.\n"
                "Not urgent, but silence must not pass for safety: after a day, ask for a pin."),
            expr=(
                "max without (state) (\n"
                f"  ({unknown} == 1)\n"
                f"  * on({on('store', 'entry')}) group_left(endpoint) {m('tofu_entry_info')}\n"
                ")\n"
                f"unless on({on('store')}) {known_hosts}\n"),  # TofuHostKeyUnknown
            for_="1d",
            severity="info",
            identity=("store", "entry", "endpoint"),
            summary=("The TOFU state of an entry has been unknown for a day; it needs a pin, an accept "
                     "or a re-store."),
            description=(
                "The exporter cannot tell whether {{ $labels.store }} still trusts the certificate"
                " {{ $labels.endpoint }} presents (entry {{ $labels.entry }}): the entry existed before the"
                " exporter first saw it and the subjects match, which a regenerated certificate also does."
                " Resolve it with a pin (`pins: [{endpoint: \"{{ $labels.endpoint }}\", sha256: <fingerprint"
                " PI stored>}]`), by accepting the live certificate once you have seen PI's connection to"
                " the peer work (`prime-tofu-exporter accept --store {{ $labels.store }} --entry"
                " {{ $labels.entry }} --reason <what you checked>`, docs/day-one.md), or by deleting the"
                f" entry (`{DELETECERT} {{{{ $labels.entry }}}}` on"
                " {{ $labels.store }}) so that PI re-stores it while the exporter watches."),
        ),
        *hostkey_alerts(s),
        Alert(
            name="TofuStoreDown",
            comment="One failed read is noise (the next one is store_interval away); three are not.",
            expr=f"{m('tofu_store_up')} == 0\n",
            for_="15m",
            severity="warning",
            identity=("store",),
            summary="The exporter cannot read a PI server's TOFU list; its entries are not checked.",
            description=(
                "Reading `ncs certvalidation tofu-certs listcerts` on {{ $labels.store }} over SSH has"
                f" failed for 15 minutes{target}; its entries are no longer checked. Failed reads in the"
                " last 30 minutes by reason: {{ range $i, $e := query (printf"
                f" `sum by (reason) (increase({READ_ERRORS}{{"
                + ",".join(f"{n}=%q" for n in [*s.ids, "store"])
                + "}[30m])) > 0` "
                + " ".join(f"$labels.{n}" for n in [*s.ids, "store"])
                + ") }}{{ if $i }}, {{ end }}{{ $e.Labels.reason }} ({{ $e.Value | printf \"%.0f\" }})"
                "{{ else }}none counted{{ end }}."
                f" Reasons: {READ_ERROR_REASONS}. The exporter log names the error."),
        ),
        Alert(
            name="TofuStoreStale",
            comment="Catches what store_up cannot: a refresh loop that stopped or reads that hang.",
            expr=f"time() - {m('tofu_store_last_success_timestamp_seconds')} > 3600\n",
            for_="10m",
            severity="warning",
            identity=("store",),
            summary="A PI server's TOFU list was last read more than an hour ago; its verdicts are stale.",
            description=(
                "The last successful read of {{ $labels.store }}'s TOFU list was"
                " {{ $value | humanizeDuration }} ago, so every verdict for its entries is stale. Check"
                f" the exporter log for this store and {READ_ERRORS}."),
        ),
        Alert(
            name="TofuStoreEntriesDropped",
            comment=(
                "Entries beyond max_entries are counted, not exported: no verdict, no mismatch\n"
                "alert for them. The count is the last read's, so it holds while the cap bites."),
            expr=f"{m('tofu_store_entries_dropped')} > 0\n",
            for_="15m",
            severity="warning",
            identity=("store",),
            summary="A PI server holds more TOFU entries than max_entries; the rest are not checked.",
            description=(
                "{{ $labels.store }} holds {{ $value | printf \"%.0f\" }} TOFU entries beyond its"
                f" `max_entries`{target}"
                f"{{{{ with query ({_fmt(s, 'tofu_store_entries', ('store',))}) }}}}"
                " (the first {{ . | first | value | printf \"%.0f\" }} are checked){{ end }}."
                " The exporter neither exports nor decides the others, so a stale certificate among"
                " them raises no TofuCertificateMismatch. Raise `max_entries` for this store in the"
                " exporter's configuration and reload (each entry costs about nine series), or delete the"
                " entries PI no longer needs (decommissioned peers) on the server."),
        ),
        Alert(
            name="TofuStoreUnparsedLines",
            comment=(
                "Listing lines that look like entries but do not parse: usually a changed PI output\n"
                "format. The entries they describe get no verdict and no mismatch alert."),
            expr=(f"{m('tofu_store_unparsed_lines')} > 0\n"
                  f"unless on({on('store')}) {known_hosts}\n"),  # TofuKnownHostsUnparsedLines
            for_="15m",
            severity="warning",
            identity=("store",),
            summary="Lines of a PI server's TOFU list did not parse; the entries in them are not checked.",
            description=(
                "{{ $value | printf \"%.0f\" }} lines of the last `ncs certvalidation tofu-certs listcerts`"
                f" output of {{{{ $labels.store }}}}{target} looked like TOFU entries but did not parse."
                " The entries they describe are neither exported nor decided, so a stale certificate"
                " among them raises no TofuCertificateMismatch. Usually PI's output format changed (an"
                " upgrade or a patch). The exporter log line `unparseable lines in listing` shows the"
                " first such line (escaped); compare it with the output of listcerts run by hand, and"
                " report both with the PI version."),
        ),
        Alert(
            name="TofuProbeFailing",
            expr=f"{m('tofu_probe_success')} == 0\n",
            for_="15m",
            severity="warning",
            identity=("endpoint",),
            summary="A TLS endpoint stored in PI has not delivered a certificate for 15 minutes.",
            description=(
                "The exporter's TLS handshakes with {{ $labels.endpoint }} fail, so the entries that"
                " point at it are `unreachable` and cannot be checked (a mismatch alert for them"
                f" stays firing for {BRIDGE} of this, then resolves). PI's own connection to it probably"
                " fails too."),
        ),
        Alert(
            name="TofuLiveCertificateExpiringSoon",
            comment=(
                "last_over_time: the expiry series disappears while a probe fails; the last value\n"
                "seen within 6h keeps the alert from resolving and re-firing on every failed probe."),
            expr=(
                "0 < (last_over_time("
                f"{m('tofu_live_certificate_not_after_timestamp_seconds')}[6h]) - time()) < 14 * 86400\n"),
            for_="1h",
            severity="warning",
            identity=("endpoint",),
            summary="A certificate PI trusts expires within 14 days; its renewal needs a deletecert.",
            description=(
                "The certificate {{ $labels.endpoint }} presents expires in {{ $value | humanizeDuration }}."
                " Its renewal changes the certificate, so every PI server that stored the old one will"
                f" reject it: plan the renewal together with `{DELETECERT} <entry>` on each PI server"
                " holding it."),
        ),
        Alert(
            name="TofuLiveCertificateExpired",
            expr=(f"last_over_time({m('tofu_live_certificate_not_after_timestamp_seconds')}[6h])"
                  " - time() <= 0\n"),
            for_="5m",
            severity="critical",
            identity=("endpoint",),
            summary="A certificate PI connects to has expired.",
            description=(
                "The certificate {{ $labels.endpoint }} presents has expired; PI and every other client"
                f" that verifies it reject it. Renew it, then run `{DELETECERT} <entry>` on each PI"
                " server holding it and restore the integration (re-register HA, re-add ISE)."),
        ),
        Alert(
            name="TofuBaselineDatabaseReset",
            comment=(
                "The baseline database was found corrupt (set aside, a fresh one started) or emptied\n"
                "although baselines had been recorded: witnessed baselines are gone, so entries that\n"
                "were `match` fall back to `unknown` until re-witnessed. The second clause catches a\n"
                "counter born non-zero (the reset found when the exporter started), which increase()\n"
                "cannot see."),
            expr=(
                f"increase({m('tofu_baseline_db_resets_total')}[1h]) > 0\n"
                f"or ({m('tofu_baseline_db_resets_total')} > 0\n"
                f"    unless {m('tofu_baseline_db_resets_total')} offset 1h)\n"),
            severity="warning",
            identity=("reason",),
            summary="The exporter started a new baseline database; witnessed baselines were lost.",
            description=(
                "The exporter at {{ $labels.instance }} found its baseline"
                ' database {{ if eq $labels.reason "corrupt" }}corrupt: it set the file aside (the log'
                " names where) and started a fresh one{{ else }}emptied although baselines had been"
                " recorded (volume replaced, file deleted or restored from an old backup){{ end }}."
                " Entries proven `match` by a witnessed baseline are `unknown` again, and a certificate"
                " that changes before the entry is re-witnessed is only caught by subject or pin. Check the"
                " volume (disk errors, free space), then re-witness the important entries (delete and let"
                " PI re-store them) or pin them."),
        ),
        Alert(
            name="TofuExporterDown",
            expr=f"up{{{s.selector}}} == 0\nor absent(up{{{s.selector}}})\n",
            for_="5m",
            severity="warning",
            identity=(),
            summary="Prometheus cannot scrape prime-tofu-exporter; TOFU drift goes unnoticed.",
            description=(
                "{{ with $labels.instance }}The exporter target {{ . }} has been down for 5 minutes"
                f"{{{{ else }}}}Prometheus has had no exporter target ({s.selector}) for 5 minutes"
                "{{ end }}."
                " No other Tofu* alert can fire while it is."),
        ),
        Alert(
            name="TofuExporterConfigReloadFailed",
            comment="max_over_time: a failed reload quickly followed by a good one is not an alert.",
            expr=f"max_over_time({m('tofu_exporter_config_last_reload_successful')}[5m]) == 0\n",
            for_="10m",
            severity="warning",
            identity=(),
            summary="prime-tofu-exporter rejected its new configuration and runs with the old one.",
            description=(
                "The last configuration reload of {{ $labels.instance }} failed; the exporter keeps"
                " running with the previous configuration, so edits (new stores, pins, pairs) are not"
                " in effect. Run `prime-tofu-exporter --config.check --config.file <file>` to see"
                " every problem, fix the file, then reload (SIGHUP or POST /-/reload)."),
        ),
        Alert(
            name="TofuExporterLoopErrors",
            comment=(
                "A loop that fails is retried at most a minute apart, so a failure that lasts keeps\n"
                "the counter rising. One error (or one burst of retries) makes the expression true\n"
                "for less than its 10m window, shorter than the `for:`: a transient error is no alert."),
            expr=f"increase({m('tofu_exporter_loop_errors_total')}[10m]) > 0\n",
            for_="15m",
            severity="warning",
            identity=("loop",),
            summary="One of the exporter's own loops keeps failing; what it refreshes goes stale.",
            description=(
                "The {{ $labels.loop }} loop of the exporter at {{ $labels.instance }} has kept raising"
                " unexpected errors for 15 minutes ({{ $value | printf \"%.0f\" }} in the last 10"
                " minutes), each retried with backoff."
                ' {{ if eq $labels.loop "start" }}The first pass over the stores does not go through:'
                " the exporter is not ready and exports no verdicts."
                '{{ else if eq $labels.loop "store" }}A store\'s refresh loop fails: its TOFU list is not'
                " re-read, so its verdicts go stale."
                "{{ else }}The probe loop fails: live certificates are not probed again, so verdicts go"
                " stale.{{ end }}"
                " Not a PI or TLS failure (those are counted per store and endpoint): a bug or a broken"
                " dependency such as the baseline database. The exporter log has a `loop error; retrying`"
                " line per error with the loop, the store, the error and its traceback."),
        ),
    ]


def as_data(s: Settings) -> dict[str, object]:
    rules: list[dict[str, object]] = [{"record": r.name, "expr": r.expr} for r in records(s)]
    for a in alerts(s):
        rule: dict[str, object] = {"alert": a.name, "expr": a.expr}
        if a.for_:
            rule["for"] = a.for_
        rule["labels"] = {"severity": a.severity, **dict.fromkeys(a.hidden, "")}
        rule["annotations"] = {"summary": a.summary, "description": a.description, **a.extra,
                               "runbook_url": s.runbook_url(a.name)}
        rules.append(rule)
    return {"groups": [{"name": "prime-tofu.alerts", "rules": rules}]}


HEADER = """\
# GENERATED by `python -m monitoring` from monitoring/rules.py: do not edit, change the
# generator or its settings and run it again (tests/test_monitoring.py fails when they differ).
#
# Alert rules for prime-tofu-exporter. Conventions (monitoring-mixins style guide): CamelCase
# names prefixed with the component (Tofu...); `severity` is critical (page now), warning (fix
# during working hours) or info (context, never routed to a pager); labels only identify the
# alert (target, store, entry, endpoint), everything descriptive is in the annotations (the
# mismatch's details from tofu:certificate_mismatch:details, whose detail labels the alert
# drops), so a changing detail never restarts an alert; `summary` is
# static per alert, `description` holds the details; `runbook_url` points at the alert's
# heading in docs/runbook.md.
#
# Selector: {selector}
# Joins use on({ids}, ...) so that several exporter replicas or /probe?target=
# shards never produce many-to-many matches.
"""


def _wrap(text: str, width: int) -> list[str]:
    """Lines of at most `width` columns, broken only at spaces outside template actions."""
    protected = re.sub(r"\{\{.*?\}\}", lambda mo: mo[0].replace(" ", "\0"), text)
    lines = textwrap.wrap(protected, width, break_long_words=False, break_on_hyphens=False)
    return [ln.replace("\0", " ") for ln in lines]


def _scalar(key: str, value: str, indent: str) -> list[str]:
    """key: value as a block scalar: literal for multi-line text, folded at 96 columns else."""
    if "\n" in value:
        body = value[:-1] if value.endswith("\n") else value
        style = "|" if value.endswith("\n") else "|-"
        return [f"{indent}{key}: {style}", *(f"{indent}  {ln}" if ln else "" for ln in body.split("\n"))]
    plain = yaml.safe_dump({key: value}, width=10_000, allow_unicode=True).strip()
    if len(indent) + len(plain) <= 100 or " " not in value:
        return [indent + plain]
    return [f"{indent}{key}: >-", *(f"{indent}  {ln}" for ln in _wrap(value, 96 - len(indent)))]


def render(s: Settings) -> str:
    data = as_data(s)
    out = [HEADER.format(selector=s.selector, ids=s.on())]
    out.append("groups:")
    for group in data["groups"]:  # type: ignore[attr-defined]
        out.append(f"  - name: {group['name']}")
        out.append("    rules:")
        for r in records(s):
            out.append(f"      - record: {r.name}")
            out.extend(f"        # {ln}" for ln in r.comment.splitlines())
            out.extend(_scalar("expr", r.expr, "        "))
            out.append("")
        for a, rule in zip(alerts(s), group["rules"][len(records(s)):], strict=True):
            out.append(f"      - alert: {a.name}")
            out.extend(f"        # {ln}" for ln in a.comment.splitlines())
            out.extend(_scalar("expr", rule["expr"], "        "))
            if "for" in rule:
                out.append(f"        for: {rule['for']}")
            out.append("        labels:")
            out.append(f"          severity: {a.severity}")
            out.extend(f'          {name}: ""' for name in a.hidden)
            out.append("        annotations:")
            for key, value in rule["annotations"].items():
                out.extend(_scalar(key, value, "          "))
            out.append("")
    text = "\n".join(out).rstrip("\n") + "\n"
    if yaml.safe_load(text) != data:  # the hand-made YAML must say exactly what the data says
        raise AssertionError("rendered rules do not round-trip")
    return text


def prometheusrule(rules_text: str, name: str = "prime-tofu-exporter") -> str:
    """The rule file as a PrometheusRule: its text indented under spec, comments kept."""
    body = "".join(f"  {ln}\n" if ln.strip() else "\n" for ln in rules_text.splitlines()
                   if not ln.startswith("# GENERATED") and not ln.startswith("# generator or"))
    return ("# GENERATED by `python -m monitoring` (monitoring/rules.py): do not edit.\n"
            "apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata:\n"
            f"  name: {name}\nspec:\n" + body)
