"""The pure known_hosts core: parse, match, entries, verdict, rewrite, each rule by table.

Keys and host certificates come from `cryptography` (real Ed25519/ECDSA/RSA/DSA keys, certificates
signed by a real CA key); the security-key types, which need hardware to generate, are built from
their documented wire format around real points. The OpenSSH tools themselves judge the same
cases in test_known_hosts_oracle.py.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from exporter.core import sshwire
from exporter.sources.known_hosts import client, keys, match, parse, rewrite, verdict
from exporter.sources.known_hosts import entries as kh_entries
from tests.kit.sshkeys import (
    CA_LINE,
    ED,
    ED2_LINE,
    ED_LINE,
    KEYS,
    NOW,
    P256,
    _ssh,
    b64,
    blob_of,
    host_cert,
    openssh_line,
)

# --- parse -------------------------------------------------------------------------------------

@pytest.mark.unit
@pytest.mark.parametrize("key_type", sorted(KEYS))
def test_every_plain_key_type_parses_with_its_fingerprint(key_type):
    line = parse.parse(f"host1 {KEYS[key_type]} a comment\n").lines[0]
    assert isinstance(line, parse.KeyLine), getattr(line, "reason", "")
    assert (line.key_type, line.hosts, line.comment, line.marker) == (key_type, "host1", "a comment", "")
    assert keys.key_fingerprint(line.key).startswith("SHA256:")
    assert "=" not in keys.key_fingerprint(line.key)


@pytest.mark.unit
def test_certificate_lines_parse_with_their_fields_and_signature_parts():
    blob = host_cert(ED[0], ED[2])
    line = parse.parse(f"@cert-authority host1 ssh-ed25519-cert-v01@openssh.com {b64(blob)}").lines[0]
    assert isinstance(line, parse.KeyLine)
    assert line.key_type == "ssh-ed25519-cert-v01@openssh.com"
    assert line.key.cert is not None and line.key.cert.principals == ("web1.example.com",)
    signed, sig, ca = keys.signature_parts(line.key)
    # the signed data verifies under the CA key: the caller's check, done here with cryptography
    ca_pub = serialization.load_ssh_public_key(f"ssh-ed25519 {b64(ca)}".encode())
    raw_sig = sshwire.Reader(sig)
    raw_sig.string()
    ca_pub.verify(raw_sig.string(), signed)
    # a certificate's fingerprint is its certified key's, as ssh-keygen -lf prints it
    assert keys.key_fingerprint(line.key) == keys.fingerprint(blob_of(ED_LINE))


def _rsa_blob(bits: int) -> bytes:
    n = (1 << (bits - 1)) | 1
    return _ssh(b"ssh-rsa") + _ssh(b"\x01\x00\x01") + _ssh(b"\x00" + n.to_bytes((bits + 7) // 8, "big"))


def _ed_blob(raw: bytes) -> bytes:
    return _ssh(b"ssh-ed25519") + _ssh(raw)


P256_POINT = P256.public_key().public_bytes(serialization.Encoding.X962,
                                            serialization.PublicFormat.UncompressedPoint)
ED_RAW = blob_of(ED_LINE)[19:]

BAD = [
    ("@cert-authority @revoked h " + ED_LINE, "more than one marker"),
    ("@trusted h " + ED_LINE, "invalid marker"),
    ("@cert-authority", "invalid marker"),
    ("h", "truncated before key type"),
    ("h # no key", "truncated before key type"),
    ("h ssh-ed25519", "no key after the key type"),
    ("h ssh-foo AAAA", "unknown key type"),
    ("h 2048 35 1234567", "unknown key type"),  # SSH-1 RSA
    ("h ssh-ed25519 !!notbase64", "key is not base64"),
    ("h ssh-ed25519 " + b64(_ed_blob(ED_RAW[:31])), "bad key: Ed25519 key is not 32 bytes"),
    ("h ssh-ed25519 " + b64(_ed_blob(ED_RAW) + b"x"), "bad key: trailing bytes after the key"),
    ("h ssh-rsa " + b64(_rsa_blob(1000)), "bad key: RSA modulus below 1024 bits"),
    ("h ssh-rsa " + b64(blob_of(ED_LINE)), "key type does not match the key"),
    ("h ecdsa-sha2-nistp256 " + KEYS["ecdsa-sha2-nistp384"].split()[1], "key type does not match the key"),
    ("h ecdsa-sha2-nistp256 " + b64(_ssh(b"ecdsa-sha2-nistp256") + _ssh(b"nistp256")
                                    + _ssh(P256_POINT[:-1] + bytes([P256_POINT[-1] ^ 1]))),
     "bad key: ECDSA point not on its curve"),
    ("|1|AAAA|x= " + ED_LINE, "bad host hash: salt is not 20 bytes"),
    ("|2|AAAA|x= " + ED_LINE, "bad host hash: no |1| magic"),
    ("|1|AA!A|x= " + ED_LINE, "bad host hash: salt is not base64"),
]


@pytest.mark.unit
@pytest.mark.parametrize(("text", "reason"), BAD)
def test_a_line_openssh_refuses_is_kept_as_a_bad_line_with_its_reason(text, reason):
    known = parse.parse(f"# before\n{text}\ngood {ED_LINE}\n")
    assert [type(line).__name__ for line in known.lines] == ["OtherLine", "BadLine", "KeyLine"]
    assert (known.bad_lines[0].number, known.bad_lines[0].reason) == (2, reason)


@pytest.mark.unit
def test_bad_line_text_is_shown_escaped():
    known = parse.parse(b"h\x1b[31m ssh-ed25519 AAAA\n")
    assert known.bad_lines[0].shown == "h\\x1b[31m ssh-ed25519 AAAA"


@pytest.mark.unit
def test_signature_alias_names_read_as_the_key_type_like_sshkey_read():
    line = parse.parse("h rsa-sha2-256 " + KEYS["ssh-rsa"].split()[1]).lines[0]
    assert isinstance(line, parse.KeyLine)
    assert (line.written_type, line.key_type) == ("rsa-sha2-256", "ssh-rsa")


@pytest.mark.unit
def test_numbering_comments_blank_lines_crlf_and_tabs():
    data = f"# top\r\n\r\n\th1\t{ED_LINE}\tnote\r\n  \nh2 {ED2_LINE}".encode()
    known = parse.parse(data)
    assert [line.number for line in known.lines] == [1, 2, 3, 4, 5]
    # "\r" is no whitespace to OpenSSH: a blank line of a CRLF file is a line truncated before its key
    assert [type(line).__name__ for line in known.lines] == ["OtherLine", "BadLine", "KeyLine", "OtherLine",
                                                            "KeyLine"]
    assert known.bad_lines[0].reason == "truncated before key type"
    assert known.key_lines[0].comment == "note" and known.key_lines[1].comment == ""


@pytest.mark.unit
def test_a_nul_byte_ends_the_line_as_it_does_for_openssh():
    known = parse.parse(f"h1 {ED_LINE}".encode() + b"\x00garbage\n")
    assert isinstance(known.lines[0], parse.KeyLine) and known.lines[0].comment == ""


# --- match -------------------------------------------------------------------------------------

def _c_match_pattern(s: str, p: str) -> bool:
    """match.c's match_pattern transliterated, recursion and all: the reference."""
    while True:
        if not p:
            return not s
        if p[0] == "*":
            while p and p[0] == "*":
                p = p[1:]
            if not p:
                return True
            if p[0] != "?":
                return any(s[i] == p[0] and _c_match_pattern(s[i + 1 :], p[1:]) for i in range(len(s)))
            return any(_c_match_pattern(s[i:], p) for i in range(len(s)))
        if not s or (p[0] != "?" and p[0] != s[0]):
            return False
        s, p = s[1:], p[1:]


