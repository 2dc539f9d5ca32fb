from __future__ import annotations

import random
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.core.model import Listing, StoredEntry
from exporter.sources.prime.listing import endpoint_of, parse_listing
from tests.kit.builders import entry_lines
from tests.kit.tables import BAD_ENTRY_LINES, KEY_FORMS

# The seed's listing from docs/domain.md, verbatim (prompt line and all).
SEED = """\
prime-pri/admin# ncs certvalidation tofu-certs listcerts

Host certificate are automatically added to this list on first connection,

if trust-on-first-use is configured - ncs certvalidation certificate-check ...



host=10.0.0.1_8082;  subject= /C=US/ST=CA/L=SJ/O=Cisco Systems/OU=Prime Infra/CN=prime-pri

host=10.0.0.3_443;  subject= /C=US/ST=CA/L=SJ/O=Cisco Systems/OU=Prime Infra/CN=ISE-server

host=10.0.0.2_8082;  subject= /C=US/ST=CA/L=SJ/O=Cisco Systems/OU=Prime Infra/CN=prime-sec

prime-pri/admin#
"""

CISCO = (("C", "US"), ("ST", "CA"), ("L", "SJ"), ("O", "Cisco Systems"), ("OU", "Prime Infra"))


@pytest.mark.unit
def test_seed_listing() -> None:
    listing = parse_listing(SEED)
    assert listing.bad_lines == ()
    assert [e.key for e in listing.entries] == ["10.0.0.1_8082", "10.0.0.3_443", "10.0.0.2_8082"]
    first = listing.entries[0]
    assert first == StoredEntry(
        key="10.0.0.1_8082",
        host="10.0.0.1",
        port=8082,
        subject_text="/C=US/ST=CA/L=SJ/O=Cisco Systems/OU=Prime Infra/CN=prime-pri",
        subject=(*CISCO, ("CN", "prime-pri")),
    )
    assert [e.subject[-1] for e in listing.entries] == [
        ("CN", "prime-pri"),
        ("CN", "ISE-server"),
        ("CN", "prime-sec"),
    ]
    assert [(e.host, e.port) for e in listing.entries][1:] == [("10.0.0.3", 443), ("10.0.0.2", 8082)]


@pytest.mark.unit
def test_pi39_sample() -> None:
    listing = parse_listing("host=10.0.0.5_443; subject=CN = kong\n")
    assert listing == Listing(
        entries=(
            StoredEntry(
                key="10.0.0.5_443",
                host="10.0.0.5",
                port=443,
                subject_text="CN = kong",
                subject=(("CN", "kong"),),
            ),
        )
    )


@pytest.mark.unit
def test_empty_and_header_only() -> None:
    assert parse_listing("") == Listing(entries=())
    header = SEED.split("host=")[0]
    assert parse_listing(header) == Listing(entries=())


@pytest.mark.unit
def test_mixed_styles_and_separators() -> None:
    text = "\n".join(
        [
            "host=10.0.0.1_8082;  subject= /C=US/CN=a",
            "host=10.0.0.2_8082; subject=C = US, CN = b",
            "host=10.0.0.3_8082;subject=CN=c",
            "host=10.0.0.4_8082;    subject=  CN = d  ",
            "host=127.0.0.1_8082; subject=/C=US/ST=CA/L=SJ/O=Cisco Systems/OU=Prime Infra/CN=prime-sec",
        ]
    )
    listing = parse_listing(text)
    assert listing.bad_lines == ()
    assert [e.subject[-1][1] for e in listing.entries] == ["a", "b", "c", "d", "prime-sec"]
    assert listing.entries[1].subject == (("C", "US"), ("CN", "b"))
    assert listing.entries[3].subject_text == "CN = d"
    assert listing.entries[4].host == "127.0.0.1"


@pytest.mark.unit
@pytest.mark.parametrize("eol", ["\r\n", "\r", "\n", "\r\r\n"])
def test_line_ends_and_trailing_spaces(eol: str) -> None:
    text = SEED.replace("\n", "   " + eol)
    listing = parse_listing(text)
    assert listing.bad_lines == ()
    assert [e.key for e in listing.entries] == ["10.0.0.1_8082", "10.0.0.3_443", "10.0.0.2_8082"]
    assert listing.entries[0].subject_text.endswith("CN=prime-pri")


@pytest.mark.unit
def test_ansi_escapes_and_pager_remnants() -> None:
    text = (
        "\x1b]0;prime-pri\x07\x1b[?2004h\x1b[1mHost certificate are automatically added\x1b[0m\r\n"
        "\x1b[32mhost=10.0.0.1_8082;\x1b[0m  subject= /C=US/CN=a\x1b[K\r\n"
        " --More-- \x08\x08\x08\x08\x08\x08\x08\x08\x08\x08          \x08\x08\x08\x08\x08\x08\x08\x08"
        "\x08\x08host=10.0.0.2_8082;  subject= /C=US/CN=b\r\n"
        "\x1b[7m--More--\x1b[27m\r        \rhost=10.0.0.3_8082; subject=CN = c\r\n"
        "prime-pri/admin#\x1b[?2004l"
    )
    listing = parse_listing(text)
    assert listing.bad_lines == ()
    assert [(e.key, e.subject[-1][1]) for e in listing.entries] == [
        ("10.0.0.1_8082", "a"),
        ("10.0.0.2_8082", "b"),
        ("10.0.0.3_8082", "c"),
    ]
    assert listing.entries[0].subject_text == "/C=US/CN=a"


