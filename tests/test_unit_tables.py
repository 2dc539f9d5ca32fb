"""Module-level tables and patterns, by tables of accepted and rejected inputs: mutmut mutates
only function bodies, so the key grammar (exporter.core.pi_commands), endpoints (exporter.core.endpoint),
the unsafe characters (exporter.core.text) and the shared verdicts (exporter.core.verdict) are pinned
here."""

from __future__ import annotations

import pytest

from exporter.core.endpoint import (
    entry_endpoint,
    format_endpoint,
    is_loopback,
    parse_endpoint,
    split_endpoint,
)
from exporter.core.model import Baseline, BaselineKind, Evidence, State
from exporter.core.pi_commands import DELETECERT, KEY_RE, LISTCERTS, deletecert, is_key
from exporter.core.text import is_plain, visible
from exporter.core.verdict import decide
from tests.kit.builders import FP_A, FP_B, cert, entry, subj

pytestmark = pytest.mark.unit

# ---- the key grammar: what may become the one argument of deletecert -------------------------


@pytest.mark.parametrize("key", [
    "10.0.0.1_8082", "127.0.0.1_1", "a_99999", "ise_node_01.lab_443", "fe80::1%eth0_443",
    "[2001:db8::5]_443", "[fe80::1%eth0]_8443", "Host-A.example.COM_8082", "x_0",
])
def test_keys_the_grammar_accepts(key: str) -> None:
    assert is_key(key)
    assert deletecert(key) == f"ncs certvalidation tofu-certs deletecert host {key}"


@pytest.mark.parametrize("key", [
    "", "_443", "10.0.0.1", "10.0.0.1_", "10.0.0.1_123456", "10.0.0.1_44a", "10.0.0.1 _443",
    "10.0.0.1_443 ", " 10.0.0.1_443", "10.0.0.1_443\n", "a;reload_443", "a_443;reload",
    "a|b_443", "a$(x)_443", "a`x`_443", "a/b_443", "[]_443", "[2001:db8::5_443", "2001:db8::5]_443",
    "[a b]_443", "a\u00e9_443", "10.0.0.1_\u0664\u0664\u0663", "a_443\x00",
])
def test_keys_the_grammar_rejects(key: str) -> None:
    assert not is_key(key)
    assert KEY_RE.fullmatch(key) is None


def test_the_commands() -> None:
    assert LISTCERTS == "ncs certvalidation tofu-certs listcerts"
    assert DELETECERT == "ncs certvalidation tofu-certs deletecert host"


# ---- endpoints ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "endpoint"), [
    ("10.0.0.3:443", "10.0.0.3:443"),
    ("  10.0.0.3:443 ", "10.0.0.3:443"),
    ("ISE.Example.com:443", "ise.example.com:443"),
    ("[2001:DB8::1]:443", "[2001:db8::1]:443"),
    ("[::ffff:10.0.0.1]:8443", "[::ffff:10.0.0.1]:8443"),
    ("h:1", "h:1"),
    ("h:65535", "h:65535"),
    ("h:0443", "h:443"),
])
def test_endpoints_accepted(text: str, endpoint: str) -> None:
    assert parse_endpoint(text) == endpoint


@pytest.mark.parametrize(("text", "error"), [
    ("h:0", "must be a port number 1-65535"),
    ("h:65536", "must be a port number 1-65535"),
    ("h", "must be host:port (IPv6 as [addr]:port)"),
    ("h:", "must be host:port (IPv6 as [addr]:port)"),
    (":443", "must be host:port (IPv6 as [addr]:port)"),
    ("2001:db8::1:443", "must be host:port (IPv6 as [addr]:port)"),
    ("[2001:db8::g]:443", "must be host:port (IPv6 as [addr]:port)"),
    ("[h]x:443", "must be host:port (IPv6 as [addr]:port)"),
    ("a b:443", "must be host:port (IPv6 as [addr]:port)"),
    ("h:44a", "must be host:port (IPv6 as [addr]:port)"),
])
def test_endpoints_rejected(text: str, error: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_endpoint(text)
    assert str(raised.value) == error


@pytest.mark.parametrize(("host", "port", "endpoint"), [
    ("10.0.0.1", 443, "10.0.0.1:443"),
    ("2001:db8::1", 443, "[2001:db8::1]:443"),
    ("[2001:db8::1]", 443, "[2001:db8::1]:443"),  # already bracketed
    ("fe80::1%eth0", 8082, "[fe80::1%eth0]:8082"),
    ("ise.example", 1, "ise.example:1"),
    ("Xbox-X", 8443, "Xbox-X:8443"),  # only brackets are stripped
])
def test_format_and_split_endpoint(host: str, port: int, endpoint: str) -> None:
    assert format_endpoint(host, port) == endpoint
    assert split_endpoint(endpoint) == (host.strip("[]"), port)


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("localhost", True), ("LOCALHOST", True), ("localhost.localdomain", True),
    ("ip6-localhost", True), ("::1", True), ("0:0:0:0:0:0:0:1", True), ("0::1", True),
    ("127.0.0.2", False), ("127.1.2.3", False), ("10.0.0.1", False), ("::2", False), (":::", False),
    ("localhost2", False), ("fe80::1", False), ("", False),
])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_entry_endpoint_probes_a_self_entry_at_the_self_address() -> None:
    assert entry_endpoint("10.0.0.1", "127.0.0.1", 8082) == "10.0.0.1:8082"
    assert entry_endpoint("Prime.Example", "localhost", 8082) == "prime.example:8082"
    assert entry_endpoint("2001:db8::1", "::1", 8082) == "[2001:db8::1]:8082"
    assert entry_endpoint("10.0.0.1", "Peer.Example", 443) == "peer.example:443"
    assert entry_endpoint("10.0.0.1", "127.0.0.2", 443) == "127.0.0.2:443"  # the lab's peers


