"""Subjects as PI prints them, escapes and all (exporter.core.subject), in-process: what PI 3.5
(OpenSSL 1.0, `/C=US/.../CN=x`) and PI 3.9 (1.1+, `C = US, ..., CN = x`) print, hex escapes
in both spellings, UTF-8 and latin-1 bytes, `OID.` names and any case of attribute names. Each
feeds the subject comparison, hence the `subject` evidence."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID, ObjectIdentifier

from exporter.core.subject import (
    SubjectError,
    canonical_name,
    common_name,
    format_subject,
    parse_subject,
    subject_from_name,
    subjects_equal,
)
from tests.kit.tables import NOT_SUBJECTS, PRINTS, SEED

pytestmark = pytest.mark.unit




@pytest.mark.parametrize(("text", "want"), PRINTS)
def test_both_print_styles(text: str, want: tuple[tuple[str, str], ...]) -> None:
    assert parse_subject(text) == want


@pytest.mark.parametrize(("text", "value"), [
    ("/CN=caf\\xC3\\xA9", "café"),  # 1.0: `\xHH`, UTF-8 bytes one by one
    ("/CN=caf\\xc3\\xa9", "café"),  # lower-case hex
    ("/CN=caf\\XC3\\XA9", "café"),  # upper-case X
    ("CN = caf\\C3\\A9", "café"),  # RFC 2253: `\HH`
    ("CN = caf\\c3\\a9", "café"),
    ("/CN=caf\\xE9", "café"),  # not UTF-8: latin-1, as 1.0 printed T61 strings
    ("/CN=\\xE9\\xE9", "éé"),
    ("/CN=\\xC3\\xA9\\xE9", "Ã©é"),  # one run of bytes decodes as a whole: latin-1
    ("/CN=\\xC3\\xA9-\\xE9", "é-é"),  # a character ends a run: each run decodes alone
    ("/CN=\\x41\\x42C", "ABC"),
    ("/CN=\\E2\\82\\AC", "€"),  # three bytes
    ("/CN=\\F0\\9F\\94\\91key", "🔑key"),  # four bytes, then text
    ("/CN=a\\x4", "ax4"),  # too short for `\xHH`: `\x` is a literal x
    ("/CN=a\\xZZ", "axZZ"),  # not hex: literal
    ("/CN=a\\x4Z", "ax4Z"),
    ("/CN=a\\xZ4", "axZ4"),  # each of the two digits is checked
    ("/CN=a\\4", "a4"),  # one hex digit at the end: literal
    ("/CN=a\\4Z", "a4Z"),
    ("/CN=a\\Z4", "aZ4"),
    ("/CN=a\\41", "aA"),
    ("/CN=a\\/b", "a/b"),
    ("/CN=a\\\\b", "a\\b"),
    ("CN = a\\, b", "a, b"),
    ("CN = a\\+b", "a+b"),
    ("CN = \\ lead", "lead"),  # escaped space: kept, then the value is stripped
])
def test_escapes(text: str, value: str) -> None:
    assert parse_subject(text) == (("CN", value),)


@pytest.mark.parametrize("text", NOT_SUBJECTS)
def test_not_a_subject(text: str) -> None:
    with pytest.raises(SubjectError):
        parse_subject(text)


def test_errors_say_where() -> None:
    with pytest.raises(SubjectError, match=r"^empty subject$"):
        parse_subject(" ")
    with pytest.raises(SubjectError, match=r"^expected 'name=value' at offset 1 in '/=x'$"):
        parse_subject("/=x")
    with pytest.raises(SubjectError, match=r"^dangling backslash at end of 'CN=x\\\\'$"):
        parse_subject("CN=x\\")
    with pytest.raises(SubjectError, match=r"""^unterminated quote in 'CN = "x'$"""):
        parse_subject('CN = "x')


@pytest.mark.parametrize(("name", "canon"), [
    ("CN", "CN"), ("cn", "CN"), ("Cn", "CN"), ("commonName", "CN"), ("COMMONNAME", "CN"),
    ("2.5.4.3", "CN"), ("OID.2.5.4.3", "CN"), ("oid.2.5.4.3", "CN"), ("Oid.2.5.4.3", "CN"),
    ("  CN  ", "CN"), ("S", "ST"), ("st", "ST"), ("stateOrProvinceName", "ST"),
    ("E", "emailAddress"), ("EMAILADDRESS", "emailAddress"), ("email", "emailAddress"),
    ("1.2.840.113549.1.9.1", "emailAddress"), ("serialnumber", "serialNumber"),
    ("dc", "DC"), ("domainComponent", "DC"), ("uid", "UID"), ("userId", "UID"),
    ("gn", "GN"), ("givenName", "GN"), ("sn", "SN"), ("surname", "SN"),
    ("jurisdictionCountryName", "jurisdictionC"), ("unstructuredname", "unstructuredName"),
    ("businesscategory", "businessCategory"),
    ("foo", "FOO"), ("Foo-Bar", "FOO-BAR"),  # unknown names: upper-cased
    ("1.2.3.4", "1.2.3.4"), ("OID.1.2.3.4", "1.2.3.4"),  # unknown OIDs: dotted, no prefix
])
def test_attribute_names(name: str, canon: str) -> None:
    assert canonical_name(name) == canon


@pytest.mark.parametrize(("text", "want"), [
    ("/OID.2.5.4.3=x/oid.1.2.3.4=y", (("CN", "x"), ("1.2.3.4", "y"))),
    ("commonName = x, Oid.2.5.4.10 = o, foo = z", (("CN", "x"), ("O", "o"), ("FOO", "z"))),
    ("/emailAddress=a@b/E=c@d", (("emailAddress", "a@b"), ("emailAddress", "c@d"))),
])
def test_names_in_subjects(text: str, want: tuple[tuple[str, str], ...]) -> None:
    assert parse_subject(text) == want


def test_the_two_styles_of_one_subject_compare_equal() -> None:
    pi35 = parse_subject("/C=US/O=Cisco Systems/CN=caf\\xC3\\xA9")
    pi39 = parse_subject("C = US, O = Cisco Systems, CN = caf\\C3\\A9")
    assert pi35 == pi39 and subjects_equal(pi35, pi39)


@pytest.mark.parametrize(("a", "b", "equal"), [
    ((("CN", "x"),), (("cn", "x"),), True),
    ((("CN", "x"),), (("commonName", " x "),), True),
    ((("CN", "x"),), (("CN", "X"),), False),  # values are exact
    ((("CN", "x"), ("O", "o")), (("O", "o"), ("CN", "x")), False),  # DER order matters
    ((("CN", "x"),), (("CN", "x"), ("O", "o")), False),
    ((("CN", "x"), ("O", "o")), (("CN", "x"),), False),
    ((("O", "x"),), (("OU", "x"),), False),
    ((), (), True),
    ((("cn", " x "),), (("commonName", "x"),), True),
])
def test_subjects_equal(a: tuple[tuple[str, str], ...], b: tuple[tuple[str, str], ...],
                        equal: bool) -> None:
    assert subjects_equal(a, b) is equal
    assert subjects_equal(b, a) is equal


def test_common_name_is_the_last_cn() -> None:
    assert common_name((("CN", "a"), ("O", "o"), ("commonName", "b"), ("OU", "u"))) == "b"
    assert common_name((("O", "o"),)) is None
    assert common_name(()) is None
    assert common_name((("cn", "low"),)) == "low"
    assert common_name(SEED) == "prime-pri"


@pytest.mark.parametrize(("subject", "text"), [
    ((("C", "US"), ("CN", "x")), "/C=US/CN=x"),
    ((("CN", "a/b"),), "/CN=a\\/b"),
    ((("CN", "a\\b"),), "/CN=a\\\\b"),
    ((("CN", "a+b"),), "/CN=a+b"),  # a `+` that starts no attribute stays
    ((("CN", "a+OU=b"),), "/CN=a\\+OU=b"),
    ((("CN", "a+ OU =b"),), "/CN=a\\+ OU =b"),
    ((("O", "x"), ("CN", "a+b+c=d")), "/O=x/CN=a+b\\+c=d"),
    (SEED, "/C=US/ST=CA/L=SJ/O=Cisco Systems/OU=Prime Infra/CN=prime-pri"),
    ((("O", "a/b"), ("CN", "x")), "/O=a\\/b/CN=x"),
])
def test_format_subject_escapes_only_what_is_ambiguous(subject: tuple[tuple[str, str], ...],
                                                       text: str) -> None:
    assert format_subject(subject) == text
    assert parse_subject(text) == subject


def test_subject_from_name() -> None:
    name = x509.Name([
        x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COUNTRY_NAME, "US")]),
        x509.RelativeDistinguishedName([
            x509.NameAttribute(NameOID.COMMON_NAME, " a "),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "b")]),
        x509.RelativeDistinguishedName([
            x509.NameAttribute(ObjectIdentifier("1.3.6.1.4.1.9.1"), "private")]),
        x509.RelativeDistinguishedName([
            x509.NameAttribute(NameOID.X500_UNIQUE_IDENTIFIER, b"\x01\xab",
                               _type=x509.name._ASN1Type.BitString)]),
    ])
    assert subject_from_name(name) == (
        ("C", "US"), ("CN", "a"), ("OU", "b"), ("1.3.6.1.4.1.9.1", "private"),
        ("x500UniqueIdentifier", "01ab"))
