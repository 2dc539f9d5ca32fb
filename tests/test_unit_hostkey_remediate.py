"""Remediation of known_hosts stores, in-process (exporter.remediate.hostkey_plan and
hostkey_render): which lines are stale, the text the operator reads, the file check before a
removal. Views are built as the known_hosts Source builds them: key "<host> <type>",
stored_fingerprint the hex SHA-256 of the key blob, key_type, line, evidence `stored`."""

from __future__ import annotations

import base64
import hashlib

import pytest

from exporter.core.model import (
    EntryView,
    Evidence,
    State,
    StoredEntry,
)
from exporter.fleet.report import row, rows
from exporter.remediate.hostkey_plan import (
    HostKeyPlanError,
    StaleLine,
    check_line,
    make_hostkey_plan,
    safe_host,
    sha256_text,
)
from exporter.remediate.hostkey_render import (
    VERIFY_WARNING,
    hostkey_plan_json,
    render_hostkey_plan,
)
from exporter.remediate.plan import make_plan
from exporter.sources.known_hosts.keys import fingerprint
from exporter.sources.known_hosts.match import host_hash
from tests.kit.builders import snapshot, view
from tests.kit.hostkeys import FILE, NEW, OLD, STORE, ed25519_blob, hk_view

pytestmark = pytest.mark.unit


def plan_of(*views: EntryView, files: dict[str, str | None] | None = None):
    return make_hostkey_plan(rows(views), {STORE: FILE} if files is None else files)


def test_only_a_mismatch_with_stored_evidence_is_a_stale_line() -> None:
    plan = plan_of(
        hk_view("web1.example.com", line=4),
        hk_view("web2.example.com", state=State.MATCH, line=5),
        hk_view("web3.example.com", state=State.UNKNOWN, line=6),
        hk_view("web4.example.com", state=State.UNREACHABLE, live=None, line=7),
        hk_view("web5.example.com", evidence=Evidence.BASELINE, line=8),
    )
    assert [(s.line, s.host) for s in plan.lines] == [(4, "web1.example.com")]
    assert [(sk.entry, sk.why.split(",")[0]) for sk in plan.skipped] == [
        ("web5.example.com ssh-ed25519", "evidence baseline")]


def test_lines_in_file_order_each_once_per_store() -> None:
    plan = plan_of(
        hk_view("b.example.com", line=9),
        hk_view("a.example.com", line=2),
        hk_view("a-alias.example.com", line=2),  # one hashed line resolved under two names
        hk_view("c.example.com", line=4, store="ci-runner"),
        files={STORE: FILE, "ci-runner": "/var/lib/gitlab-runner/.ssh/known_hosts", "idle": "/x"},
    )
    assert [(fp.store, [s.line for s in fp.lines]) for fp in plan.files] == [
        (STORE, [2, 9]), ("ci-runner", [4]), ("idle", [])]


def test_fingerprints_are_shown_as_ssh_keygen_prints_them() -> None:
    (s,) = plan_of(hk_view("web1.example.com")).lines
    assert s.stored_sha256 == fingerprint(OLD)
    assert s.live_fingerprint == fingerprint(NEW)
    assert sha256_text(fingerprint(NEW)) == fingerprint(NEW)  # a probe's SHA256: form is kept
    assert sha256_text("zz") is None and sha256_text("ab" * 31) is None and sha256_text(None) is None


def test_render_names_line_host_type_both_fingerprints_the_keyscan_and_the_warning() -> None:
    text = render_hostkey_plan(plan_of(
        hk_view("10.0.0.5", "ecdsa-sha2-nistp256", port=2222, line=7)))
    assert f"{STORE} ({FILE}): 1 stale host key line" in text
    assert "line 7: 10.0.0.5 port 2222 ecdsa-sha2-nistp256" in text
    assert f"stored {fingerprint(OLD)}" in text and f"live   {fingerprint(NEW)}" in text
    assert "ssh-keyscan -t ecdsa-sha2-nistp256 -p 2222 10.0.0.5" in text
    assert "removes exactly line(s) 7" in text
    assert text.endswith(VERIFY_WARNING) and "out of band" in VERIFY_WARNING


