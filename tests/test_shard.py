"""Sharding (`--shard N --total-shards M`): the assignment, the flags, and real replicas.

The replicas test runs `prime-tofu-exporter serve` three times against the demo lab: once
unsharded and as shards 0 and 1 of 2, then kills shard 1 and starts it again on its volume.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from exporter.cli.demo import demo_config
from exporter.cli.main import main
from exporter.config.model import Config, PairConfig, StoreConfig
from exporter.fleet.shard import Shard, keys, owner, select
from pilab.scene import Lab
from tests.kit.processes import Exporter, acli, samples, wait_for

ROOT = Path(__file__).resolve().parent.parent


def _store(name: str) -> StoreConfig:
    return StoreConfig(name, "192.0.2.1", 22, "admin", "pw", None, None, "kh", "shell",
                       1.0, 1.0, 1.0, 60.0, 60.0, "192.0.2.1")


def _config(names: list[str], pairs: list[tuple[str, str, str]]) -> Config:
    return Config(tuple(_store(n) for n in names), {}, {},
                  tuple(PairConfig(*p) for p in pairs))


# ---------------------------------------------------------------- the assignment (pure)


def test_assignment_is_the_same_in_every_process() -> None:
    """Python's hash() is salted per process; the shard of a store must not be. A change
    here re-shards every deployment (and costs the moved stores their witnessed baselines)."""
    names = [f"pi-{i}" for i in range(40)]
    here = [owner(n, 7) for n in names]
    code = ("from exporter.fleet.shard import owner; "
            f"print([owner(n, 7) for n in {names!r}])")
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={"PYTHONHASHSEED": seed, "PATH": ""}, check=True,
                             cwd=Path(__file__).resolve().parent.parent)
        assert out.stdout.strip() == str(here)
    # first 8 bytes of sha256, big endian, modulo M: pinned so it cannot drift silently. Modulo
    # 3 every byte order gives [1, 0, 2] (256 = 1 mod 3); modulo 7 little-endian gives [0, 5, 3].
    assert [owner(n, 3) for n in ("prime-ha", "pi-system-184", "prime-sec")] == [1, 0, 2]
    assert [owner(n, 7) for n in ("prime-ha", "pi-system-184", "prime-sec")] == [3, 4, 1]
    assert len(set(here)) == 7  # 40 names spread over every shard


@pytest.mark.unit
def test_shards_partition_the_stores_and_keep_pairs_together() -> None:
    names = [f"pi-{i:02d}" for i in range(60)]
    # pi-00..pi-09 in five pairs; pi-10 in two pairs at once (with pi-11 and pi-12)
    pairs = [(f"ha-{i}", f"pi-{2 * i:02d}", f"pi-{2 * i + 1:02d}") for i in range(5)]
    pairs += [("ha-x", "pi-10", "pi-11"), ("ha-w", "pi-12", "pi-10")]
    cfg = _config(names, pairs)
    assert keys(cfg)["pi-11"] == keys(cfg)["pi-12"] == "ha-w"  # linked: the smallest pair name
    for total in (1, 2, 3, 5):
        parts = [select(cfg, Shard(i, total)) for i in range(total)]
        owned = [{s.name for s in p.stores} for p in parts]
        assert sum(len(o) for o in owned) == len(names)  # each store exactly once ...
        assert set().union(*owned) == set(names)  # ... and none lost
        assert sorted(p.name for part in parts for p in part.pairs) == sorted(p[0] for p in pairs)
        for part, own in zip(parts, owned, strict=True):
            for p in part.pairs:
                assert {p.primary, p.secondary} <= own
        if total > 1:
            assert all(owned), "60 stores leave no shard empty"
    assert select(cfg, Shard()) is cfg


@pytest.mark.parametrize("args", [["--shard", "2", "--total-shards", "2"],
                                  ["--shard", "-1", "--total-shards", "2"],
                                  ["--shard", "1"],
                                  ["--total-shards", "0"]])
def test_a_shard_outside_the_total_is_refused(args: list[str],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", *args, "--config.file", "/nonexistent.yml"])
    assert exited.value.code == 2
    assert "expected 0 <= shard < total-shards" in capsys.readouterr().err


# ---------------------------------------------------------------- real replicas

PER_STORE = ("store", "pair", "endpoint")  # a series carrying one of these belongs to a store


def per_store_series(body: str) -> set[tuple[str, tuple[tuple[str, str], ...], float | None]]:
    """The series a replica exports about its stores, times and durations masked."""
    out = set()
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            if not set(PER_STORE) & set(s.labels):
                continue
            timed = s.name.endswith(("_timestamp_seconds", "_duration_seconds"))
            out.add((s.name, tuple(sorted(s.labels.items())), None if timed else s.value))
    return out


def stores_of(body: str) -> set[str]:
    return {dict(k)["store"] for k in samples(body, "tofu_store_up")}


@pytest.fixture
def lab(demo_lab: tuple[Lab, Path]) -> tuple[Lab, Path]:
    lab, cfg = demo_lab
    cfg.write_text(yaml.safe_dump(demo_config(lab, interval="1s"), sort_keys=False))
    return lab, cfg


async def test_two_shards_split_the_demo_lab_and_survive_a_restart(
        lab: tuple[Lab, Path], tmp_path: Path) -> None:
    scene, cfg = lab

    def replica(shard: int, workdir: str) -> Exporter:
        (tmp_path / workdir).mkdir(exist_ok=True)
        return Exporter(cfg, tmp_path / workdir,
                        extra_args=("--shard", str(shard), "--total-shards", "2"))

    single = Exporter(cfg, tmp_path / "single")
    (tmp_path / "single").mkdir()
    shards = [replica(0, "shard0"), replica(1, "shard1")]
    everyone = [single, *shards]
    try:
        for e in everyone:
            await e.start(timeout=60)
        bodies = [(await e.metrics())[0] for e in shards]
        owned = [stores_of(b) for b in bodies]
        # The pair stays together: prime-pri and prime-sec on one shard, pi-system-184 on the other.
        assert owned == [{"prime-pri", "prime-sec"}, {"pi-system-184"}]
        for i, body in enumerate(bodies):
            assert samples(body, "tofu_exporter_shard_info") == {
                (("shard", str(i)), ("total_shards", "2")): 1.0}
        assert samples((await single.metrics())[0], "tofu_exporter_shard_info") == {
            (("shard", "0"), ("total_shards", "1")): 1.0}

        # An entry appears on shard 1's store while it runs: shard 1 witnesses it.
        ise = scene.endpoints["ise"]
        key = f"{ise.host}_{ise.port}"
        sys184 = scene.pis["pi-system-184"]
        sys184.add_peer(key, ise.host, ise.port)
        await sys184.connect_peers()

        async def witnessed(e: Exporter) -> bool:
            body = (await e.metrics())[0]
            return (samples(body, "tofu_certificate_evidence_info").get(
                (("entry", key), ("evidence", "baseline"), ("store", "pi-system-184"))) == 1.0)

        for e in (single, shards[1]):
            await wait_for(lambda e=e: witnessed(e), 30)

        async def union_is_single() -> bool:
            want = per_store_series((await single.metrics())[0])
            parts = [per_store_series((await e.metrics())[0]) for e in shards]
            return parts[0] | parts[1] == want and not stores_of_series(parts[0]) & \
                stores_of_series(parts[1])

        # The union of the shards is what one exporter exports, series for series.
        await wait_for(union_is_single, 30)

        # Kill shard 1 hard and start it again on its own volume: its stores come back, with
        # the baseline it witnessed (a fresh volume would only adopt it: `unknown`).
        shards[1].signal(signal.SIGKILL)
        await shards[1].stop()
        assert stores_of((await shards[0].metrics())[0]) == {"prime-pri", "prime-sec"}
        shards[1] = replica(1, "shard1")
        everyone.append(shards[1])
        await shards[1].start(timeout=60)
        body = (await shards[1].metrics())[0]
        assert stores_of(body) == {"pi-system-184"}
        assert samples(body, "tofu_store_up") == {(("store", "pi-system-184"),): 1.0}
        assert samples(body, "tofu_certificate_state")[
            (("entry", key), ("state", "match"), ("store", "pi-system-184"))] == 1.0
        assert await witnessed(shards[1])
        await wait_for(union_is_single, 30)
    finally:
        for e in everyone:
            await e.stop()


def stores_of_series(series: set[tuple[str, tuple[tuple[str, str], ...], float | None]]) -> set[str]:
    return {v for _, labels, _ in series for k, v in labels if k == "store"}


# ---------------------------------------------------------------- re-sharding the baselines

MERGE = """
ATTACH DATABASE ? AS old;
INSERT OR IGNORE INTO stores SELECT * FROM old.stores;
INSERT OR IGNORE INTO baselines SELECT * FROM old.baselines;
INSERT OR IGNORE INTO endpoints SELECT * FROM old.endpoints;
INSERT OR IGNORE INTO entry_status SELECT * FROM old.entry_status;
INSERT INTO attestations (store, entry, endpoint, fingerprint, spki, operator, reason, at)
  SELECT store, entry, endpoint, fingerprint, spki, operator, reason, at FROM old.attestations;
