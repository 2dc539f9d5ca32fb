"""Hostile values from the network cannot break /metrics or the landing page, and the number
of series per store is capped.

Certificates with subjects full of quotes, backslashes, newlines, braces, HTML and a 10 kB
CN are served by real TLS endpoints and stored on a lab PI server; a real exporter process
reads both. Its /metrics must parse with prometheus_client and pass `promtool check
metrics`; the landing page must show the text, never run it.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from exporter.core.subject import format_subject
from exporter.core.text import visible
from exporter.exposition.writer import LABEL_MAX
from pilab.pki import make_cert
from pilab.tls import TlsEndpoint
from tests.kit.lab import refused_keys, start_pi, write_config
from tests.kit.processes import Exporter, value, wait_for
from tests.kit.tls import crafted, hostile_cert

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    # cryptography warns about the over-long CN we build on purpose.
    pytest.mark.filterwarnings("ignore:Attribute's length must be:UserWarning"),
]

HOSTILE = {
    "quotes": 'say "hi" \\ back\\slash } {brace} \' single',
    "newline": "first line\nsecond line\r\nthird",
    "html": "<script>alert(1)</script><img src=x onerror=alert(2)>&amp;",
    "exposition": 'x"} 1\ntofu_certificate_mismatch{store="evil",entry="e"} 1\n# EOF',
    "huge": "A" * 10_000,
    "unicode": "Zürich 東京 \u202eright-to-left",
}
# No raw control, separator or bidi character in any label value.
RAW_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
CAP = 10
BIG = 30


def invalid_utf8_der() -> bytes:
    """A certificate whose UTF8String CN holds bytes that are not UTF-8 (OpenSSL will not
    load it as a server certificate, so a hand-made handshake serves it)."""
    der = make_cert([("CN", "MARKER-MARKER")]).der
    return der.replace(b"MARKER-MARKER", b"\xff\xfe\xc3(<b>\\\"}\n")


@dataclass
class Scene:
    exporter: Exporter
    endpoints: dict[str, TlsEndpoint]
    utf8_endpoint: str


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def scene(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scene]:
    workdir = tmp_path_factory.mktemp("hostile")
    endpoints = {
        name: TlsEndpoint([("CN", "x")], bundle=hostile_cert(cn, org=cn[:200]))
        for name, cn in HOSTILE.items()
    }
    for ep in endpoints.values():
        await ep.start()
    der = invalid_utf8_der()
    server = await asyncio.start_server(
        crafted(len(der).to_bytes(3, "big") + der), "127.0.0.1", 0)
    utf8_endpoint = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    pi = await start_pi("evil", page_lines=0)
    for ep in endpoints.values():
        pi.add_entry(f"{ep.host}_{ep.port}", ep.current)
    pi.add_entry(utf8_endpoint.replace(":", "_"), make_cert([("CN", "utf8")]))
    big = await start_pi("big", page_lines=0)
    for i, key in enumerate(refused_keys(BIG)):  # nothing listens on these: every probe is refused at once
        big.add_entry(key, make_cert([("CN", f"peer-{i}")]))
    config = write_config(
        workdir, {"evil": pi, "big": big}, interval="30s",
        store_extra={"big": {"max_entries": CAP}},
    )
    exporter = Exporter(config, workdir)
    try:
        await exporter.start()
        yield Scene(exporter, endpoints, utf8_endpoint)
    finally:
        await exporter.stop()
        server.close()
        for ep in endpoints.values():
            await ep.stop()
        await pi.stop()
        await big.stop()


def expected_subject_label(cn: str, org: str) -> str:
    """OpenSSL one-line style (`/O=.../CN=...`, `\\` and `/` backslash-escaped); a value with
    control or bidi characters shows them as escapes; cut to LABEL_MAX characters with a
    trailing ellipsis."""
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace("/", "\\/")

    text = f"/O={esc(org)}/CN={esc(cn)}"
    if any(c in text for c in "\n\r\u202e"):  # shown as escapes, backslashes doubled
        text = (text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
                .replace("\u202e", "\\u202e"))
    return text if len(text) <= 256 else text[:255] + "…"


async def test_metrics_parse_and_bound_every_network_label(scene: Scene) -> None:
    body, _ = await scene.exporter.metrics()
    families = {f.name: f for f in text_string_to_metric_families(body)}
    # Nobody smuggled a series in: the only stores are the configured two.
    stores = {s.labels["store"] for f in families.values() for s in f.samples if "store" in s.labels}
    assert stores == {"evil", "big"}
    live = {s.labels["endpoint"]: s.labels for s in families["tofu_live_certificate_info"].samples}
    for name, cn in HOSTILE.items():
        labels = live[scene.endpoints[name].endpoint]
        for key in ("subject", "issuer"):
            assert len(labels[key]) <= LABEL_MAX, (name, key, len(labels[key]))
        # Escaped on the way out, unescaped by the parser: the text round-trips exactly. The
        # expectation is written out here from the raw CN and O, not with the product's own
        # subject formatting and bounding.
        assert labels["subject"] == expected_subject_label(cn, org=cn[:200]), name
        for key in ("subject", "issuer"):
            assert not RAW_CONTROL.search(labels[key]), (name, key, labels[key])
    for fam in families.values():
        for s in fam.samples:
            for v in s.labels.values():
                assert len(v) <= LABEL_MAX
    # The stored side: PI printed these subjects in its listing; they are labels too.
    info = [s for s in families["tofu_entry_info"].samples if s.labels["store"] == "evil"]
    assert info and all(len(s.labels["subject"]) <= LABEL_MAX for s in info)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus) missing")
async def test_promtool_accepts_the_exposition(scene: Scene, tmp_path: Path) -> None:
    body, _ = await scene.exporter.metrics()
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, text=True, timeout=30
    )
    # Exit 0: no parse error and no lint finding, hostile labels included.
    assert result.returncode == 0, result.stdout + result.stderr
    broken = body.replace('tofu_store_up{store="evil"}', 'tofu_store_up{store="ev"il"}')
    bad = subprocess.run(
        ["promtool", "check", "metrics"], input=broken, capture_output=True, text=True, timeout=30
    )
    assert bad.returncode != 0  # promtool does catch a broken label, so the check above means it


async def test_invalid_utf8_certificate_is_a_clear_failure(scene: Scene) -> None:
    body, _ = await scene.exporter.metrics()
    assert value(body, "tofu_probe_success", endpoint=scene.utf8_endpoint) == 0.0
    status, page, _ = await scene.exporter.get("/")
    # The plaintext TLS 1.2 read hands the DER to cryptography, which rejects it.
    assert status == 200 and "certificate could not be parsed" in page


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


async def test_landing_page_shows_hostile_text_without_running_it(scene: Scene) -> None:
    status, page, _ = await scene.exporter.get("/")
    assert status == 200
    parser = Tags()
    parser.feed(page)
    parser.close()
    tags = {t for t, _ in parser.tags}
    assert "script" not in tags and "img" not in tags, tags
    assert not any(k.startswith("on") for _, attrs in parser.tags for k, _ in attrs)
    text = "".join(parser.text)
    # Shown as text ("/" escaped as in OpenSSL 1.0; text.visible doubles that backslash).
    assert "<script>alert(1)<\\\\/script>" in text
    assert visible(format_subject((("CN", HOSTILE["quotes"]),))) in text
    assert "A" * 200 in text


async def test_series_cap_bites_with_metric_and_log(scene: Scene) -> None:
    body, _ = await scene.exporter.metrics()
    assert value(body, "tofu_store_entries_dropped", store="big") == BIG - CAP
    assert value(body, "tofu_store_entries_dropped", store="evil") == 0
    entries = [k for k in _entry_keys(body) if k[0] == "big"]
    assert len(entries) == CAP
    states = [s for s in text_string_to_metric_families(body) if s.name == "tofu_certificate_state"]
    assert sum(1 for s in states[0].samples if s.labels["store"] == "big") == CAP * 4
    log = await wait_for(lambda: _log_line(scene.exporter), 5)
    assert f"max_entries={CAP}" in log and f"entries={BIG}" in log and "store=big" in log


async def _log_line(exporter: Exporter) -> str | None:
    return next((ln for ln in exporter.log().splitlines() if "max_entries" in ln), None)


def _entry_keys(body: str) -> list[tuple[str, str]]:
    for fam in text_string_to_metric_families(body):
        if fam.name == "tofu_entry_info":
            return [(s.labels["store"], s.labels["entry"]) for s in fam.samples]
    return []

