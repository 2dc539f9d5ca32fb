"""The known_hosts core's edges, in-process: each case here is one that OpenSSH decides and the
tables of test_known_hosts.py did not reach (found by scripts/mutation). What OpenSSH does was
read from ssh-keygen 9.2 (`-lf` lists the lines it parses, `-F` the lines a host finds) on the
same lines; the cases say which.
"""

from __future__ import annotations

import base64
import struct

import pytest

from exporter.core import sshwire
from exporter.sources.known_hosts import entries, keys, match, parse, rewrite, verdict
from tests.kit.sshkeys import ED2_LINE, ED_LINE, KEYS

pytestmark = pytest.mark.unit

ED_B64 = ED_LINE.split()[1]
SALT = base64.b64encode(bytes(range(20))).decode()


def one(text: str | bytes) -> parse.Line:
    (line,) = parse.parse(text).lines
    return line


# ---- parse ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "marker", "hosts"), [
    (f"  @revoked lead {ED_LINE}", "@revoked", "lead"),  # -F finds it: blanks before the marker
    (f"@revoked\ttabs\tssh-ed25519\t{ED_B64}", "@revoked", "tabs"),  # no space at all: tabs end it
    (f"\t@cert-authority\t*.example.com\tssh-ed25519\t{ED_B64}", "@cert-authority", "*.example.com"),
])
def test_a_marker_ends_at_its_blank_wherever_the_line_starts(text: str, marker: str, hosts: str) -> None:
    line = one(text)
    assert isinstance(line, parse.KeyLine), getattr(line, "reason", "")
    assert (line.marker, line.hosts, line.key_type) == (marker, hosts, "ssh-ed25519")


def test_a_marker_with_nothing_after_it_is_a_bad_line() -> None:
    got = parse.parse("@revoked  \n@revoked").lines
    assert [(type(x).__name__, getattr(x, "reason", "")) for x in got] == [
        ("BadLine", "truncated before key type"), ("BadLine", "invalid marker")]


@pytest.mark.parametrize(("field", "reason"), [
    ("|1|" + SALT, "bad host hash: no salt terminator"),
    ("|1||x=", "bad host hash: bad salt length"),
    ("|1|A|x=", "bad host hash: salt is not base64"),
    ("|1|" + "A" * 1024 + "|x=", "bad host hash: salt is not 20 bytes"),  # the longest salt read
    ("|1|" + "A" * 1025 + "|x=", "bad host hash: bad salt length"),
    ("|1|" + SALT[:4] + "*" + SALT[4:] + "|x=", "bad host hash: salt is not base64"),  # b64_pton
])
def test_a_hashed_host_field_openssh_cannot_read(field: str, reason: str) -> None:
    line = one(f"{field} {ED_LINE}")
    assert isinstance(line, parse.BadLine) and line.reason == reason


def test_a_hash_with_a_second_bar_is_read_by_its_first_and_matches_nothing() -> None:
    # extract_salt stops at the first "|"; ssh-keygen -lf lists the line.
    field = match.host_hash("h", bytes(range(20))) + "|extra"
    line = one(f"{field} {ED_LINE}")
    assert isinstance(line, parse.KeyLine) and line.salt == bytes(range(20))
    assert not match.line_matches(line, "h")


def test_blanks_inside_the_base64_are_skipped_as_b64_pton_does() -> None:
    half = len(ED_B64) // 2
    line = one(f"v1 ssh-ed25519 {ED_B64[:half]}\v{ED_B64[half:]} vcomment")  # ssh-keygen -lf: ok
    assert isinstance(line, parse.KeyLine) and (line.key.blob, line.comment) == (
        base64.b64decode(ED_B64), "vcomment")
    star = one(f"h ssh-ed25519 {ED_B64[:8]}*{ED_B64[8:]}")  # ssh-keygen -lf: skipped
    assert isinstance(star, parse.BadLine) and star.reason == "key is not base64"


