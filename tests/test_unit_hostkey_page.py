"""The landing page's host-key entries, in-process (exporter.web.pages.landing): the stored and
live SHA256: fingerprints, the stale line with its ssh-keyscan command and the out-of-band
warning, for files; every host-supplied string escaped, and a hostile host name never shown as
a command. Views are built as the known_hosts Source builds them."""

from __future__ import annotations

import re

import pytest

from exporter.core.model import Evidence, State
from exporter.sources.known_hosts.keys import fingerprint
from exporter.web.pages.landing import landing_page
from tests.kit.builders import snapshot, view
from tests.kit.hostkeys import NEW, OLD, STORE, hk_view

pytestmark = pytest.mark.unit

FILE = "/home/ansible/.ssh/known_hosts"


def page(*views, files=None) -> str:  # type: ignore[no-untyped-def]
    stores = list(dict.fromkeys(v.store for v in views))
    # without the page's line-break hints (<wbr>), which may sit inside any key or fingerprint
    return landing_page(snapshot(views, stores), "test", files=files).decode().replace("<wbr>", "")


def test_a_stale_host_key_line_shows_line_fingerprints_command_and_warning() -> None:
    html = page(hk_view("web1.example.com", line=7, port=2222),
                hk_view("web2.example.com", state=State.MATCH, line=8, live=OLD),
                files={STORE: FILE})
    assert "Host keys: 1 stale known_hosts lines" in html
    assert f"<h3>{STORE} ({FILE})</h3>" in html
    assert "line 7: web1.example.com port 2222 ssh-ed25519" in html
    assert "<code class='cmd'>ssh-keyscan -t ssh-ed25519 -p 2222 web1.example.com</code>" in html
    assert html.count(fingerprint(OLD)) >= 3  # stored: fix list, and both rows' stored column
    assert fingerprint(NEW) in html
    assert "out of band" in html
    assert "class='fix'" not in html  # the PI deletecert class: never for a host key
    assert "deletecert" not in html


def test_host_key_rows_show_sha256_not_subjects() -> None:
    html = page(hk_view("web2.example.com", state=State.MATCH, line=8, live=OLD))
    row = re.search(r"<tr><td class='key'>web2\.example\.com ssh-ed25519</td>.*?</tr>", html, re.S)
    assert row is not None
    assert f"line 8: <code class='fp'>{fingerprint(OLD)}</code>" in row[0]
    assert "<td>ssh-ed25519</td>" in row[0]
    assert "Host keys:" not in html  # nothing stale


@pytest.mark.parametrize("host", ["-oProxyCommand=touch /tmp/p", "<script>alert(1)</script>",
                                  "web1\nssh-keyscan evil"])
def test_a_hostile_host_is_escaped_and_never_a_command(host: str) -> None:
    html = page(hk_view(host, reason="x\n<b>bold</b>"))
    assert "<script>" not in html and "<b>bold" not in html
    assert "ssh-keyscan -t" not in html
    assert "Host keys:" not in html
    assert "not removable here: the host is not a plain host name or address" in html
    assert "\nssh-keyscan evil" not in html


def test_pi_fixes_are_unchanged_next_to_host_keys() -> None:
    """Before: the host-key mismatch entered PI's plan and the fixes said 'no command: the key is
    not a listcerts key' under a known_hosts store."""
    html = page(view("prime-1", "10.0.0.9_443", reason="ise changed"),
                hk_view("web1", evidence=Evidence.STORED))
    assert "Fixes: 1 entries proven stale" in html
    assert "deletecert host 10.0.0.9_443" in html
    assert "not a listcerts key" not in html


def test_a_known_hosts_store_has_its_own_column_heads() -> None:
    html = page(hk_view("web1", line=3), view("prime-1", "10.0.0.9_443"))
    assert html.count("<th>stored key (line: SHA256)</th><th>key type</th><th>live SHA256</th>") == 1
    assert html.count("<th>stored subject</th><th>live subject</th>") == 1