@pytest.mark.unit
@given(st.text(alphabet="ab.", max_size=8), st.text(alphabet="ab.*?", max_size=8))
def test_match_pattern_answers_as_match_c(s, p):
    assert match.match_pattern(s.encode(), p.encode()) == _c_match_pattern(s, p)


HOSTNAME = [
    ("host1", "host1", 1),
    ("HOST1", "host1", 1),  # patterns are lowercased, as is the host
    ("host1,host2", "host2", 1),
    ("host1", "host10", 0),
    ("*.example.com", "a.example.com", 1),
    ("*.example.com", "example.com", 0),
    ("web?.example.com", "web1.example.com", 1),
    ("web?.example.com", "web10.example.com", 0),
    ("*.example.com,!bad.example.com", "bad.example.com", -1),
    ("!bad.example.com,*.example.com", "bad.example.com", -1),
    ("!bad.example.com", "good.example.com", 0),  # a negation alone matches nothing
    ("[10.0.0.5]:2222", "[10.0.0.5]:2222", 1),
    ("10.0.0.5", "[10.0.0.5]:2222", 0),
    ("[10.0.0.5]:*", "[10.0.0.5]:2222", 1),
    (",host1", "", 1),  # an empty subpattern matches the empty string
    ("host1," + "x" * 1023, "host1", 0),  # an over-long subpattern ends the walk with no match
    ("host1," + "x" * 1022, "host1", 1),
]