INSERT INTO history (time, store, entry, state_before, evidence_before, fingerprint_before,
                     state_after, evidence_after, fingerprint_after, reason)
  SELECT time, store, entry, state_before, evidence_before, fingerprint_before,
         state_after, evidence_after, fingerprint_after, reason FROM old.history;
DETACH DATABASE old;
"""  # docs/sharding.md's procedure, per old replica's baseline.db


async def test_a_reshard_keeps_witnessed_baselines_only_where_the_databases_were_merged(
        tmp_path: Path) -> None:
    """2 -> 3 shards. A replica's database holds its own stores only (rows of stores another
    shard owns are dropped at start); merging the old databases into each new replica's
    volume keeps every moved store's witnessed baselines, without merging they are gone."""
    import sqlite3

    from exporter.core.model import BaselineKind
    from exporter.service.service import Service
    from exporter.store.database import BaselineDB

    names = [f"pi-{i:02d}" for i in range(12)]
    cfg = _config(names, [])
    service = Service(cfg, tmp_path / "one")  # one exporter witnessed one entry per store
    for s in service.config.stores:
        service.db.observe_store(s.name, {})
        service.db.observe_store(s.name, {"10.0.0.1_443": "10.0.0.1:443"})
    service.db.fill({"10.0.0.1:443": "ab" * 32})
    await service.stop()
    for i in range(2):  # sharded into 2 on copies of its volume: each drops the other's stores
        (tmp_path / f"old-{i}").mkdir()
        shutil.copy(tmp_path / "one" / "baseline.db", tmp_path / f"old-{i}" / "baseline.db")
        await Service(cfg, tmp_path / f"old-{i}", Shard(i, 2), drop_others=True).stop()
        db = BaselineDB(tmp_path / f"old-{i}" / "baseline.db")
        held = {n for n in names if db.baselines(n)}
        db.close()
        assert held == {n for n in names if owner(n, 2) == i}

    moved = [n for n in names if owner(n, 3) != owner(n, 2)]
    assert moved
    for i in range(3):
        merged = tmp_path / f"merged-{i}"
        merged.mkdir()
        shutil.copy(tmp_path / "old-0" / "baseline.db", merged / "baseline.db")
        db = sqlite3.connect(merged / "baseline.db", isolation_level=None)  # as the sqlite3 CLI
        for old in range(1, 2):
            for statement in MERGE.strip().split(";\n"):
                args = (str(tmp_path / f"old-{old}" / "baseline.db"),) if "ATTACH" in statement else ()
                db.execute(statement, args)
        db.close()
        new = Service(cfg, merged, Shard(i, 3), drop_others=True)
        fresh = Service(cfg, tmp_path / f"fresh-{i}", Shard(i, 3), drop_others=True)
        for s in new.config.stores:
            (b,) = new.db.baselines(s.name).values()
            assert b.kind is BaselineKind.WITNESSED and b.fingerprint_sha256 == "ab" * 32
            assert fresh.db.baselines(s.name) == {}  # unmerged: first read adopts
        assert {n for n in names if new.db.baselines(n)} == {s.name for s in new.config.stores}
        await new.stop()
        await fresh.stop()