def test_bytes_that_are_no_utf8_are_kept_and_shown_escaped() -> None:
    raw = f"latin ssh-ed25519 {ED_B64} caf".encode() + b"\xe9"  # ssh-keygen -lf: "caf\351"
    line = one(raw + b"\n")
    assert isinstance(line, parse.KeyLine) and line.raw == raw
    assert line.comment == "caf\udce9"
    assert line.shown == f"latin ssh-ed25519 {ED_B64} caf\\\\xe9"  # visible() doubles "\\"
    assert parse.parse(raw.decode("utf-8", "surrogateescape")) == parse.parse(raw)
    bad = one(b"h\xff ssh-ed25519 AAAA")
    assert isinstance(bad, parse.BadLine) and bad.shown == "h\\\\xff ssh-ed25519 AAAA"


def test_the_first_nul_ends_the_line_however_many_follow() -> None:
    line = one(f"nul2 {ED_LINE}".encode() + b"\x00junk\x00more")  # ssh-keygen -lf: ok, no comment
    assert isinstance(line, parse.KeyLine) and line.comment == ""


def test_every_line_keeps_its_raw_bytes() -> None:
    known = parse.parse(f"# c\r\n\nh {ED_LINE} note\n")
    assert known.lines == (
        parse.OtherLine(1, b"# c\r"), parse.OtherLine(2, b""),
        parse.KeyLine(3, f"h {ED_LINE} note".encode(), "", "h", None, "ssh-ed25519",
                      known.key_lines[0].key, "note"),
    )


# ---- match ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("s", "pattern", "want"), [
    (b"xb", b"*ab", False),  # after a failed try, the walk resumes at the star, not past it
    (b"xab", b"*ab", True),
    (b"aab", b"*ab", True),
    (b"ab", b"ab*", True),  # stars left over once the name is read match the empty rest
    (b"ab", b"ab**", True),
    (b"", b"*", True),
    (b"ab", b"ab*?", False),
])
def test_match_pattern_backtracks_to_the_star(s: bytes, pattern: bytes, want: bool) -> None:
    assert match.match_pattern(s, pattern) is want


@pytest.mark.parametrize(("patterns", "host", "want"), [
    ("a,b,c", "b", 1),  # each comma ends a subpattern
    ("a,b,c", "c", 1),
    ("a,!b,c", "b", -1),
])
def test_match_hostname_walks_every_subpattern(patterns: str, host: str, want: int) -> None:
    assert match.match_hostname(host, patterns) == want


def test_a_host_field_with_bytes_that_are_no_utf8_matches_byte_for_byte() -> None:
    line = one(b"h\xff " + ED_LINE.encode())
    assert isinstance(line, parse.KeyLine)
    assert match.line_matches(line, "h\udcff") and not match.line_matches(line, "h")
    assert match.lookup_name("H\udcff", 2222) == "[h\udcff]:2222"


@pytest.mark.parametrize(("host", "port", "lookup"), [
    ("h", 0, "h"), ("h", 1, "[h]:1"), ("h", 22, "h"), ("h", 65535, "[h]:65535"),
])
def test_put_host_port_writes_port_0_and_22_bare(host: str, port: int, lookup: str) -> None:
    assert match.lookup_name(host, port) == lookup


@pytest.mark.parametrize(("name", "parts"), [
    ("h", ("h", 22)),
    ("[h]:2222", ("h", 2222)),  # a one-letter host
    ("[]:2222", None),
    ("[h]:x", None),
    ("[h]:", None),
    ("[h]:022", None),  # put_host_port never writes a leading zero
    ("[h]:1", ("h", 1)),
    ("[h]:0", None),
    ("[h]:65535", ("h", 65535)),
    ("[h]:65536", None),
    ("[h]:22", None),
    ("[a[b]:2222", None),
    ("[a]b]:2222", None),
    ("", None),
    ("a[b", None),
    ("a]b", None),
])
def test_split_lookup_takes_only_what_put_host_port_writes(name: str, parts: tuple[str, int] | None) -> None:
    assert match.split_lookup(name) == parts