@pytest.mark.unit
@pytest.mark.parametrize(("patterns", "host", "want"), HOSTNAME)
def test_match_hostname(patterns, host, want):
    assert match.match_hostname(host, patterns) == want


@pytest.mark.unit
@pytest.mark.parametrize(("host", "port", "lookup"), [
    ("host1", 22, "host1"), ("Host1", 22, "host1"), ("10.0.0.5", 2222, "[10.0.0.5]:2222"), ("::1", 22, "::1"),
])
def test_lookup_name_is_put_host_port(host, port, lookup):
    assert match.lookup_name(host, port) == lookup


@pytest.mark.unit
def test_a_hashed_line_matches_only_the_string_it_hashed():
    salt = bytes(range(20))
    field = match.host_hash("[h.example.com]:2222", salt)
    line = parse.parse(f"{field} {ED_LINE}").key_lines[0]
    assert line.hashed
    assert match.line_matches(line, "[h.example.com]:2222")
    assert not match.line_matches(line, "h.example.com")
    assert not match.line_matches(line, "[h.example.com]:2223")


FILE = f"""# automation host
jump.example.com,10.0.0.1 {ED_LINE}
[10.0.0.5]:2222 {ED2_LINE}
{match.host_hash("db.example.com", bytes(20))} {ED_LINE}
{match.host_hash("gone.example.com", bytes([1] * 20))} {ED_LINE}
*.example.com,!bad.example.com {KEYS["ecdsa-sha2-nistp256"]}
*.nowhere.test {ED_LINE}
[old.example.com]:22 {ED_LINE}
@cert-authority *.example.com {CA_LINE}
@revoked * {ED2_LINE}
web?.example.com {KEYS["ssh-rsa"]}
"""
RESOLVE = ("db.example.com", "web1.example.com", "bad.example.com", "[10.0.0.5]:2222")


@pytest.mark.unit
def test_resolve_names_literals_and_matches_hashes_and_patterns_against_the_resolve_list():
    res = match.resolve(parse.parse(FILE), RESOLVE)
    named = {line.number: hosts for line, hosts in res.named}
    assert named == {
        2: ("jump.example.com", "10.0.0.1"),
        3: ("[10.0.0.5]:2222",),
        4: ("db.example.com",),
        6: ("db.example.com", "web1.example.com"),  # bad.example.com negated
        9: ("db.example.com", "web1.example.com", "bad.example.com"),
        10: RESOLVE,
        11: ("web1.example.com",),
    }
    assert {u.line.number: u.reason for u in res.unresolved} == {
        5: "hashed host matches no name of the resolve list",
        7: "pattern matches no name of the resolve list",
        8: "'[old.example.com]:22' is not a name ssh looks up",
    }


