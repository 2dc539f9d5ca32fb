"""What a config (at start or reload) does to the running service: this replica's part of
it (exporter.fleet.shard), the other shards' rows dropped by a long-running replica, and a
reload applied store by store."""

from __future__ import annotations

import logging

from prometheus_client import Counter as PromCounter

from exporter.config.model import Config
from exporter.core.model import BaselineKind
from exporter.fleet.shard import Shard, select
from exporter.service.context import Context
from exporter.service.loops import Loops
from exporter.service.state import StoreState
from exporter.store.database import BaselineDB

log = logging.getLogger("exporter.service")

# Process-wide, in the default registry that /metrics appends (as tofu_baseline_db_resets):
# evidence a replica dropped because another shard owns its store (docs/sharding.md).
ROWS_DROPPED = PromCounter(
    "tofu_baseline_rows_dropped",
    "Baseline rows of stores another shard owns, dropped by this replica at start or reload, "
    "by the baseline's kind",
    ["kind"],
)
for _kind in BaselineKind:
    ROWS_DROPPED.labels(_kind.value)


def own(config: Config, shard: Shard, drop_others: bool, db: BaselineDB) -> Config:
    """This replica's part of a config. A long-running replica (`drop_others`: `serve`)
    drops the rows of stores another shard owns, logged and counted: a store that moves
    back later is adopted anew, not trusted on rows nobody kept up to date. A one-shot
    command (`check --shard`) drops nothing: that evidence is not its own."""
    mine = select(config, shard)
    if mine is not config and drop_others:
        others = {s.name for s in config.stores} - {s.name for s in mine.stores}
        for store, rows in sorted(db.drop_stores(others).items()):
            log.warning("dropped the baselines of a store another shard owns", extra={
                "store": store, "rows": sum(rows.values()), "shard": shard.index,
                "total_shards": shard.total, **{k.value: rows[k.value] for k in BaselineKind}})
            for kind, n in rows.items():
                ROWS_DROPPED.labels(kind).inc(n)
    return mine


class Reload:
    def __init__(self, ctx: Context, loops: Loops, drop_others: bool) -> None:
        self.ctx, self.loops, self.drop_others = ctx, loops, drop_others

    def own(self, config: Config) -> Config:
        return own(config, self.ctx.shard, self.drop_others, self.ctx.db)

    async def apply(self, new: Config) -> None:
        """Swap in a validated config: untouched stores keep their loop and SSH session, a
        changed store is reconfigured in place, a removed one is dropped whole."""
        ctx, loops = self.ctx, self.loops
        new = self.own(new)
        old = ctx.stores
        ctx.config = new
        stores: dict[str, StoreState] = {}
        for cfg in new.stores:
            state = stores[cfg.name] = old.get(cfg.name) or StoreState(cfg, ctx.workers.run)
            if cfg.name in old:
                changed = state.cfg != cfg
                if changed:
                    self._retire(state)
                    await state.reconfigure(cfg, loops.stop_deadline)
                # Decided again either way: pins and endpoint settings may have moved.
                loops.snapshots.invalidate(state)
                if not changed:
                    continue  # its loop and session go on
                loops.reader.move_endpoints(state)  # self_address may have moved
            if loops.snapshots.ready:
                loops.start_loop(state, first_delay=False)
        for name, state in old.items():
            if name not in stores:
                self._retire(state)
                ctx.storage.ok(f"store:{name}")
                await state.close(loops.stop_deadline)
                loops.prober.prune_due = True
        ctx.stores = stores
        if loops.prober.prune_due:
            loops.prober.prune()
        loops.snapshots.set_reload_ok(True)

    def _retire(self, state: StoreState) -> None:
        """A reload ends this store's loop on purpose: not a death."""
        self.loops.supervisor.retire(state.task, f"store:{state.name}")
