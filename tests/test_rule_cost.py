"""What the shipped rules cost a real Prometheus with 100 mismatching entries.

Prometheus expands every annotation template of every active alert at every evaluation; a
`query` in a template is a full PromQL evaluation. TofuCertificateMismatch read its details
with 13 of them per alert: 17-23 ms per evaluation at 8 alerts, and growing with the
mismatches. The exposition served here is the exporter's own writer (exporter.exposition.writer) over
a snapshot of 100 mismatching entries of one store, each with a live certificate, a previous
fingerprint and a state-since time: everything the annotations show.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from exporter.core.model import (
    Baseline,
    BaselineKind,
    EntryView,
    Evidence,
    Listing,
    LiveCert,
    ProbeResult,
    State,
    StoredEntry,
    StoreRead,
    StoreStatus,
    Verdict,
)
from exporter.exposition.writer import render_text
from exporter.fleet.snapshot import Snapshot
from tests.kit.lab import free_port
from tests.kit.monitoring import JOB, MISSING, PROMETHEUS, RULES, SKIP_REASON, http_get, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(bool(MISSING), reason=SKIP_REASON),
              pytest.mark.timeout(180)]

MISMATCHES = 100


def mismatch_snapshot(n: int) -> Snapshot:
    views, probes = [], {}
    for i in range(n):
        ep = f"10.1.{i // 256}.{i % 256}:443"
        subject = (("O", "Cisco"), ("CN", f"peer-{i}.example.net"))
        entry = StoredEntry(ep.replace(":", "_"), ep.split(":")[0], 443, "", subject)
        fp = hashlib.sha256(b"live %d" % i).hexdigest()
        cert = LiveCert(fp, hashlib.sha256(fp.encode()).hexdigest(), subject,
                        f"/O=Cisco/CN=peer-{i}.example.net", "/CN=issuer", f"{i:x}", 1.7e9, 1.9e9)
        probe = ProbeResult(ep, cert, None, 0.01, time.time())
        probes[ep] = probe
        views.append(EntryView(
            "prime-pri", entry, ep, Verdict(State.MISMATCH, Evidence.BASELINE, "differs"), probe,
            Baseline(BaselineKind.WITNESSED, hashlib.sha256(b"old %d" % i).hexdigest(), 1.6e9),
            state_since=time.time() - 60, previous_fingerprint=hashlib.sha256(b"old %d" % i).hexdigest()))
    read = StoreRead("prime-pri", True, Listing(()), 0.25, time.time())
    return Snapshot({"prime-pri": StoreStatus("prime-pri", read, read, {})}, tuple(views), probes,
                    dict.fromkeys(probes, time.time()), ready=True)


@pytest.fixture
def served_metrics() -> Iterator[str]:
    body = render_text(mismatch_snapshot(MISMATCHES))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def rule_times(prometheus: str) -> dict[str, float]:
    """Last evaluation time per rule name (alert or record), seconds."""
    body = json.loads(http_get(prometheus + "/api/v1/rules"))
    return {r["name"]: r["evaluationTime"] for g in body["data"]["groups"] for r in g["rules"]}


def test_mismatch_annotations_cost_little_with_100_firing(served_metrics: str, tmp_path: Path) -> None:
    assert PROMETHEUS
    port = free_port()
    # The same alert without annotations, in its own group: what 100 active alerts cost anyway.
    # Both are measured in the same Prometheus at the same time, so a loaded machine slows both.
    shipped = yaml.safe_load(RULES.read_text())
    alert = next(r for g in shipped["groups"] for r in g["rules"]
                 if r.get("alert") == "TofuCertificateMismatch")
    bare = {**{k: v for k, v in alert.items() if k != "annotations"}, "alert": "Bare"}
    (tmp_path / "bare.yml").write_text(yaml.safe_dump({"groups": [{"name": "bare", "rules": [bare]}]}))
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES), str(tmp_path / "bare.yml")],
        "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [served_metrics]}]}],
    }))
    import subprocess

    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        def active() -> bool:
            q = 'count(ALERTS{alertname="TofuCertificateMismatch"})'
            body = json.loads(http_get(f"{url}/api/v1/query?query={q.replace(' ', '%20')}"))
            result = body["data"]["result"]
            return bool(result) and float(result[0]["value"][1]) == MISMATCHES

        wait_until(active, 60, f"{MISMATCHES} TofuCertificateMismatch alerts active")
        alerts = json.loads(http_get(url + "/api/v1/alerts"))["data"]["alerts"]
        one = next(a for a in alerts if a["labels"]["alertname"] == "TofuCertificateMismatch")
        assert one["annotations"]["evidence"] == "baseline"
        assert len(one["annotations"]["previous_fingerprint_sha256"]) == 64
        assert "peer-" in one["annotations"]["live_subject"]
        samples: list[dict[str, float]] = []
        for _ in range(12):
            time.sleep(1.1)  # one evaluation apart
            samples.append(rule_times(url))

        def ms(name: str) -> tuple[float, float]:
            xs = [s[name] * 1000 for s in samples]
            return min(xs), statistics.median(xs)

        mismatch, bare_ms = ms("TofuCertificateMismatch"), ms("Bare")
        others = {name: ms(name)[1] for name in samples[0] if name not in ("TofuCertificateMismatch", "Bare")}
        print(f"\nTofuCertificateMismatch with {MISMATCHES} active: min {mismatch[0]:.1f}, median"
              f" {mismatch[1]:.1f} ms per evaluation; without annotations: min {bare_ms[0]:.1f}, median"
              f" {bare_ms[1]:.1f} ms; the other rules (median): {min(others.values()):.2f}-"
              f"{max(others.values()):.2f} ms")
        for name, cost in sorted(others.items(), key=lambda kv: -kv[1])[:4]:
            print(f"  {name}: {cost:.2f} ms")
        # The old annotations (13 `query` templates per alert) cost 40 times the bare alert:
        # 156-164 ms against 3.7-3.9 ms (min of 12) on the same machine.
        assert mismatch[0] < 8 * bare_ms[0], (mismatch, bare_ms)
    finally:
        proc.terminate()
        proc.wait(10)
