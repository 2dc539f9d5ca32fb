"""Crash safety of the baseline database: SIGKILL a writer at random moments, then prove
the file opens, passes integrity_check and holds every baseline the writer saw committed.

The child reports a line only after BaselineDB's call returned (the transaction is
committed), so every reported state must survive the kill. 15 kills by default; the
long run (python -m pytest -m slow tests/test_crash.py) does 150. A kill only proves
something when it lands inside the writes, so at least MID_WRITE of the kills must land
between a round's "begin" and its "committed" report; and a kill must never be mistaken
for a corrupt or lost database (no reset when the next writer opens it).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Each round: a store's entries change (some go, some come), the new ones get fingerprints,
# endpoints are noted; after each committed call the child prints what must now be on disk.
_WRITER = r"""
import json, random, sys
from exporter.store.database import BaselineDB

db = BaselineDB(sys.argv[1])
rnd = random.Random(int(sys.argv[2]))
n = int(sys.argv[3])
print(json.dumps({"ready": True, "resets": dict(db.resets)}), flush=True)
while True:
    n += 1
    store = f"pi-{n % 3}"
    entries = {f"10.{n % 7}.{i}.{rnd.randint(0, 3)}_443": f"10.{n % 7}.{i}.1:443"
               for i in range(rnd.randint(1, 40))}
    print(json.dumps({"begin": n, "store": store, "entries": sorted(entries)}), flush=True)
    db.observe_store(store, entries)
    fps = {ep: f"{n:032x}{rnd.getrandbits(128):032x}" for ep in set(entries.values())}
    db.note_fingerprints(fps)
    db.fill(fps)
    # Committed: every entry of this store is present and has a fingerprint.
    print(json.dumps({"n": n, "store": store, "entries": sorted(entries)}), flush=True)
"""


Round = tuple[dict[str, list[str]], tuple[str, list[str]] | None, int]


def _kill_round(db: Path, seed: int, start: int, rnd: random.Random) -> Round:
    """Run a writer, SIGKILL it; returns (committed state per store, the round in flight, last n)."""
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(db), str(seed), str(start)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )
    assert child.stdout is not None
    assert json.loads(child.stdout.readline()) == {"ready": True, "resets": {}}
    # Read the child's reports while it runs: a full pipe would park it in print(), and the
    # kill would land between writes instead of inside one.
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(child.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    time.sleep(rnd.uniform(0.02, 0.3))  # a random moment, usually mid-transaction
    os.kill(child.pid, signal.SIGKILL)
    child.wait(10)
    reader.join(10)
    committed: dict[str, list[str]] = {}
    inflight: tuple[str, list[str]] | None = None
    last = start
    for line in lines:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line cut by the kill was never reported whole
            continue
        if "begin" in rec:
            inflight, last = (rec["store"], rec["entries"]), rec["begin"]
        else:
            committed[rec["store"]] = rec["entries"]
            inflight = None
    child.stdout.close()
    return committed, inflight, last


def _verify(db: Path, allowed: dict[str, list[tuple[list[str], bool]]]) -> None:
    """Each store holds one of its allowed states: (entries, every fingerprint must be set)."""
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        for store, states in allowed.items():
            rows = dict(con.execute(
                "SELECT entry, fingerprint FROM baselines WHERE store = ?", (store,)).fetchall())
            match = [full for entries, full in states if set(entries) == set(rows)]
            assert match, f"{store}: on disk {sorted(rows)}, committed {states[0][0]}"
            if all(match):
                assert all(rows.values()), f"{store}: a committed baseline lost its fingerprint"
    finally:
        con.close()


MID_WRITE = 0.6


def _kill_loop(tmp: Path, kills: int) -> int:
    """Returns how many kills landed inside a round of writes."""
    db = tmp / "baseline.db"
    rnd = random.Random(kills)
    n, mid_write, reported = 0, 0, 0
    allowed: dict[str, list[tuple[list[str], bool]]] = {}
    for i in range(kills):
        committed, inflight, n = _kill_round(db, i, n + 1000, rnd)
        reported += len(committed)
        for store, entries in committed.items():
            allowed[store] = [(entries, True)]
        if inflight is not None:
            # Killed mid-round: its observe_store may or may not have committed.
            store, entries = inflight
            allowed.setdefault(store, [([], True)]).append((entries, False))
            mid_write += 1
        _verify(db, allowed)
    assert reported >= kills // 2, "the writer hardly committed anything before the kills"
    return mid_write


def test_baseline_survives_sigkill(tmp_path: Path) -> None:
    assert _kill_loop(tmp_path, 15) >= MID_WRITE * 15


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_baseline_survives_sigkill_long(tmp_path: Path) -> None:
    assert _kill_loop(tmp_path, 150) >= MID_WRITE * 150
