"""exporter.web.pages.markup: what the page adds to hostile text is only our own markup."""

from __future__ import annotations

import pytest

from exporter.web.pages.markup import breakable, hex_groups, inert, with_code

pytestmark = pytest.mark.unit


def test_backticked_spans_become_code_and_their_text_stays_escaped() -> None:
    assert with_code("run `a <b>` then `c`.") == "run <code>a &lt;b&gt;</code> then <code>c</code>."
    # Unbalanced: shown as it is, escaped.
    assert with_code("a `b <i>") == "a `b &lt;i&gt;"
    assert with_code("no code") == inert("no code") == "no code"


def test_keys_break_after_separators_only_and_escape_first() -> None:
    assert breakable("10.0.0.1_8443") == "10.<wbr>0.<wbr>0.<wbr>1_<wbr>8443"
    assert breakable("CN=a,O=<b>") == "CN=<wbr>a,<wbr>O=<wbr>&lt;b&gt;"
    assert "\x1b" not in breakable("a\x1b_b")  # made visible before the markup


def test_fingerprints_break_every_eight_digits() -> None:
    fp = "0123456789abcdef" * 4
    assert hex_groups(fp).split("<wbr>") == [fp[i:i + 8] for i in range(0, 64, 8)]
    assert hex_groups("<script>x") == "&lt;script&gt;<wbr>x"
