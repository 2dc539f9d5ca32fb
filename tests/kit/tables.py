"""Tables shared by the in-process (`unit`) tests and the tests that feed the same cases
through PI's real output: one table each, read by both."""

from __future__ import annotations

# Keys PI prints -> (host, port); test_listing.py reads them all from one PTY listing.
KEY_FORMS = [
    ("10.0.0.1_1", "10.0.0.1", 1),
    ("10.0.0.1_65535", "10.0.0.1", 65535),
    ("ise_node_01.lab_443", "ise_node_01.lab", 443),  # the port follows the last `_`
    ("a__65535", "a_", 65535),
    ("fe80::1%eth0_443", "fe80::1%eth0", 443),
    ("fe80::1_8082", "fe80::1", 8082),
    ("2001:db8::5_443", "2001:db8::5", 443),
    ("::1_1", "::1", 1),
    ("[2001:db8::5]_443", "2001:db8::5", 443),
    ("[fe80::1%eth0]_8443", "fe80::1%eth0", 8443),
    ("Host-A.Example.COM_8082", "Host-A.Example.COM", 8082),
    ("prime-sec.example.com_8082", "prime-sec.example.com", 8082),
    ("10.0.0.1_00443", "10.0.0.1", 443),
]
# Entry lines that do not parse: each is kept as a bad line (tofu_store_unparsed_lines).
BAD_ENTRY_LINES = [
    *(f"host={key}; subject=CN=x" for key in [
        "10.0.0.1_0", "10.0.0.1_65536", "10.0.0.1_123456", "10.0.0.1_", "10.0.0.1", "_443",
        "10.0.0.1_44a", "a/b_443", "a*b_443", "[2001:db8::5]_0", "[2001:db8::5]_", "[]_443",
        "[a b]_443", "a\u00e9_443", "10.0.0.1_\u0664\u0664\u0663",  # non-ASCII letter, Arabic digits
        "10.0.0.1 x_443", "[2001:db8::1_443",
    ]),
    "host=; subject=CN=x", "host=10.0.0.1_443subject=CN=x", "host=10.0.0.1_443;", "host=10.0.0.1_443",
    "host=10.0.0.1_443; subject=", "host=10.0.0.1_443; subject=   ", "host=10.0.0.1_443; subject=junk",
    "host=10.0.0.1_443; x; subject=CN=a", 'host=10.0.0.1_443; subject=O = "open',
    "host=10.0.0.1_443; issuer=CN = x",
]

SEED = (("C", "US"), ("ST", "CA"), ("L", "SJ"), ("O", "Cisco Systems"), ("OU", "Prime Infra"),
        ("CN", "prime-pri"))
