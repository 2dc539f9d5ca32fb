"""Baseline persistence: adopted on first sight, witnessed after, reset on disappearance."""

from __future__ import annotations

from pathlib import Path

from exporter.core.history import Attestation, Change, EntryStatus, Status
from exporter.core.model import BaselineKind
from exporter.store.database import BaselineDB


def test_adopt_then_witness_then_reset(tmp_path: Path) -> None:
    db = BaselineDB(tmp_path / "b.db")
    assert db.observe_store("pri", {"a_1": "a:1", "b_2": "b:2"}) == set()  # first read: adopted
    db.fill({"a:1": "f" * 64})
    got = db.baselines("pri")
    assert got["a_1"].kind is BaselineKind.ADOPTED and got["a_1"].fingerprint_sha256 == "f" * 64
    assert got["b_2"].fingerprint_sha256 is None  # pending until a probe succeeds

    assert db.observe_store("pri", {"a_1": "a:1", "b_2": "b:2", "c_3": "c:3"}) == {"c_3"}
    db.fill({"c:3": "c" * 64, "a:1": "0" * 64})
    got = db.baselines("pri")
    assert got["c_3"].kind is BaselineKind.WITNESSED
    assert got["a_1"].fingerprint_sha256 == "f" * 64  # fill never overwrites a baseline

    db.observe_store("pri", {"b_2": "b:2", "c_3": "c:3"})  # a_1 deleted on PI
    assert "a_1" not in db.baselines("pri")
    assert db.observe_store("pri", {"a_1": "a:1", "b_2": "b:2", "c_3": "c:3"}) == {"a_1"}
    assert db.baselines("pri")["a_1"].kind is BaselineKind.WITNESSED
    db.close()


def test_survives_reopen(tmp_path: Path) -> None:
    db = BaselineDB(tmp_path / "b.db")
    db.observe_store("pri", {"a_1": "a:1"})
    db.fill({"a:1": "e" * 64})
    db.note_fingerprints({"a:1": "e" * 64}, now=100.0)
    db.close()
    again = BaselineDB(tmp_path / "b.db")
    assert again.baselines("pri")["a_1"].fingerprint_sha256 == "e" * 64
    assert again.observe_store("pri", {"a_1": "a:1"}) == set()  # the store is known: nothing new
    again.note_fingerprints({"a:1": "e" * 64}, now=200.0)
    assert again.changed_times() == {"a:1": 100.0}  # same fingerprint: no change recorded
    again.note_fingerprints({"a:1": "d" * 64}, now=300.0)
    assert again.changed_times() == {"a:1": 300.0}


def test_stores_are_independent(tmp_path: Path) -> None:
    db = BaselineDB(tmp_path / "b.db")
    db.observe_store("pri", {"x_1": "x:1"})
    assert db.observe_store("sec", {"x_1": "x:1"}) == set()  # sec's first read adopts
    assert db.observe_store("pri", {"x_1": "x:1", "y_2": "y:2"}) == {"y_2"}
    assert "y_2" not in db.baselines("sec")


# ---- schema 1: attestations, entry status, history (issue 13) -----------------------------

# The schema v0.1 shipped (exporter/store/database.py at v0.1): what an operator's file holds.
V01_SCHEMA = """
CREATE TABLE stores (store TEXT PRIMARY KEY, first_read REAL NOT NULL);
CREATE TABLE baselines (store TEXT NOT NULL, entry TEXT NOT NULL, endpoint TEXT NOT NULL,
    kind TEXT NOT NULL, fingerprint TEXT, since REAL NOT NULL, PRIMARY KEY (store, entry));
CREATE TABLE endpoints (endpoint TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, changed REAL NOT NULL);
"""


def test_a_v01_database_is_migrated_in_place_and_keeps_its_rows(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "baseline.db"
    with sqlite3.connect(path) as con:
        con.executescript(V01_SCHEMA)
        con.execute("INSERT INTO stores VALUES ('pri', 1.0)")
        con.execute("INSERT INTO baselines VALUES ('pri', 'a_1', 'a:1', 'witnessed', ?, 2.0)", ("e" * 64,))
        con.execute("INSERT INTO endpoints VALUES ('a:1', ?, 3.0)", ("e" * 64,))
    db = BaselineDB(path)
    assert db.baselines("pri")["a_1"].fingerprint_sha256 == "e" * 64
    assert db.changed_times() == {"a:1": 3.0}
    assert db.observe_store("pri", {"a_1": "a:1"}) == set()  # still a known store
    assert db.history() == [] and db.statuses("pri") == {}
    db.close()
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA user_version").fetchone() == (1,)
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"attestations", "entry_status", "history"} <= tables
    BaselineDB(path).close()  # opening a migrated file again changes nothing


