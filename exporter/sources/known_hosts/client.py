"""Would a default OpenSSH client (9.2, batch mode, StrictHostKeyChecking=yes) connect to a host?

The per-entry verdicts answer for a client pinned to one type (`HostKeyAlgorithms=TYPE`); this
answers for the client as shipped, which reorders its offer by what known_hosts holds:

- order_hostkeyalgs (sshconnect2.c): if a plain line holds the type of the first default
  algorithm, the default list goes as is; otherwise every certificate algorithm when a
  @cert-authority line applies, and every algorithm whose plain type a line holds, move to the
  front, in default order. A type whose first line holds a @revoked key counts as not held.
- choose_hostkeyalg / match_list (kex.c): the server takes the first client algorithm it has.
- check_host_key (sshconnect.c): a certificate is checked against the @cert-authority lines and
  sshkey_cert_check_host, and on failure downgraded to its plain key; a plain key passes if a line
  holds it (HOST_OK), fails if lines hold other keys (HOST_CHANGED) or it is @revoked, and with
  no line at all (HOST_NEW) on a port other than 22 is looked up once more under the bare host
  name, where only an exact match passes (the ROQUIET retry).

Assumed of the host: an RSA key signs with rsa-sha2-512/256 (OpenSSH 7.2 and later); a host that
signs only with ssh-rsa (SHA-1) shares no algorithm with the default client.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from exporter.sources.known_hosts.entries import Entry
from exporter.sources.known_hosts.keys import Key, canonical_type, parse_blob, plain_type, same_key
from exporter.sources.known_hosts.parse import CA_MARKER, REVOKE_MARKER
from exporter.sources.known_hosts.verdict import Offer, cert_problem, is_revoked

# KEX_DEFAULT_PK_ALG (myproposal.h, OpenSSH 9.2)
DEFAULT_ALGORITHMS = (
    "ssh-ed25519-cert-v01@openssh.com",
    "ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "ecdsa-sha2-nistp384-cert-v01@openssh.com",
    "ecdsa-sha2-nistp521-cert-v01@openssh.com",
    "sk-ssh-ed25519-cert-v01@openssh.com",
    "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "rsa-sha2-512-cert-v01@openssh.com",
    "rsa-sha2-256-cert-v01@openssh.com",
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "rsa-sha2-512",
    "rsa-sha2-256",
)


@dataclass(frozen=True)
class Outcome:
    connects: bool
    algorithm: str | None  # the host key algorithm negotiated; None without one
    reason: str


def _key_type(algorithm: str) -> str:
    return canonical_type(algorithm) or algorithm


def order_hostkeyalgs(entries: Sequence[Entry],
                      algorithms: Sequence[str] = DEFAULT_ALGORITHMS) -> tuple[str, ...]:
    """The client's host key algorithm proposal for a host with these entries. A certificate
    algorithm whose plain type a line holds moves forward too (lookup by sshkey_type_plain)."""
    # lookup_key_in_hostkeys_by_type takes the first line of the type and reports it not found
    # when that key is @revoked (check_hostkeys_by_key_or_type's final revocation check)
    revoked = _lines(entries, REVOKE_MARKER)
    held = {e.key_type for e in entries if e.marker == "" and not is_revoked(e.lines[0].key, revoked)}
    has_ca = any(e.marker == CA_MARKER for e in entries)
    if plain_type(_key_type(algorithms[0])) in held:
        return tuple(algorithms)
    first = [a for a in algorithms
             if (has_ca and _key_type(a) != plain_type(_key_type(a))) or plain_type(_key_type(a)) in held]
    return tuple(first) + tuple(a for a in algorithms if a not in first)


def _lines(entries: Sequence[Entry], marker: str) -> list[Key]:
    return [line.key for e in entries if e.marker == marker for line in e.lines]


def _plain_status(entries: Sequence[Entry], key: Key) -> str:
    """check_hostkeys_by_key_or_type for a plain key: OK, REVOKED, CHANGED or NEW."""
    if is_revoked(key, _lines(entries, REVOKE_MARKER)):
        return "REVOKED"
    stored = _lines(entries, "")
    if any(same_key(key, k) for k in stored):
        return "OK"
    return "CHANGED" if stored else "NEW"


def _check(entries: Sequence[Entry], bare: Sequence[Entry], key: Key, offer: Offer, host: str,
           now: int) -> tuple[bool, str]:
    if key.cert is not None:
        if not offer.ca_verified:  # cert_parse verifies while parsing: the key exchange fails
            return False, "host certificate signature does not verify"
        if is_revoked(key, _lines(entries, REVOKE_MARKER)):
            return False, "host certificate or its CA is @revoked"
        ca = parse_blob(key.cert.ca_key).public
        if any(k.public == ca for k in _lines(entries, CA_MARKER)) and not cert_problem(
                key, offer.ca_verified, host, now):
            return True, "host certificate signed by a listed CA"
        key = Key(plain_type(key.key_type), key.public, key.public)  # sshkey_drop_cert, retry
    status = _plain_status(entries, key)
    if status == "NEW" and bare:
        status = "OK" if _plain_status(bare, key) == "OK" else "NEW"
    return status == "OK", {
        "OK": "the host key is known", "REVOKED": "the host key is @revoked",
        "CHANGED": "REMOTE HOST IDENTIFICATION HAS CHANGED", "NEW": "no host key known: strict checking",
    }[status]


def default_client(entries: Sequence[Entry], offers: Mapping[str, Offer], now: int,
                   bare: Sequence[Entry] = ()) -> Outcome:
    """What a default batch client does with one host. `entries` are the host's entries (all
    markers) under its lookup string; `bare` those under the bare host name, for a host on a port
    other than 22 (check_host_key's retry without the port)."""
    host = entries[0].host.lower() if entries else ""
    for algorithm in order_hostkeyalgs(entries):
        offer = offers.get(_key_type(algorithm))
        if offer is None or offer.blob is None:
            continue
        try:
            key = parse_blob(offer.blob)
        except ValueError:
            return Outcome(False, algorithm, "the host key does not parse")
        ok, why = _check(entries, bare, key, offer, host, now)
        return Outcome(ok, algorithm, why)
    if any(o.no_kex for o in offers.values()):
        return Outcome(False, None, "no key exchange")
    return Outcome(False, None, "no matching host key type")