# ---------------------------------------------------------------- what a shard may delete


async def check_json(cfg: Path, data: Path, *args: str) -> dict[tuple[str, str], dict[str, Any]]:
    """`prime-tofu-exporter check --output json` in a process of its own (the lab runs on
    this loop, so the loop keeps running): (store, entry) -> row."""
    done = await acli("check", "--config.file", str(cfg), "--storage.path", str(data),
                      "--output", "json", "--log.level", "warn", *args, cwd=ROOT)
    assert done.returncode in (0, 1, 3), done.stderr
    return {(r["store"], r["entry"]): r for r in json.loads(done.stdout)}


async def test_a_one_shot_sharded_check_deletes_no_other_shards_evidence(
        lab: tuple[Lab, Path], tmp_path: Path) -> None:
    """pi-system-184 (shard 1 of 2) witnessed ise's certificate, which then changed: a
    proven mismatch. `check --shard 0 --total-shards 2` on the same database must leave that
    evidence alone (it ran the replica's start-up pruning before: the witnessed baseline
    was dropped, re-adopted by the next unsharded check, and the mismatch became
    `unknown`)."""
    scene, cfg = lab
    data = tmp_path / "data"
    ise = scene.endpoints["ise"]
    key = ("pi-system-184", f"{ise.host}_{ise.port}")
    await check_json(cfg, data)  # the first read adopts what the stores hold
    sys184 = scene.pis["pi-system-184"]
    sys184.add_peer(key[1], ise.host, ise.port)
    await sys184.connect_peers()  # the entry appears: the next check witnesses it
    assert (await check_json(cfg, data))[key]["baseline"] == "witnessed"
    scene.regenerate("ise")
    proven = (await check_json(cfg, data))[key]
    assert (proven["state"], proven["evidence"], proven["baseline"]) == (
        "mismatch", "baseline", "witnessed")

    shard0 = await check_json(cfg, data, "--shard", "0", "--total-shards", "2")
    assert {store for store, _ in shard0} == {"prime-pri", "prime-sec"}

    again = (await check_json(cfg, data))[key]
    assert (again["state"], again["evidence"], again["baseline"]) == (
        "mismatch", "baseline", "witnessed")