@pytest.mark.unit
def test_entries_one_per_host_and_type_with_lines_and_fingerprints():
    store = kh_entries.load(FILE + f"jump.example.com {ED2_LINE}\n", RESOLVE)
    by_key = {e.key: e for e in store.entries}
    jump = by_key["jump.example.com ssh-ed25519"]
    assert (jump.host, jump.port, jump.lookup) == ("jump.example.com", 22, "jump.example.com")
    assert jump.line_numbers == (2, 12)
    assert jump.fingerprints == (keys.fingerprint(blob_of(ED_LINE)), keys.fingerprint(blob_of(ED2_LINE)))
    port = by_key["[10.0.0.5]:2222 ssh-ed25519"]
    assert (port.host, port.port, port.lookup) == ("10.0.0.5", 2222, "[10.0.0.5]:2222")
    assert "@cert-authority web1.example.com ssh-ed25519" in by_key
    assert not by_key["@revoked web1.example.com ssh-ed25519"].probed
    assert {e.key for e in store.for_lookup("web1.example.com")} == {
        "web1.example.com ecdsa-sha2-nistp256", "@cert-authority web1.example.com ssh-ed25519",
        "@revoked web1.example.com ssh-ed25519", "web1.example.com ssh-rsa"}
    assert len(store.unresolved) == 3


# --- verdict -----------------------------------------------------------------------------------

def _host(text: str, lookup: str = "web1.example.com"):
    return kh_entries.load(text, (lookup,)).for_lookup(lookup)


def _offer(line_or_blob, verified=True):
    blob = line_or_blob if isinstance(line_or_blob, bytes) else blob_of(line_or_blob)
    return verdict.Offer(blob, ca_verified=verified)


P256_LINE = KEYS["ecdsa-sha2-nistp256"]
OTHER_P256 = openssh_line(ec.generate_private_key(ec.SECP256R1()))
CERT = "ssh-ed25519-cert-v01@openssh.com"

