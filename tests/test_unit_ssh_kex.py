"""The sans-IO SSH reader against an in-process server (tests/kit/sshserver.py, written from the
RFCs with `cryptography` alone): the key it returns is the one the server signed with, its
fingerprint as ssh-keygen prints it, and every refusal is a KexError or Fallback with a reason."""

from __future__ import annotations

import struct

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, x25519

from exporter.probes import ssh_kex
from tests.kit import sshkeys
from tests.kit.sshserver import (
    GROUP14,
    Server,
    binary_packet,
    converse,
    fingerprint_of,
    kexinit,
    key_blob,
    packets,
    sign,
    ssh_mpint,
    ssh_string,
)

pytestmark = [pytest.mark.unit, pytest.mark.filterwarnings("ignore:Diffie-Hellman over finite fields")]


@pytest.fixture(autouse=True)
def _no_cached_keys() -> None:
    """Every test loads its keys and builds its KEXINIT afresh (a cache would hide a change)."""
    ssh_kex._KEYS.clear()
    ssh_kex._kexinit_lists.cache_clear()

ED, ED_OTHER = sshkeys.ED[0], sshkeys.ED[1]
RSA = sshkeys.RSA
# (key type asked for, host key, signature algorithm the server uses)
CASES = [
    ("ssh-ed25519", ED, "ssh-ed25519"),
    ("ecdsa-sha2-nistp256", sshkeys.P256, "ecdsa-sha2-nistp256"),
    ("ecdsa-sha2-nistp384", sshkeys.P384, "ecdsa-sha2-nistp384"),
    ("ecdsa-sha2-nistp521", sshkeys.P521, "ecdsa-sha2-nistp521"),
    ("ssh-rsa", RSA, "rsa-sha2-512"),
    ("ssh-rsa", RSA, "rsa-sha2-256"),
    ("ssh-rsa", RSA, "ssh-rsa"),
]
METHODS = ["curve25519-sha256", "curve25519-sha256@libssh.org", "ecdh-sha2-nistp256",
           "diffie-hellman-group14-sha256", "diffie-hellman-group14-sha1"]


def run(key_type: str, server: Server, chunk: int | None = None,
        keys: ssh_kex.EphemeralKeys | None = None) -> ssh_kex.HostKeyExchange:
    reader = ssh_kex.HostKeyExchange(key_type, keys)
    converse(reader, server, chunk)
    return reader


def refused(key_type: str, server: Server, error: type[Exception] = ssh_kex.KexError) -> str:
    with pytest.raises(error) as caught:
        run(key_type, server)
    return str(caught.value)


@pytest.mark.parametrize(("key_type", "private", "algorithm"), CASES, ids=[c[2] for c in CASES])
def test_reads_the_key_the_server_signs_with(key_type: str, private, algorithm: str) -> None:
    reader = run(key_type, Server(private, algorithm, host_key_algs=(algorithm,)))
    out = reader.outcome
    assert out is not None
    assert (out.algorithm, out.kex) == (algorithm, "curve25519-sha256")
    assert out.host_key.blob == out.host_key.plain == key_blob(private)
    assert out.host_key.fingerprint == fingerprint_of(key_blob(private))
    assert out.host_key.key.public_numbers() == private.public_key().public_numbers() \
        if not isinstance(private, ed25519.Ed25519PrivateKey) else out.host_key.key == private.public_key()
    assert (reader.kex, reader.algorithm) == ("curve25519-sha256", algorithm)
    assert reader.banner == "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3"
    assert reader.offered == (algorithm,)


@pytest.mark.parametrize("method", METHODS)
def test_every_key_exchange_method(method: str) -> None:
    reader = run("ssh-ed25519", Server(ED, "ssh-ed25519", kex=("sntrup761x25519-sha512@openssh.com", method)))
    assert reader.outcome is not None and reader.outcome.kex == method
    assert reader.outcome.host_key.fingerprint == fingerprint_of(key_blob(ED))


def test_rsa_picks_sha2_512_first_as_openssh_does() -> None:
    server = Server(RSA, "rsa-sha2-512", host_key_algs=("ssh-rsa", "rsa-sha2-256", "rsa-sha2-512"))
    assert run("ssh-rsa", server).outcome.algorithm == "rsa-sha2-512"  # type: ignore[union-attr]
    server = Server(RSA, "rsa-sha2-256", host_key_algs=("ssh-rsa", "rsa-sha2-256"))
    assert run("ssh-rsa", server).outcome.algorithm == "rsa-sha2-256"  # type: ignore[union-attr]


