"""Endpoints, the one place that writes and reads them. Pure.

An endpoint is "host:port" with IPv6 literals in brackets ("[2001:db8::5]:443"), as in URLs:
the probe target, the `endpoint` label and the key of pins and per-endpoint settings.
"""

from __future__ import annotations

import ipaddress
import re

# What PI writes when it stores its own certificate. Only these: the rest of 127.0.0.0/8 is
# rare on PI and is how the lab gives each simulated peer its own address.
_V6_LOOPBACK = ipaddress.ip_address("::1")
_SELF_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "127.0.0.1", "::1"}
_ENDPOINT_RE = re.compile(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^:\[\]\s]+):(\d+)")


def format_endpoint(host: str, port: int) -> str:
    """`host:port` for probing and labels; IPv6 literals in brackets as in URLs."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """The inverse of format_endpoint: (host without brackets, port)."""
    host, _, port = endpoint.rpartition(":")
    return host.strip("[]"), int(port)


def parse_endpoint(text: str) -> str:
    """Operator input ('10.0.0.3:443', '[2001:db8::1]:443', 'ise.example.com:443') ->
    the canonical endpoint (host lowercased). ValueError when it is not one."""
    m = _ENDPOINT_RE.fullmatch(text.strip())
    if not m:
        raise ValueError("must be host:port (IPv6 as [addr]:port)")
    host, port = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    if not 1 <= int(port) <= 65535:
        raise ValueError("must be a port number 1-65535")
    return format_endpoint(host.lower(), int(port))


def is_loopback(host: str) -> bool:
    host = host.lower()
    if host in _SELF_NAMES:
        return True
    if ":" not in host:  # a name or IPv4: only those above (100,000 distinct hosts miss the cache)
        return False
    try:
        return ipaddress.ip_address(host) == _V6_LOOPBACK
    except ValueError:
        return False


# Not cached: 20,000 entries cost 7 ms uncached (5 ms cached), and a cache keyed by every
# address ever stored grew by about 400 B per endpoint that came and went (the soak test).
def entry_endpoint(self_address: str, host: str, port: int) -> str:
    """Where to probe a stored entry from here. PI stores itself as 127.0.0.1_8082: that is
    the PI server's own address (`self_address`), not ours."""
    return format_endpoint((self_address if is_loopback(host) else host).lower(), port)


# ---- SSH host-key targets (known_hosts stores) --------------------------------------------
# A known_hosts entry is probed for one key type: its endpoint is "host:port TYPE", so each
# (host, type) is one probe per cycle however many lines name it. A @cert-authority entry asks
# for whichever host certificate the host offers first: variant ANY_CERTIFICATE.
ANY_CERTIFICATE = "certificate"


def hostkey_endpoint(host: str, port: int, variant: str) -> str:
    return f"{format_endpoint(host.lower(), port)} {variant}"


def split_hostkey_endpoint(endpoint: str) -> tuple[str, str] | None:
    """("host:port", variant) of a host-key endpoint; None for a TLS endpoint."""
    where, sep, variant = endpoint.partition(" ")
    return (where, variant) if sep and variant else None
