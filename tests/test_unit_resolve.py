"""Which names of a store's `resolve:` list a known_hosts line names (match.resolve), in-process:
the hashed fast path (one HMAC per name) must say what match_maybe_hashed says, and the
host-key endpoint ("host:port TYPE") must split only when it is one."""

from __future__ import annotations

import pytest

from exporter.core.endpoint import split_hostkey_endpoint
from exporter.sources.known_hosts import match, parse
from tests.kit.sshkeys import ED_LINE

pytestmark = pytest.mark.unit

SALT = bytes(range(20))
NAMES = ("db1.example.com", "web1.example.com", "[web1.example.com]:2222", "web1.example.com")


def resolved(text: str, names: tuple[str, ...] = NAMES) -> tuple[list[tuple[str, ...]], list[str]]:
    got = match.resolve(parse.parse(text), names)
    return [hosts for _, hosts in got.named], [u.reason for u in got.unresolved]


def test_a_hashed_line_names_exactly_the_names_its_hash_is_of() -> None:
    hashed = match.host_hash("web1.example.com", SALT)
    assert resolved(f"{hashed} {ED_LINE}\n") == ([("web1.example.com",)], [])
    # the same line, checked the slow way, agrees name by name
    (line,) = parse.parse(f"{hashed} {ED_LINE}\n").key_lines
    assert [n for n in NAMES[:3] if match.line_matches(line, match.lookup_name(*match.split_lookup(n)))] \
        == ["web1.example.com"]


def test_a_hashed_line_of_no_listed_name_stays_unresolved() -> None:
    hashed = match.host_hash("git.example.com", SALT)
    assert resolved(f"{hashed} {ED_LINE}\n") == ([], ["hashed host matches no name of the resolve list"])


def test_a_hash_with_a_byte_base64_does_not_hold_matches_nothing() -> None:
    """OpenSSH's b64_pton refuses the field: the line names no host at all."""
    salt_b64, digest = match.host_hash("web1.example.com", SALT).split("|")[2:]
    junk = f"|1|{salt_b64}|{digest[:5]}!{digest[5:]}"
    assert resolved(f"{junk} {ED_LINE}\n") == ([], ["hashed host matches no name of the resolve list"])


def test_a_pattern_names_each_matching_name_once_and_keeps_looking_after_a_repeat() -> None:
    names = ("a.example.com", "a.example.com", "b.example.com", "c.example.org")
    assert resolved(f"*.example.com {ED_LINE}\n", names) == ([("a.example.com", "b.example.com")], [])


@pytest.mark.parametrize(("endpoint", "want"), [
    ("10.0.0.5:2222 ssh-ed25519", ("10.0.0.5:2222", "ssh-ed25519")),
    ("[2001:db8::5]:22 certificate", ("[2001:db8::5]:22", "certificate")),
    ("10.0.0.5:443", None),  # a TLS endpoint
    ("10.0.0.5:2222 ", None),  # no variant after the blank
])
def test_a_host_key_endpoint_splits_only_when_it_names_a_variant(endpoint: str, want: object) -> None:
    assert split_hostkey_endpoint(endpoint) == want
