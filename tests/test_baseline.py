"""Baseline persistence: adopted on first sight, witnessed after, reset on disappearance."""

from __future__ import annotations

from pathlib import Path

from exporter.baseline import BaselineDB
from exporter.model import BaselineKind


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