@pytest.mark.unit
def test_every_key_form_and_bad_line_in_one_pty_listing() -> None:
    # The shared tables, interleaved as PI prints them: CRLF, trailing blanks, a banner, the prompt.
    lines = [f"host={key};  subject= /CN=x" for key, _, _ in KEY_FORMS]
    bad = [f"{line}   " for line in BAD_ENTRY_LINES]
    mixed = [x for pair in zip(lines, bad, strict=False) for x in pair]
    mixed += lines[len(bad):] + bad[len(lines):]
    text = "\r\n".join(["prime-pri/admin# ncs certvalidation tofu-certs listcerts", "", *mixed,
                         "prime-pri/admin#"]) + "\r\n"
    listing = parse_listing(text)
    assert [(e.key, e.host, e.port) for e in listing.entries] == KEY_FORMS
    assert listing.bad_lines == tuple(line.strip() for line in BAD_ENTRY_LINES)


@pytest.mark.unit
def test_lines_mentioning_entry_syntax_are_bad_others_ignored() -> None:
    text = "\n".join(
        [
            "Welcome to Prime Infrastructure",
            "% Invalid input detected at '^' marker.",
            "garbage host=10.0.0.1_443; subject=CN = x",
            "  subject= /CN=orphan",
            "host=10.0.0.2_443; subject=CN = ok",
        ]
    )
    listing = parse_listing(text)
    assert [e.key for e in listing.entries] == ["10.0.0.2_443"]
    assert listing.bad_lines == (
        "garbage host=10.0.0.1_443; subject=CN = x",
        "subject= /CN=orphan",
    )


@pytest.mark.unit
def test_duplicate_keys_keep_first() -> None:
    text = (
        "host=10.0.0.1_8082;  subject= /CN=first\n"
        "host=10.0.0.1_8082;  subject= /CN=second\n"
        "host=10.0.0.1_8083;  subject= /CN=other\n"
    )
    listing = parse_listing(text)
    assert [(e.key, e.subject) for e in listing.entries] == [
        ("10.0.0.1_8082", (("CN", "first"),)),
        ("10.0.0.1_8083", (("CN", "other"),)),
    ]
    assert listing.bad_lines == ("host=10.0.0.1_8082;  subject= /CN=second",)


@pytest.mark.unit
def test_escaped_and_quoted_subjects_in_listing() -> None:
    text = (
        'host=10.0.0.1_443; subject=C = US, O = "Cisco, Inc.", CN = a\n'
        r"host=10.0.0.2_443; subject=O = Cisco\, Inc., CN = b" "\n"
        r"host=10.0.0.3_443;  subject= /O=Cisco\/Prime/CN=c" "\n"
    )
    listing = parse_listing(text)
    assert listing.bad_lines == ()
    assert [e.subject for e in listing.entries] == [
        (("C", "US"), ("O", "Cisco, Inc."), ("CN", "a")),
        (("O", "Cisco, Inc."), ("CN", "b")),
        (("O", "Cisco/Prime"), ("CN", "c")),
    ]
    assert listing.entries[0].subject_text == 'C = US, O = "Cisco, Inc.", CN = a'


@pytest.mark.unit
def test_endpoint_of() -> None:
    assert endpoint_of("10.0.0.1", 8082) == "10.0.0.1:8082"
    assert endpoint_of("prime-sec.example.com", 443) == "prime-sec.example.com:443"
    assert endpoint_of("2001:db8::5", 443) == "[2001:db8::5]:443"
    assert endpoint_of("fe80::1", 8082) == "[fe80::1]:8082"


# -- properties -----------------------------------------------------------------------

# Any text at all, but nothing that could become `host` once escapes are stripped, so it
# cannot legitimately add or claim an entry.
_GARBAGE = st.text(max_size=60).filter(lambda s: not re.search(r"h.*o.*s.*t", s, re.I | re.S))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(entry_lines(), max_size=8, unique_by=lambda le: le[1].key),
    st.lists(_GARBAGE, max_size=10),
    st.randoms(use_true_random=False),
    st.sampled_from(["\n", "\r\n", "\r"]),
)
def test_garbage_never_loses_a_well_formed_line(
    good: list[tuple[str, StoredEntry]],
    garbage: list[str],
    rnd: random.Random,
    eol: str,
) -> None:
    lines = [line for line, _ in good]
    for g in garbage:
        lines.insert(rnd.randint(0, len(lines)), g)
    listing = parse_listing(eol.join(lines))
    assert listing.entries == tuple(entry for _, entry in good)
    for bad in listing.bad_lines:
        assert re.search(r"host=|subject=", bad, re.I)


@pytest.mark.unit
@settings(max_examples=300)
@given(st.text(max_size=200))
def test_never_raises_on_any_text(text: str) -> None:
    listing = parse_listing(text)
    for entry in listing.entries:
        assert 1 <= entry.port <= 65535
        assert entry.subject
    assert len({e.key for e in listing.entries}) == len(listing.entries)


@settings(max_examples=100)
@given(st.lists(st.one_of(entry_lines().map(lambda le: le[0]), st.text(max_size=40))))
def test_never_raises_on_entry_like_text(lines: list[str]) -> None:
    listing = parse_listing("\n".join(lines))
    assert len(listing.entries) + len(listing.bad_lines) <= len("\n".join(lines).splitlines())


@pytest.mark.unit
def test_absurdly_long_key_is_a_bad_line_not_an_unbounded_label() -> None:
    long_host = "a" * 300
    text = f"host={long_host}_443; subject=CN = x\nhost=10.0.0.5_443; subject=CN = kong\n"
    listing = parse_listing(text)
    assert [e.key for e in listing.entries] == ["10.0.0.5_443"]
    assert len(listing.bad_lines) == 1 and long_host in listing.bad_lines[0]
