from __future__ import annotations

import datetime as dt
import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from exporter.core.subject import SubjectError, format_subject, parse_subject, subject_from_name
from tests.kit.tables import NOT_SUBJECTS, PRINTS

# unit: the openssl binary below only prints the expected text; the parsing runs in-process
pytestmark = pytest.mark.unit

def test_the_subjects_pi_prints_survive_both_print_styles() -> None:
    # Each subject of the shared table, printed the 1.0 way (format_subject) and the 1.1 way
    # (oneline, escaped and quoted), parses back to itself.
    for _, want in PRINTS:
        assert parse_subject(format_subject(want)) == want
        assert parse_subject(render_oneline(want, quote=False)) == want
        assert parse_subject(render_oneline(want, quote=True)) == want


def test_no_subject_raises_a_value_error() -> None:
    for text in NOT_SUBJECTS:
        with pytest.raises(ValueError):
            parse_subject(text)


# -- against a real certificate ------------------------------------------------------

NAME = x509.Name(
    [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "CA"),
        x509.NameAttribute(NameOID.LOCALITY_NAME, "SJ"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Cisco, Inc."),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Prime/Infra"),
        x509.NameAttribute(NameOID.COMMON_NAME, "prime-pri"),
        x509.NameAttribute(NameOID.EMAIL_ADDRESS, "admin@example.com"),
    ]
)


def _cert(name: x509.Name) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


def test_subject_from_name_matches_openssl_prints() -> None:
    got = subject_from_name(_cert(NAME).subject)
    assert got == (
        ("C", "US"),
        ("ST", "CA"),
        ("L", "SJ"),
        ("O", "Cisco, Inc."),
        ("OU", "Prime/Infra"),
        ("CN", "prime-pri"),
        ("emailAddress", "admin@example.com"),
    )
    # What OpenSSL 1.1 (oneline) and 1.0 (X509_NAME_oneline, escaped `/`) print.
    v11 = (
        'C = US, ST = CA, L = SJ, O = "Cisco, Inc.", OU = Prime/Infra, CN = prime-pri, '
        "emailAddress = admin@example.com"
    )
    v10 = r" /C=US/ST=CA/L=SJ/O=Cisco, Inc./OU=Prime\/Infra/CN=prime-pri/emailAddress=admin@example.com"
    assert parse_subject(v11) == got
    assert parse_subject(v10) == got
    assert parse_subject(format_subject(got)) == got


def test_subject_from_name_multi_valued_and_unknown_oid() -> None:
    name = x509.Name(
        [
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "com")]),
            x509.RelativeDistinguishedName(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, "a"),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "b"),
                ]
            ),
            x509.RelativeDistinguishedName(
                [x509.NameAttribute(x509.ObjectIdentifier("1.3.6.1.4.1.9.99"), "private")]
            ),
        ]
    )
    got = subject_from_name(name)
    assert got == (("DC", "com"), ("CN", "a"), ("OU", "b"), ("1.3.6.1.4.1.9.99", "private"))
    assert parse_subject("DC = com, CN = a + OU = b, 1.3.6.1.4.1.9.99 = private") == got


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl binary")
@pytest.mark.parametrize("nameopt", ["oneline", "compat"])
def test_subject_from_name_equals_parse_of_real_openssl_output(nameopt: str) -> None:
    # `oneline` is the 1.1+ default print; `compat` is the 1.0 `/C=..` style.
    cert = _cert(NAME)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    out = subprocess.run(
        ["openssl", "x509", "-noout", "-subject", "-nameopt", nameopt],
        input=pem,
        capture_output=True,
        check=True,
    ).stdout.decode()
    printed = out.strip().removeprefix("subject=")
    assert parse_subject(printed) == subject_from_name(cert.subject)


# -- properties -----------------------------------------------------------------------

_VALUES = st.text(
    alphabet=st.sampled_from(list('abcXYZ019 -._,/+="\\@#;<>é')), min_size=0, max_size=12
)
_KEYS = st.sampled_from(["C", "ST", "L", "O", "OU", "CN", "emailAddress", "DC", "1.2.3.4"])
_SUBJECTS = st.lists(st.tuples(_KEYS, _VALUES.map(str.strip)), min_size=1, max_size=6).map(
    tuple
)


def render_oneline(subject: tuple[tuple[str, str], ...], quote: bool) -> str:
    """The OpenSSL 1.1 `oneline` print: RFC 2253 escapes, or quotes when asked."""
    parts = []
    for key, value in subject:
        v = value.replace("\\", "\\\\").replace('"', '\\"')
        if quote and any(c in v for c in ",+;<>"):
            v = f'"{v}"'
        else:
            for c in ",+;<>":
                v = v.replace(c, "\\" + c)
        parts.append(f"{key} = {v}")
    return ", ".join(parts)


@given(_SUBJECTS, st.booleans())
def test_roundtrip_both_styles(subject: tuple[tuple[str, str], ...], quote: bool) -> None:
    assert parse_subject(format_subject(subject)) == subject
    assert parse_subject(render_oneline(subject, quote)) == subject


@given(st.text(max_size=80))
def test_parse_subject_only_raises_subject_error(text: str) -> None:
    try:
        got = parse_subject(text)
    except SubjectError:
        return
    assert got
    assert parse_subject(format_subject(got)) == got