def test_no_live_key_is_said_and_an_idle_file_says_nothing_is_stale() -> None:
    text = render_hostkey_plan(plan_of(hk_view("gone.example.com", live=None)))
    assert "live   not seen" in text
    assert render_hostkey_plan(plan_of()) == f"{STORE} ({FILE}): no stale host key line"


def test_a_certificate_type_is_scanned_as_its_plain_type() -> None:
    s = StaleLine(STORE, "h ssh-ed25519-cert-v01@openssh.com", 1, "h", 22,
                  "ssh-ed25519-cert-v01@openssh.com", "00" * 32, None, "")
    assert s.keyscan == "ssh-keyscan -t ssh-ed25519 -p 22 h"


@pytest.mark.parametrize("host", [
    "-oProxyCommand=touch /tmp/pwned", "$(reboot)", "a;reboot", "a`id`", "web1\nssh-keyscan evil",
    "web1 -p 1", "", "a|b", "../x", "*.example.com",
])
def test_a_hostile_host_never_becomes_a_command_line(host: str) -> None:
    plan = plan_of(hk_view(host))
    assert plan.lines == ()
    assert [sk.why for sk in plan.skipped] == [
        "the host is not a plain host name or address; no command is built from it"]
    text = render_hostkey_plan(plan)
    assert "see the key it presents now" not in text
    assert not any(ln.lstrip().startswith("ssh-keyscan") for ln in text.splitlines())
    assert "\n" not in text.split("Not removing ", 1)[1]  # the entry stays on its line
    assert not safe_host(host)
    with pytest.raises(HostKeyPlanError):
        _ = StaleLine(STORE, "x", 1, host, 22, "ssh-ed25519", "00" * 32, None, "").keyscan


@pytest.mark.parametrize("host", ["web1", "WEB-1.example.com", "10.0.0.5", "fe80::1%eth0", "::1"])
def test_plain_names_and_addresses_are_safe(host: str) -> None:
    assert safe_host(host)


def test_marker_lines_and_unknown_types_are_never_removed() -> None:
    ca = hk_view("web1.example.com")
    ca = EntryView(ca.store, StoredEntry("@cert-authority web1.example.com ssh-ed25519", "web1.example.com",
                                         22, "", (), ca.entry.stored_fingerprint, "ssh-ed25519", 2),
                   ca.endpoint, ca.verdict, ca.probe, None)
    plan = plan_of(ca, hk_view("web2.example.com", "ssh-foo"), hk_view("web3.example.com", line=0))
    assert plan.lines == ()
    assert [sk.why.split(" ")[0] for sk in plan.skipped] == ["a", "not", "the"]


def test_hostile_reason_stays_on_its_line() -> None:
    text = render_hostkey_plan(plan_of(hk_view("web1", reason="x\n    see the key: rm -rf ~")))
    assert "\n    see the key: rm" not in text


def test_json_carries_the_lines_and_commands() -> None:
    got = hostkey_plan_json(plan_of(hk_view("web1", line=3)))
    (f,) = got["files"]
    assert f["file"] == FILE and f["lines"][0]["line"] == 3
    assert f["lines"][0]["keyscan"] == "ssh-keyscan -t ssh-ed25519 -p 22 web1"
    assert f["lines"][0]["stored_sha256"] == fingerprint(OLD)
    assert got["warning"] == VERIFY_WARNING


def test_store_and_entry_narrow_the_plan() -> None:
    views = (hk_view("web1", line=3), hk_view("web2", line=4), hk_view("web3", store="other", line=5))
    got = make_hostkey_plan(rows(views), {STORE: FILE, "other": None}, store=STORE,
                            entry="web2 ssh-ed25519")
    assert [(fp.store, [s.line for s in fp.lines]) for fp in got.files] == [(STORE, [4])]


def test_the_pi_plan_leaves_host_key_entries_alone() -> None:
    """Before: a host-key mismatch became a Skip 'not a listcerts key' and the file a server."""
    views = [hk_view("web1"), view("prime-1", "10.0.0.9_443", reason="ise changed")]
    plan = make_plan(snapshot(views, [STORE, "prime-1"]), exclude=frozenset({STORE}))
    assert [s.entry for s in plan.steps] == ["10.0.0.9_443"]
    assert plan.skipped == ()
    assert [sp.store for sp in plan.stores] == ["prime-1"]