@pytest.mark.parametrize(("key_type", "private", "algorithm"), CASES, ids=[c[2] for c in CASES])
def test_a_broken_signature_is_refused(key_type: str, private, algorithm: str) -> None:
    why = refused(key_type, Server(private, algorithm, tamper=True))
    assert why in ("host key signature does not verify: the server does not hold this key",
                   "host key signature does not parse")


@pytest.mark.parametrize(("key_type", "private", "other", "algorithm"), [
    ("ssh-ed25519", ED, ED_OTHER, "ssh-ed25519"),
    ("ecdsa-sha2-nistp256", sshkeys.P256, ec.generate_private_key(ec.SECP256R1()), "ecdsa-sha2-nistp256"),
    ("ecdsa-sha2-nistp384", sshkeys.P384, ec.generate_private_key(ec.SECP384R1()), "ecdsa-sha2-nistp384"),
    ("ecdsa-sha2-nistp521", sshkeys.P521, ec.generate_private_key(ec.SECP521R1()), "ecdsa-sha2-nistp521"),
    ("ssh-rsa", RSA, rsa.generate_private_key(65537, 1024), "rsa-sha2-512"),
])
def test_a_key_replayed_without_its_private_half_is_refused(key_type: str, private, other,
                                                            algorithm: str) -> None:
    why = refused(key_type, Server(private, algorithm, signer=other))
    assert why == "host key signature does not verify: the server does not hold this key"


def test_a_signature_over_another_exchange_is_refused() -> None:
    """A signature a server gave for one connection is no good for the next (our cookie and
    ephemeral key are in the hash), even with every other byte of the reply right."""
    server = Server(ED, "ssh-ed25519")
    assert run("ssh-ed25519", server, keys=ssh_kex.EphemeralKeys()).outcome is not None
    replay = Server(ED, "ssh-ed25519", signs=server.exchange_hash)
    assert refused("ssh-ed25519", replay) == \
        "host key signature does not verify: the server does not hold this key"


# ---- what the reader sends ----------------------------------------------------------------

def test_sends_its_version_line_then_one_kexinit_offering_the_key_type() -> None:
    reader = ssh_kex.HostKeyExchange("ssh-rsa", cookie=b"C" * 16)
    assert reader.start() == b"SSH-2.0-prime_tofu_exporter\r\n"
    assert reader.feed(b"SSH-2.0-x\r") == b""  # nothing before the whole version line
    sent = packets(reader.feed(b"\n"))
    assert len(sent) == 1
    body = sent[0]
    assert body[:17] == bytes([20]) + b"C" * 16
    lists = []
    pos = 17
    for _ in range(10):
        (n,) = struct.unpack(">I", body[pos : pos + 4])
        lists.append(body[pos + 4 : pos + 4 + n].decode())
        pos += 4 + n
    assert lists[0].split(",") == list(ssh_kex.KEX_METHODS)
    assert lists[1] == "rsa-sha2-512,rsa-sha2-256,ssh-rsa"
    assert "aes128-ctr" in lists[2].split(",") and lists[2] == lists[3]
    assert "hmac-sha2-256" in lists[4].split(",") and lists[4] == lists[5]
    assert lists[6:] == ["none", "none", "", ""]
    assert body[pos:] == b"\0" + b"\0\0\0\0"  # no guessed packet, reserved


def test_nothing_is_known_before_the_server_speaks_and_nothing_sent_after_its_reply() -> None:
    reader = ssh_kex.HostKeyExchange("ssh-ed25519")
    assert (reader.banner, reader.offered, reader.kex, reader.algorithm, reader.outcome) == (
        None, (), None, None, None)
    server = Server(ED, "ssh-ed25519")
    server.client_version = reader.start().rstrip(b"\r\n")
    sent = packets(reader.feed(server.hello()))
    server.client_kexinit = sent[0]
    assert reader.feed(binary_packet(server.reply(sent[1]))) == b""
    assert reader.outcome is not None


def test_the_ephemeral_keys_given_are_the_ones_used() -> None:
    keys = ssh_kex.EphemeralKeys()
    _, ours = keys.get("x25519")
    reader = ssh_kex.HostKeyExchange("ssh-ed25519", keys)
    sent = packets(reader.feed(Server(ED, "ssh-ed25519").hello()))
    assert sent[1] == bytes([30]) + ours


def test_a_fresh_cookie_each_exchange() -> None:
    cookies = {packets(ssh_kex.HostKeyExchange("ssh-ed25519").feed(b"SSH-2.0-x\n"))[0][1:17]
               for _ in range(3)}
    assert len(cookies) == 3


