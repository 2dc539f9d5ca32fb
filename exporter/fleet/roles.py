"""What an entry is to its PI server: the other server of its HA pair, itself, ISE, or another
peer. Pure. Remediation orders and explains its steps by role; `accept` tells the operator
which integration to check by role."""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum

from exporter.fleet.pairs import PairView
from exporter.fleet.report import Row

_ISE_RE = re.compile(r"(?<![a-z0-9])ise(?![a-z0-9])", re.IGNORECASE)


class Role(StrEnum):
    HA_PEER = "ha-peer"  # the other PI server of an HA pair
    SELF = "self"  # the PI server's own certificate (127.0.0.1_8082 and the like)
    ISE = "ise"
    OTHER = "other"  # DNA Center or anything else PI connects to


def roles_of(pairs: Iterable[PairView]) -> dict[tuple[str, str], tuple[Role, str]]:
    roles: dict[tuple[str, str], tuple[Role, str]] = {}
    for p in pairs:
        for link in p.links:
            role = Role.SELF if link.peer == link.store else Role.HA_PEER
            for key in link.entries:
                roles[(link.store, key)] = (role, link.peer)
    return roles


def entry_role(r: Row, roles: dict[tuple[str, str], tuple[Role, str]]) -> tuple[Role, str | None]:
    """What the entry is to its PI server (HA peer, itself, ISE, other) and the peer store."""
    role, peer = roles.get((r.store, r.entry), (None, None))
    if role is None:
        ise = _ISE_RE.search(r.stored_subject) or _ISE_RE.search(r.live_subject or "")
        role = Role.ISE if ise else Role.OTHER
    return role, peer
