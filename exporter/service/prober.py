"""Probing what the stores name: the targets grouped by each store's prober, the results
kept per endpoint in use, the fingerprints seen written to the baseline database (a pending
baseline is witnessed by its first probe), and the endpoints no entry names any more pruned.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping

from exporter.core.model import ProbeResult
from exporter.probes.jsse import DEFAULT as _DEFAULT_PROFILE
from exporter.probes.seam import Target
from exporter.probes.tls import probe_many
from exporter.service import baselines
from exporter.service.context import STORAGE_ERRORS, Bound, Context
from exporter.service.wiring import PROBERS
from exporter.store.database import StorageError

log = logging.getLogger("exporter.service")

_DEFAULT_PROBER = "tls"  # an endpoint no store lists any more (a /probe in flight)


def _outcome(r: ProbeResult | None) -> tuple[str | None, str | None] | None:
    """What a verdict reads from a probe: a new probe with the same outcome changes nothing."""
    if r is None:
        return None
    return (r.cert.fingerprint_sha256 if r.cert is not None else None, r.error)


class ProbeScheduler:
    def __init__(self, ctx: Context, changed: Callable[..., None]) -> None:
        self.ctx, self.changed = ctx, changed
        self.probes: dict[str, ProbeResult] = {}  # endpoint -> last probe, only endpoints in use
        self.prune_due = False  # some endpoint may have lost its last entry
        # One bound for all probes in flight: the loops and concurrent /probe requests share
        # it, so N requests do not mean N x the limit.
        self._bound = Bound()

    def targets(self, endpoints: Iterable[str]) -> dict[str, list[Target]]:
        """Prober name -> what to probe with it. An endpoint is probed once, as the first
        store (in config order) listing it sees it: its prober, its TLS client profile."""
        config = self.ctx.config
        timeout = max((s.probe_timeout for s in config.stores), default=5.0)
        kinds = {(s.prober, s.cfg.tls_client_profile) for s in self.ctx.stores.values()}
        same = kinds.pop() if len(kinds) == 1 else None  # nearly every site
        out: dict[str, list[Target]] = {}
        for ep in endpoints:
            prober, variant = same or self._owner(ep)
            ec = config.endpoints.get(ep)
            out.setdefault(prober, []).append(
                Target(ep, timeout, variant, ec.sni if ec else None, ec.connect if ec else None))
        return out

    def _owner(self, endpoint: str) -> tuple[str, str]:
        """The prober and TLS client profile of the first store listing `endpoint`: one probe
        per endpoint, so stores whose Java differs share the first one's view."""
        for state in self.ctx.stores.values():
            v = state.value  # once: the data and what is incoming, from one whole
            if endpoint in v.data.endpoint_set or endpoint in v.incoming:
                return state.prober, state.cfg.tls_client_profile
        return _DEFAULT_PROBER, _DEFAULT_PROFILE

    def known_endpoints(self, store_names: Iterable[str] | None = None) -> set[str]:
        names = set(store_names) if store_names is not None else None
        eps: set[str] = set()
        for name, state in self.ctx.stores.items():
            if names is None or name in names:
                v = state.value  # once: a read swapping in meanwhile moves both together
                if v.data.read is not None:
                    eps.update(v.data.endpoint_set)
                eps.update(v.incoming)  # a read in flight probes these
        return eps

    def pickup(self) -> None:
        """Another process (`accept`, `check`, `remediate --apply`) wrote the database: read
        the baselines again, so an attestation counts from this cycle on, without a restart."""
        try:
            moved = self.ctx.db.changed_elsewhere()
        except StorageError as e:
            log.error("cannot check the database for other writers", extra={"error": str(e)})
            return
        if moved:
            self._refresh_baselines()
            self.changed()

    def _refresh_baselines(self) -> None:
        for state in self.ctx.stores.values():
            if baselines.refresh(self.ctx.db, state):
                self.changed()

    async def _probe(self, endpoints: Iterable[str]) -> Mapping[str, ProbeResult]:
        sem = self._bound.get(self.ctx.config.probe_concurrency)
        groups = self.targets(endpoints)
        if len(groups) == 1:  # one kind of store: nearly every site
            [(name, targets)] = groups.items()
            return await probe_many(targets, sem, PROBERS[name])
        done = await asyncio.gather(*(probe_many(ts, sem, PROBERS[name])
                                      for name, ts in groups.items()))
        return {ep: r for results in done for ep, r in results.items()}

    async def probe_endpoints(self, endpoints: Iterable[str]) -> None:
        self.pickup()
        results = await self._probe(endpoints)
        changed = {ep for ep, r in results.items() if _outcome(r) != _outcome(self.probes.get(ep))}
        self.probes.update(results)
        if changed:
            self.changed(*(s for s in self.ctx.stores.values()
                           if not changed.isdisjoint(s.data.endpoint_set)))
        self._note_fingerprints(
            {ep: r.cert.fingerprint_sha256 for ep, r in results.items() if r.cert is not None})
        self.changed()

    def _note_fingerprints(self, fps: dict[str, str]) -> None:
        if not fps:
            return
        try:
            self.ctx.db.note_fingerprints(fps)
            filled = self.ctx.db.fill(fps)
        except STORAGE_ERRORS as e:  # the probes stand; pending baselines wait a cycle
            self.ctx.storage.problem("probes", e)
            return
        self.ctx.storage.ok("probes")
        if filled:
            self._refresh_baselines()

    def prune(self) -> None:
        """Forget probes and endpoint rows no stored entry names any more: a site whose
        endpoints churn must not grow without bound."""
        self.prune_due = False
        keep = self.known_endpoints()
        for ep in [ep for ep in self.probes if ep not in keep]:
            del self.probes[ep]
        try:
            self.ctx.db.prune_endpoints()
        except STORAGE_ERRORS as e:
            self.prune_due = True  # again next time
            self.ctx.storage.problem("prune", e)
        else:
            self.ctx.storage.ok("prune")