def test_host_key_algorithms_and_what_the_reader_speaks() -> None:
    cert = "-cert-v01@openssh.com"
    assert ssh_kex.host_key_algorithms("ssh-rsa") == ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")
    assert ssh_kex.host_key_algorithms("ssh-rsa" + cert) == tuple(
        a + cert for a in ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"))
    assert ssh_kex.host_key_algorithms("ssh-ed25519" + cert) == ("ssh-ed25519" + cert,)
    assert ssh_kex.host_key_algorithms("ssh-dss") == ("ssh-dss",)
    for spoken in ("ssh-ed25519", "ecdsa-sha2-nistp521" + cert, "rsa-sha2-256", "ssh-rsa"):
        assert ssh_kex.speaks(spoken)
    for other in ("ssh-dss", "sk-ssh-ed25519@openssh.com", "ssh-ed25519-cert-v02@openssh.com"):
        assert not ssh_kex.speaks(other)


@pytest.mark.parametrize("size", range(0, 20))
def test_packets_pad_to_eight_with_four_to_eleven_bytes(size: int) -> None:
    payload = bytes(range(size))
    framed = ssh_kex.packet(payload)
    length, pad = struct.unpack(">IB", framed[:5])
    assert len(framed) % 8 == 0 and 4 <= pad <= 11 and length == len(framed) - 4
    assert framed[5 : 5 + size] == payload and framed[5 + size :] == b"\0" * pad


def test_disconnect_by_application_with_a_reason() -> None:
    (body,) = packets(ssh_kex.disconnect())
    assert body == bytes([1]) + struct.pack(">I", 11) + ssh_string(b"host key read") + ssh_string(b"")
    assert packets(ssh_kex.disconnect("bye"))[0][5:12] == ssh_string(b"bye")


def test_ephemeral_keys_are_reused_as_many_times_as_asked() -> None:
    keys = ssh_kex.EphemeralKeys(uses=2)
    first = [keys.get("x25519") for _ in range(3)]
    assert first[0] == first[1] != first[2]
    assert isinstance(first[1][0], x25519.X25519PrivateKey)
    assert keys.get("p256")[1] != keys.get("x25519")[1]
    assert len(keys.get("p256")[1]) == 4 + 65 and len(keys.get("x25519")[1]) == 4 + 32
    once = ssh_kex.EphemeralKeys(uses=1)
    assert once.get("dh14")[1] != once.get("dh14")[1]


def test_default_ephemeral_keys_last_a_thousand_checks() -> None:
    keys = ssh_kex.EphemeralKeys()
    seen = [keys.get("x25519")[1] for _ in range(1001)]
    assert len(set(seen[:1000])) == 1 and seen[1000] != seen[0]


# ---- the server's version line ------------------------------------------------------------

def test_lines_before_the_version_line_are_accepted() -> None:
    server = Server(ED, "ssh-ed25519", banner=b"Welcome to host1\r\n\r\n", version=b"SSH-2.0-OpenSSH_9.2")
    reader = run("ssh-ed25519", server)
    assert reader.outcome is not None and reader.banner == "SSH-2.0-OpenSSH_9.2"
    assert reader.first_line == b"Welcome to host1"


def test_an_empty_line_before_the_version_line() -> None:
    reader = ssh_kex.HostKeyExchange("ssh-ed25519")
    assert packets(reader.feed(b"\nSSH-2.0-x\r\n"))[0][0] == 20
    assert reader.first_line == b""


@pytest.mark.parametrize("version", [b"SSH-2.0-srvX", b"SSH-2.0-srv \t"])
def test_the_version_line_is_kept_but_for_its_line_end(version: bytes) -> None:
    """Only CR LF ends the line: what comes before it is hashed as sent."""
    reader = run("ssh-ed25519", Server(ED, "ssh-ed25519", version=version.rstrip(b"\r")))
    assert reader.outcome is not None and reader.banner == version.rstrip(b"\r").decode()


def test_a_version_line_that_is_no_utf8_is_shown_replaced() -> None:
    reader = run("ssh-ed25519", Server(ED, "ssh-ed25519", version=b"SSH-2.0-\xff\xfe"))
    assert reader.outcome is not None and reader.banner == "SSH-2.0-\ufffd\ufffd"
    reader = ssh_kex.HostKeyExchange("ssh-ed25519")
    reader.feed(b"\xff\xfe\r\n")
    assert reader.closed() == "not an SSH server (first line: '\ufffd\ufffd')"


def test_sixty_four_lines_before_the_version_line_and_no_more() -> None:
    reader = ssh_kex.HostKeyExchange("ssh-ed25519")
    assert reader.feed(b"line\n" * 64 + b"SSH-2.0-x\n") != b""
    reader = ssh_kex.HostKeyExchange("ssh-ed25519")
    with pytest.raises(ssh_kex.KexError, match=r"^not an SSH server \(first line: 'line'\)$"):
        reader.feed(b"line\n" * 65)


def test_a_line_of_1024_bytes_is_waited_for_and_a_longer_one_is_no_ssh() -> None:
    reader = ssh_kex.HostKeyExchange("ssh-ed25519")
    assert reader.feed(b"x" * 1024) == b""
    with pytest.raises(ssh_kex.KexError, match=r"^not an SSH server \(first bytes: 'x{80}'\)$"):
        reader.feed(b"x")
    reader = ssh_kex.HostKeyExchange("ssh-ed25519")
    assert reader.feed(b"y" * 1024 + b"\n" + b"SSH-2.0-x\n") != b""
    reader = ssh_kex.HostKeyExchange("ssh-ed25519")
    with pytest.raises(ssh_kex.KexError, match=r"^not an SSH server \(first line: 'y{80}'\)$"):
        reader.feed(b"y" * 1025 + b"\n")


def test_a_line_with_a_nul_is_no_ssh_and_shown_escaped() -> None:
    reader = ssh_kex.HostKeyExchange("ssh-ed25519")
    with pytest.raises(ssh_kex.KexError) as caught:
        reader.feed(b"HTTP/1.1 400\x1b[2J\0\r\n")
    assert str(caught.value) == "not an SSH server (first line: 'HTTP/1.1 400\\x1b[2J\\x00')"


def test_protocol_1_is_refused_and_1_99_spoken() -> None:
    with pytest.raises(ssh_kex.KexError, match=r"^server speaks SSH protocol 1 only: 'SSH-1.5-old'$"):
        ssh_kex.HostKeyExchange("ssh-ed25519").feed(b"SSH-1.5-old\r\n")
    reader = run("ssh-ed25519", Server(ED, "ssh-ed25519", version=b"SSH-1.99-OpenSSH_3.9"))
    assert reader.outcome is not None and reader.banner == "SSH-1.99-OpenSSH_3.9"


def test_why_a_closed_connection_failed() -> None:
    reader = ssh_kex.HostKeyExchange("ssh-ed25519")
    assert reader.closed() == "closed by the server while waiting for the server's version line"
    reader.feed(b"220 mail.example.com ESMTP\r\n")
    assert reader.closed() == "not an SSH server (first line: '220 mail.example.com ESMTP')"
    reader.feed(b"SSH-2.0-x\r\n")
    assert reader.closed() == "closed by the server while waiting for the server's KEXINIT"
    reader.feed(binary_packet(kexinit()))
    assert reader.closed() == "closed by the server while waiting for the server's key exchange reply"


# ---- packets ------------------------------------------------------------------------------

@pytest.mark.parametrize(("key_type", "private", "algorithm"), [CASES[2], CASES[4]], ids=["p384", "rsa"])
def test_packets_split_at_every_byte_boundary_still_parse(key_type: str, private, algorithm: str) -> None:
    reader = run(key_type, Server(private, algorithm, kex=("ecdh-sha2-nistp256",)), chunk=1)
    assert reader.outcome is not None
    assert reader.outcome.host_key.fingerprint == fingerprint_of(key_blob(private))


def test_the_servers_first_bytes_split_anywhere() -> None:
    hello = Server(ED, "ssh-ed25519").hello()
    for cut in range(len(hello) + 1):
        reader = ssh_kex.HostKeyExchange("ssh-ed25519")
        out = reader.feed(hello[:cut]) + reader.feed(hello[cut:])
        assert [p[0] for p in packets(out)] == [20, 30], cut


def test_ignore_debug_and_unimplemented_are_skipped() -> None:
    reader = ssh_kex.HostKeyExchange("ssh-ed25519")
    noise = binary_packet(bytes([2]) + ssh_string(b"x")) + binary_packet(bytes([4, 1]) + ssh_string(b"m"))
    unimplemented = binary_packet(bytes([3, 0, 0, 0, 1]))
    out = reader.feed(b"SSH-2.0-x\r\n" + noise + unimplemented + binary_packet(kexinit()))
    assert [p[0] for p in packets(out)] == [20, 30]


@pytest.mark.parametrize(("length", "pad", "why"), [
    (256 * 1024 + 1, 4, "not an SSH packet (length 262145, padding 4)"),
    (0xFFFFFFFF, 4, "not an SSH packet (length 4294967295, padding 4)"),
    (4, 4, "not an SSH packet (length 4, padding 4)"),
    (0, 0, "not an SSH packet (length 0, padding 0)"),
])
def test_impossible_packet_lengths_are_refused(length: int, pad: int, why: str) -> None:
    reader = ssh_kex.HostKeyExchange("ssh-ed25519")
    reader.feed(b"SSH-2.0-x\r\n")
    with pytest.raises(ssh_kex.KexError) as caught:
        reader.feed(struct.pack(">IB", length, pad))
    assert str(caught.value) == why


def test_the_longest_packet_is_waited_for_and_an_empty_one_refused() -> None:
    reader = ssh_kex.HostKeyExchange("ssh-ed25519")
    reader.feed(b"SSH-2.0-x\r\n")
    assert reader.feed(struct.pack(">IB", 256 * 1024, 4) + b"\2" * 1000) == b""
    reader = ssh_kex.HostKeyExchange("ssh-ed25519")
    reader.feed(b"SSH-2.0-x\r\n")
    assert reader.feed(b"\0\0\0\0") == b""  # not even the padding length yet
    reader = ssh_kex.HostKeyExchange("ssh-ed25519")
    reader.feed(b"SSH-2.0-x\r\n")
    with pytest.raises(ssh_kex.KexError, match=r"^empty SSH packet$"):
        reader.feed(struct.pack(">IB", 5, 4) + b"\0" * 4)


@pytest.mark.parametrize(("payload", "waiting"), [
    (bytes([31]) + b"\0" * 8, "the server's KEXINIT"),
    (bytes([21]), "the server's KEXINIT"),
])
def test_a_message_out_of_turn_is_refused(payload: bytes, waiting: str) -> None:
    reader = ssh_kex.HostKeyExchange("ssh-ed25519")
    reader.feed(b"SSH-2.0-x\r\n")
    with pytest.raises(ssh_kex.KexError) as caught:
        reader.feed(binary_packet(payload))
    assert str(caught.value) == f"unexpected SSH message {payload[0]} while waiting for {waiting}"


def test_a_second_kexinit_is_refused() -> None:
    reader = ssh_kex.HostKeyExchange("ssh-ed25519")
    reader.feed(b"SSH-2.0-x\r\n" + binary_packet(kexinit()))
    with pytest.raises(ssh_kex.KexError) as caught:
        reader.feed(binary_packet(kexinit()))
    assert str(caught.value) == "unexpected SSH message 20 while waiting for the server's key exchange reply"


def test_a_disconnect_reason_is_cut_at_200() -> None:
    reader = ssh_kex.HostKeyExchange("ssh-ed25519")
    with pytest.raises(ssh_kex.KexError) as caught:
        reader.feed(b"SSH-2.0-x\r\n" + binary_packet(bytes([1]) + struct.pack(">I", 11)
                                                       + ssh_string(b"r" * 300) + ssh_string(b"")))
    assert str(caught.value) == "server disconnected (11): " + "r" * 200


def test_a_disconnect_says_why_escaped() -> None:
    reader = ssh_kex.HostKeyExchange("ssh-ed25519")
    with pytest.raises(ssh_kex.KexError) as caught:
        reader.feed(b"SSH-2.0-x\r\n" + binary_packet(bytes([1]) + struct.pack(">I", 2)
                                                       + ssh_string(b"go\x1b[1maway\n") + ssh_string(b"")))
    assert str(caught.value) == "server disconnected (2): go\\x1b[1maway\\n"


# ---- negotiation ----------------------------------------------------------------------------

def test_no_key_exchange_method_in_common_falls_back_with_the_list_escaped() -> None:
    why = refused("ssh-ed25519", Server(ED, "ssh-ed25519", kex=("sntrup761x25519-sha512", "evil\x1b[31m\n")),
                  ssh_kex.Fallback)
    assert why == "no key exchange method in common: sntrup761x25519-sha512,evil\\x1b[31m\\n"


def test_a_long_method_list_is_cut() -> None:
    why = refused("ssh-ed25519", Server(ED, "ssh-ed25519", kex=("m" * 400,)), ssh_kex.Fallback)
    assert why == "no key exchange method in common: " + "m" * 300


def test_a_guessed_first_packet_falls_back() -> None:
    reader = ssh_kex.HostKeyExchange("ssh-ed25519")
    with pytest.raises(ssh_kex.Fallback, match=r"^server sends a guessed key-exchange packet$"):
        reader.feed(b"SSH-2.0-x\r\n" + binary_packet(kexinit(guess=b"\1")))


def test_a_key_type_the_host_does_not_offer_is_an_error() -> None:
    why = refused("ecdsa-sha2-nistp256", Server(ED, "ssh-ed25519"))
    assert why == "host does not offer ecdsa-sha2-nistp256"


def test_a_key_type_the_reader_does_not_speak_falls_back() -> None:
    reader = ssh_kex.HostKeyExchange("ssh-dss")
    with pytest.raises(ssh_kex.Fallback, match=r"^reader does not speak ssh-dss$"):
        reader.feed(b"SSH-2.0-x\r\n" + binary_packet(kexinit(host_key_algs=("ssh-ed25519", "ssh-dss"))))
    assert reader.offered == ("ssh-ed25519", "ssh-dss")


def test_our_order_of_methods_rules() -> None:
    server = Server(ED, "ssh-ed25519", kex=("diffie-hellman-group14-sha1", "ecdh-sha2-nistp256",
                                            "curve25519-sha256@libssh.org"))
    assert run("ssh-ed25519", server).kex == "curve25519-sha256@libssh.org"


# ---- the reply ------------------------------------------------------------------------------

def test_a_key_of_another_type_than_negotiated_is_refused() -> None:
    why = refused("ssh-ed25519", Server(ED, "ssh-ed25519", blob=key_blob(sshkeys.P256)))
    assert why == "server sent a ecdsa-sha2-nistp256 key for ssh-ed25519"
    blob = ssh_string(b"\x1b" * 100) + ssh_string(b"k")
    assert refused("ssh-ed25519", Server(ED, "ssh-ed25519", blob=blob)) == \
        "server sent a " + "\\x1b" * 15 + " key for ssh-ed25519"


def test_an_ecdsa_key_naming_another_curve_is_refused() -> None:
    blob = key_blob(sshkeys.P384)
    swapped = ssh_string(b"ecdsa-sha2-nistp384") + ssh_string(b"nistp256") + blob[4 + 19 + 4 + 8 :]
    why = refused("ecdsa-sha2-nistp384", Server(sshkeys.P384, "ecdsa-sha2-nistp384", blob=swapped))
    assert why == "ecdsa-sha2-nistp384 key names another curve"


@pytest.mark.parametrize(("key_type", "blob"), [
    ("ssh-ed25519", ssh_string(b"ssh-ed25519") + ssh_string(b"\1" * 31)),
    ("ecdsa-sha2-nistp256", ssh_string(b"ecdsa-sha2-nistp256") + ssh_string(b"nistp256")
     + ssh_string(b"\4" + b"\1" * 64)),
    ("ssh-rsa", ssh_string(b"ssh-rsa") + ssh_mpint(65537) + ssh_mpint(0)),
])
def test_a_key_that_does_not_parse_is_refused(key_type: str, blob: bytes) -> None:
    algorithm = ssh_kex.host_key_algorithms(key_type)[0]
    why = refused(key_type, Server(ED, algorithm, blob=blob))
    assert why == f"server's {key_type} key does not parse"


def test_an_rsa_key_below_1024_bits_is_refused_as_openssh_does() -> None:
    n = (1 << 1022) + 1  # a 1023-bit modulus (cryptography makes no key that small)
    blob = ssh_string(b"ssh-rsa") + ssh_mpint(65537) + ssh_mpint(n)
    assert refused("ssh-rsa", Server(RSA, "rsa-sha2-512", blob=blob)) == \
        "server's RSA key has 1023 bits, below OpenSSH's 1024"
    ok = rsa.generate_private_key(65537, 1024)
    assert run("ssh-rsa", Server(ok, "rsa-sha2-512")).outcome is not None


def test_a_signature_of_another_algorithm_is_refused() -> None:
    server = Server(RSA, "rsa-sha2-256", host_key_algs=("rsa-sha2-512",))
    assert refused("ssh-rsa", server) == "server signed with another algorithm than rsa-sha2-512"


@pytest.mark.parametrize("ephemeral", [
    ssh_string(b"\0" * 32),  # X25519: the all-zero secret
    ssh_string(b"\1" * 31),
])
def test_an_invalid_ephemeral_key_is_refused(ephemeral: bytes) -> None:
    why = refused("ssh-ed25519", Server(ED, "ssh-ed25519", ephemeral=ephemeral))
    assert why == "server's ephemeral key is invalid"


def test_an_ecdh_point_off_the_curve_is_refused() -> None:
    server = Server(ED, "ssh-ed25519", kex=("ecdh-sha2-nistp256",), ephemeral=ssh_string(b"\4" + b"\1" * 64))
    assert refused("ssh-ed25519", server) == "server's ephemeral key is invalid"


@pytest.mark.parametrize(("f", "why"), [
    (1, "server's DH value is out of range"),
    (GROUP14 - 1, "server's DH value is out of range"),
    (0, "server's DH value is out of range"),
    (2, "host key signature does not verify: the server does not hold this key"),
    (GROUP14 - 2, "host key signature does not verify: the server does not hold this key"),
])
def test_a_dh_value_out_of_range_is_refused(f: int, why: str) -> None:
    server = Server(ED, "ssh-ed25519", kex=("diffie-hellman-group14-sha256",), ephemeral=ssh_mpint(f))
    assert refused("ssh-ed25519", server) == why


def test_an_rsa_signature_short_of_leading_zeros_verifies_as_openssh_accepts() -> None:
    key = ssh_kex.parse_host_key(key_blob(RSA), "ssh-rsa")
    for i in range(5000):
        data = i.to_bytes(4, "big")
        raw = RSA.sign(data, padding.PKCS1v15(), hashes.SHA256())
        if raw[0] == 0:
            break
    assert raw[0] == 0
    for sent in (raw.lstrip(b"\0"), raw):
        ssh_kex.verify_signature(key, "rsa-sha2-256", ssh_string(b"rsa-sha2-256") + ssh_string(sent), data)


def test_an_ecdsa_signature_that_does_not_parse_is_refused() -> None:
    key = ssh_kex.parse_host_key(key_blob(sshkeys.P256), "ecdsa-sha2-nistp256")
    good = sign(sshkeys.P256, "ecdsa-sha2-nistp256", b"data")
    ssh_kex.verify_signature(key, "ecdsa-sha2-nistp256", good, b"data")
    short = ssh_string(b"ecdsa-sha2-nistp256") + ssh_string(ssh_mpint(5))
    with pytest.raises(ssh_kex.KexError, match=r"^truncated message from the server$"):
        ssh_kex.verify_signature(key, "ecdsa-sha2-nistp256", short, b"data")
    zero = ssh_string(b"ecdsa-sha2-nistp256") + ssh_string(ssh_mpint(0) + ssh_mpint(0))
    with pytest.raises(ssh_kex.KexError, match=r"^host key signature does not verify"):
        ssh_kex.verify_signature(key, "ecdsa-sha2-nistp256", zero, b"data")


def sign_blob(name: bytes, raw: bytes) -> bytes:
    return ssh_string(name) + ssh_string(raw)


def test_an_ed25519_signature_of_the_wrong_length_is_refused() -> None:
    key = ssh_kex.parse_host_key(key_blob(ED), "ssh-ed25519")
    for raw in (b"", b"\0" * 63, ED.sign(b"data") + b"\0"):
        with pytest.raises(ssh_kex.KexError, match=r"^host key signature does not"):
            ssh_kex.verify_signature(key, "ssh-ed25519", sign_blob(b"ssh-ed25519", raw), b"data")


# ---- keys and certificates ------------------------------------------------------------------

def test_a_loaded_key_is_the_same_object_next_time_and_the_cache_is_bounded(monkeypatch) -> None:
    first = ssh_kex.parse_host_key(key_blob(sshkeys.P384), "ecdsa-sha2-nistp384").key
    assert ssh_kex.parse_host_key(key_blob(sshkeys.P384), "ecdsa-sha2-nistp384").key is first
    monkeypatch.setattr(ssh_kex, "KEY_CACHE", 2)
    ssh_kex.parse_host_key(key_blob(ED), "ssh-ed25519")
    ssh_kex.parse_host_key(key_blob(ED_OTHER), "ssh-ed25519")  # drops the P-384 key, the oldest
    assert len(ssh_kex._KEYS) == 2
    again = ssh_kex.parse_host_key(key_blob(sshkeys.P384), "ecdsa-sha2-nistp384").key
    assert again is not first and again.public_numbers() == first.public_numbers()
    assert ssh_kex.parse_host_key(key_blob(ED_OTHER), "ssh-ed25519").key is ssh_kex._KEYS[
        ("ssh-ed25519", key_blob(ED_OTHER)[15:])]


@pytest.mark.parametrize("private", [ED, sshkeys.P256, RSA], ids=["ed25519", "p256", "rsa"])
def test_a_host_certificate_is_read_and_its_key_fingerprinted(private) -> None:
    cert = sshkeys.host_cert(private, ED_OTHER)
    plain = key_blob(private)
    base = plain[4 : 4 + struct.unpack(">I", plain[:4])[0]].decode()
    algorithm = ssh_kex.host_key_algorithms(base)[0]
    key_type = base + "-cert-v01@openssh.com"
    reader = run(key_type, Server(private, algorithm, host_key_algs=(algorithm + "-cert-v01@openssh.com",),
                                  blob=cert))
    assert reader.outcome is not None and reader.outcome.host_key.blob == cert
    assert reader.outcome.host_key.plain == plain
    assert reader.outcome.host_key.fingerprint == fingerprint_of(plain)
    got = ssh_kex.check_certificate(cert, key_type)
    assert (got.serial, got.key_id) == (7, "id")
    assert (got.valid_after, got.valid_before) == (sshkeys.NOW - 3600, sshkeys.NOW + 3600)
    assert got.ca_fingerprint == fingerprint_of(key_blob(ED_OTHER))


@pytest.mark.parametrize("ca", [sshkeys.P256, sshkeys.P384, RSA], ids=["p256", "p384", "rsa"])
def test_a_certificate_signed_by_any_ca_type_read_here(ca) -> None:
    got = ssh_kex.check_certificate(sshkeys.host_cert(ED, ca), "ssh-ed25519-cert-v01@openssh.com")
    assert got.ca_fingerprint == fingerprint_of(key_blob(ca))


def test_a_certificate_whose_ca_signature_does_not_verify_is_refused() -> None:
    cert = bytearray(sshkeys.host_cert(ED, ED_OTHER))
    cert[-1] ^= 1
    with pytest.raises(ssh_kex.KexError, match=r"^host certificate's CA signature does not verify$"):
        ssh_kex.check_certificate(bytes(cert), "ssh-ed25519-cert-v01@openssh.com")


def test_a_certificate_with_trailing_bytes_or_of_another_type_is_refused() -> None:
    cert = sshkeys.host_cert(ED, ED_OTHER)
    with pytest.raises(ssh_kex.KexError, match=r"^trailing bytes after the certificate's signature$"):
        ssh_kex.check_certificate(cert + b"\0", "ssh-ed25519-cert-v01@openssh.com")
    with pytest.raises(ssh_kex.KexError, match=r"^not a host certificate of the type asked for$"):
        ssh_kex.check_certificate(cert, "ecdsa-sha2-nistp256-cert-v01@openssh.com")
    plain = key_blob(ED)
    with pytest.raises(ssh_kex.KexError, match=r"^not a host certificate of the type asked for$"):
        ssh_kex.check_certificate(plain, "ssh-ed25519")


def test_a_truncated_certificate_is_refused() -> None:
    cert = sshkeys.host_cert(ED, ED_OTHER)
    for cut in (10, 60, len(cert) - 1):
        with pytest.raises(ssh_kex.KexError) as caught:
            ssh_kex.check_certificate(cert[:cut], "ssh-ed25519-cert-v01@openssh.com")
        assert str(caught.value) == "truncated host certificate"


def _recertify(cert: bytes, ca_blob: bytes, signature: bytes) -> bytes:
    """The certificate with its CA key and signature replaced."""
    reader = ssh_kex.Reader(cert)
    for _ in range(3):
        reader.string()  # type, nonce, key
    reader.u64(), reader.u32(), reader.string(), reader.string(), reader.u64(), reader.u64()
    for _ in range(3):
        reader.string()
    return cert[: reader.pos] + ssh_string(ca_blob) + ssh_string(signature)


def test_a_certificate_from_a_ca_type_not_read_here_is_refused() -> None:
    cert = sshkeys.host_cert(ED, ED_OTHER)
    dsa_blob = sshkeys.blob_of(sshkeys.KEYS["ssh-dss"])
    with pytest.raises(ssh_kex.KexError) as caught:
        ssh_kex.check_certificate(_recertify(cert, dsa_blob, ssh_string(b"ssh-dss") + ssh_string(b"s")),
                                  "ssh-ed25519-cert-v01@openssh.com")
    assert str(caught.value) == "certificate signed by a ssh-dss CA key, not read here"
    rsa_alg = ssh_string(b"rsa-sha2-512") + ssh_string(b"\1" * 30)
    with pytest.raises(ssh_kex.KexError) as caught:
        ssh_kex.check_certificate(_recertify(cert, rsa_alg, b""), "ssh-ed25519-cert-v01@openssh.com")
    assert str(caught.value) == "certificate signed by a rsa-sha2-512 CA key, not read here"
    long = ssh_string(b"k" * 70) + ssh_string(b"\1")
    with pytest.raises(ssh_kex.KexError) as caught:
        ssh_kex.check_certificate(_recertify(cert, long, b""), "ssh-ed25519-cert-v01@openssh.com")
    assert str(caught.value) == f"certificate signed by a {'k' * 60} CA key, not read here"


def test_a_certificate_signature_that_does_not_fit_its_ca_key_is_refused() -> None:
    cert = sshkeys.host_cert(ED, ED_OTHER)
    for algorithm, shown in ((b"rsa-sha2-512", "rsa-sha2-512"), (b"x\x1b", "x\\x1b"), (b"a" * 70, "a" * 60)):
        with pytest.raises(ssh_kex.KexError) as caught:
            ssh_kex.check_certificate(
                _recertify(cert, key_blob(ED_OTHER), ssh_string(algorithm) + ssh_string(b"s")),
                "ssh-ed25519-cert-v01@openssh.com")
        assert str(caught.value) == f"certificate signature {shown} does not fit its CA key"
