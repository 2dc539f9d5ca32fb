#!/usr/bin/env python3
"""Benchmark: what the history costs per store decision (exporter.core.history.diff +
BaselineDB.read_statuses and .record, real SQLite in WAL mode on disk).

    python3 bench/history.py [--entries 5000] [--reps 20]

Cases: the first recording of a store (every status written, no change), a steady cycle
(nothing moved: the usual case, reached only when a store's version moved at all), one
certificate changed (one status and one history row written). Prints medians in ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exporter.core.history import diff
from exporter.core.model import (
    EntryView,
    Evidence,
    LiveCert,
    ProbeResult,
    State,
    StoredEntry,
    Verdict,
)
from exporter.store.database import BaselineDB


def views(n: int, changed: int | None = None) -> tuple[EntryView, ...]:
    out = []
    for i in range(n):
        subject = (("CN", f"peer-{i}"),)
        fp = f"{i:064x}" if i != changed else "f" * 64
        cert = LiveCert(fp, "a" * 64, subject, f"/CN=peer-{i}", "/CN=ca", "1", 0.0, 1.0)
        ep = f"10.{i // 65536}.{i // 256 % 256}.{i % 256}:443"
        out.append(EntryView("pi", StoredEntry(ep.replace(":", "_"), ep, 443, "", subject), ep,
                             Verdict(State.UNKNOWN, Evidence.NONE, "why"),
                             ProbeResult(ep, cert, None, 0.01, 0.0), None))
    return tuple(out)


def timed(db: BaselineDB, vs: tuple[EntryView, ...]) -> float:
    t0 = time.perf_counter()
    base = db.read_statuses("pi")
    new, changes = diff("pi", vs, base.entries, time.time())
    assert db.record("pi", base, new, changes)
    return (time.perf_counter() - t0) * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--entries", type=int, default=5000)
    p.add_argument("--reps", type=int, default=20)
    a = p.parse_args()
    steady = views(a.entries)
    first, same, one = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.reps):
            db = BaselineDB(Path(tmp) / f"b{r}.db")
            first.append(timed(db, steady))
            same.append(timed(db, steady))
            one.append(timed(db, views(a.entries, changed=r)))
            db.close()
        rows = BaselineDB(Path(tmp) / "b0.db").history()
    print(f"entries per store: {a.entries}, reps: {a.reps}")
    print(f"first recording (starting point): {statistics.median(first):8.1f} ms")
    print(f"steady, nothing moved:           {statistics.median(same):8.1f} ms")
    print(f"one certificate changed:         {statistics.median(one):8.1f} ms  ({len(rows)} history row)")


if __name__ == "__main__":
    main()
