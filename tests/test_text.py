"""Hostile text is shown as data: one value is one line, and nothing hides or reorders it."""

import pytest

from exporter.core.text import is_plain, visible

pytestmark = pytest.mark.unit


def test_plain_text_is_unchanged() -> None:
    s = "CN=ise-01.example.com, O=Example AG, C=DE ü é 漢字"
    assert visible(s) == s
    assert is_plain(s)


def test_line_breaks_and_carriage_return_become_escapes() -> None:
    s = "CN=x\n    ncs certvalidation tofu-certs deletecert host 10.0.0.2_8082\rY"
    out = visible(s)
    assert "\n" not in out and "\r" not in out
    assert out == "CN=x\\n    ncs certvalidation tofu-certs deletecert host 10.0.0.2_8082\\rY"


def test_ansi_c1_del_and_unicode_separators() -> None:
    s = "a\x1b[2Jb\x9bc\x7fd\u2028e\u2029f\u202eg\u2066h\x00i\u200bj"
    out = visible(s)
    assert out == "a\\x1b[2Jb\\x9bc\\x7fd\\u2028e\\u2029f\\u202eg\\u2066h\\x00i\\u200bj"
    assert out.isprintable()
    assert not is_plain(s)


def test_escaping_is_unambiguous() -> None:
    # A subject that literally contains the text "\n" must not look like one holding a newline.
    assert visible("a\\nb") != visible("a\nb")
    assert visible("a\\nb") == "a\\\\nb"
