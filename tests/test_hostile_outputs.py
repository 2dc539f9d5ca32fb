"""Hostile text never becomes a line an operator could paste (issue 10), end to end.

A lab PI stores certificates whose subjects hold a newline followed by an indented fake
`deletecert host 10.0.0.2_8082`, a carriage return, `ESC[2J`, U+2028, U+202E, HTML and
shell syntax (PI prints the control bytes escaped, `\\0A`; the parser decodes them); the
live endpoints present regenerated certificates with the same kind of subjects, so every
entry but one is a real `mismatch`. `check` (text and JSON), `remediate` (dry run, text and
JSON) run as the real CLI; /metrics comes from a real `serve`. In every terminal output the
only lines holding a deletecert command are the real fixes, nothing holds a raw control
character, the JSON is JSON (ASCII, round-trips the subjects), and both prometheus_client's
parser and `promtool check metrics` accept the scrape with no raw control in any label.
Fails on 5dda20e and on main before this change (the fake line appears in `check` and in
the remediation plan).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from pilab.tls import TlsEndpoint
from tests.kit.lab import start_pi, write_config
from tests.kit.processes import Exporter, acli
from tests.kit.tls import hostile_cert

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    # cryptography warns about the over-long CNs built on purpose.
    pytest.mark.filterwarnings("ignore:Attribute's length must be:UserWarning"),
]

FAKE = "ncs certvalidation tofu-certs deletecert host 10.0.0.2_8082"
HOSTILE = {
    "newline": f"peer\n    {FAKE}",
    "crlf": f"peer\r\n    {FAKE}",
    "cr": f"{'x' * 70}\r    {FAKE}",  # in a terminal, overwrites the line it is on
    "ansi": "\x1b[2J\x1b[Hscreen cleared",
    "bidi": "\u202etxt.exe",
    "separator": f"peer\u2028    {FAKE}",
    "html": "<script>alert(1)</script>",
    "shell": "$(rm -rf /)`id`;reboot",
}
# Anything a terminal or a line-splitting tool would act on (line ends are checked apart).
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
COMMAND = re.compile(r"deletecert\s+host\s+(\S+)")


@dataclass
class Lab:
    config: Path
    workdir: Path
    mismatched: set[str]  # the keys whose fix is real
    matching: str


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def lab(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Lab]:
    workdir = tmp_path_factory.mktemp("hostile-out")
    endpoints: list[TlsEndpoint] = []
    pi = await start_pi("evil", page_lines=0)
    mismatched = set()
    for name, text in HOSTILE.items():
        ep = TlsEndpoint([("CN", "x")], bundle=hostile_cert(f"{text} new", org=text))
        await ep.start()
        endpoints.append(ep)
        key = f"{ep.host}_{ep.port}"
        pi.add_entry(key, hostile_cert(f"{text} old ({name})", org=text))  # regenerated since
        mismatched.add(key)
    same = TlsEndpoint([("CN", "x")], bundle=hostile_cert(HOSTILE["newline"], org="same"))
    await same.start()
    endpoints.append(same)
    matching = f"{same.host}_{same.port}"
    pi.add_entry(matching, same.current)
    config = write_config(workdir, {"evil": pi}, interval="30s")
    try:
        yield Lab(config, workdir, mismatched, matching)
    finally:
        await pi.stop()
        for ep in endpoints:
            await ep.stop()


async def cli(lab: Lab, *args: str) -> tuple[int, str, str]:
    """The real CLI in a subprocess (asynchronously: the lab runs in this event loop)."""
    done = await acli(*args, "--config.file", str(lab.config), "--storage.path",
                      str(lab.workdir / "cli-data"), cwd=lab.workdir)
    return done.returncode, done.stdout, done.stderr


def assert_only_real_fixes(text: str, lab: Lab, what: str) -> None:
    assert not RAW.search(text), (what, RAW.search(text), text)
    keys = []
    for line in text.splitlines():
        m = COMMAND.search(line)
        if m and line.lstrip().startswith(("ncs ", "fix (mismatch)", "on evil:")):
            keys.append(m.group(1))
        # A subject that mentions the command is shown escaped, on its own entry's line,
        # never as a line of its own.
        assert not line.lstrip().startswith(FAKE), (what, line)
    assert set(keys) == lab.mismatched, (what, keys)
    assert "10.0.0.2_8082" not in keys


async def test_check_text_and_json(lab: Lab) -> None:
    code, out, err = await cli(lab, "check")
    assert code == 1, err  # mismatches
    assert_only_real_fixes(out, lab, "check")
    assert not RAW.search(err), err
    assert "\\n    ncs certvalidation" in out  # the subject is there, made visible
    code, js, err = await cli(lab, "check", "--output", "json")
    assert js.isascii() and not RAW.search(js)
    rows = json.loads(js)
    fixes = {r["entry"] for r in rows if r["remediation"]}
    assert fixes == lab.mismatched
    assert all(r["remediation"] == f"ncs certvalidation tofu-certs deletecert host {r['entry']}"
               for r in rows if r["remediation"])
    # JSON keeps the data as it is: the hostile subject round-trips exactly.
    match = next(r for r in rows if r["entry"] == lab.matching)
    assert match["state"] != "mismatch" and match["remediation"] is None
    assert f"CN={HOSTILE['newline']}" in match["stored_subject"]


async def test_remediate_dry_run_text_and_json(lab: Lab) -> None:
    code, out, err = await cli(lab, "remediate")
    assert code == 0, err
    assert_only_real_fixes(out, lab, "remediate")
    assert not RAW.search(err), err
    commands = [ln.strip() for ln in out.splitlines() if ln.startswith("    ncs ")]
    assert sorted(commands) == sorted(f"ncs certvalidation tofu-certs deletecert host {k}"
                                      for k in lab.mismatched)
    code, js, err = await cli(lab, "remediate", "--output", "json")
    assert js.isascii() and not RAW.search(js)
    plan = json.loads(js)
    steps = [s for sp in plan["stores"] for s in sp["steps"]]
    assert {s["entry"] for s in steps} == lab.mismatched
    assert {s["command"] for s in steps} == {
        f"ncs certvalidation tofu-certs deletecert host {k}" for k in lab.mismatched}
    subjects = "".join(s["stored_subject"] for s in steps)
    assert FAKE in subjects and "\u202e" in subjects  # the data, unharmed, as JSON data


async def test_metrics_with_hostile_subjects_parse_and_pass_promtool(lab: Lab) -> None:
    exporter = Exporter(lab.config, lab.workdir)
    await exporter.start()
    try:
        body, _ = await exporter.metrics()
        log = exporter.log()
    finally:
        await exporter.stop()
    assert not RAW.search(body), RAW.search(body)
    assert not any(ln.lstrip().startswith("ncs ") for ln in body.splitlines())
    families = list(text_string_to_metric_families(body))
    labels = [v for f in families for s in f.samples for v in s.labels.values()]
    assert not any(RAW.search(v) for v in labels)
    subjects = [s.labels["subject"] for f in families for s in f.samples
                if f.name in ("tofu_entry_info", "tofu_live_certificate_info")]
    assert len(subjects) == 2 * (len(HOSTILE) + 1)
    assert any("\\n    ncs certvalidation" in v for v in subjects)  # shown, escaped
    assert any("\\u202e" in v for v in subjects)
    assert not RAW.search(log), RAW.search(log)
    if shutil.which("promtool") is None:
        pytest.skip("promtool (Debian prometheus) missing")
    result = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
