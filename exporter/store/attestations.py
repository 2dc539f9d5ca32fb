"""The operator's attestations (`accept`): who accepted which live certificate, when and why."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from exporter.core.history import Attestation, Change, EntryStatus, Status, accepted, advance
from exporter.core.model import Attested, Baseline, BaselineKind
from exporter.store.history import INSERT_CHANGE, change_row
from exporter.store.recovery import DatabaseFile


@dataclass(frozen=True)
class Recorded:
    """One entry as the database holds it: its endpoint and baseline, and its last recorded
    status (None before any exporter recorded a verdict for it)."""

    endpoint: str
    baseline: Baseline
    status: Status | None


def _recorded(db: sqlite3.Connection, store: str, entry: str) -> Recorded | None:
    row = db.execute("SELECT endpoint, kind, fingerprint, since FROM baselines "
                     "WHERE store = ? AND entry = ?", (store, entry)).fetchone()
    if row is None:
        return None
    st = db.execute("SELECT state, evidence, fingerprint FROM entry_status "
                    "WHERE store = ? AND entry = ?", (store, entry)).fetchone()
    return Recorded(row[0], Baseline(BaselineKind(row[1]), row[2], row[3]),
                    None if st is None else Status(*st))


def _attest_one(db: sqlite3.Connection, a: Attestation) -> Change:
    row = db.execute("SELECT endpoint FROM baselines WHERE store = ? AND entry = ?",
                     (a.store, a.entry)).fetchone()
    if row is None or row[0] != a.endpoint:
        raise ValueError(f"entry {a.entry} of {a.store} changed while it was being accepted")
    db.execute("UPDATE baselines SET kind = ?, fingerprint = ?, since = ? "
               "WHERE store = ? AND entry = ?",
               (BaselineKind.ATTESTED.value, a.fingerprint_sha256, a.time, a.store, a.entry))
    db.execute("INSERT INTO attestations (store, entry, endpoint, fingerprint, spki, "
               "operator, reason, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               (a.store, a.entry, a.endpoint, a.fingerprint_sha256, a.spki_sha256,
                a.operator, a.reason, a.time))
    row = db.execute(
        "SELECT state, evidence, fingerprint, since, previous_fingerprint FROM entry_status "
        "WHERE store = ? AND entry = ?", (a.store, a.entry)).fetchone()
    # One row, not the store's every status: `accept --all-unknown` on a large store
    # attests thousands of entries in one transaction.
    old = None if row is None else EntryStatus(Status(*row[:3]), row[3], row[4])
    after = accepted(a.fingerprint_sha256)
    change = Change(a.time, a.store, a.entry, old.status if old else None, after,
                    f"accepted by {a.operator}: {a.reason}")
    st = advance(old, after, a.time)
    db.execute("INSERT OR REPLACE INTO entry_status VALUES (?, ?, ?, ?, ?, ?, ?)",
               (a.store, a.entry, after.state, after.evidence, after.fingerprint,
                st.since, st.previous_fingerprint))
    db.execute(INSERT_CHANGE, change_row(change))
    return change


class Attestations:
    def __init__(self, file: DatabaseFile) -> None:
        self._file = file

    def attest(self, items: Sequence[Attestation],
               verify: Callable[[dict[tuple[str, str], Recorded]], None] | None = None,
               ) -> list[Change]:
        """Record an operator's acceptance of the live certificates of some entries, all or
        none: each baseline becomes `attested` with that fingerprint, and the history says who
        and why. `verify` sees each entry as recorded now ((store, entry) -> Recorded; absent:
        no baseline, the entry left its store), inside the write transaction, so nothing
        another process commits can slip between its check and the write; whatever it raises
        propagates and nothing is recorded. Raises ValueError, recording nothing, when an
        entry no longer points at the attestation's endpoint (it left the list or moved since
        it was read); StorageError when the database cannot be written."""
        def op() -> list[Change]:
            with self._file.tx() as db:  # BEGIN IMMEDIATE: no other writer until COMMIT
                if verify is not None:
                    verify({(a.store, a.entry): r for a in items
                            if (r := _recorded(db, a.store, a.entry)) is not None})
                return [_attest_one(db, a) for a in items]

        return self._file.guard(op)

    def attestations(self, store: str) -> dict[str, Attestation]:
        """The attestation behind each entry of `store` whose baseline is attested now."""
        def op() -> dict[str, Attestation]:
            rows = self._file.conn.execute(
                "SELECT a.entry, a.endpoint, a.fingerprint, a.spki, a.operator, a.reason, a.at "
                "FROM attestations a JOIN baselines b ON b.store = a.store AND b.entry = a.entry "
                "AND b.kind = 'attested' AND b.since = a.at WHERE a.store = ?", (store,))
            return {e: Attestation(store, e, ep, fp, spki, op, why, at)
                    for e, ep, fp, spki, op, why, at in rows}

        return self._file.guard(op)

    def attested(self, store: str) -> dict[str, Attested]:
        """Who, when and why for each entry of `store` whose baseline is attested now, as the
        views show it. Read when the store's baselines change, never per scrape or request.
        One `accept` records many entries with one operator, time and reason: they share one
        object (a 100,000-entry store attested at once holds one, not 100,000)."""
        def op() -> dict[str, Attested]:
            rows = self._file.conn.execute(
                "SELECT a.entry, a.operator, a.at, a.reason FROM attestations a JOIN baselines b "
                "ON b.store = a.store AND b.entry = a.entry AND b.kind = 'attested' "
                "AND b.since = a.at WHERE a.store = ?", (store,))
            shared: dict[tuple[str, float, str], Attested] = {}
            out = {}
            for entry, by, at, why in rows:
                key = (by, at, why)
                note = shared.get(key)
                if note is None:
                    note = shared[key] = Attested(sys.intern(by), at, why)
                out[entry] = note
            return out

        return self._file.guard(op)