# ---- what `visible` escapes ----------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "shown"), [
    ("plain text: /C=US/CN=x, é ü 漢字 🔑", "plain text: /C=US/CN=x, é ü 漢字 🔑"),
    ("a\\b", "a\\\\b"), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"), ("\x00", "\\x00"),
    ("\x1b[2J", "\\x1b[2J"), ("\x1f", "\\x1f"), ("\x7f", "\\x7f"), ("\x80", "\\x80"),
    ("\x9f", "\\x9f"), ("\xa0", "\xa0"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029"),
    ("\u202a", "\\u202a"), ("\u202e", "\\u202e"), ("\u2066", "\\u2066"), ("\u2069", "\\u2069"),
    ("\u200b", "\\u200b"), ("\u200d", "\\u200d"), ("\u200e", "\\u200e"), ("\u200f", "\\u200f"),
    ("\u061c", "\\u061c"), ("\u2060", "\\u2060"), ("\ufeff", "\\ufeff"),
    ("\u2027", "\u2027"), ("\u202f", "\u202f"), ("\u2065", "\u2065"), ("\u206a", "\u206a"),
])
def test_visible(raw: str, shown: str) -> None:
    assert visible(raw) == shown
    assert is_plain(raw) is (raw == shown)


# ---- the verdicts every entry shares --------------------------------------------------------------


SUBJ = subj("peer")
E = entry("10.0.0.1_443", SUBJ)


def live(fp: str, subject: object = SUBJ) -> object:
    from exporter.core.model import ProbeResult

    return ProbeResult("10.0.0.1:443", cert(fp, subject), None, 0.1, 1.0)  # type: ignore[arg-type]


@pytest.mark.parametrize(("args", "state", "evidence", "reason"), [
    ((live(FP_A), None, FP_A), "match", "fingerprint", "live fingerprint equals the pin"),
    ((live(FP_A), None, None, True), "mismatch", "log", "the PI server logged 'TOFU failed' for this peer"),
    ((live(FP_A), Baseline(BaselineKind.WITNESSED, FP_A, 1.0)), "match", "baseline",
     "live certificate equals the one seen when the entry appeared"),
    ((live(FP_A), Baseline(BaselineKind.ATTESTED, FP_A, 1.0)), "match", "attested",
     "live certificate equals the one accepted while PI's connection to it worked"),
    ((live(FP_A), Baseline(BaselineKind.ADOPTED, FP_A, 1.0)), "unknown", "none",
     "the entry was already stored when the exporter first read this PI server, so the certificate "
     "PI stored was never seen, and a matching subject proves nothing; pin its fingerprint, or "
     "accept the live one once PI's connection to the peer is seen working"),
    ((live(FP_A), Baseline(BaselineKind.WITNESSED, None, 1.0)), "unknown", "none",
     "the entry appeared but its endpoint has not delivered a certificate since; pin its "
     "fingerprint, or accept the live one once PI's connection to the peer is seen working"),
    ((live(FP_A), None), "unknown", "none",
     "subjects match but the stored certificate was never seen; pin its fingerprint, or accept the "
     "live one once PI's connection to the peer is seen working"),
    ((live(FP_A), None, FP_B), "mismatch", "fingerprint",
     "live fingerprint aaaaaaaaaaaaaaaa… differs from the pinned bbbbbbbbbbbbbbbb…"),
    ((live(FP_B), Baseline(BaselineKind.WITNESSED, FP_A, 1.0)), "mismatch", "baseline",
     "live certificate changed since the entry appeared (aaaaaaaaaaaaaaaa… -> bbbbbbbbbbbbbbbb…)"),
    ((live(FP_B), Baseline(BaselineKind.ADOPTED, FP_A, 1.0)), "mismatch", "baseline",
     "live certificate changed while the entry stayed (aaaaaaaaaaaaaaaa… -> bbbbbbbbbbbbbbbb…)"),
    ((live(FP_B), Baseline(BaselineKind.ATTESTED, FP_A, 1.0)), "mismatch", "attested",
     "live certificate changed since it was accepted (aaaaaaaaaaaaaaaa… -> bbbbbbbbbbbbbbbb…)"),
    ((live(FP_A, subj("other")), None), "mismatch", "subject",
     "live subject /C=US/O=Cisco Systems/CN=other differs from the stored "
     "/C=US/O=Cisco Systems/CN=peer"),
    ((None, None), "unreachable", "none", "no live certificate: not probed yet"),
])
def test_verdicts_and_their_reasons(args: tuple, state: str, evidence: str, reason: str) -> None:  # type: ignore[type-arg]
    v = decide(E, *args)
    assert (v.state, v.evidence, v.reason) == (State(state), Evidence(evidence), reason)


def test_every_unknown_verdict_names_the_way_out() -> None:
    """_unknown builds the shared unknown verdicts at import; called here, mutmut can see it."""
    from exporter.core.model import Verdict
    from exporter.core.verdict import _unknown

    assert _unknown("why") == Verdict(
        State.UNKNOWN, Evidence.NONE,
        "why; pin its fingerprint, or accept the live one once PI's connection to the peer is seen "
        "working")
