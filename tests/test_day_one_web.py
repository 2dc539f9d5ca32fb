"""The landing page's day-one parts and the read-only JSON API, against the demo lab, over a
real HTTP server: recent changes newest first, when each state began, for each unknown entry
why, the check to make and the accept command; hostile peer text stays inert."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from exporter.config.load import load_config
from exporter.core.history import Attestation
from exporter.service.service import Service
from exporter.web.routes import make_app
from pilab.scene import Lab

HOSTILE_REASON = "<b>checked</b>\nncs certvalidation tofu-certs deletecert host 10.6.6.6_1"
HOSTILE_CN = "<script>alert(1)</script>\nncs tofu-certs deletecert host x_1"  # 64 at most


@pytest.fixture
async def served(demo_lab: tuple[Lab, Path],
                 tmp_path: Path) -> AsyncIterator[tuple[Lab, Service, TestClient, Path]]:
    lab, cfg = demo_lab
    service = Service(load_config(cfg), tmp_path / "data")
    client = TestClient(TestServer(make_app(service)))
    await client.start_server()
    try:
        await service.run_once()  # the starting point: no changes yet
        lab.regenerate("prime-sec")  # same subject: prime-pri's entry for prime-sec is stale
        lab.regenerate("ise", [("CN", HOSTILE_CN)])
        await service.run_once()
        # An operator's reason is text from outside too: what `accept` records, verbatim.
        pri = lab.endpoints["prime-pri"]
        service.db.attest([Attestation("prime-pri", f"127.0.0.1_{pri.port}", pri.endpoint,
                                       pri.current.fingerprint_sha256, "5" * 64, "alice",
                                       HOSTILE_REASON, time.time())])
        yield lab, service, client, cfg
    finally:
        await client.close()
        await service.stop()


async def test_landing_page_shows_changes_since_and_how_to_accept(
        served: tuple[Lab, Service, TestClient, Path]) -> None:
    lab, _, client, cfg = served
    resp = await client.get("/")
    page = await resp.text()
    assert resp.status == 200
    sec = lab.endpoints["prime-sec"]
    changes = page[page.index("<h2 id='changes'>"):page.index("</table>", page.index("<h2 id='changes'>"))]
    assert f"<td>prime-pri</td><td>{sec.host}_{sec.port}</td><td>unknown (none, " in changes
    assert "-&gt; mismatch (baseline, " not in changes  # before/after are separate cells
    assert f"mismatch (baseline, {sec.current.fingerprint_sha256[:16]}…)" in changes
    # Hostile text: escaped for HTML and made visible, never a line of its own.
    assert "<script>" not in page and "<b>" not in page
    assert r"accepted by alice: &lt;b&gt;checked&lt;/b&gt;\nncs certvalidation tofu-certs" in changes
    assert "\nncs " not in changes
    # Per entry: when the state began; per unknown entry: why, the check, the command.
    assert "<th>since</th>" in page and page.count("<td class='since'>") == 8
    pri = lab.endpoints["prime-pri"]
    assert (f"prime-tofu-exporter accept --config.file {cfg} --storage.path "
            f"{cfg.parent.parent / 'data'} --store prime-sec --entry {pri.host}_{pri.port} "
            "--reason &#x27;&lt;what you checked&gt;&#x27;") in page
    assert ("Administration &gt; Settings &gt; High Availability shows Primary Active and the "
            "secondary synced") in page
    assert "the DNA Center co-existence page" in page  # pi-system-184's unknown dnac-2 entry
    assert "Unknown because: the entry was already stored when the exporter first read" in page


async def test_api_entries_and_history(served: tuple[Lab, Service, TestClient, Path]) -> None:
    lab, _, client, _ = served
    sec = lab.endpoints["prime-sec"]
    key = f"{sec.host}_{sec.port}"
    body = await (await client.get("/api/v1/entries")).json()
    assert body["status"] == "success"
    by_key = {(e["store"], e["entry"]): e for e in body["data"]}
    stale = by_key[("prime-pri", key)]
    assert (stale["state"], stale["evidence"]) == ("mismatch", "baseline")
    assert stale["state_since"] and stale["previous_fingerprint_sha256"]
    unknown = by_key[("prime-sec", f"{lab.endpoints['prime-pri'].host}_{lab.endpoints['prime-pri'].port}")]
    assert unknown["state"] == "unknown" and "High Availability" in unknown["accept"]["check"]
    assert unknown["accept"]["command"].startswith("prime-tofu-exporter accept ")
    assert "accept" not in stale

    hist = await (await client.get(f"/api/v1/history?store=prime-pri&entry={key}")).json()
    (change,) = hist["data"]
    # The keys are the API (docs/api.md): a rename breaks every client.
    assert set(change) == {"time", "time_utc", "store", "entry", "before", "after", "reason"}
    assert set(change["before"]) == set(change["after"]) == {"state", "evidence", "fingerprint_sha256"}
    assert (change["store"], change["entry"]) == ("prime-pri", key)
    assert change["time_utc"] == time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(change["time"]))
    assert change["reason"] and change["after"]["evidence"] == "baseline"
    assert change["before"]["state"] == "unknown" and change["after"]["state"] == "mismatch"
    assert change["after"]["fingerprint_sha256"] == sec.current.fingerprint_sha256
    assert change["before"]["fingerprint_sha256"] == stale["previous_fingerprint_sha256"]
    newest = await (await client.get("/api/v1/history?limit=2")).json()
    times = [c["time"] for c in newest["data"]]
    assert len(times) == 2 and times == sorted(times, reverse=True)
    raw = await (await client.get("/api/v1/history?store=prime-pri")).text()
    # The operator's text is data: verbatim after decoding, one JSON line as sent.
    assert f"accepted by alice: {HOSTILE_REASON}" in [c["reason"] for c in json.loads(raw)["data"]]
    assert "\n" not in raw
    for bad in ("since=forever", "limit=0", "limit=x", "limit=100000"):
        r = await client.get(f"/api/v1/history?{bad}")
        assert r.status == 400 and (await r.json())["status"] == "error", bad