def test_lines_for_is_every_line_the_lookup_finds_in_file_order() -> None:
    known = parse.parse(f"a,b {ED_LINE}\n@revoked * {ED2_LINE}\nc {ED_LINE}\n")
    assert [line.number for line in match.lines_for(known, "b")] == [1, 2]
    assert [line.number for line in match.lines_for(known, "c")] == [2, 3]


def test_a_resolve_name_ssh_never_looks_up_is_skipped_and_the_rest_still_count() -> None:
    res = match.resolve(parse.parse(f"h* {ED_LINE}\n"), ("[h1", "h2", "[h3]:22"))
    assert [(line.number, hosts) for line, hosts in res.named] == [(1, ("h2",))]


# ---- entries, rewrite -------------------------------------------------------------------------


def test_entry_keys_and_the_bad_lines_a_store_keeps() -> None:
    assert entries.entry_key("h", "ssh-ed25519") == "h ssh-ed25519"
    assert entries.entry_key("h", "ssh-ed25519", "@revoked") == "@revoked h ssh-ed25519"
    store = entries.load(f"h {ED_LINE}\nh ssh-ed25519 !!\n")
    assert [(b.number, b.reason) for b in store.bad] == [(2, "key is not base64")]


def test_remove_lines_names_every_line_it_refuses() -> None:
    with pytest.raises(ValueError, match=r"^no such line: 0, 3 \(the file has 2 lines\)$"):
        rewrite.remove_lines(b"a\nb\n", {3, 1, 0})


# ---- keys and the wire reader -----------------------------------------------------------------

NOW = 1_700_000_000
ED_PUB = base64.b64decode(ED_B64)  # string "ssh-ed25519", string key


def s(data: bytes) -> bytes:
    return sshwire.string(data)


def u32(n: int) -> bytes:
    return struct.pack(">I", n)


def u64(n: int) -> bytes:
    return struct.pack(">Q", n)


def cert_blob(*, cert_type: int = 2, key_id: bytes = b"id", principals: tuple[bytes, ...] = (b"h",),
              after: int = 0, before: int = 2**64 - 1, critical: bytes = b"", extensions: bytes = b"",
              ca: bytes = ED_PUB, sig_type: bytes = b"ssh-ed25519", serial: int = 7) -> bytes:
    """An ssh-ed25519 host certificate laid out field by field (PROTOCOL.certkeys); its signature
    is not checked here (the caller's job: keys.signature_parts), so it is zeros."""
    return (s(b"ssh-ed25519-cert-v01@openssh.com") + s(b"n" * 32) + ED_PUB[15:] + u64(serial)
            + u32(cert_type) + s(key_id) + s(b"".join(s(p) for p in principals)) + u64(after)
            + u64(before) + s(critical) + s(extensions) + s(b"") + s(ca)
            + s(s(sig_type) + s(bytes(64))))


