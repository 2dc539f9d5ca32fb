"""The listcerts parser's edge lines, in-process (exporter.sources.prime.listing): which lines count
as unparsed (the `tofu_store_unparsed_lines` metric), how PTY debris is removed, the key's
grammar and length cap, the cap on entries, and the sharing of repeated subjects."""

from __future__ import annotations

import pytest

from exporter.sources.prime.listing import (
    MAX_KEY,
    cli_error,
    numbered,
    parse_capped,
    parse_listing,
    parse_numbered,
)
from tests.kit.tables import BAD_ENTRY_LINES, KEY_FORMS

pytestmark = pytest.mark.unit


def keys(text: str) -> list[str]:
    return [e.key for e in parse_listing(text).entries]


def test_a_line_that_mentions_host_or_subject_anywhere_is_unparsed() -> None:
    text = "\n".join([
        "Trusted certificates:",  # ignored: no entry syntax
        "hostname is prime-pri",  # ignored: `host` without `=`
        "see HOST=10.0.0.1_443; subject=CN=x for details",  # entry syntax not at the start
        "junk Host=10.0.0.3_443",  # `host=` alone is enough
        "  Subject= CN = y",
        "host=10.0.0.2_443; subject=CN=ok",
        "SUBJECT=z",
        "prime-pri/admin#",
    ])
    got = parse_listing(text)
    assert [e.key for e in got.entries] == ["10.0.0.2_443"]
    assert got.bad_lines == ("see HOST=10.0.0.1_443; subject=CN=x for details", "junk Host=10.0.0.3_443",
                             "Subject= CN = y",
                             "SUBJECT=z")


def test_control_characters_are_removed_not_replaced_tab_kept() -> None:
    (e,) = parse_listing("host=10.0.0.1_443; subject=CN=ka\x00ng\x7f\x08\x1f").entries
    assert e.subject_text == "CN=kang" and e.subject == (("CN", "kang"),)
    (t,) = parse_listing("host=10.0.0.1_443;\tsubject=CN=a\tb").entries
    assert t.subject == (("CN", "a\tb"),)
    (k,) = parse_listing("host=10.0.\x070.1_443; subject=CN=x\r").entries
    assert k.key == "10.0.0.1_443"


@pytest.mark.parametrize(("junk", "line"), [
    ("\x1b[1;32m", "\x1b[1;32mhost=10.0.0.1_443; subject=CN=x\x1b[0m"),  # CSI colours
    ("\x1b[2K", "\x1b[2Khost=10.0.0.1_443; subject=CN=x"),  # erase line
    ("OSC BEL", "\x1b]0;prime-pri\x07host=10.0.0.1_443; subject=CN=x"),  # window title
    ("OSC ST", "\x1b]0;prime-pri\x1b\\host=10.0.0.1_443; subject=CN=x"),
    ("ESC M", "\x1bMhost=10.0.0.1_443; subject=CN=x"),  # reverse index: a two-byte sequence
    ("ESC 7", "\x1b7host=10.0.0.1_443; subject=CN=x\x1b8"),  # save / restore the cursor
    ("ESC =", "\x1b=host=10.0.0.1_443; subject=CN=x\x1b>"),  # keypad modes
    ("stray ESC", "\x1bhost=10.0.0.1_443; subject=CN=x"),  # removed alone, the `h` stays
    ("pager", " --More-- \b\b\b\b\b\b\b\b\b\b          \b\b\b\b\b\b\b\b\b\bhost=10.0.0.1_443; subject=CN=x"),
    ("pager %", "-- More (42%) --host=10.0.0.1_443; subject=CN=x"),
    ("pager case", "  -- more --  host=10.0.0.1_443; subject=CN=x"),
])
def test_pty_debris_is_removed(junk: str, line: str) -> None:
    got = parse_listing(line)
    assert [(e.key, e.subject) for e in got.entries] == [("10.0.0.1_443", (("CN", "x"),))], junk
    assert got.bad_lines == ()


def test_an_osc_without_terminator_stops_at_the_line_end() -> None:
    got = parse_listing("\x1b]0;title\nhost=10.0.0.1_443; subject=CN=x")
    assert keys("\x1b]0;title\nhost=10.0.0.1_443; subject=CN=x") == ["10.0.0.1_443"]
    assert got.bad_lines == ()


def test_the_key_length_cap_is_exactly_max_key() -> None:
    assert MAX_KEY == 260  # a DNS name (253) with `_<port>` fits
    at = "a" * (MAX_KEY - 4) + "_443"
    over = "a" * (MAX_KEY - 3) + "_443"
    got = parse_listing(f"host={at}; subject=CN=x\nhost={over}; subject=CN=y")
    assert [e.key for e in got.entries] == [at]
    assert got.bad_lines == (f"host={over}; subject=CN=y",)