VERDICTS = [
    # (file, offers, {entry key: (state, reason fragment)})
    ("same key", f"web1.example.com {ED_LINE}", {"ssh-ed25519": _offer(ED_LINE)},
     {"web1.example.com ssh-ed25519": ("match", "stored key")}),
    ("changed key", f"web1.example.com {ED_LINE}", {"ssh-ed25519": _offer(ED2_LINE)},
     {"web1.example.com ssh-ed25519": ("mismatch", "REMOTE HOST IDENTIFICATION HAS CHANGED")}),
    ("one of two lines of a type", f"web1.example.com {ED2_LINE}\nweb1.example.com {ED_LINE}",
     {"ssh-ed25519": _offer(ED_LINE)}, {"web1.example.com ssh-ed25519": ("match", "")}),
    ("revoked beats stored", f"web1.example.com {ED_LINE}\n@revoked * {ED_LINE}",
     {"ssh-ed25519": _offer(ED_LINE)},
     {"web1.example.com ssh-ed25519": ("mismatch", "@revoked")}),
    ("stale type, other matches", f"web1.example.com {ED_LINE}\nweb1.example.com {P256_LINE}",
     {"ssh-ed25519": _offer(ED_LINE), "ecdsa-sha2-nistp256": verdict.NOT_OFFERED},
     {"web1.example.com ssh-ed25519": ("match", ""),
      "web1.example.com ecdsa-sha2-nistp256": ("unknown", "stale line")}),
    ("none of the stored types", f"web1.example.com {ED_LINE}",
     {"ssh-ed25519": verdict.NOT_OFFERED, "ssh-rsa": _offer(KEYS["ssh-rsa"])},
     {"web1.example.com ssh-ed25519": ("mismatch", "Host key verification failed")}),
    ("gone type while another changed", f"web1.example.com {ED_LINE}\nweb1.example.com {P256_LINE}",
     {"ssh-ed25519": _offer(ED2_LINE), "ecdsa-sha2-nistp256": verdict.NOT_OFFERED},
     {"web1.example.com ssh-ed25519": ("mismatch", "CHANGED"),
      "web1.example.com ecdsa-sha2-nistp256": ("unknown", "does not match either")}),
    ("no key exchange", f"web1.example.com {ED_LINE}", {"ssh-ed25519": verdict.NO_KEX},
     {"web1.example.com ssh-ed25519": ("unreachable", "")}),
    ("CA-signed certificate", f"@cert-authority *.example.com {CA_LINE}",
     {CERT: _offer(host_cert(ED[0], ED[2]))},
     {"@cert-authority web1.example.com ssh-ed25519": ("match", "stored CA")}),
    ("certificate for all principals", f"@cert-authority *.example.com {CA_LINE}",
     {CERT: _offer(host_cert(ED[0], ED[2], principals=()))},
     {"@cert-authority web1.example.com ssh-ed25519": ("match", "")}),
    ("expired certificate", f"@cert-authority *.example.com {CA_LINE}",
     {CERT: _offer(host_cert(ED[0], ED[2], after=NOW - 7200, before=NOW - 3600))},
     {"@cert-authority web1.example.com ssh-ed25519": ("mismatch", "expired")}),
    ("future certificate", f"@cert-authority *.example.com {CA_LINE}",
     {CERT: _offer(host_cert(ED[0], ED[2], after=NOW + 3600, before=NOW + 7200))},
     {"@cert-authority web1.example.com ssh-ed25519": ("mismatch", "not yet valid")}),
    ("principal of another host", f"@cert-authority *.example.com {CA_LINE}",
     {CERT: _offer(host_cert(ED[0], ED[2], principals=("web2.example.com",)))},
     {"@cert-authority web1.example.com ssh-ed25519": ("mismatch", "principal")}),
    ("user certificate", f"@cert-authority *.example.com {CA_LINE}",
     {CERT: _offer(host_cert(ED[0], ED[2], cert_type=serialization.SSHCertificateType.USER))},
     {"@cert-authority web1.example.com ssh-ed25519": ("mismatch", "not a host certificate")}),
    ("critical option", f"@cert-authority *.example.com {CA_LINE}",
     {CERT: _offer(host_cert(ED[0], ED[2], critical=((b"force-command", b"x"),)))},
     {"@cert-authority web1.example.com ssh-ed25519": ("mismatch", "critical options")}),
    ("signature not verified", f"@cert-authority *.example.com {CA_LINE}",
     {CERT: _offer(host_cert(ED[0], ED[2]), verified=False)},
     {"@cert-authority web1.example.com ssh-ed25519": ("mismatch", "does not verify")}),
    ("revoked CA", f"@cert-authority *.example.com {CA_LINE}\n@revoked * {CA_LINE}",
     {CERT: _offer(host_cert(ED[0], ED[2]))},
     {"@cert-authority web1.example.com ssh-ed25519": ("mismatch", "@revoked")}),
    ("revoked certified key", f"@cert-authority *.example.com {CA_LINE}\n@revoked * {ED_LINE}",
     {CERT: _offer(host_cert(ED[0], ED[2]))},
     {"@cert-authority web1.example.com ssh-ed25519": ("mismatch", "@revoked")}),
    ("certificate from another CA, plain key matches",
     f"@cert-authority *.example.com {CA_LINE}\nweb1.example.com {ED_LINE}",
     {CERT: _offer(host_cert(ED[0], ED[3])), "ssh-ed25519": _offer(ED_LINE)},
     {"@cert-authority web1.example.com ssh-ed25519": ("unknown", "stale line"),
      "web1.example.com ssh-ed25519": ("match", "")}),
    ("certificate from another CA only", f"@cert-authority *.example.com {CA_LINE}",
     {CERT: _offer(host_cert(ED[0], ED[3]))},
     {"@cert-authority web1.example.com ssh-ed25519": ("mismatch", "Host key verification failed")}),
]


@pytest.mark.unit
@pytest.mark.parametrize(("case", "text", "offers", "want"), VERDICTS, ids=[v[0] for v in VERDICTS])
def test_verdict(case, text, offers, want):
    got = verdict.judge(_host(text), offers, NOW)
    assert {k: v.state for k, v in got.items()} == {k: s for k, (s, _) in want.items()}
    for key, (_, fragment) in want.items():
        assert fragment in got[key].reason
        assert got[key].evidence == "stored"