def _att(entry: str, fp: str, at: float, who: str = "alice") -> Attestation:
    return Attestation("pri", entry, "a:1", fp, "5" * 64, who, "HA page: Primary Active", at)


def test_attest_makes_the_baseline_attested_and_records_who_why_and_history(tmp_path: Path) -> None:
    db = BaselineDB(tmp_path / "b.db")
    db.observe_store("pri", {"a_1": "a:1"})  # adopted
    db.fill({"a:1": "e" * 64})
    db.record("pri", db.read_statuses("pri"),
              {"a_1": EntryStatus(Status("unknown", "none", "e" * 64), 10.0)}, [])
    (change,) = db.attest([_att("a_1", "e" * 64, 20.0)])
    base = db.baselines("pri")["a_1"]
    assert (base.kind, base.fingerprint_sha256, base.since) == (BaselineKind.ATTESTED, "e" * 64, 20.0)
    assert db.attestations("pri")["a_1"].operator == "alice"
    assert db.attestations("pri")["a_1"].spki_sha256 == "5" * 64
    assert change.before == Status("unknown", "none", "e" * 64)
    assert change.after == Status("match", "attested", "e" * 64)
    assert db.history() == [change] and "alice" in change.reason
    st = db.statuses("pri")["a_1"]
    assert (st.status.state, st.since) == ("match", 20.0)
    # The entry leaves the list and comes back: witnessed anew, the attestation is gone.
    db.observe_store("pri", {})
    db.observe_store("pri", {"a_1": "a:1"})
    assert db.baselines("pri")["a_1"].kind is BaselineKind.WITNESSED
    assert db.attestations("pri") == {}
    db.close()


def test_attest_refuses_an_entry_that_left_or_moved_meanwhile(tmp_path: Path) -> None:
    import pytest

    db = BaselineDB(tmp_path / "b.db")
    db.observe_store("pri", {"a_1": "a:1"})
    moved = Attestation("pri", "a_1", "b:2", "e" * 64, "5" * 64, "bob", "x", 20.0)
    with pytest.raises(ValueError, match="changed while"):
        db.attest([moved])
    with pytest.raises(ValueError, match="changed while"):  # all or nothing: a_1 stays
        db.attest([_att("a_1", "e" * 64, 20.0), _att("zz_9", "e" * 64, 20.0)])
    assert db.baselines("pri")["a_1"].kind is BaselineKind.ADOPTED
    assert db.history() == [] and db.attestations("pri") == {}
    db.close()


def test_attest_verifies_inside_its_write_transaction_and_a_refusal_records_nothing(
        tmp_path: Path) -> None:
    """`accept`'s re-check runs in the transaction that writes (BEGIN IMMEDIATE): it sees
    each entry as recorded now, no other process can commit between it and the write, and
    whatever it raises leaves the database as it was."""
    import sqlite3

    import pytest

    from exporter.core.model import Baseline
    from exporter.store.database import Recorded

    db = BaselineDB(tmp_path / "b.db")
    db.observe_store("pri", {"a_1": "a:1"})  # adopted
    db.fill({"a:1": "e" * 64})
    db.record("pri", db.read_statuses("pri"),
              {"a_1": EntryStatus(Status("unknown", "none", "e" * 64), 10.0)}, [])
    since = db.baselines("pri")["a_1"].since
    seen: list[dict[tuple[str, str], Recorded]] = []
    blocked: list[str] = []

    def verify(recorded: dict[tuple[str, str], Recorded]) -> None:
        seen.append(recorded)
        other = sqlite3.connect(tmp_path / "b.db", timeout=0)  # `serve`, wanting to write now
        try:
            other.execute("DELETE FROM baselines")
        except sqlite3.OperationalError as e:
            blocked.append(str(e))
        finally:
            other.close()
        raise LookupError("changed")

    with pytest.raises(LookupError):
        db.attest([_att("a_1", "e" * 64, 20.0), _att("zz_9", "e" * 64, 20.0)], verify)
    assert seen == [{("pri", "a_1"): Recorded(
        "a:1", Baseline(BaselineKind.ADOPTED, "e" * 64, since), Status("unknown", "none", "e" * 64))}]
    assert blocked == ["database is locked"]
    assert db.baselines("pri")["a_1"].kind is BaselineKind.ADOPTED  # rolled back
    assert db.history() == [] and db.attestations("pri") == {}
    (change,) = db.attest([_att("a_1", "e" * 64, 20.0)], lambda recorded: None)
    assert change.after == Status("match", "attested", "e" * 64)
    db.close()


