"""What a Java (JSSE) TLS client offers by default: one profile per Java generation.

A server holding two certificates (RSA and ECDSA) chooses one by the client's offer: protocol
versions, cipher suites (and, with the client's order preferred, their order), supported
groups and signature algorithms. PI's TOFU client is Java, so the exporter offers what that
JSSE offers, in its order, or it may read another certificate than the one PI stores.

Sources (docs/domain.md says which profile fits which PI release, and what is not known):
- the enum order of sun.security.ssl.CipherSuite, SignatureScheme and NamedGroup in OpenJDK
  8u (the TLS 1.3 capable JSSE backported in 8u261/8u272) and 17, less what
  jdk.tls.disabledAlgorithms of current updates removes (SSLv3, TLS 1.0/1.1, RC4, DES, 3DES,
  anon, NULL, static ECDH suites);
- ClientHellos of Debian's OpenJDK 17.0.15 recorded on a plain TCP listener (the default, and
  with -Djdk.tls.client.protocols=TLSv1.2): `jsse11` is that hello, byte list for byte list.
Java sends no SNI for an IP literal, and an entry's address is what PI connected to.

Pure data: no I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporter.config.model import DEFAULT_TLS_CLIENT_PROFILE, TLS_CLIENT_PROFILES

TLS12 = 0x0303
TLS13 = 0x0304

# TLS 1.2 suites: IANA code -> OpenSSL name (for the full handshake's cipher string).
SUITE_NAMES: dict[int, str] = {
    0xC02C: "ECDHE-ECDSA-AES256-GCM-SHA384", 0xC02B: "ECDHE-ECDSA-AES128-GCM-SHA256",
    0xCCA9: "ECDHE-ECDSA-CHACHA20-POLY1305", 0xC030: "ECDHE-RSA-AES256-GCM-SHA384",
    0xCCA8: "ECDHE-RSA-CHACHA20-POLY1305", 0xC02F: "ECDHE-RSA-AES128-GCM-SHA256",
    0x009F: "DHE-RSA-AES256-GCM-SHA384", 0xCCAA: "DHE-RSA-CHACHA20-POLY1305",
    0x00A3: "DHE-DSS-AES256-GCM-SHA384", 0x009E: "DHE-RSA-AES128-GCM-SHA256",
    0x00A2: "DHE-DSS-AES128-GCM-SHA256", 0xC024: "ECDHE-ECDSA-AES256-SHA384",
    0xC028: "ECDHE-RSA-AES256-SHA384", 0xC023: "ECDHE-ECDSA-AES128-SHA256",
    0xC027: "ECDHE-RSA-AES128-SHA256", 0x006B: "DHE-RSA-AES256-SHA256",
    0x006A: "DHE-DSS-AES256-SHA256", 0x0067: "DHE-RSA-AES128-SHA256",
    0x0040: "DHE-DSS-AES128-SHA256", 0xC00A: "ECDHE-ECDSA-AES256-SHA",
    0xC014: "ECDHE-RSA-AES256-SHA", 0xC009: "ECDHE-ECDSA-AES128-SHA",
    0xC013: "ECDHE-RSA-AES128-SHA", 0x0039: "DHE-RSA-AES256-SHA", 0x0038: "DHE-DSS-AES256-SHA",
    0x0033: "DHE-RSA-AES128-SHA", 0x0032: "DHE-DSS-AES128-SHA", 0x009D: "AES256-GCM-SHA384",
    0x009C: "AES128-GCM-SHA256", 0x003D: "AES256-SHA256", 0x003C: "AES128-SHA256",
    0x0035: "AES256-SHA", 0x002F: "AES128-SHA",
}
SUITE13_NAMES: dict[int, str] = {
    0x1302: "TLS_AES_256_GCM_SHA384", 0x1301: "TLS_AES_128_GCM_SHA256",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256",
}
SCSV_RENEGOTIATION = 0x00FF  # JSSE ends its list with it instead of sending the extension

GROUP_NAMES: dict[int, str] = {
    0x001D: "X25519", 0x0017: "P-256", 0x0018: "P-384", 0x0019: "P-521", 0x001E: "X448",
    0x0100: "ffdhe2048", 0x0101: "ffdhe3072", 0x0102: "ffdhe4096", 0x0103: "ffdhe6144",
    0x0104: "ffdhe8192",
}

SIGALG_NAMES: dict[int, str] = {
    0x0403: "ecdsa_secp256r1_sha256", 0x0503: "ecdsa_secp384r1_sha384",
    0x0603: "ecdsa_secp521r1_sha512", 0x0807: "ed25519", 0x0808: "ed448",
    0x0804: "rsa_pss_rsae_sha256", 0x0805: "rsa_pss_rsae_sha384", 0x0806: "rsa_pss_rsae_sha512",
    0x0809: "rsa_pss_pss_sha256", 0x080A: "rsa_pss_pss_sha384", 0x080B: "rsa_pss_pss_sha512",
    0x0401: "rsa_pkcs1_sha256", 0x0501: "rsa_pkcs1_sha384", 0x0601: "rsa_pkcs1_sha512",
    0x0402: "DSA+SHA256", 0x0303: "ECDSA+SHA224", 0x0301: "RSA+SHA224", 0x0302: "DSA+SHA224",
    0x0203: "ECDSA+SHA1", 0x0201: "RSA+SHA1", 0x0202: "DSA+SHA1",
}


@dataclass(frozen=True)
class Profile:
    name: str
    versions: tuple[int, ...]  # highest first, as in supported_versions
    suites13: tuple[int, ...]  # TLS 1.3 suites, offered first when 1.3 is on
    suites12: tuple[int, ...]  # TLS 1.2 suites in JSSE's order (SCSV not included)
    groups: tuple[int, ...]
    sigalgs: tuple[int, ...]  # signature_algorithms and signature_algorithms_cert alike

    @property
    def tls13(self) -> bool:
        return TLS13 in self.versions

    @property
    def openssl_ciphers(self) -> str:
        return ":".join(SUITE_NAMES[s] for s in self.suites12)

    @property
    def openssl_groups(self) -> str:
        return ":".join(GROUP_NAMES[g] for g in self.groups)

    @property
    def openssl_sigalgs(self) -> str:
        return ":".join(SIGALG_NAMES[s] for s in self.sigalgs)


# CipherSuite enum order, enabled and not disabled. Java 8 lacks the ChaCha20 suites (JDK 12),
# X25519/X448 (JDK 11) and EdDSA (JDK 15).
_SUITES_8 = (
    0xC02C, 0xC02B, 0xC030, 0xC02F, 0x009F, 0x00A3, 0x009E, 0x00A2,
    0xC024, 0xC028, 0xC023, 0xC027, 0x006B, 0x006A, 0x0067, 0x0040,
    0xC00A, 0xC014, 0xC009, 0xC013, 0x0039, 0x0038, 0x0033, 0x0032,
    0x009D, 0x009C, 0x003D, 0x003C, 0x0035, 0x002F,
)
_SUITES_11 = (
    0xC02C, 0xC02B, 0xCCA9, 0xC030, 0xCCA8, 0xC02F, 0x009F, 0xCCAA, 0x00A3, 0x009E, 0x00A2,
    0xC024, 0xC028, 0xC023, 0xC027, 0x006B, 0x006A, 0x0067, 0x0040,
    0xC00A, 0xC014, 0xC009, 0xC013, 0x0039, 0x0038, 0x0033, 0x0032,
    0x009D, 0x009C, 0x003D, 0x003C, 0x0035, 0x002F,
)
_FFDHE = (0x0100, 0x0101, 0x0102, 0x0103, 0x0104)
_SIGALGS_LEGACY = (0x0401, 0x0501, 0x0601, 0x0402, 0x0303, 0x0301, 0x0302, 0x0203, 0x0201, 0x0202)
_PSS = (0x0804, 0x0805, 0x0806, 0x0809, 0x080A, 0x080B)

PROFILES: dict[str, Profile] = {
    "jsse8": Profile(
        name="jsse8",
        versions=(TLS12,),  # 8u261+ has TLS 1.3, but off for clients by default
        suites13=(),
        suites12=_SUITES_8,
        groups=(0x0017, 0x0018, 0x0019, *_FFDHE),
        sigalgs=(0x0403, 0x0503, 0x0603, *_PSS, *_SIGALGS_LEGACY),
    ),
    "jsse11": Profile(
        name="jsse11",
        versions=(TLS13, TLS12),
        suites13=(0x1302, 0x1301, 0x1303),
        suites12=_SUITES_11,
        groups=(0x001D, 0x0017, 0x0018, 0x0019, 0x001E, *_FFDHE),
        sigalgs=(0x0403, 0x0503, 0x0603, 0x0807, 0x0808, *_PSS, *_SIGALGS_LEGACY),
    ),
}
# PI 3.x ships a Java 8 runtime as far as is publicly known (docs/domain.md).
DEFAULT = DEFAULT_TLS_CLIENT_PROFILE
# The configuration names the profiles (it may not import a probe): both lists are one.
assert tuple(PROFILES) == TLS_CLIENT_PROFILES
