"""Who attested an entry, when and why, where the operator looks: the landing page and
/api/v1/entries of a running `serve`, after `accept` (another process, same --storage.path).

Real parts: a lab PI server over SSH, real TLS endpoints, the exporter as a subprocess, the
`accept` command as a subprocess. The reason is operator-typed; it is treated like any
outside text: a newline, a fake fix line, <script> and an ESC sequence must stay inert.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from exporter.core.text import visible
from pilab.pi import PiServer
from pilab.tls import TlsEndpoint
from tests.kit.lab import start_pi, write_config
from tests.kit.processes import ENV, Exporter, acli, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")

FAKE = "ncs certvalidation tofu-certs deletecert host 10.0.0.2_8082"
REASON = f"checked on ISE server connection test\n{FAKE}\n<script>alert(1)</script>\x1b[2Jdone"
OPERATOR = pwd.getpwuid(os.getuid()).pw_name  # who runs `accept`: its real uid's account


@dataclass
class Scene:
    exporter: Exporter
    attested: str  # the entry `accept` recorded
    other: str  # an entry left unknown
    before: float  # just before `accept` ran
    after: float


async def _accept(config: Path, data: Path, store: str, entry: str) -> subprocess.CompletedProcess[str]:
    """The real `accept`; LOGNAME and USER claim `alice`, which must not count."""
    return await acli("accept", "--config.file", str(config), "--storage.path", str(data),
                      "--log.level", "warn", "--store", store, "--entry", entry, "--reason", REASON,
                      "--yes", env={**ENV, "LOGNAME": "alice", "USER": "alice"})


async def _entries(exporter: Exporter) -> dict[str, dict[str, Any]]:
    status, body, _ = await exporter.get("/api/v1/entries")
    assert status == 200, body
    return {e["entry"]: e for e in json.loads(body)["data"]}


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def scene(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scene]:
    workdir = tmp_path_factory.mktemp("attest")
    ise, dnac = TlsEndpoint([("CN", "ise")]), TlsEndpoint([("CN", "dnac")])
    pi: PiServer | None = None
    exporter: Exporter | None = None
    try:
        for ep in (ise, dnac):
            await ep.start()
        pi = await start_pi("prime", entries={f"{ep.host}_{ep.port}": ep for ep in (ise, dnac)})
        config = write_config(workdir, {"prime": pi}, interval="1s")
        exporter = Exporter(config, workdir)
        await exporter.start()
        key, other = f"{ise.host}_{ise.port}", f"{dnac.host}_{dnac.port}"

        async def both_unknown() -> bool:
            got = await _entries(exporter)  # type: ignore[arg-type]
            return all(got.get(k, {}).get("state") == "unknown" for k in (key, other))

        await wait_for(both_unknown, 20)  # adopted at the first read: the operator must check
        before = time.time()
        done = await _accept(config, workdir / "data", "prime", key)
        after = time.time()
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"recorded: prime {key} is attested" in done.stdout
        yield Scene(exporter, key, other, before, after)
    finally:
        if exporter is not None:
            await exporter.stop()
        if pi is not None:
            await pi.stop()
        for ep in (ise, dnac):
            await ep.stop()


async def _attested_entry(scene: Scene) -> dict[str, Any]:
    async def shown() -> dict[str, Any] | None:
        entry = (await _entries(scene.exporter)).get(scene.attested, {})
        return entry if entry.get("attestation") else None

    # The running serve picks the commit up on its next probe cycle (1 s here).
    entry: dict[str, Any] = await wait_for(shown, 20)
    return entry


async def test_entries_json_says_who_attested_when_and_why(scene: Scene) -> None:
    entry = await _attested_entry(scene)
    assert (entry["state"], entry["evidence"], entry["baseline"]) == ("match", "attested", "attested")
    att = entry["attestation"]
    assert set(att) == {"by", "at", "reason"}
    assert att["by"] == OPERATOR
    assert att["reason"] == REASON  # data: verbatim once decoded, as the audit log has it
    assert scene.before <= att["at"] <= scene.after
    others = await _entries(scene.exporter)
    assert others[scene.other]["state"] == "unknown" and others[scene.other]["attestation"] is None
    _, raw, _ = await scene.exporter.get("/api/v1/entries")
    assert "\x1b" not in raw and "\n" not in raw  # JSON-escaped on the wire


class Page(HTMLParser):
    """The text of every `attested` element, and of every `fix` or `cmd` element."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[set[str]] = []
        self.notes: list[str] = []
        self.commands: list[str] = []
        self.text: list[str] = []
        self.tags: set[str] = set()
        self.nested = False  # an `attested` element inside a `fix`/`cmd` one

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        if tag in ("br", "meta", "col", "img", "input"):
            return
        cls = set((dict(attrs).get("class") or "").split())
        inside_command = any(c & {"fix", "cmd"} for c in self.stack)
        if "attested" in cls:
            self.nested = self.nested or inside_command
            self.notes.append("")
        if cls & {"fix", "cmd"}:
            self.commands.append("")
        self.stack.append(cls)

    def handle_endtag(self, tag: str) -> None:
        if tag not in ("br", "meta", "col", "img", "input") and self.stack:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if any("attested" in c for c in self.stack):
            self.notes[-1] += data
        if any(c & {"fix", "cmd"} for c in self.stack):
            self.commands[-1] += data


async def test_landing_page_says_who_attested_when_and_why_as_inert_text(scene: Scene) -> None:
    att = (await _attested_entry(scene))["attestation"]
    status, html, _ = await scene.exporter.get("/")
    assert status == 200
    page = Page()
    page.feed(html)
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(att["at"]))
    # One note, for the one attested entry: who, when, and the reason as one visible line.
    assert page.notes == [f"attested by {OPERATOR} at {when}: {visible(REASON)}"]
    row = html[html.rindex("<tr>", 0, html.index("class='attested'")):]
    row = row[:row.index("</tr>")]
    assert f"<td class='key'>{scene.attested}</td>" in row.replace("<wbr>", "")
    assert "<td class='state match'>match</td>" in row
    # Hostile text stays text: no raw ESC or newline in the note, no script element, and the
    # fake fix line is never a line of its own nor inside a copyable command.
    assert "\x1b" not in html and "script" not in page.tags
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\\x1b[2Jdone" in html
    assert "\n" not in page.notes[0]
    for line in "".join(page.text).splitlines():
        assert not line.strip().startswith("ncs certvalidation"), line
    assert not page.nested
    assert not any("checked on ISE" in c or FAKE in c for c in page.commands)
    assert page.commands  # the unknown entry's `accept` command is there (class `cmd`)


async def test_a_restarted_serve_still_shows_it(scene: Scene) -> None:
    """Kept in the database, read with the baselines at start: not lost with the process."""
    att = (await _attested_entry(scene))["attestation"]
    await scene.exporter.stop()
    await scene.exporter.start()
    again = await _attested_entry(scene)
    assert again["attestation"] == att
    _, html, _ = await scene.exporter.get("/")
    assert f"attested by {OPERATOR} at " in html