def test_history_is_bounded_by_age_and_by_count_newest_kept(tmp_path: Path) -> None:
    db = BaselineDB(tmp_path / "b.db")
    changes = [Change(float(t), "pri", f"e_{t}", None, Status("unknown", "none", None), "x")
               for t in range(100)]
    db.record("pri", db.read_statuses("pri"), {}, changes)
    assert db.prune_history(max_age=1e9, max_records=30, now=100.0) == 70
    assert [c.time for c in db.history()] == [float(t) for t in range(99, 69, -1)]  # newest first
    assert db.prune_history(max_age=10.5, max_records=30, now=100.0) == 20  # older than t=89.5
    assert [c.time for c in db.history(limit=3)] == [99.0, 98.0, 97.0]
    assert [c.entry for c in db.history(entry="e_95")] == ["e_95"]
    assert len(db.history(since=95.0)) == 5
    db.close()
    assert len(BaselineDB(tmp_path / "b.db").history()) == 10  # survives a reopen


def test_another_connection_s_commit_is_noticed_once(tmp_path: Path) -> None:
    serve, cli = BaselineDB(tmp_path / "b.db"), BaselineDB(tmp_path / "b.db")
    serve.observe_store("pri", {"a_1": "a:1"})  # its own writes are not "elsewhere"
    assert not serve.changed_elsewhere()
    cli.attest([_att("a_1", "e" * 64, 20.0)])
    assert serve.changed_elsewhere()
    assert not serve.changed_elsewhere()
    assert serve.baselines("pri")["a_1"].kind is BaselineKind.ATTESTED
    serve.close()
    cli.close()


def test_a_database_started_afresh_after_corruption_has_the_history_tables(tmp_path: Path) -> None:
    path = tmp_path / "baseline.db"
    path.write_bytes(b"this is not SQLite" * 100)
    db = BaselineDB(path)  # set aside, a fresh one started (reason corrupt)
    assert db.resets["corrupt"] == 1
    db.observe_store("pri", {"a_1": "a:1"})
    db.attest([_att("a_1", "e" * 64, 20.0)])
    assert [c.entry for c in db.history()] == ["a_1"]
    db.close()


def test_history_written_on_a_stale_base_is_refused_so_two_processes_record_a_change_once(
        tmp_path: Path) -> None:
    """serve and `check` on one database both saw a_1 turn mismatch. Each read the recorded
    statuses and diffed; `check` wrote first. serve's write, computed from the old base, is
    refused (compare and set) and nothing of it lands; diffed again on the fresh base it holds
    no change: the history says it once."""
    serve, check = BaselineDB(tmp_path / "b.db"), BaselineDB(tmp_path / "b.db")
    unknown = EntryStatus(Status("unknown", "none", "e" * 64), 10.0)
    assert serve.record("pri", serve.read_statuses("pri"), {"a_1": unknown}, [])
    mismatch = EntryStatus(Status("mismatch", "baseline", "f" * 64), 20.0, "e" * 64)
    change = Change(20.0, "pri", "a_1", unknown.status, mismatch.status, "fingerprint changed")
    base_serve, base_check = serve.read_statuses("pri"), check.read_statuses("pri")
    assert check.record("pri", base_check, {"a_1": mismatch}, [change])
    assert not serve.record("pri", base_serve, {"a_1": mismatch}, [change])  # stale: refused
    fresh = serve.read_statuses("pri")
    assert fresh.entries == {"a_1": mismatch}
    assert serve.record("pri", fresh, fresh.entries, [])  # the diff on the fresh base: no change
    assert serve.history() == [change]
    serve.close()
    check.close()


def test_history_on_a_base_this_connection_wrote_over_is_refused_too(tmp_path: Path) -> None:
    """An `accept` through the same connection (another thread) between the read and the
    write: the write on the old base would undo the accepted status."""
    db = BaselineDB(tmp_path / "b.db")
    db.observe_store("pri", {"a_1": "a:1"})
    db.fill({"a:1": "e" * 64})
    unknown = EntryStatus(Status("unknown", "none", "e" * 64), 10.0)
    assert db.record("pri", db.read_statuses("pri"), {"a_1": unknown}, [])
    base = db.read_statuses("pri")
    db.attest([_att("a_1", "e" * 64, 20.0)])
    assert not db.record("pri", base, {"a_1": EntryStatus(unknown.status, 30.0)}, [])
    assert db.statuses("pri")["a_1"].status == Status("match", "attested", "e" * 64)
    other = db.read_statuses("pri")
    db.observe_store("sec", {"b_2": "b:2"})  # a commit that leaves pri's statuses as they were
    assert db.record("pri", other, other.entries, [])  # compared, not refused
    db.close()