@pytest.mark.parametrize(("key", "host", "port"), KEY_FORMS)
def test_keys_that_parse(key: str, host: str, port: int) -> None:
    (e,) = parse_listing(f"host={key}; subject=CN=x").entries
    assert (e.key, e.host, e.port) == (key, host, port)


@pytest.mark.parametrize("line", BAD_ENTRY_LINES)
def test_entry_lines_that_do_not_parse_are_bad_lines(line: str) -> None:
    got = parse_listing(line)
    assert got.entries == () and got.bad_lines == (line.strip(),)


@pytest.mark.parametrize("line", [
    "host=10.0.0.1_443 subject=CN=x",  # a space separates too
    "host=10.0.0.1_443;subject=CN=x",
    "HOST = 10.0.0.1_443 ; SUBJECT = CN=x",
    "Host=10.0.0.1_443;\t\tSubject=CN=x",
])
def test_separators(line: str) -> None:
    assert keys(line) == ["10.0.0.1_443"]


def test_a_repeated_key_keeps_the_first_and_counts_the_rest() -> None:
    got = parse_listing("host=a_1; subject=CN=first\nhost=a_1; subject=CN=second\nhost=b_1; subject=CN=b")
    assert [(e.key, e.subject) for e in got.entries] == [("a_1", (("CN", "first"),)), ("b_1", (("CN", "b"),))]
    assert got.bad_lines == ("host=a_1; subject=CN=second",)


def test_the_cap_keeps_the_first_entries_and_counts_the_valid_rest() -> None:
    text = "\n".join(["host=a_1; subject=CN=a", "host=b_1; subject=CN=b", "host=c_1; subject=CN=c",
                      "host=bad; subject=CN=x", "host=d_1; subject=CN=d", "host=d_1; subject=CN=d"])
    listing, beyond = parse_capped(text, 2)
    assert [e.key for e in listing.entries] == ["a_1", "b_1"]
    assert beyond == 3  # c, d and d again: past the cap keys are not remembered
    assert listing.bad_lines == ("host=bad; subject=CN=x",)
    assert parse_capped(text, None)[1] == 0
    none, all_beyond = parse_capped(text, 0)
    assert none.entries == () and all_beyond == 5
    exact, zero = parse_capped(text, 4)
    assert [e.key for e in exact.entries] == ["a_1", "b_1", "c_1", "d_1"] and zero == 0


def test_repeated_subjects_and_attributes_are_one_object() -> None:
    text = ("host=a_1; subject=/C=US/O=Cisco Systems/CN=peer\n"
            "host=b_1; subject=/C=US/O=Cisco Systems/CN=peer\n"
            "host=c_1; subject=C = US, O = Cisco Systems, CN = other")
    a, b, c = parse_listing(text).entries
    assert a.subject == b.subject and a.subject is b.subject
    assert a.subject_text is b.subject_text
    assert c.subject[0] is a.subject[0] and c.subject[1] is a.subject[1]  # ("C", "US"), ("O", ...)
    assert c.subject_text == "C = US, O = Cisco Systems, CN = other"


def test_subject_text_is_kept_as_printed_but_stripped() -> None:
    (e,) = parse_listing("host=a_1;  subject=  /C=US/CN=x   ").entries
    assert e.subject_text == "/C=US/CN=x"


def test_bad_lines_are_numbered_as_the_text_counts_them() -> None:
    text = ("header\r\n\r\nhost=a_1; subject=CN=a\nhost=bad; subject=CN=x\n\nsee host=b_1\n"
            "host=a_1; subject=CN=a\n")
    listing, numbers = parse_numbered(text)
    assert [e.key for e in listing.entries] == ["a_1"]
    assert listing.bad_lines == ("host=bad; subject=CN=x", "see host=b_1", "host=a_1; subject=CN=a")
    assert numbers == (4, 6, 7)
    assert list(numbered("a\r\nb\n\nc")) == [(1, "a"), (2, "b"), (3, ""), (4, "c")]
    assert parse_numbered("host=a_1; subject=CN=a") == (parse_listing("host=a_1; subject=CN=a"), ())


@pytest.mark.parametrize(("text", "error"), [
    ("\r\n% Invalid input detected at '^' marker.\r\nprime/admin# ",
     "% Invalid input detected at '^' marker."),
    ("banner\n\x1b[1m% Permission denied\x1b[0m\n% second", "% Permission denied"),
    ("  % indented\n", "% indented"),
    ("no error here\nhost=a_1; subject=CN=x 100%\n", None),
    ("", None),
])
def test_cli_error_is_the_first_line_starting_with_percent(text: str, error: str | None) -> None:
    assert cli_error(text) == error
