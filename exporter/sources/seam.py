"""The Source seam: where stored trust comes from. One signature for every source: `read()`
gives one StoreRead (a Listing of StoredEntry, or an error reason), never raising for what the
store or the network did; `close()` ends its sessions.

- sources.prime: a PI server's `ncs certvalidation tofu-certs listcerts` over SSH; entries
  hold a subject (weak evidence) and are removed with `deletecert`.
- sources.known_hosts: an OpenSSH known_hosts file, local or over SSH; entries hold the exact
  key (evidence `stored`) and are removed by deleting their line.

Which prober serves a source's entries is the source's `prober` name ("tls", "ssh_hostkey"):
sources and probes never import each other. Pure: typing only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from exporter.core.model import StoreRead

# Offload(entries, fn, *args) -> fn(*args): CPU work sized by `entries` (a large listing's
# parse), run in a worker thread when it would hold the event loop (the service's Workers.run).
Offload = Callable[..., Awaitable[Any]]


class Source(Protocol):
    prober: str  # the Prober that reads what this source's peers present now

    async def read(self) -> StoreRead: ...

    async def close(self) -> None: ...
