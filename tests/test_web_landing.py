"""The landing page with hostile text from both sides: subjects stored on the lab PI and
subjects of the live certificates hold a newline followed by a fake deletecert line, a
carriage return, ESC[2J, a bidi override and <script>. The page must show them as one inert
line each, and only real fixes (validated keys of `mismatch` entries) carry the fix class.
v0.1 printed the newline and the fake command inside the remediation <pre>, classed as a fix."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from html.parser import HTMLParser

import pytest
import pytest_asyncio

from exporter.remediate.plan import deletecert_command
from pilab.tls import TlsEndpoint
from tests.kit.lab import start_pi, write_config
from tests.kit.processes import Exporter, wait_for
from tests.kit.tls import hostile_cert

pytestmark = [pytest.mark.asyncio(loop_scope="module"),
              pytest.mark.filterwarnings("ignore:Attribute's length must be:UserWarning")]

FAKE = "ncs certvalidation tofu-certs deletecert host 10.0.0.2_8082"
STORED = {  # what PI stored (and prints in listcerts)
    "newline": f"ha-peer\n    {FAKE}",
    "cr": "prime\r    " + FAKE,
    "esc": "\x1b[2Jcleared",
    "bidi": "\u202etxt.exe",
    "script": "<script>alert(1)</script>",
}
LIVE = {name: f"{v} (renewed)\n{FAKE}" for name, v in STORED.items()}  # what the peer serves now
RAW = ("\r", "\x1b", "\u202e")


@dataclass
class Scene:
    exporter: Exporter
    keys: dict[str, str]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def scene(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scene]:
    workdir = tmp_path_factory.mktemp("landing")
    pi = await start_pi("evil", page_lines=0)
    endpoints, keys = [], {}
    for name in STORED:
        ep = TlsEndpoint([("CN", "x")], bundle=hostile_cert(LIVE[name], org=LIVE[name]))
        await ep.start()
        endpoints.append(ep)
        keys[name] = f"{ep.host}_{ep.port}"
        pi.add_entry(keys[name], hostile_cert(STORED[name], org=STORED[name]))
    config = write_config(workdir, {"evil": pi}, interval="30s")
    exporter = Exporter(config, workdir)
    try:
        await exporter.start()
        yield Scene(exporter, keys)
    finally:
        await exporter.stop()
        await pi.stop()
        for ep in endpoints:
            await ep.stop()


class Page(HTMLParser):
    """Text per element class, and the text of every `fix` element."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.fixes: list[str] = []
        self.text: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        if tag in ("br", "wbr", "meta", "col", "img", "input"):
            return
        cls = dict(attrs).get("class") or ""
        self.stack.append(cls)
        if "fix" in cls.split():
            self.fixes.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag not in ("br", "wbr", "meta", "col", "img", "input") and self.stack:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if any("fix" in c.split() for c in self.stack):
            self.fixes[-1] += data


async def test_hostile_text_is_inert_and_only_real_fixes_are_fixes(scene: Scene) -> None:
    async def mismatches() -> list[dict[str, str]]:
        _, body, _ = await scene.exporter.get("/api/v1/entries")
        return [e for e in json.loads(body)["data"] if e["state"] == "mismatch"]
    stale = await wait_for(mismatches, 20)
    assert {e["entry"] for e in stale} == set(scene.keys.values())  # subjects differ: all stale
    status, html, _ = await scene.exporter.get("/")
    assert status == 200
    page = Page()
    page.feed(html)
    text = "".join(page.text)
    for raw in RAW:
        assert raw not in html, repr(raw)
    assert "script" not in page.tags
    assert "\\x1b[2Jcleared" in text and "\\u202etxt.exe" in text and "\\r" in text
    assert "<script>alert(1)<" in text  # shown as text
    # The fake command never starts a line of its own: every occurrence is inside one
    # escaped value (after "\n    " shown as characters).
    for line in text.splitlines():
        assert not line.strip().startswith("ncs certvalidation"), line
    # Fixes: exactly the validated commands of the mismatches, whole, one line each.
    want = {deletecert_command(e["entry"]) for e in stale}
    assert set(page.fixes) == want
    assert all("\n" not in f for f in page.fixes)
    assert FAKE not in page.fixes


async def test_entries_json_is_json_escaped(scene: Scene) -> None:
    _, body, _ = await scene.exporter.get("/api/v1/entries?store=evil")
    for raw in RAW:
        assert raw not in body
    data = json.loads(body)
    assert any("\x1b[2J" in e["live_subject"] for e in data["data"])  # data, decoded
    assert re.search(r"\\u001b\[2J", body)
