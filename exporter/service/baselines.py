"""A store's baselines as its data holds them: read from the database for the listing they
belong to (the reader after a read, the prober after a probe filled some or another process
wrote the database)."""

from __future__ import annotations

from collections.abc import Mapping

from exporter.core.model import Attested, Baseline, BaselineKind
from exporter.service.state import StoreData, StoreState
from exporter.store.database import BaselineDB


def fresh(db: BaselineDB, state: StoreState, data: StoreData
          ) -> tuple[Mapping[str, Baseline], Mapping[str, Attested]]:
    """The store's baselines and attestations in the database (`data`'s own objects when
    unchanged). Who attested, when, why: read only when the baselines changed (an `accept`
    changes them), so scrapes and pages never query the database for it."""
    got = db.baselines(state.name)
    if got == data.baselines:
        return data.baselines, data.attested
    any_attested = any(b.kind is BaselineKind.ATTESTED for b in got.values())
    return got, db.attested(state.name) if any_attested else {}


def refresh(db: BaselineDB, state: StoreState) -> bool:
    """Keep the baselines the database holds now, if they belong to the store's listing:
    while a read probes the entries that appeared, the database already holds the new
    listing's rows (a departed entry's are gone), and the read swaps them in with that
    listing. Under the store's evidence lock: a worker thread (a large store's read) and the
    loop (pickup, a probe that filled baselines) can both run this, and without it the older
    read could be kept last, stale until the store's next read. True when they moved."""
    with state.evidence_lock:
        v = state.value
        data = v.data
        if data.read is None or data.listing is not v.observed:
            return False
        baselines, attested = fresh(db, state, data)
        if baselines is data.baselines:
            return False
        state.update(baselines=baselines, attested=attested)
        return True
