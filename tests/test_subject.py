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

from exporter.core.subject import (
    SubjectError,
    canonical_name,
    common_name,
    format_subject,
    parse_subject,
    subject_from_name,
    subjects_equal,
)

# unit: the openssl binary below only prints the expected text; the parsing runs in-process
pytestmark = pytest.mark.unit

SEED = (
    ("C", "US"),
    ("ST", "CA"),
    ("L", "SJ"),
    ("O", "Cisco Systems"),
    ("OU", "Prime Infra"),
    ("CN", "prime-pri"),
)


@pytest.mark.parametrize(
    "text",
    [
        " /C=US/ST=CA/L=SJ/O=Cisco Systems/OU=Prime Infra/CN=prime-pri",
        "/C=US/ST=CA/L=SJ/O=Cisco Systems/OU=Prime Infra/CN=prime-pri  ",
        "C = US, ST = CA, L = SJ, O = Cisco Systems, OU = Prime Infra, CN = prime-pri",
        "C=US,ST=CA,L=SJ,O=Cisco Systems,OU=Prime Infra,CN=prime-pri",
        "countryName = US, stateOrProvinceName = CA, localityName = SJ, "
        "organizationName = Cisco Systems, organizationalUnitName = Prime Infra, "
        "commonName = prime-pri",
        "/c=US/st=CA/l=SJ/o=Cisco Systems/ou=Prime Infra/cn=prime-pri",
    ],
)
def test_both_styles_same_subject(text: str) -> None:
    assert parse_subject(text) == SEED


def test_pi39_single_rdn() -> None:
    assert parse_subject("CN = kong") == (("CN", "kong"),)
    assert parse_subject("CN=kong") == (("CN", "kong"),)


def test_quoted_value_with_comma() -> None:
    got = parse_subject('C = US, O = "Cisco, Inc.", CN = prime-pri')
    assert got == (("C", "US"), ("O", "Cisco, Inc."), ("CN", "prime-pri"))


def test_quoted_value_with_escaped_quote_and_plus() -> None:
    got = parse_subject(r'O = "A \"B\" + C, D", CN = x')
    assert got == (("O", 'A "B" + C, D'), ("CN", "x"))


def test_escaped_comma_and_plus() -> None:
    got = parse_subject(r"O = Cisco\, Inc., OU = a\+b, CN = x")
    assert got == (("O", "Cisco, Inc."), ("OU", "a+b"), ("CN", "x"))


def test_escaped_slash() -> None:
    got = parse_subject(r"/O=Cisco\/Prime/CN=x")
    assert got == (("O", "Cisco/Prime"), ("CN", "x"))


def test_unescaped_separators_that_start_no_attribute_stay_in_the_value() -> None:
    # OpenSSL 1.0 does not escape `/`; older tools do not quote commas.
    assert parse_subject("/O=A/B Corp/CN=x") == (("O", "A/B Corp"), ("CN", "x"))
    assert parse_subject("O = Cisco, Inc., CN = x") == (("O", "Cisco, Inc."), ("CN", "x"))
    assert parse_subject("/CN=a+b") == (("CN", "a+b"),)


def test_multi_valued_rdn_flattened_in_order() -> None:
    expected = (("O", "x"), ("CN", "a"), ("OU", "b"))
    assert parse_subject("O = x, CN = a + OU = b") == expected
    assert parse_subject("/O=x/CN=a+OU=b") == expected


def test_hex_escapes_are_utf8() -> None:
    assert parse_subject(r"CN = caf\C3\A9") == (("CN", "café"),)
    assert parse_subject(r"/CN=caf\xC3\xA9") == (("CN", "café"),)
    assert parse_subject("CN = café") == (("CN", "café"),)


def test_attribute_names_normalised() -> None:
    got = parse_subject(
        "emailAddress = a@b, E = c@d, DC = com, domainComponent = example, "
        "serialNumber = 42, title = boss, givenName = Ann, GN = Bo, surname = Li, "
        "SN = Ma, UID = u1, userId = u2, 2.5.4.3 = oid-cn, OID.2.5.4.10 = oid-o, "
        "1.2.3.4 = private, fooBar = baz"
    )
    assert [k for k, _ in got] == [
        "emailAddress", "emailAddress", "DC", "DC", "serialNumber", "title", "GN", "GN",
        "SN", "SN", "UID", "UID", "CN", "O", "1.2.3.4", "FOOBAR",
    ]  # fmt: skip
    assert canonical_name("EMAILADDRESS") == "emailAddress"
    assert canonical_name("commonname") == "CN"


def test_values_stripped() -> None:
    assert parse_subject("CN =   spaced   , O = x ") == (("CN", "spaced"), ("O", "x"))
    assert parse_subject("/CN= a /O=b ") == (("CN", "a"), ("O", "b"))


@pytest.mark.parametrize(
    "text",
    ["", "   ", "kong", "/", "/kong", "= x", "CN", 'CN = "open', "CN = x\\", "/=x", "C N=x"],
)
def test_unparseable(text: str) -> None:
    with pytest.raises(SubjectError):
        parse_subject(text)


def test_subject_error_is_value_error() -> None:
    assert issubclass(SubjectError, ValueError)


def test_format_subject() -> None:
    assert format_subject(SEED) == "/C=US/ST=CA/L=SJ/O=Cisco Systems/OU=Prime Infra/CN=prime-pri"
    assert format_subject((("O", "a/b"), ("CN", "x"))) == r"/O=a\/b/CN=x"
    assert format_subject((("CN", "a+OU=b"),)) == r"/CN=a\+OU=b"
    assert format_subject((("CN", "a+b"),)) == "/CN=a+b"


def test_subjects_equal() -> None:
    assert subjects_equal(SEED, parse_subject("C = US, ST = CA, L = SJ, O = Cisco Systems, "
                                              "OU = Prime Infra, CN = prime-pri"))  # fmt: skip
    assert subjects_equal((("cn", " x "),), (("commonName", "x"),))
    assert not subjects_equal((("CN", "x"),), (("CN", "X"),))
    assert not subjects_equal((("CN", "x"), ("O", "y")), (("O", "y"), ("CN", "x")))
    assert not subjects_equal((("CN", "x"),), (("CN", "x"), ("O", "y")))


def test_common_name() -> None:
    assert common_name(SEED) == "prime-pri"
    assert common_name((("O", "x"),)) is None
    assert common_name((("CN", "a"), ("CN", "b"))) == "b"
    assert common_name(()) is None


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
