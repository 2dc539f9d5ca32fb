"""The Grafana dashboard, built with grafana-foundation-sdk (Grafana's own typed schema).

The SDK's builders and models are generated from the dashboard schema Grafana publishes, so
a field Grafana does not know cannot be written here; the JSON is the SDK's own encoding.
Every query carries the job and instance variables (and cluster when configured); the panels
about endpoints (probes, expiry, changes) follow $store and $entry through tofu_entry_info.
"""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.builders import (
    bargauge,
    common,
    prometheus,
    stat,
    statetimeline,
    table,
    timeseries,
)
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm

from monitoring.settings import Settings

DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
STATE_COLORS = {"match": "green", "mismatch": "red", "unknown": "yellow", "unreachable": "orange",
                "absent": "blue"}


def value_map(mapping: dict[str, tuple[str, str]]) -> list[dm.ValueMapping]:
    """{"0": ("down", "red")} -> one value mapping: the text and colour shown for each value."""
    return [dm.ValueMap(options={
        value: dm.ValueMappingResult(text=text, color=color, index=i)
        for i, (value, (text, color)) in enumerate(mapping.items())})]


STATE_MAPPING = value_map({s: (s, c) for s, c in STATE_COLORS.items()})


def thresholds(*steps: tuple[float | None, str]) -> db.ThresholdsConfig:
    return db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(
        [dm.Threshold(value=v, color=c) for v, c in steps])


def reduce_last() -> common.ReduceDataOptions:
    return common.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False)


class Queries:
    """PromQL with the dashboard's variables, from the settings."""

    def __init__(self, s: Settings) -> None:
        self.s = s
        cluster = [f'{s.cluster_label}="$cluster"'] if s.cluster_label else []
        self.target = ", ".join([*cluster, 'job=~"$job"', 'instance=~"$instance"'])
        self.store = self.target + ', store=~"$store"'
        self.entry = self.store + ', entry=~"$entry"'
        self.ids = s.on()

    def of(self, metric: str, scope: str) -> str:
        return f"{metric}{{{scope}}}"

    def entries_endpoints(self, expr: str) -> str:
        """expr (with an endpoint label) only for endpoints the selected entries point at."""
        return f"{expr} and on({self.s.on('endpoint')}) {self.of('tofu_entry_info', self.entry)}"


def target(expr: str, ref: str, legend: str | None = None, table_format: bool = False,
           instant: bool = False) -> prometheus.Dataquery:
    q = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DS)
    if legend is not None:
        q = q.legend_format(legend)
    if table_format:
        q = q.format(pm.PromQueryFormat.TABLE)
    if instant:
        q = q.instant()
    return q


def pos(h: int, w: int, x: int, y: int) -> dm.GridPos:
    return dm.GridPos(h=h, w=w, x=x, y=y)


