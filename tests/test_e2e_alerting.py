"""End to end through real servers: a regenerated certificate pages, the seed's fix resolves it.

lab (real SSH PI servers, real TLS) -> exporter (subprocess) -> Prometheus (the shipped rules,
`for:` cut to 1s in a test copy: nobody waits 5 minutes in CI) -> Alertmanager -> a webhook
receiver run by this test.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from pilab.scene import Lab
from tests.kit.monitoring import MISSING, SKIP_REASON, Stack, http_get, running_stack, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(bool(MISSING), reason=SKIP_REASON)]

DELETECERT = "ncs certvalidation tofu-certs deletecert host "


def entry_of(lab: Lab, store: str, peer: str) -> str:
    """The key `store` holds for the TLS endpoint `peer` (what listcerts prints)."""
    ep = lab.endpoints[peer]
    return f"{ep.host}_{ep.port}"


def mismatched(stack: Stack) -> set[tuple[str, str]]:
    """(store, entry) pairs the exporter itself reports as mismatch right now."""
    return {(lab["store"], lab["entry"])
            for lab, v in stack.scrape().get("tofu_certificate_mismatch", []) if v == 1}


def test_regeneration_pages_with_deletecert_and_the_fix_resolves(tmp_path: Path) -> None:
    started = time.monotonic()
    with running_stack(tmp_path) as stack:
        lab = stack.lab
        peer_entry = entry_of(lab, "prime-pri", "prime-sec")  # prime-pri's entry for prime-sec

        # The exporter must have seen prime-sec's current certificate (its adopted baseline)
        # and Prometheus must be evaluating the rules before the certificate changes.
        unknown = f'tofu_certificate_state{{store="prime-pri",entry="{peer_entry}",state="unknown"}}'
        wait_until(lambda: stack.query(f"{unknown} == 1"),
                   30, "the exporter's first verdict on prime-pri's entry for prime-sec, in Prometheus")
        # `unknown` must not page: hold it for longer than `for:` (1s) plus a rule evaluation
        # (1s) in Prometheus' own samples, then no alert may be pending or firing for it.
        wait_until(lambda: stack.query(
            f"count_over_time({unknown}[4s]) >= 4 and min_over_time({unknown}[4s]) == 1"),
            30, "four seconds of `unknown` in Prometheus")
        assert not stack.query(
            f'ALERTS{{alertname="TofuCertificateMismatch",store="prime-pri",entry="{peer_entry}"}}')
        assert not stack.webhook.alerts("TofuCertificateMismatch", "firing",
                                        store="prime-pri", entry=peer_entry)

        new = stack.loop.call(lambda: lab.regenerate("prime-sec"))
        regenerated = time.monotonic()

        def delivered() -> list[tuple[float, dict[str, object]]]:
            return stack.webhook.alerts("TofuCertificateMismatch", "firing",
                                        store="prime-pri", entry=peer_entry)

        try:
            (arrived, alert), *_ = wait_until(delivered, 30, "TofuCertificateMismatch at the webhook")
        except AssertionError:
            print(stack.process_logs())
            raise
        latency = arrived - regenerated
        print(f"\nregeneration -> webhook delivery of TofuCertificateMismatch: {latency:.2f} s")

        labels, notes = alert["labels"], alert["annotations"]
        assert isinstance(labels, dict) and isinstance(notes, dict)
        # Labels identify; the details are annotations (a change of them must not reset the alert).
        assert set(labels) == {"alertname", "severity", "job", "instance", "store", "entry", "endpoint"}
        assert labels["severity"] == "critical"
        assert notes["evidence"] == "baseline"
        assert notes["fingerprint_sha256"] == new.fingerprint_sha256
        assert notes["command"] == DELETECERT + peer_entry
        assert f"on prime-pri run `{DELETECERT}{peer_entry}`" in notes["description"]
        assert new.fingerprint_sha256 in notes["description"]
        assert "is PI server prime-sec" in notes["follow_up"]  # re-register HA, not re-add ISE
        assert notes["runbook_url"].endswith("docs/runbook.md#tofucertificatemismatch")

        # No flapping: prime-sec's certificate changes again while the entry is still stale.
        # The same alert stays firing (same activeAt in Prometheus, no resolved notification),
        # and its annotations follow the new fingerprint.
        def firing_alert() -> dict[str, object] | None:
            body = json.loads(http_get(stack.prometheus + "/api/v1/alerts"))
            found = [a for a in body["data"]["alerts"]
                     if a["labels"].get("alertname") == "TofuCertificateMismatch"
                     and a["labels"].get("entry") == peer_entry and a["labels"].get("store") == "prime-pri"]
            return found[0] if len(found) == 1 and found[0]["state"] == "firing" else None

        before = wait_until(firing_alert, 10, "the mismatch alert firing in Prometheus")
        newer = stack.loop.call(lambda: lab.regenerate("prime-sec"))
        assert newer.fingerprint_sha256 != new.fingerprint_sha256
        after = wait_until(lambda: (a := firing_alert()) and
                           a["annotations"]["fingerprint_sha256"] == newer.fingerprint_sha256 and a,
                           30, "the firing alert showing the newer fingerprint")
        assert after["activeAt"] == before["activeAt"], (before, after)
        assert not stack.webhook.alerts("TofuCertificateMismatch", "resolved", store="prime-pri",
                                        entry=peer_entry)

        # The seed's exact failure: both servers of the pair now hold a stale entry.
        ha = wait_until(lambda: stack.webhook.alerts("TofuHAPeerMismatch", "firing", pair="prime-ha"),
                        15, "TofuHAPeerMismatch at the webhook")
        assert {(a["labels"]["store"], a["labels"]["peer"]) for _, a in ha} >= {
            ("prime-pri", "prime-sec"), ("prime-sec", "prime-sec")}

        # The fix, as the runbook says: deletecert every stale entry, then let PI connect
        # again (re-register HA / re-add ISE), which stores the new certificates.
        stale = mismatched(stack)
        assert {("prime-pri", peer_entry), ("prime-sec", entry_of(lab, "prime-sec", "prime-sec"))} <= stale
        for pi in lab.pis.values():
            stack.loop.run(pi.stop_health_monitor())
        for store, entry in sorted(stale):
            assert stack.loop.call(lambda s=store, e=entry: lab.pis[s].remove_entry(e)), (store, entry)
        deleted = time.monotonic()
        # The exporter sees the entries gone (so it witnesses their return), then PI reconnects.
        wait_until(lambda: not any(
            (lab_["store"], lab_["entry"]) in stale
            for lab_, _ in stack.scrape().get("tofu_entry_info", [])), 15, "stale entries gone")
        resolved = wait_until(lambda: stack.webhook.alerts(
            "TofuCertificateMismatch", "resolved", store="prime-pri", entry=peer_entry),
            30, "TofuCertificateMismatch resolved at the webhook")
        print(f"deletecert -> resolved notification: {resolved[0][0] - deleted:.2f} s")

        # PI reconnects (HA re-registered, ISE re-added): the new certificates are stored while
        # the exporter watches, so the returning entries are proven matches, and stay quiet.
        for pi in lab.pis.values():
            stack.loop.call(pi.start_health_monitor)
        wait_until(lambda: all(stack.query(
            f'tofu_certificate_state{{store="{s}",entry="{e}",state="match"}} == 1') for s, e in stale),
            20, "every re-stored entry proven a match in Prometheus")
        time.sleep(3)  # three rule evaluations with the 1s `for:`: time enough to re-fire
        assert not stack.query('ALERTS{alertname=~"TofuCertificateMismatch|TofuHAPeerMismatch"}')
        assert mismatched(stack) == set()
        last = max(t for t, _ in resolved)
        assert not [a for t, a in stack.webhook.alerts("TofuCertificateMismatch", "firing",
                                                       store="prime-pri", entry=peer_entry) if t > last]
        wait_until(lambda: stack.webhook.alerts("TofuHAPeerMismatch", "resolved", pair="prime-ha"),
                   15, "TofuHAPeerMismatch resolved")
    print(f"e2e total: {time.monotonic() - started:.1f} s")