def test_a_replica_that_drops_another_shards_rows_logs_and_counts_them(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """`serve --shard` (drop_others) drops the rows of stores another shard owns, and says
    which stores and how many rows, in the log and in tofu_baseline_rows_dropped_total."""
    from exporter.service.service import Service
    from exporter.store.database import BaselineDB

    names = ["pi-00", "pi-01", "pi-02", "pi-03"]
    cfg = _config(names, [])
    others = sorted(n for n in names if owner(n, 2) != 0)
    assert others and len(others) < len(names)
    db = BaselineDB(tmp_path / "baseline.db")
    for n in names:
        db.observe_store(n, {"10.0.0.1_443": "10.0.0.1:443"})  # adopted
        db.observe_store(n, {"10.0.0.1_443": "10.0.0.1:443", "10.0.0.2_443": "10.0.0.2:443"})
    db.close()

    def dropped(kind: str) -> float:
        return REGISTRY.get_sample_value("tofu_baseline_rows_dropped_total", {"kind": kind}) or 0.0

    before = {k: dropped(k) for k in ("adopted", "witnessed", "attested")}
    Service(cfg, tmp_path, Shard(0, 2)).db.close()  # a one-shot (check): drops nothing
    assert {k: dropped(k) for k in before} == before
    db = BaselineDB(tmp_path / "baseline.db")
    assert all(db.baselines(n) for n in names)
    db.close()

    with caplog.at_level(logging.WARNING, logger="exporter.service.service"):
        Service(cfg, tmp_path, Shard(0, 2), drop_others=True).db.close()
    records = [r for r in caplog.records if "another shard owns" in r.getMessage()]
    assert sorted(r.__dict__["store"] for r in records) == others
    assert all((r.__dict__["rows"], r.__dict__["adopted"], r.__dict__["witnessed"]) == (2, 1, 1)
               for r in records)
    assert dropped("adopted") - before["adopted"] == len(others)
    assert dropped("witnessed") - before["witnessed"] == len(others)
    assert dropped("attested") == before["attested"]
    db = BaselineDB(tmp_path / "baseline.db")
    assert {n for n in names if db.baselines(n)} == set(names) - set(others)
    db.close()