@pytest.mark.unit
def test_verdict_names_stored_and_live_fingerprints():
    got = verdict.judge(_host(f"web1.example.com {ED_LINE}"), {"ssh-ed25519": _offer(ED2_LINE)}, NOW)
    v = got["web1.example.com ssh-ed25519"]
    assert v.stored == (keys.fingerprint(blob_of(ED_LINE)),) and v.live == keys.fingerprint(blob_of(ED2_LINE))


@pytest.mark.unit
def test_a_certificate_signed_with_sha1_rsa_is_refused_like_ca_signature_algorithms():
    cert = keys.parse_blob(host_cert(ED[0], ED[2]))
    assert cert.cert is not None
    sha1 = keys.Key(cert.key_type, cert.blob, cert.public,
                    keys.Certificate(**{**cert.cert.__dict__, "signature_type": "ssh-rsa"}))
    refused = "certificate signed with disallowed algorithm"
    assert verdict.cert_problem(sha1, True, "web1.example.com", NOW) == refused
    assert verdict.cert_problem(cert, True, "web1.example.com", NOW) == ""


# --- the default client (order_hostkeyalgs, choose_hostkeyalg, check_host_key) -------------------

@pytest.mark.unit
def test_known_types_move_to_the_front_of_the_offer_unless_the_best_one_is_known():
    assert client.order_hostkeyalgs(_host(f"web1.example.com {ED_LINE}")) == client.DEFAULT_ALGORITHMS
    rsa_only = client.order_hostkeyalgs(_host(f"web1.example.com {KEYS['ssh-rsa']}"))
    assert rsa_only[:4] == ("rsa-sha2-512-cert-v01@openssh.com", "rsa-sha2-256-cert-v01@openssh.com",
                            "rsa-sha2-512", "rsa-sha2-256")
    assert sorted(rsa_only) == sorted(client.DEFAULT_ALGORITHMS)
    with_ca = client.order_hostkeyalgs(
        _host(f"@cert-authority *.example.com {CA_LINE}\nweb1.example.com {P256_LINE}"))
    assert with_ca[:9] == (*client.DEFAULT_ALGORITHMS[:8], "ecdsa-sha2-nistp256")


CLIENT = [
    ("stale type: the known one is offered first",
     f"web1.example.com {ED_LINE}\nweb1.example.com {P256_LINE}",
     {"ssh-ed25519": _offer(ED_LINE)}, (True, "ssh-ed25519")),
    ("the preferred known type changed", f"web1.example.com {ED_LINE}\nweb1.example.com {KEYS['ssh-rsa']}",
     {"ssh-ed25519": _offer(ED2_LINE), "ssh-rsa": _offer(KEYS["ssh-rsa"])}, (False, "ssh-ed25519")),
    ("only an unknown type offered", f"web1.example.com {ED_LINE}",
     {"ecdsa-sha2-nistp256": _offer(P256_LINE)}, (False, "ecdsa-sha2-nistp256")),
    ("certificate from the listed CA", f"@cert-authority *.example.com {CA_LINE}",
     {CERT: _offer(host_cert(ED[0], ED[2])), "ssh-ed25519": _offer(ED_LINE)}, (True, CERT)),
    ("expired certificate, plain key known: downgrade", f"@cert-authority *.example.com {CA_LINE}\n"
     f"web1.example.com {ED_LINE}", {CERT: _offer(host_cert(ED[0], ED[2], before=NOW - 1)),
                                     "ssh-ed25519": _offer(ED_LINE)}, (True, CERT)),
    ("revoked CA: no downgrade", f"@cert-authority *.example.com {CA_LINE}\n@revoked * {CA_LINE}\n"
     f"web1.example.com {ED_LINE}", {CERT: _offer(host_cert(ED[0], ED[2])), "ssh-ed25519": _offer(ED_LINE)},
     (False, CERT)),
    ("a type whose first line is @revoked is not preferred",
     f"@revoked * {ED_LINE}\nweb1.example.com {ED_LINE}\nweb1.example.com {P256_LINE}",
     {"ssh-ed25519": _offer(ED_LINE), CERT: _offer(host_cert(ED[0], ED[2])),
      "ecdsa-sha2-nistp256": _offer(P256_LINE)},
     (True, "ecdsa-sha2-nistp256")),
    ("RSA is offered as rsa-sha2-512", f"web1.example.com {KEYS['ssh-rsa']}",
     {"ssh-rsa": _offer(KEYS["ssh-rsa"])},
     (True, "rsa-sha2-512")),
    ("no key exchange", f"web1.example.com {ED_LINE}", {"ssh-ed25519": verdict.NO_KEX}, (False, None)),
]


