"""The verdict on each known_hosts entry of one host, as OpenSSH's batch client would decide it.

The question per entry: would `ssh -o BatchMode=yes -o StrictHostKeyChecking=yes
-o HostKeyAlgorithms=TYPE`, trusting exactly this file, connect with this entry's key type? Each
rule names the OpenSSH function it mirrors (hostfile.c, sshconnect.c, sshkey.c of 9.2):

- match: the host offers the type and the key equals a stored one (check_hostkeys_by_key_or_type:
  sshkey_equal -> HOST_OK). For `@cert-authority`: a host certificate whose CA key equals the
  line's (sshkey_equal_public on cert->signature_key), whose CA signature verified (cert_parse),
  valid now, naming the host among its principals or naming none, with no critical options, signed
  with a CASignatureAlgorithms default algorithm (sshkey_cert_check_host).
- mismatch: the type is offered with another key (a non-equal MRK_NONE line -> HOST_CHANGED:
  REMOTE HOST IDENTIFICATION HAS CHANGED); the offered key, or a certificate's CA, is listed
  `@revoked` (check_key_not_revoked -> HOST_REVOKED, which beats HOST_OK); a certificate from this
  CA fails sshkey_cert_check_host; or the host offers none of the types its entries hold (the key
  it does present meets a non-equal line, or no line: Host key verification failed).
- unknown: the host no longer offers this entry's type (or no certificate from this CA) but
  another entry of the host matches: harmless to a default client, which order_hostkeyalgs steers
  to the known type, fatal to a client that speaks only this type. Also when another entry's key
  changed and this one is simply gone: the failure is reported on the changed one.
- unreachable: no key exchange for this type.

Offers are keyed by key type as the host's blob names it (`ssh-rsa` for any rsa-sha2-* signature;
certificates by their `-cert-v01@openssh.com` type). A type missing from `offers` counts as not
offered: the caller passes NO_KEX explicitly when it could not tell.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from exporter.sources.known_hosts.entries import Entry
from exporter.sources.known_hosts.keys import (
    ALLOWED_CA_SIGALGS,
    CERT_TYPE_HOST,
    BadKey,
    Key,
    is_cert_type,
    key_fingerprint,
    parse_blob,
    same_key,
)
from exporter.sources.known_hosts.parse import CA_MARKER, REVOKE_MARKER

MATCH, MISMATCH, UNKNOWN, UNREACHABLE = "match", "mismatch", "unknown", "unreachable"
EVIDENCE_STORED = "stored"


@dataclass(frozen=True)
class Offer:
    """What the host presented for one key type."""

    blob: bytes | None = None  # the key or certificate blob; None: the type is not offered
    no_kex: bool = False  # no key exchange happened (refused, timed out, garbled)
    ca_verified: bool = False  # for a certificate: its CA signature verified (the prober's check)


NOT_OFFERED = Offer()
NO_KEX = Offer(no_kex=True)


@dataclass(frozen=True)
class Verdict:
    state: str
    reason: str
    stored: tuple[str, ...]  # fingerprints of the stored keys behind the entry
    live: str | None = None  # fingerprint of what the host presented for it
    evidence: str = EVIDENCE_STORED


def is_revoked(key: Key, revoked: Sequence[Key]) -> bool:
    """check_key_not_revoked: the key, or a certificate's CA key, equals a @revoked line's key."""
    ca = parse_blob(key.cert.ca_key).public if key.cert is not None else None
    return any(r.public in (key.public, ca) for r in revoked)


def cert_problem(key: Key, verified: bool, hostname: str, now: int) -> str:
    """Why sshkey_cert_check_host (or cert_parse's signature check) refuses the certificate, or ""."""
    cert = key.cert
    assert cert is not None
    checks = (
        (not verified, "CA signature does not verify"),
        (cert.cert_type != CERT_TYPE_HOST, "not a host certificate"),
        (now < cert.valid_after, "certificate not yet valid"),
        (now >= cert.valid_before, "certificate expired"),
        (bool(cert.principals) and hostname not in cert.principals, "host name is not a listed principal"),
        (bool(cert.critical), "certificate contains unsupported critical options"),
        (cert.signature_type not in ALLOWED_CA_SIGALGS, "certificate signed with disallowed algorithm"),
    )
    return next((why for failed, why in checks if failed), "")


def _parsed(offer: Offer) -> Key | None:
    if offer.blob is None:
        return None
    try:
        return parse_blob(offer.blob)
    except BadKey:
        return None


def _plain(entry: Entry, offer: Offer, revoked: Sequence[Key]) -> Verdict | None:
    stored = entry.fingerprints
    if offer.no_kex:
        return Verdict(UNREACHABLE, "no key exchange", stored)
    if offer.blob is None:
        return None
    key = _parsed(offer)
    if key is None or key.key_type != entry.key_type:
        return Verdict(MISMATCH, "the host's key does not parse as this type", stored)
    live = key_fingerprint(key)
    if is_revoked(key, revoked):
        return Verdict(MISMATCH, "the host's key is listed @revoked", stored, live)
    if any(same_key(key, line.key) for line in entry.lines):
        return Verdict(MATCH, "the host presents the stored key", stored, live)
    return Verdict(MISMATCH, "the host presents another key: REMOTE HOST IDENTIFICATION HAS CHANGED",
                   stored, live)


def _ca(entry: Entry, offers: Mapping[str, Offer], revoked: Sequence[Key], now: int) -> Verdict | None:
    stored = entry.fingerprints
    certs = [(t, o) for t, o in offers.items() if is_cert_type(t)]
    if certs and all(o.no_kex for _, o in certs):
        return Verdict(UNREACHABLE, "no key exchange", stored)
    cas = {line.key.public for line in entry.lines}
    problems = []
    for _, offer in certs:
        key = _parsed(offer)
        if key is None or key.cert is None or parse_blob(key.cert.ca_key).public not in cas:
            continue
        live = key_fingerprint(key)
        if is_revoked(key, revoked):
            return Verdict(MISMATCH, "the host's certificate or its CA is listed @revoked", stored, live)
        why = cert_problem(key, offer.ca_verified, entry.host.lower(), now)
        if not why:
            return Verdict(MATCH, "host certificate signed by the stored CA", stored, live)
        problems.append((why, live))
    if problems:
        return Verdict(MISMATCH, problems[0][0], stored, problems[0][1])
    return None  # no certificate from this CA: judged with the entries not offered


def judge(entries: Sequence[Entry], offers: Mapping[str, Offer], now: int) -> dict[str, Verdict]:
    """The verdict of each probed entry of one host (all `entries` share one lookup string; pass
    its @revoked entries too). `now` is the Unix time certificates are checked against."""
    revoked = [line.key for e in entries if e.marker == REVOKE_MARKER for line in e.lines]
    out: dict[str, Verdict] = {}
    pending = []
    for entry in entries:
        if entry.marker == REVOKE_MARKER:
            continue
        if entry.marker == CA_MARKER:
            verdict = _ca(entry, offers, revoked, now)
        else:
            verdict = _plain(entry, offers.get(entry.key_type, NOT_OFFERED), revoked)
        if verdict is None:
            pending.append(entry)
        else:
            out[entry.key] = verdict
    for entry in pending:
        out[entry.key] = _not_offered(entry, entries, offers, out)
    return out


def _not_offered(entry: Entry, entries: Sequence[Entry], offers: Mapping[str, Offer],
                 decided: Mapping[str, Verdict]) -> Verdict:
    stored = entry.fingerprints
    what = "no certificate from this CA" if entry.marker == CA_MARKER else "this key type no longer offered"
    if any(v.state == MATCH for v in decided.values()):
        return Verdict(UNKNOWN, f"{what}; another entry of the host matches (stale line)", stored)
    held = {e.key_type for e in entries if e.marker == ""}
    offered = {t for t, o in offers.items() if o.blob is not None}
    if not offered and any(o.no_kex for o in offers.values()):
        return Verdict(UNREACHABLE, "no key exchange", stored)
    if not offered & held:
        return Verdict(MISMATCH, f"{what}; the host offers none of the stored types: "
                                 "Host key verification failed", stored)
    return Verdict(UNKNOWN, f"{what}; another entry of the host does not match either", stored)
