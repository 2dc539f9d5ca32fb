"""The sans-IO SSH reader on its own: whatever a peer sends, it ends in its own clear errors
(KexError, Fallback) or waits for more, never in a Python exception."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.probes import ssh_kex


def _string(b: bytes) -> bytes:
    return struct.pack("!I", len(b)) + b


def _names(names: list[str]) -> bytes:
    return _string(",".join(names).encode())


KEX = st.lists(st.sampled_from([*ssh_kex.KEX_METHODS, "sntrup761x25519-sha512@openssh.com", ""]),
               max_size=3)
HOST_KEY_ALGS = st.lists(st.sampled_from(["ssh-ed25519", "rsa-sha2-512", "ssh-rsa", "ssh-dss",
                                          "ecdsa-sha2-nistp256"]), max_size=3)
FIELD = st.one_of(st.binary(max_size=80), st.sampled_from([b"ssh-ed25519", b"ssh-rsa", b"\x80" * 33]))


@st.composite
def conversations(draw: st.DrawFn) -> bytes:
    kexinit = (bytes([20]) + b"\0" * 16 + _names(draw(KEX)) + _names(draw(HOST_KEY_ALGS))
               + _names(["aes128-ctr"]) * 2 + _names(["hmac-sha1"]) * 2 + _names(["none"]) * 2
               + _names([]) * 2 + draw(st.sampled_from([b"\0", b"\1", b""])) + b"\0\0\0\0")
    blob = draw(st.one_of(st.binary(max_size=120),
                          st.builds(lambda k, tail: _string(k) + tail,
                                    st.sampled_from([b"ssh-ed25519", b"ssh-rsa", b"ecdsa-sha2-nistp256"]),
                                    st.lists(FIELD, max_size=3).map(lambda fs: b"".join(map(_string, fs))))))
    reply = bytes([31]) + _string(blob) + _string(draw(FIELD)) + _string(
        _string(draw(st.sampled_from([b"ssh-ed25519", b"rsa-sha2-512", b"x"]))) + _string(draw(FIELD)))
    packets = draw(st.lists(st.sampled_from([kexinit, reply, bytes([2]), bytes([1]) + b"\0\0\0\2"]),
                            min_size=1, max_size=4))
    junk = draw(st.binary(max_size=40))
    return b"".join(ssh_kex.packet(p) for p in packets) + junk


@settings(max_examples=400, deadline=None)
@given(conversations(), st.sampled_from(["ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ssh-dss"]),
       st.integers(1, 64))
def test_any_peer_input_ends_in_the_readers_own_errors(data: bytes, key_type: str, chunk: int) -> None:
    ex = ssh_kex.HostKeyExchange(key_type)
    ex.start()
    try:
        ex.feed(b"SSH-2.0-peer\r\n")
        for i in range(0, len(data), chunk):
            ex.feed(data[i : i + chunk])
    except (ssh_kex.KexError, ssh_kex.Fallback) as exc:
        assert str(exc)
    assert ex.outcome is None  # nobody here can sign for a key


@given(st.binary(max_size=300))
def test_any_bytes_before_the_version_line(data: bytes) -> None:
    ex = ssh_kex.HostKeyExchange("ssh-ed25519")
    with contextlib.suppress(ssh_kex.KexError, ssh_kex.Fallback):
        ex.feed(data)


def test_offers_for_rsa_as_openssh_does() -> None:
    assert ssh_kex.host_key_algorithms("ssh-rsa") == ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")
    cert = "-cert-v01@openssh.com"
    assert ssh_kex.host_key_algorithms("ssh-rsa" + cert)[0] == "rsa-sha2-512" + cert
    assert ssh_kex.host_key_algorithms("ssh-ed25519") == ("ssh-ed25519",)


@given(st.binary(max_size=600))
def test_packets_pad_to_eight_with_at_least_four(payload: bytes) -> None:
    p = ssh_kex.packet(payload)
    length, pad = struct.unpack("!IB", p[:5])
    assert len(p) % 8 == 0 and pad >= 4 and length == len(p) - 4 and p[5 : 5 + len(payload)] == payload


def test_rsa_key_below_1024_bits_refused_as_openssh_does() -> None:
    def mpint(n: int) -> bytes:
        return _string(n.to_bytes((n.bit_length() + 8) // 8, "big"))

    n = (1 << 1023) + 1
    ssh_kex.parse_host_key(_string(b"ssh-rsa") + mpint(65537) + mpint(n), "ssh-rsa")  # 1024: fine
    with pytest.raises(ssh_kex.KexError, match="512 bits"):
        ssh_kex.parse_host_key(_string(b"ssh-rsa") + mpint(65537) + mpint((1 << 511) + 1), "ssh-rsa")