# Subjects as PI and OpenSSL print them -> what they parse to. test_subject.py round-trips each
# through both print styles.
PRINTS = [
    # the seed's subject in every spelling PI 3.5 and 3.9 print it
    (" /C=US/ST=CA/L=SJ/O=Cisco Systems/OU=Prime Infra/CN=prime-pri", SEED),
    ("/C=US/ST=CA/L=SJ/O=Cisco Systems/OU=Prime Infra/CN=prime-pri  ", SEED),
    ("C = US, ST = CA, L = SJ, O = Cisco Systems, OU = Prime Infra, CN = prime-pri", SEED),
    ("C=US,ST=CA,L=SJ,O=Cisco Systems,OU=Prime Infra,CN=prime-pri", SEED),
    ("countryName = US, stateOrProvinceName = CA, localityName = SJ, organizationName = Cisco Systems, "
     "organizationalUnitName = Prime Infra, commonName = prime-pri", SEED),
    ("/c=US/st=CA/l=SJ/o=Cisco Systems/ou=Prime Infra/cn=prime-pri", SEED),
    # PI 3.5 style
    ("/C=US/ST=CA/O=Cisco Systems/CN=prime-pri",
     (("C", "US"), ("ST", "CA"), ("O", "Cisco Systems"), ("CN", "prime-pri"))),
    # PI 3.9 style, with the spaces around `=` and after `,`
    ("C = US, ST = CA, O = Cisco Systems, CN = prime-pri",
     (("C", "US"), ("ST", "CA"), ("O", "Cisco Systems"), ("CN", "prime-pri"))),
    ("CN = kong", (("CN", "kong"),)),
    ("CN=kong", (("CN", "kong"),)),
    ("CN = Xbox", (("CN", "Xbox"),)),  # only spaces and tabs lead a value
    ("  /CN=kong  ", (("CN", "kong"),)),
    ("\tCN\t=\tkong\t", (("CN", "kong"),)),
    ("/CN=a+OU=b", (("CN", "a"), ("OU", "b"))),
    ("CN = a + OU = b, O = c", (("CN", "a"), ("OU", "b"), ("O", "c"))),
    ('O = "Cisco, Inc.", CN = x', (("O", "Cisco, Inc."), ("CN", "x"))),
    ('CN = "  padded  "', (("CN", "padded"),)),
    ('CN = "a\\"b"', (("CN", 'a"b'),)),
    ('CN = a"b', (("CN", 'a"b'),)),  # a quote inside an unquoted value is a character
    ("/O=A/B Corp/CN=x", (("O", "A/B Corp"), ("CN", "x"))),  # `/` not before `name=`
    ("O = Cisco, Inc, CN = x", (("O", "Cisco, Inc"), ("CN", "x"))),
    ("O = Cisco, Inc., CN = x", (("O", "Cisco, Inc."), ("CN", "x"))),
    ("/CN=a=b", (("CN", "a=b"),)),
    ("/CN=", (("CN", ""),)),
    ("/CN=x/", (("CN", "x/"),)),  # a trailing separator starts nothing: part of the value
    ("CN = x,", (("CN", "x,"),)),
    ("/CN=x+", (("CN", "x+"),)),
    (r'O = "A \"B\" + C, D", CN = x', (("O", 'A "B" + C, D'), ("CN", "x"))),
    (r"O = Cisco\, Inc., OU = a\+b, CN = x", (("O", "Cisco, Inc."), ("OU", "a+b"), ("CN", "x"))),
    (r"/O=Cisco\/Prime/CN=x", (("O", "Cisco/Prime"), ("CN", "x"))),
    ("/CN=a+b", (("CN", "a+b"),)),
    ("O = x, CN = a + OU = b", (("O", "x"), ("CN", "a"), ("OU", "b"))),
    ("/O=x/CN=a+OU=b", (("O", "x"), ("CN", "a"), ("OU", "b"))),
    ("CN = café", (("CN", "café"),)),
    ("CN =   spaced   , O = x ", (("CN", "spaced"), ("O", "x"))),
    ("/CN= a /O=b ", (("CN", "a"), ("O", "b"))),
    ("emailAddress = a@b, E = c@d, DC = com, domainComponent = example, serialNumber = 42, "
     "title = boss, givenName = Ann, GN = Bo, surname = Li, SN = Ma, UID = u1, userId = u2, "
     "2.5.4.3 = oid-cn, OID.2.5.4.10 = oid-o, 1.2.3.4 = private, fooBar = baz",
     (("emailAddress", "a@b"), ("emailAddress", "c@d"), ("DC", "com"), ("DC", "example"),
      ("serialNumber", "42"), ("title", "boss"), ("GN", "Ann"), ("GN", "Bo"), ("SN", "Li"),
      ("SN", "Ma"), ("UID", "u1"), ("UID", "u2"), ("CN", "oid-cn"), ("O", "oid-o"),
      ("1.2.3.4", "private"), ("FOOBAR", "baz"))),
]
# Text that is no subject: SubjectError (a ValueError), never another exception.
NOT_SUBJECTS = ["", "   ", "kong", "/", "/kong", "= x", "CN", 'CN = "open', "CN = x\\", "/=x", "C N=x",
                "1CN=x", "é=x"]