def rsa_blob(e: bytes, n_bits: int = 2048) -> bytes:
    n = (1 << (n_bits - 1)) | 1
    return s(b"ssh-rsa") + s(e) + s(b"\x00" + n.to_bytes((n_bits + 7) // 8, "big"))


def test_a_certificate_reads_every_field() -> None:
    blob = cert_blob(key_id=b"k\xff", principals=(b"a", b"b"), after=5, extensions=s(b"x") + s(b""))
    key = keys.parse_blob(blob)
    assert key.blob == blob and key.public == ED_PUB and key.key_type == "ssh-ed25519-cert-v01@openssh.com"
    assert key.cert == keys.Certificate(
        7, 2, "k\udcff", ("a", "b"), 5, 2**64 - 1, b"", s(b"x") + s(b""), ED_PUB,
        s(b"ssh-ed25519") + s(bytes(64)), "ssh-ed25519", blob[: -len(s(s(b"ssh-ed25519") + s(bytes(64))))])
    assert keys.signature_parts(key) == (key.cert.signed_data, key.cert.signature, ED_PUB)
    with pytest.raises(ValueError, match=r"^not a certificate$"):
        keys.signature_parts(keys.parse_blob(ED_PUB))


P256 = s(b"ecdsa-sha2-nistp256")
BAD_BLOBS = [
    (ED_PUB[:-1], "truncated blob"),
    (s(b"ssh-ed25519\x00") + ED_PUB[15:], "NUL inside a string of the blob"),
    (s(b"ssh-foo"), "unknown key type in blob"),
    (rsa_blob(b"\x80\x01"), "negative number in the blob"),
    (rsa_blob(b"\x01" + bytes(2048)), "number too large in the blob"),  # 2049 bytes, no sign byte
    (rsa_blob(bytes(2050)), "number too large in the blob"),
    (s(b"ssh-rsa") + s(b"\x01\x00\x01") + s((1 << 1022).to_bytes(128, "big")), "RSA modulus below 1024 bits"),
    (P256 + s(b"nistp384") + s(b"\x04" + bytes(64)), "ECDSA curve does not match the key type"),
    (P256 + s(b"nistp256") + s(b"\x02" + bytes(64)), "ECDSA point not in uncompressed form"),
    (P256 + s(b"nistp256") + s(b"\x04" + bytes(63)), "ECDSA point not in uncompressed form"),
    (cert_blob(cert_type=3), "unknown certificate type"),
    (cert_blob(key_id=b"a\x00b"), "NUL inside a string of the blob"),
    (cert_blob(principals=(b"h",) * 257), "too many principals"),
    (cert_blob(critical=s(b"force-command")), "truncated blob"),  # a name without its value
    (cert_blob(ca=cert_blob()), "certificate where a plain key is required"),
    (cert_blob(ca=s(b"ssh-foo")), "unknown key type in blob"),
]


@pytest.mark.parametrize(("blob", "reason"), BAD_BLOBS)
def test_a_blob_openssh_refuses_says_why(blob: bytes, reason: str) -> None:
    with pytest.raises(keys.BadKey) as got:
        keys.parse_blob(blob)
    assert str(got.value) == reason


@pytest.mark.parametrize("blob", [
    rsa_blob(b"\x01\x00\x01", 1024),  # SSH_RSA_MINIMUM_MODULUS_SIZE itself
    rsa_blob(b"\x7f" + bytes(2047)),  # SSHBUF_MAX_BIGNUM bytes
    rsa_blob(b"\x00\x80" + bytes(2047)),  # and one more, the sign byte
    cert_blob(principals=(b"h",) * 256),  # SSHKEY_CERT_MAX_PRINCIPALS
    cert_blob(before=2**64 - 1),  # "forever"
])
def test_a_blob_at_each_limit_openssh_still_reads(blob: bytes) -> None:
    key = keys.parse_blob(blob)
    assert key.blob == blob
    if key.cert is not None:
        assert key.cert.valid_before == 2**64 - 1 and len(key.cert.principals) in (1, 256)


def test_same_key_and_same_public() -> None:
    plain, plain2 = keys.parse_blob(ED_PUB), keys.parse_blob(base64.b64decode(ED2_LINE.split()[1]))
    cert, cert_other = keys.parse_blob(cert_blob()), keys.parse_blob(cert_blob(serial=8))
    assert keys.same_public(plain, cert) and not keys.same_public(plain, plain2)
    assert keys.same_key(plain, keys.parse_blob(ED_PUB)) and not keys.same_key(plain, plain2)
    assert not keys.same_key(plain, cert) and not keys.same_key(cert, plain)
    assert keys.same_key(cert, keys.parse_blob(cert_blob())) and not keys.same_key(cert, cert_other)


def test_the_wire_encoding() -> None:
    assert sshwire.mpint(0) == u32(0)
    assert sshwire.mpint(0x7F) == u32(1) + b"\x7f"
    assert sshwire.mpint(0x80) == u32(2) + b"\x00\x80"  # a sign byte when the top bit is set
    assert sshwire.mpint(0x1234) == u32(2) + b"\x12\x34"
    r = sshwire.Reader(u32(7) + u64(2**64 - 1) + s(b"a,b") + s(b"") + s(b"\xff") + s(b"\x00\x05"), 4)
    assert (r.u64(), r.names(), r.names(), r.text(), r.left) == (2**64 - 1, ("a", "b"), (), "\ufffd", 6)
    assert (r.mpint(), r.left) == (5, 0)
    with pytest.raises(sshwire.WireError, match=r"^truncated data$"):
        r.take(1)
    with pytest.raises(sshwire.WireError, match=r"^truncated data$"):
        sshwire.Reader(b"abc").take(-1)
    assert sshwire.fingerprint(b"") == "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"


# ---- verdict ----------------------------------------------------------------------------------


def fp(line: str) -> str:
    return keys.fingerprint(base64.b64decode(line.split()[1]))


Judged = dict[str, tuple[str, str, tuple[str, ...], str | None]]


def judge(text: str, offers: dict[str, verdict.Offer]) -> Judged:
    got = verdict.judge(entries.load(text, ("web1.example.com",)).for_lookup("web1.example.com"), offers, NOW)
    return {k: (v.state, v.reason, v.stored, v.live) for k, v in got.items()}


ED_OFFER = verdict.Offer(base64.b64decode(ED_B64))
ED2_OFFER = verdict.Offer(base64.b64decode(ED2_LINE.split()[1]))
CERT_T = "ssh-ed25519-cert-v01@openssh.com"
NO_CERT = "no certificate from this CA"
WEB1 = "web1.example.com"


def test_each_plain_verdict_names_its_reason_and_both_fingerprints() -> None:
    stored = (fp(ED_LINE),)
    key = f"{WEB1} ssh-ed25519"
    assert judge(f"{WEB1} {ED_LINE}", {"ssh-ed25519": ED_OFFER}) == {
        key: ("match", "the host presents the stored key", stored, fp(ED_LINE))}
    assert judge(f"{WEB1} {ED_LINE}", {"ssh-ed25519": ED2_OFFER}) == {
        key: ("mismatch", "the host presents another key: REMOTE HOST IDENTIFICATION HAS CHANGED", stored,
              fp(ED2_LINE))}
    # the @revoked line first: the entries after it are still judged
    assert judge(f"@revoked * {ED_LINE}\n{WEB1} {ED_LINE}", {"ssh-ed25519": ED_OFFER}) == {
        key: ("mismatch", "the host's key is listed @revoked", stored, fp(ED_LINE))}
    for junk in (b"junk", s(b"ecdsa-sha2-nistp256")):  # no key, or a key of another type
        assert judge(f"{WEB1} {ED_LINE}", {"ssh-ed25519": verdict.Offer(junk)}) == {
            key: ("mismatch", "the host's key does not parse as this type", stored, None)}
    assert judge(f"{WEB1} {ED_LINE}", {"ssh-ed25519": verdict.NO_KEX}) == {
        key: ("unreachable", "no key exchange", stored, None)}


def test_a_type_the_offers_do_not_name_is_not_offered() -> None:
    stored = (fp(ED_LINE),)
    key = f"{WEB1} ssh-ed25519"
    assert judge(f"{WEB1} {ED_LINE}", {}) == {
        key: ("mismatch", "this key type no longer offered; the host offers none of the stored types: "
                          "Host key verification failed", stored, None)}
    assert judge(f"{WEB1} {ED_LINE}", {"ecdsa-sha2-nistp256": verdict.NO_KEX}) == {
        key: ("unreachable", "no key exchange", stored, None)}
    assert judge(f"{WEB1} {ED_LINE}\n{WEB1} {ED2_LINE}", {}) == {
        key: ("mismatch", "this key type no longer offered; the host offers none of the stored types: "
                          "Host key verification failed", (fp(ED_LINE), fp(ED2_LINE)), None)}


def test_each_certificate_verdict_names_its_reason_and_both_fingerprints() -> None:
    ca_line = f"ssh-ed25519 {ED_B64}"
    key = f"@cert-authority {WEB1} ssh-ed25519"
    stored = (fp(ED_LINE),)
    good = cert_blob(principals=(WEB1.encode(),))
    live = keys.fingerprint(ED_PUB)
    text = f"@cert-authority *.example.com {ca_line}"
    assert judge(text, {CERT_T: verdict.Offer(good, ca_verified=True)}) == {
        key: ("match", "host certificate signed by the stored CA", stored, live)}
    assert judge(text, {CERT_T: verdict.Offer(good, ca_verified=False)}) == {
        key: ("mismatch", "CA signature does not verify", stored, live)}
    assert judge(text + f"\n@revoked * {ca_line}", {CERT_T: verdict.Offer(good, ca_verified=True)}) == {
        key: ("mismatch", "the host's certificate or its CA is listed @revoked", stored, live)}
    assert judge(text, {CERT_T: verdict.NO_KEX}) == {key: ("unreachable", "no key exchange", stored, None)}
    # a junk certificate, then one from another CA, then this CA's under another type: the last counts
    other_ca = base64.b64decode(ED2_LINE.split()[1])
    p256 = "ecdsa-sha2-nistp256-cert-v01@openssh.com"
    foreign = verdict.Offer(cert_blob(ca=other_ca), ca_verified=True)
    assert judge(text, {CERT_T: verdict.Offer(b"junk"),
                        "ssh-rsa-cert-v01@openssh.com": foreign,
                        p256: verdict.Offer(good, ca_verified=True)}) == {
        key: ("match", "host certificate signed by the stored CA", stored, live)}
    assert judge(text, {CERT_T: verdict.Offer(cert_blob(ca=other_ca), ca_verified=True)}) == {
        key: ("mismatch", "no certificate from this CA; the host offers none of the stored types: "
                          "Host key verification failed", stored, None)}
    assert judge(text + f"\n{WEB1} {ED2_LINE}", {
        CERT_T: verdict.Offer(cert_blob(ca=other_ca), ca_verified=True),
        "ssh-ed25519": verdict.Offer(other_ca)})[key] == (
        "unknown", f"{NO_CERT}; another entry of the host matches (stale line)", stored, None)
    assert judge(text + f"\n{WEB1} {ED2_LINE}", {"ssh-ed25519": ED_OFFER})[key] == (
        "unknown", f"{NO_CERT}; another entry of the host does not match either", stored, None)


@pytest.mark.parametrize(("now", "why"), [
    (99, "certificate not yet valid"), (100, ""), (199, ""), (200, "certificate expired"),
])
def test_a_certificate_is_valid_from_valid_after_up_to_before_valid_before(now: int, why: str) -> None:
    key = keys.parse_blob(cert_blob(after=100, before=200))
    assert verdict.cert_problem(key, True, "h", now) == why


# Points on each curve at the bounds of sshkey_ec_validate_public (x and y must have more than
# half the order's bits and be below order - 1), found with sympy (sqrt_mod, and a cubic's roots
# mod p for a given y); each is checked to lie on its curve.
N256, N384 = keys._CURVES["nistp256"][2], keys._CURVES["nistp384"][2]
EDGE_POINTS = [  # (curve, x, y, refused?)
    ("nistp256", 0x80000000000000000000000000000000,
     0x3ECDBCC47D8353CFBFF8E08A9A8ADFA1A693F174E93B8367676EA1525C7355C7, True),  # x: 128 bits
    ("nistp256", 0xE4C8D6057BE744017D0785EBFAC85219B5BBDB96D1421D37753E1C97647971D9,
     0x80000000000000000000000000000001, True),  # y: 128 bits
    ("nistp384", N384 - 1,
     0x5F3CC05FC15CDD8545EC7F25D51DCD5AEDC535635919878AECD3F6A17DD7026A69A15306CA932322EC71A53B94D30311,
     True),  # x = order - 1
    ("nistp384", N384,
     0x6D9891F9A3E2679B099A027596B910E319EA15E82B40ACB143B3CD16EF4CB823D6488070A69F0583946650485C71B807,
     True),  # x = order
    ("nistp256", N256 - 2,
     0x6DB57D735E68F72A0A1D8131F022F8B225AF9FDCF2B47143822C88BA6C361278, False),  # x = order - 2
    ("nistp256", 0xE5B2BC2BD37B97A13FD4D4AA58707BA045DEFF3CEC7E6F74D93A48167BEAFB0D,
     N256 - 1, True),  # y = order - 1
    ("nistp256", 0x6B3B6AC7E1FA3067D4B69571E6B821F03C9E7B2BB41D4E6C6CC60D7528345B84,
     N256 - 2, False),  # y = order - 2
]


@pytest.mark.parametrize(("curve", "x", "y", "refused"), EDGE_POINTS)
def test_an_ecdsa_point_at_the_bounds_of_sshkey_ec_validate_public(curve: str, x: int, y: int,
                                                                   refused: bool) -> None:
    p, b, _ = keys._CURVES[curve]
    assert (y * y - (x * x * x - 3 * x + b)) % p == 0  # on the curve: only the bounds decide
    size = (p.bit_length() + 7) // 8
    name = f"ecdsa-sha2-{curve}".encode()
    blob = s(name) + s(curve.encode()) + s(b"\x04" + x.to_bytes(size, "big") + y.to_bytes(size, "big"))
    if refused:
        with pytest.raises(keys.BadKey, match=r"^ECDSA point refused \(sshkey_ec_validate_public\)$"):
            keys.parse_blob(blob)
    else:
        assert keys.parse_blob(blob).public == blob


def test_every_mpint_of_a_key_has_the_bignum_cap() -> None:
    too_large = s(b"\x01" + bytes(2048))
    for blob in (s(b"ssh-rsa") + s(b"\x01\x00\x01") + too_large,  # the modulus
                 s(b"ssh-dss") + too_large + s(b"\x01") * 3, s(b"ssh-dss") + s(b"\x01") * 3 + too_large):
        with pytest.raises(keys.BadKey, match=r"^number too large in the blob$"):
            keys.parse_blob(blob)


def test_an_rsa_blob_named_by_a_signature_name_is_the_same_key() -> None:
    plain = base64.b64decode(KEYS["ssh-rsa"].split()[1])
    alias = s(b"rsa-sha2-256") + plain[len(s(b"ssh-rsa")):]  # sshkey_type_from_name takes it
    a, b = keys.parse_blob(plain), keys.parse_blob(alias)
    assert b.key_type == "ssh-rsa" and b.blob == alias and b.public == plain
    assert keys.same_key(a, b) and keys.same_key(b, a)


@pytest.mark.parametrize(("blob", "why"), [
    (cert_blob(cert_type=1), "not a host certificate"),
    (cert_blob(principals=(b"other",)), "host name is not a listed principal"),
    (cert_blob(principals=()), ""),  # none listed: any host
    (cert_blob(critical=s(b"force-command") + s(b"")), "certificate contains unsupported critical options"),
    (cert_blob(sig_type=b"ssh-rsa"), "certificate signed with disallowed algorithm"),
])
def test_each_host_certificate_check_says_why(blob: bytes, why: str) -> None:
    assert verdict.cert_problem(keys.parse_blob(blob), True, "h", NOW) == why