def build(s: Settings) -> dict[str, Any]:
    q = Queries(s)
    runbook = (s.runbook_url_pattern % {"anchor": ""}).rstrip("#")
    d = (db.Dashboard(s.dashboard_title).uid(s.dashboard_uid)
         .description("Is any PI server about to break, and what do I delete? (prime-tofu-exporter)")
         .tags(["prime-tofu", "cisco-prime", "certificates"]).timezone("browser").editable()
         .tooltip(dm.DashboardCursorSync.CROSSHAIR).refresh("1m").time("now-24h", "now")
         .link(db.DashboardLink("Runbook").type(dm.DashboardLinkType.LINK).url(runbook)
               .target_blank(True)))

    # Variables: datasource, (cluster), job, instance, store, entry; each narrows the next.
    d = d.with_variable(db.DatasourceVariable("datasource").label("Data source").type("prometheus"))
    up_scope = s.selector
    if s.cluster_label:
        d = d.with_variable(query_var("cluster", "Cluster", f"label_values(up{{{s.selector}}}, "
                                      f"{s.cluster_label})", multi=False))
        up_scope += f', {s.cluster_label}="$cluster"'
    d = d.with_variable(query_var("job", "Job", f"label_values(up{{{up_scope}}}, job)"))
    d = d.with_variable(query_var("instance", "Instance",
                                  f'label_values(up{{{up_scope}, job=~"$job"}}, instance)'))
    d = d.with_variable(query_var("store", "PI server", f"label_values(tofu_store_up{{{q.target}}}, store)",
                                  all_value=".*"))
    d = d.with_variable(query_var("entry", "Entry", f"label_values(tofu_entry_info{{{q.store}}}, entry)",
                                  all_value=".*"))
    d = d.annotation(
        db.AnnotationQuery().name("Certificate changes").datasource(DS).enable(True).icon_color("orange")
        .expr(f"changes({q.of('tofu_live_certificate_changed_timestamp_seconds', q.target)}[2m]) > 0"))

    panels: list[Any] = []
    panels.append(db.Row("Is any PI server about to break?").grid_pos(pos(1, 24, 0, 0)))
    panels.append(
        stat.Panel().title("Stale TOFU entries (mismatch) by PI server").grid_pos(pos(5, 8, 0, 1))
        .description("Entries whose live certificate provably differs from what the PI server stored. "
                     "Anything above 0 breaks HA registration or an integration: see the table below "
                     "for the deletecert command.")
        .with_target(target(f"sum by (store) ({q.of('tofu_certificate_mismatch', q.entry)})", "A",
                            "{{store}}", instant=True))
        .thresholds(thresholds((None, "green"), (1, "red"))).unit("none").no_value("0")
        .color_mode(cm.BigValueColorMode.BACKGROUND).graph_mode(cm.BigValueGraphMode.NONE)
        .reduce_options(reduce_last()).text_mode(cm.BigValueTextMode.VALUE_AND_NAME))
    peer_mismatch = q.of("tofu_ha_pair_peer_mismatch", q.target)
    panels.append(
        stat.Panel().title("HA pairs: servers holding a stale entry (2 = broken on both sides)")
        .grid_pos(pos(5, 4, 8, 1))
        .description("Number of servers of each HA pair (configured under `pairs:`) holding a stale "
                     "entry for the pair; 2 is the seed's failure (TofuHAPeerMismatch).")
        .with_target(target(
            f"count by (pair) (count by (pair, store) ({peer_mismatch} == 1))"
            f" or sum by (pair) ({q.of('tofu_ha_pair_info', q.target)}) * 0", "A", "{{pair}}", instant=True))
        .thresholds(thresholds((None, "green"), (1, "orange"), (2, "red"))).no_value("no pairs")
        .color_mode(cm.BigValueColorMode.BACKGROUND).graph_mode(cm.BigValueGraphMode.NONE)
        .reduce_options(reduce_last()).text_mode(cm.BigValueTextMode.VALUE_AND_NAME))
    state_panel = (
        stat.Panel().title("Entries by state").grid_pos(pos(5, 8, 12, 1))
        .description("unknown = a subject match on an entry stored before the exporter watched: proves "
                     "nothing. Add a pin, accept it once PI's connection to the peer is seen working "
                     "(`prime-tofu-exporter accept`, evidence attested), or delete and let PI re-store "
                     "it (runbook).")
        .with_target(target(f"sum by (state) ({q.of('tofu_certificate_state', q.entry)})", "A",
                            "{{state}}", instant=True))
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
        .thresholds(thresholds((None, "text")))
        .color_mode(cm.BigValueColorMode.BACKGROUND).graph_mode(cm.BigValueGraphMode.NONE)
        .reduce_options(reduce_last()).text_mode(cm.BigValueTextMode.VALUE_AND_NAME))
    for name, color in (("mismatch", "red"), ("unknown", "yellow"), ("unreachable", "orange")):
        state_panel = state_panel.override_by_name(name, [dm.DynamicConfigValue(
            id_val="thresholds", value=thresholds((None, "green"), (1, color)).build())])
    panels.append(state_panel)

    panels.append(
        stat.Panel().title("Entries not checked").grid_pos(pos(5, 4, 20, 1))
        .description("Entries the exporter cannot see, so no verdict and no alert covers them: beyond "
                     "`max_entries` (tofu_store_entries_dropped; TofuStoreEntriesDropped) and listing lines "
                     "that did not parse, usually a changed PI output format (tofu_store_unparsed_lines; "
                     "TofuStoreUnparsedLines). The alerts name the PI server; $store narrows this panel.")
        .targets([
            target(f"sum({q.of('tofu_store_entries_dropped', q.store)})", "A", "over max_entries",
                   instant=True),
            target(f"sum({q.of('tofu_store_unparsed_lines', q.store)})", "B", "unparsed lines",
                   instant=True)])
        .thresholds(thresholds((None, "green"), (1, "orange"))).unit("none").no_value("0")
        .color_mode(cm.BigValueColorMode.BACKGROUND).graph_mode(cm.BigValueGraphMode.NONE)
        .reduce_options(reduce_last()).text_mode(cm.BigValueTextMode.VALUE_AND_NAME))

    panels.append(db.Row("What do I delete? Every stored entry").grid_pos(pos(1, 24, 0, 6)))
    live = ('label_replace(' + q.of("tofu_live_certificate_info", q.target)
            + ', "live_subject", "$1", "subject", "(.*)")')
    expiry_days = (f"((last_over_time({q.of('tofu_live_certificate_not_after_timestamp_seconds', q.target)}"
                   "[6h]) - time()) / 86400)")
    info = q.of("tofu_entry_info", q.entry)
    panels.append(
        table.Panel().title("Every TOFU entry: verdict, evidence, stored vs live, fix")
        .grid_pos(pos(10, 24, 0, 7))
        .description("Run the `fix` command on the PI server in `store` (admin CLI over SSH), then "
                     "re-register HA (PI peer) or re-add ISE; verify with "
                     "`ncs certvalidation tofu-certs listcerts`.")
        .targets([
            target(f"max by (store, entry, state) ({q.of('tofu_certificate_state', q.entry)} == 1)", "A",
                   table_format=True, instant=True),
            target(f"max by (store, entry, evidence) ({q.of('tofu_certificate_evidence_info', q.entry)})",
                   "B", table_format=True, instant=True),
            target(f'max by (store, entry, endpoint, stored_subject) (label_replace({info}, '
                   '"stored_subject", "$1", "subject", "(.*)"))', "C", table_format=True, instant=True),
            target("max by (store, entry, live_subject, fingerprint_sha256) "
                   f"({info} * on({q.s.on('endpoint')})"
                   f" group_left(live_subject, fingerprint_sha256) {live})", "D", table_format=True,
                   instant=True),
            target(f"max by (store, entry) ({info} * on({q.s.on('endpoint')}) group_left() {expiry_days})",
                   "E", table_format=True, instant=True),
            target(f"max by (store, entry, fix) (label_replace({q.of('tofu_certificate_mismatch', q.entry)}"
                   ' == 1, "fix", "ncs certvalidation tofu-certs deletecert host $1", "entry", "(.*)"))',
                   "F", table_format=True, instant=True),
            target("max by (store, entry) "
                   f"({q.of('tofu_certificate_state_since_timestamp_seconds', q.entry)}) * 1000", "G",
                   table_format=True, instant=True),
        ])
        .with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(dm.DataTransformerConfig(id_val="organize", options={
            "excludeByName": {"Time": True, "Value #A": True, "Value #B": True, "Value #C": True,
                              "Value #D": True, "Value #F": True},
            "indexByName": {"store": 0, "entry": 1, "state": 2, "Value #G": 3, "evidence": 4, "fix": 5,
                            "stored_subject": 6, "live_subject": 7, "fingerprint_sha256": 8,
                            "Value #E": 9, "endpoint": 10},
            "renameByName": {"Value #E": "days to expiry", "Value #G": "state since",
                             "fingerprint_sha256": "live SHA-256",
                             "stored_subject": "stored subject", "live_subject": "live subject",
                             "fix": "fix (run on store)"}}))
        .with_transformation(dm.DataTransformerConfig(id_val="sortBy",
                                                      options={"sort": [{"field": "state"}]}))
        .align(cm.FieldTextAlignment.AUTO).filterable(True).show_header(True)
        .cell_height(cm.TableCellHeight.SM)
        .override_by_name("state", [dm.DynamicConfigValue(id_val="mappings", value=STATE_MAPPING),
                                    dm.DynamicConfigValue(id_val="custom.cellOptions",
                                                          value={"type": "color-background"})])
        .override_by_name("days to expiry", [
            dm.DynamicConfigValue(id_val="decimals", value=0),
            dm.DynamicConfigValue(id_val="thresholds",
                                  value=thresholds((None, "red"), (0, "orange"), (14, "green")).build()),
            dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"})])
        .override_by_name("state since", [dm.DynamicConfigValue(id_val="unit", value="dateTimeAsIso")])
        .override_by_name("fix (run on store)", [dm.DynamicConfigValue(id_val="custom.width", value=420)]))
    panels.append(
        table.Panel().title("HA pair trust (does each server still trust its peer and itself?)")
        .grid_pos(pos(6, 12, 0, 17))
        .description("Per HA pair from `pairs:`: the state of the entries each server holds for its peer "
                     "and for itself. absent = no entry (HA not registered yet, or deleted and not "
                     "re-registered).")
        .with_target(target(
            f"max by (pair, store, peer, state) ({q.of('tofu_ha_pair_trust_state', q.store)} == 1)", "A",
            table_format=True, instant=True))
        .with_transformation(dm.DataTransformerConfig(
            id_val="organize", options={"excludeByName": {"Time": True, "Value": True}}))
        .show_header(True)
        .override_by_name("state", [dm.DynamicConfigValue(id_val="mappings", value=STATE_MAPPING),
                                    dm.DynamicConfigValue(id_val="custom.cellOptions",
                                                          value={"type": "color-background"})]))
    panels.append(
        bargauge.Panel().title("Days until the live certificate expires").grid_pos(pos(6, 12, 12, 17))
        .description("Renewing a certificate changes it: every PI server that stored the old one will "
                     "reject it. Plan a deletecert with each renewal.")
        .with_target(target(f"min by (endpoint) ({q.entries_endpoints(expiry_days)})", "A", "{{endpoint}}",
                            instant=True))
        .unit("d").decimals(0).min(0)
        .thresholds(thresholds((None, "red"), (0, "orange"), (14, "green")))
        .orientation(cm.VizOrientation.HORIZONTAL).display_mode(cm.BarGaugeDisplayMode.BASIC)
        .reduce_options(reduce_last()))

    panels.append(db.Row("Timeline").grid_pos(pos(1, 24, 0, 23)))
    panels.append(
        statetimeline.Panel().title("Verdict per entry over time").grid_pos(pos(8, 16, 0, 24))
        .description("Red while an entry is stale. Annotations mark every live certificate change the "
                     "exporter saw.")
        .with_target(target(f"max by (store, entry) ({q.of('tofu_certificate_mismatch', q.entry)})", "A",
                            "{{store}} {{entry}}"))
        .mappings(value_map({"0": ("ok", "green"), "1": ("mismatch", "red")}))
        .thresholds(thresholds((None, "green"), (1, "red")))
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
        .show_value(cm.VisibilityMode.NEVER).merge_values(True).row_height(0.8))
    changed = q.of("tofu_live_certificate_changed_timestamp_seconds", q.target)
    panels.append(
        table.Panel().title("Last certificate change per endpoint").grid_pos(pos(8, 8, 16, 24))
        .description("When the exporter last saw each endpoint present a different certificate.")
        .with_target(target(f"max by (endpoint) ({q.entries_endpoints(changed)}) * 1000", "A",
                            table_format=True, instant=True))
        .with_transformation(dm.DataTransformerConfig(id_val="organize", options={
            "excludeByName": {"Time": True}, "renameByName": {"Value": "changed at"}}))
        .show_header(True).sort_by([common.TableSortByFieldState().display_name("changed at").desc(True)])
        .override_by_name("changed at", [dm.DynamicConfigValue(id_val="unit", value="dateTimeAsIso")]))

    panels.append(db.Row("Exporter health: PI stores and TLS probes").grid_pos(pos(1, 24, 0, 32)))
    ok_map = value_map({"0": ("failed", "red"), "1": ("OK", "green")})
    panels.append(
        timeseries.Panel().title("PI store read OK").grid_pos(pos(7, 8, 0, 33))
        .with_target(target(q.of("tofu_store_up", q.store), "A", "{{store}}"))
        .min(0).max(1).mappings(ok_map).draw_style(cm.GraphDrawStyle.LINE)
        .line_interpolation(cm.LineInterpolation.STEP_AFTER))
    panels.append(
        timeseries.Panel().title("Seconds since last successful store read").grid_pos(pos(7, 8, 8, 33))
        .with_target(target(f"time() - {q.of('tofu_store_last_success_timestamp_seconds', q.store)}", "A",
                            "{{store}}"))
        .unit("s").thresholds(thresholds((None, "green"), (3600, "red")))
        .thresholds_style(common.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.LINE)))
    panels.append(
        timeseries.Panel().title("Store read errors by reason").grid_pos(pos(7, 8, 16, 33))
        .with_target(target(
            f"sum by (store, reason) (increase({q.of('tofu_store_read_errors_total', q.store)}"
            "[$__rate_interval]))", "A", "{{store}} {{reason}}"))
        .unit("none").min(0))
    panels.append(
        timeseries.Panel().title("TLS probe success").grid_pos(pos(7, 8, 0, 40))
        .description("Endpoints the selected entries point at.")
        .with_target(target(q.entries_endpoints(q.of("tofu_probe_success", q.target)), "A", "{{endpoint}}"))
        .min(0).max(1).mappings(value_map({"0": ("failed", "red"), "1": ("certificate", "green")}))
        .draw_style(cm.GraphDrawStyle.LINE).line_interpolation(cm.LineInterpolation.STEP_AFTER))
    panels.append(
        timeseries.Panel().title("TLS probe duration").grid_pos(pos(7, 8, 8, 40))
        .description("Endpoints the selected entries point at.")
        .with_target(target(q.entries_endpoints(q.of("tofu_probe_duration_seconds", q.target)), "A",
                            "{{endpoint}}"))
        .unit("s"))
    panels.append(
        timeseries.Panel().title("Store read duration and entries").grid_pos(pos(7, 8, 16, 40))
        .targets([target(q.of("tofu_store_read_duration_seconds", q.store), "A", "{{store}} read"),
                  target(q.of("tofu_store_entries", q.store), "B", "{{store}} entries")])
        .unit("s")
        .override_by_query("B", [dm.DynamicConfigValue(id_val="unit", value="none"),
                                 dm.DynamicConfigValue(id_val="custom.axisPlacement", value="right")]))
    panels.append(
        stat.Panel().title("Exporter").grid_pos(pos(4, 24, 0, 47))
        .targets([target(f"up{{{q.target}}}", "A", "up {{instance}}", instant=True),
                  target(q.of("tofu_exporter_config_last_reload_successful", q.target), "B",
                         "config reload {{instance}}", instant=True),
                  target(q.of("tofu_exporter_build_info", q.target), "C", "version {{version}}",
                         instant=True)])
        .thresholds(thresholds((None, "red"), (1, "green")))
        .override_by_query("A", [dm.DynamicConfigValue(id_val="mappings", value=value_map(
            {"0": ("down", "red"), "1": ("up", "green")}))])
        .override_by_query("B", [dm.DynamicConfigValue(id_val="mappings", value=ok_map)])
        .override_by_query("C", [dm.DynamicConfigValue(id_val="mappings", value=value_map(
            {"1": ("running", "green")}))])
        .color_mode(cm.BigValueColorMode.BACKGROUND).graph_mode(cm.BigValueGraphMode.NONE)
        .reduce_options(reduce_last()).text_mode(cm.BigValueTextMode.VALUE_AND_NAME))

    panels += host_key_panels(q, y=51)

    for i, p in enumerate(panels, start=1):
        p.id(i)
        if isinstance(p, db.Row):
            d = d.with_row(p)
        else:
            if not isinstance(p, db.Row):
                p.datasource(DS)
            d = d.with_panel(p)
    out: dict[str, Any] = json.loads(json.dumps(d.build(), cls=JSONEncoder))
    return out


# A known_hosts entry key, "host type" or "[host]:port type", with a plain host name: only then
# does the table build the ssh-keyscan command from it (a hostile name gets none).
_PLAIN_ENTRY = r"([A-Za-z0-9_][A-Za-z0-9_.-]*|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)"
_KEY_TYPE = r"([a-z0-9][a-z0-9@.-]*)"


def host_key_panels(q: Queries, y: int) -> list[Any]:
    """The "SSH host keys" row: known_hosts stores (tofu_store_info{kind="known_hosts"}), their
    stale lines with the line, both fingerprints and the command that shows the key now."""
    kh = f'{q.of("tofu_store_info", q.target)[:-1]}, kind="known_hosts"}}'
    only = f"and on({q.s.on('store')}) {kh}"
    mismatch = q.of("tofu_certificate_mismatch", q.entry)
    scan = (f'label_replace(label_replace(({mismatch} == 1) {only}, "fix",'
            f' "ssh-keyscan -t $2 -p 22 $1", "entry", "{_PLAIN_ENTRY} {_KEY_TYPE}"),'
            f' "fix", "ssh-keyscan -t $3 -p $2 $1", "entry",'
            f' "\\\\[{_PLAIN_ENTRY}\\\\]:([0-9]+) {_KEY_TYPE}")')
    info = f"({q.of('tofu_entry_info', q.entry)} {only})"
    # The stored key's SHA256: is the entry's `subject`, the live key's the endpoint's.
    stored = (f'label_replace(label_replace({info}, "stored_fingerprint", "$1", "subject", "(.*)"),'
              ' "key_type", "$1", "entry", ".* ([^ ]+)")')
    live = (f'label_replace({q.of("tofu_live_certificate_info", q.target)}, "live_fingerprint",'
            ' "$1", "subject", "(.*)")')
    out: list[Any] = [db.Row("SSH host keys (known_hosts stores)").grid_pos(pos(1, 24, 0, y))]
    out.append(
        stat.Panel().title("Stale host keys (mismatch) by known_hosts store").grid_pos(pos(5, 8, 0, y + 1))
        .description("Lines whose key the host no longer presents for that type: every batch SSH "
                     "client trusting the file stops at that host (TofuHostKeyMismatch). The table "
                     "gives the line and the command that shows the key now; verify it out of band.")
        .with_target(target(f"sum by (store) ({mismatch} {only})", "A", "{{store}}", instant=True))
        .thresholds(thresholds((None, "green"), (1, "red"))).unit("none").no_value("0")
        .color_mode(cm.BigValueColorMode.BACKGROUND).graph_mode(cm.BigValueGraphMode.NONE)
        .reduce_options(reduce_last()).text_mode(cm.BigValueTextMode.VALUE_AND_NAME))
    out.append(
        stat.Panel().title("Host key entries by state").grid_pos(pos(5, 8, 8, y + 1))
        .description("unknown: usually a key type the host no longer offers while another of its "
                     "lines matches (TofuHostKeyUnknown).")
        .with_target(target(f"sum by (state) ({q.of('tofu_certificate_state', q.entry)} {only})",
                            "A", "{{state}}", instant=True))
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
        .thresholds(thresholds((None, "text")))
        .color_mode(cm.BigValueColorMode.BACKGROUND).graph_mode(cm.BigValueGraphMode.NONE)
        .reduce_options(reduce_last()).text_mode(cm.BigValueTextMode.VALUE_AND_NAME))
    out.append(
        stat.Panel().title("known_hosts lines not checked").grid_pos(pos(5, 8, 16, y + 1))
        .description("Lines that do not parse (OpenSSH skips them too; TofuKnownHostsUnparsedLines) "
                     "and hashed or pattern lines that match no name of the store's `resolve:` list "
                     "(tofu_store_unresolved_lines; TofuKnownHostsUnresolvedLines).")
        .targets([
            target(f"sum({q.of('tofu_store_unparsed_lines', q.store)} {only})", "A", "unparsed lines",
                   instant=True),
            target(f"sum({q.of('tofu_store_unresolved_lines', q.store)})", "B", "unresolved lines",
                   instant=True)])
        .thresholds(thresholds((None, "green"), (1, "orange"))).unit("none").no_value("0")
        .color_mode(cm.BigValueColorMode.BACKGROUND).graph_mode(cm.BigValueGraphMode.NONE)
        .reduce_options(reduce_last()).text_mode(cm.BigValueTextMode.VALUE_AND_NAME))
    out.append(
        table.Panel().title("Every host key entry: verdict, line, stored vs live SHA256, command")
        .grid_pos(pos(9, 24, 0, y + 6))
        .description("For a mismatch: see the key the host presents now with the command, verify its "
                     "fingerprint out of band (console, the host's administrator), then "
                     "`prime-tofu-exporter remediate --store <store> --entry '<entry>' --apply` removes "
                     "exactly the line (FILE.old kept). No command is shown for a host name that is "
                     "not a plain name or address.")
        .targets([
            target(f"max by (store, entry, state) ({q.of('tofu_certificate_state', q.entry)} == 1 {only})",
                   "A", table_format=True, instant=True),
            target(f"max by (store, entry, key_type, stored_fingerprint) ({stored})", "B",
                   table_format=True, instant=True),
            target(f"max by (store, entry, live_fingerprint) ({info} * on({q.s.on('endpoint')})"
                   f" group_left(live_fingerprint) {live})", "D", table_format=True, instant=True),
            target(f"max by (store, entry) ({q.of('tofu_entry_line', q.entry)} {only})", "E",
                   table_format=True, instant=True),
            target(f"max by (store, entry, fix) ({scan})", "C", table_format=True, instant=True),
        ])
        .with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(dm.DataTransformerConfig(id_val="organize", options={
            "excludeByName": {"Time": True, "Value #A": True, "Value #B": True, "Value #C": True,
                              "Value #D": True},
            "indexByName": {"store": 0, "entry": 1, "state": 2, "Value #E": 3, "key_type": 4,
                            "stored_fingerprint": 5, "live_fingerprint": 6, "fix": 7},
            "renameByName": {"stored_fingerprint": "stored SHA256", "live_fingerprint": "live SHA256",
                             "key_type": "key type", "Value #E": "line",
                             "fix": "see the key now (verify out of band)"}}))
        .with_transformation(dm.DataTransformerConfig(id_val="sortBy",
                                                      options={"sort": [{"field": "state"}]}))
        .align(cm.FieldTextAlignment.AUTO).filterable(True).show_header(True)
        .cell_height(cm.TableCellHeight.SM)
        .override_by_name("state", [dm.DynamicConfigValue(id_val="mappings", value=STATE_MAPPING),
                                    dm.DynamicConfigValue(id_val="custom.cellOptions",
                                                          value={"type": "color-background"})]))
    return out


def query_var(name: str, label: str, query: str, multi: bool = True,
              all_value: str | None = None) -> db.QueryVariable:
    v = (db.QueryVariable(name).label(label).datasource(DS)
         .query({"query": query, "refId": name, "qryType": 1})
         .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.ALPHABETICAL_ASC))
    if multi:
        v = v.multi(True).include_all(True).current(dm.VariableOption(text="All", value="$__all"))
    if all_value is not None:
        v = v.all_value(all_value)
    return v


def render(s: Settings) -> str:
    return json.dumps(build(s), indent=2, sort_keys=False) + "\n"