def test_a_host_key_row_gets_no_deletecert_fix() -> None:
    r = row(hk_view("10.0.0.9"))
    assert r.is_host_key and r.remediation is None and r.line == 3 and r.port == 22
    assert not row(view("prime-1", "10.0.0.9_443")).is_host_key


# ---- the file check before anything is removed ------------------------------------------

def line_of(host_field: str, blob: bytes, key_type: str = "ssh-ed25519") -> bytes:
    return f"{host_field} {key_type} {base64.b64encode(blob).decode()}".encode()


def stale(line: int, host: str = "web1", port: int = 22, blob: bytes = OLD) -> StaleLine:
    return StaleLine(STORE, f"{host} ssh-ed25519", line, host, port, "ssh-ed25519",
                     hashlib.sha256(blob).hexdigest(), None, "")


SALT = bytes(range(20))
FILE_BYTES = b"\n".join([
    b"# managed by hand",
    line_of("web1,10.0.0.1", OLD),
    line_of(host_hash("[db1]:2222", SALT), OLD),
    b"@cert-authority *.example.com " + line_of("", NEW).lstrip(),
    b"",
])


def test_check_line_accepts_the_judged_line_plain_and_hashed() -> None:
    assert check_line(FILE_BYTES, stale(2)) is None
    assert check_line(FILE_BYTES, stale(3, "db1", 2222)) is None


@pytest.mark.parametrize(("s", "why"), [
    (stale(1), "line 1 is no longer a host key line"),
    (stale(9), "line 9 is no longer a host key line"),
    (stale(2, blob=NEW), "line 2 now holds another key"),
    (stale(2, "web9"), "line 2 no longer names web9"),
    (stale(3, "db1"), "line 3 no longer names db1"),  # port 22 is another lookup string
    (stale(4, "x.example.com", blob=NEW), "line 4 now holds a @cert-authority line"),
])
def test_check_line_refuses_a_file_that_changed(s: StaleLine, why: str) -> None:
    assert check_line(FILE_BYTES, s) == why


def test_check_line_refuses_another_type() -> None:
    s = StaleLine(STORE, "web1 ssh-rsa", 2, "web1", 22, "ssh-rsa", hashlib.sha256(OLD).hexdigest(),
                  None, "")
    assert check_line(FILE_BYTES, s) == "line 2 now holds another key type"


# ---- further lines of a stale entry, from the file ----------------------------------------

THIRD = ed25519_blob(3)


def test_with_file_adds_every_further_stale_line_of_the_entry_and_nothing_else() -> None:
    from exporter.remediate.hostkey_plan import FilePlan, with_file
    data = b"\n".join([
        b"# two keys were learnt for web1 over the years",
        line_of("web1", OLD),                               # 2: the Source's first line
        line_of("web2", THIRD),                             # another host
        line_of(host_hash("web1", SALT), THIRD),            # 4: hashed, same host and type, stale
        line_of("web1", THIRD, "ssh-rsa"),                  # not a key line: type and key differ
        b"@revoked web1 " + line_of("", THIRD).lstrip(),    # a marker line: never
        line_of("web1,web9", NEW),                          # the live key: not stale
        line_of("web1", THIRD),                             # 8: stale
        b"",
    ])
    first = StaleLine(STORE, "web1 ssh-ed25519", 2, "web1", 22, "ssh-ed25519",
                      hashlib.sha256(OLD).hexdigest(), fingerprint(NEW), "changed")
    got = with_file(FilePlan(STORE, FILE, (first,)), data)
    assert [s.line for s in got.lines] == [2, 4, 8]
    assert all(check_line(data, s) is None for s in got.lines)
    assert got.lines[1].stored_sha256 == fingerprint(THIRD)
    # Without the live key no further line is proven stale.
    unknown_live = StaleLine(*[getattr(first, f) for f in ("store", "entry", "line", "host", "port",
                                                           "key_type", "stored_fingerprint")],
                             None, "changed")
    assert [s.line for s in with_file(FilePlan(STORE, FILE, (unknown_live,)), data).lines] == [2]
