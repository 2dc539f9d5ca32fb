"""PI over SSH as a Source (exporter.sources.seam): one read of a PI server's TOFU list, and
the PI log evidence as an optional capability (`tofu_log`) the service uses when present."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from exporter.config.model import StoreConfig
from exporter.core.model import ErrorReason, Listing, StoreRead
from exporter.sources.prime.listing import cli_error, parse_capped
from exporter.sources.prime.ssh import PiSession, StoreReadError
from exporter.sources.prime.tofu_log import tofu_failures
from exporter.sources.seam import Offload


async def _inline(entries: int, fn: Callable[..., Any], *args: object) -> Any:
    return fn(*args)


def _no_entries(listing: Listing, text: str) -> None:
    """A listing without entries is an empty store only when nothing in it says otherwise:
    taken for one, an error would drop every baseline, and the entries, listed again, would
    be witnessed anew with whatever certificate their peers present then."""
    if listing.bad_lines:
        raise StoreReadError(
            ErrorReason.PARSE, f"{len(listing.bad_lines)} lines, none of them an entry"
        )
    if (error := cli_error(text)) is not None:
        raise StoreReadError(
            ErrorReason.COMMAND, f"the CLI answered with an error, not a listing: {error[:200]}"
        )


class PiSource:
    """One PI server's stored TOFU list. Its entries hold a subject; their peers are TLS."""

    prober = "tls"

    def __init__(self, cfg: StoreConfig, offload: Offload = _inline,
                 session: PiSession | None = None) -> None:
        self.cfg = cfg
        self.session = session or PiSession(cfg)  # connects on first use; reusable after close
        self._offload = offload

    async def read(self) -> StoreRead:
        """The list, capped while parsing: entries beyond max_entries are counted (`beyond`),
        never held. What the PI server or the network did is a failed read, not an exception."""
        cfg, start = self.cfg, time.perf_counter()
        try:
            text = await self.session.run(cfg.listcerts_command)
            # A listing takes about 100 characters per entry; 100,000 entries parse in 0.7 s.
            listing, beyond = await self._offload(len(text) // 100, parse_capped, text,
                                                  cfg.max_entries)
            if not listing.entries:
                _no_entries(listing, text)
        except StoreReadError as e:
            return StoreRead(cfg.name, False, None, time.perf_counter() - start, time.time(),
                             e.reason, e.message)
        return StoreRead(cfg.name, True, listing, time.perf_counter() - start, time.time(),
                         beyond=beyond)

    async def tofu_log(self) -> Mapping[str, int] | str | None:
        """Common name -> TOFU-failed records in PI's log; the error (a str) when the log
        command failed; None when the store has no log command."""
        if not self.cfg.log_command:
            return None
        try:
            return tofu_failures(await self.session.run(self.cfg.log_command))
        except StoreReadError as e:
            return e.message

    async def close(self) -> None:
        await self.session.close()