@pytest.mark.unit
@pytest.mark.parametrize(("case", "text", "offers", "want"), CLIENT, ids=[c[0] for c in CLIENT])
def test_default_client(case, text, offers, want):
    got = client.default_client(_host(text), offers, NOW)
    assert (got.connects, got.algorithm) == want, got.reason


@pytest.mark.unit
def test_a_port_host_with_no_line_of_its_own_falls_back_to_the_bare_name_only_on_an_exact_match():
    store = kh_entries.load(f"@cert-authority [web1.example.com]:2222 {CA_LINE}\n"
                            f"web1.example.com {ED_LINE}\n",
                            ("[web1.example.com]:2222", "web1.example.com"))
    port, bare = store.for_lookup("[web1.example.com]:2222"), store.for_lookup("web1.example.com")
    expired = _offer(host_cert(ED[0], ED[2], before=NOW - 1))
    assert client.default_client(port, {CERT: expired, "ssh-ed25519": _offer(ED_LINE)}, NOW, bare).connects
    assert not client.default_client(port, {CERT: expired, "ssh-ed25519": _offer(ED_LINE)}, NOW).connects
    assert not client.default_client(port, {"ssh-ed25519": _offer(ED2_LINE)}, NOW, bare).connects


# --- rewrite -----------------------------------------------------------------------------------

REWRITES = [
    (b"a\nb\nc\n", {2}, b"a\nc\n"),
    (b"a\nb\nc", {3}, b"a\nb\n"),
    (b"a\nb\nc", {1}, b"b\nc"),  # no trailing newline added (ssh-keygen -R would add one)
    (b"# x\r\na\r\nb\r\n", {2}, b"# x\r\nb\r\n"),
    (b"a\n\n\nb\n", {1, 4}, b"\n\n"),
    (b"a\n", {1}, b""),
]


@pytest.mark.unit
@pytest.mark.parametrize(("data", "drop", "want"), REWRITES)
def test_remove_lines_keeps_every_other_byte(data, drop, want):
    assert rewrite.remove_lines(data, drop) == want


@pytest.mark.unit
def test_remove_lines_refuses_a_line_the_file_does_not_have():
    with pytest.raises(ValueError, match="no such line: 3"):
        rewrite.remove_lines(b"a\nb\n", {3})


# --- purity ------------------------------------------------------------------------------------

def test_the_core_imports_no_io_library_at_run_time():
    # `import exporter` itself loads socket today (exporter/__init__ reads the version through
    # importlib.metadata, which imports email.utils -> socket): measured apart, so this test holds
    # the core to what it adds and catches any I/O library it brings.
    code = (
        "import sys\n"
        "import exporter\n"
        "before = set(sys.modules)\n"
        "import exporter.sources.known_hosts.entries, exporter.sources.known_hosts.verdict\n"
        "import exporter.sources.known_hosts.rewrite, exporter.sources.known_hosts.client\n"
        "io = ('asyncssh', 'socket', 'ssl', 'sqlite3', 'subprocess', 'cryptography', 'aiohttp', 'select')\n"
        "print(sorted(m for m in io if m in set(sys.modules) - before))\n"
        "print(sorted(m for m in io if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    added, loaded = out.stdout.splitlines()
    assert added == "[]"
    assert loaded in ("[]", "['select', 'socket']")
