"""The shard assignment, in-process (exporter.fleet.shard): the hash pinned where byte order and
width change the answer, the pair-linking of keys, and the replica's own config."""

from __future__ import annotations

import dataclasses

import pytest

from exporter.fleet.shard import ALL, Shard, keys, owner, owns_none, select
from tests.kit.builders import config

pytestmark = pytest.mark.unit


def test_owner_is_the_first_8_bytes_of_sha256_big_endian_modulo_total() -> None:
    # 256 = 1 (mod 3), so modulo 3 any byte order gives one answer; modulo 7 and a large
    # prime it does not: little-endian gives [0, 5, 3], 4 or 16 bytes give other answers.
    names = ("prime-ha", "pi-system-184", "prime-sec")
    assert [owner(n, 7) for n in names] == [3, 4, 1]
    assert [owner(n, 1_000_003) for n in names] == [203792, 788920, 932864]
    assert [owner(n, 1) for n in names] == [0, 0, 0]


@pytest.mark.parametrize(("index", "total"), [(0, 0), (1, 1), (2, 2), (-1, 2), (3, 2)])
def test_a_shard_outside_the_total_is_refused(index: int, total: int) -> None:
    with pytest.raises(ValueError, match=rf"^--shard {index} --total-shards {total}: "
                                         r"expected 0 <= shard < total-shards$"):
        Shard(index, total)


def test_sharded_and_owns() -> None:
    assert Shard(0, 1) == ALL and not ALL.sharded and ALL.owns("anything")
    assert Shard(0, 2).sharded
    assert [Shard(i, 7).owns("prime-sec") for i in range(7)] == [i == 1 for i in range(7)]


def test_keys_link_pairs_and_take_the_smallest_pair_name() -> None:
    cfg = config(["a", "b", "c", "d", "e", "lone"],
                 [("p2", "a", "b"), ("p1", "c", "b"), ("p9", "d", "e"), ("p0", "e", "d")])
    assert keys(cfg) == {"a": "p1", "b": "p1", "c": "p1", "d": "p0", "e": "p0", "lone": "lone"}
    chain = config(["x", "y", "z"], [("zz", "x", "y"), ("aa", "y", "z")])  # x-y-z: one group
    assert keys(chain) == {"x": "aa", "y": "aa", "z": "aa"}
    backwards = config(["x", "y", "z"], [("zz", "z", "y"), ("aa", "x", "y")])
    assert keys(backwards) == {"x": "aa", "y": "aa", "z": "aa"}
    smaller_first = config(["x", "y", "z"], [("aa", "x", "y"), ("zz", "z", "y")])
    assert keys(smaller_first) == {"x": "aa", "y": "aa", "z": "aa"}


def test_select_keeps_own_stores_and_their_pairs() -> None:
    names = ["prime-pri", "prime-sec", "pi-system-184", "pi-0", "pi-1"]
    cfg = config(names, [("prime-ha", "prime-pri", "prime-sec")])
    assert select(cfg, ALL) is cfg
    parts = [select(cfg, Shard(i, 7)) for i in range(7)]
    owned = {i: [s.name for s in p.stores] for i, p in enumerate(parts) if p.stores}
    # prime-ha -> 3 (both sides), pi-system-184 -> 4, pi-0 -> 0, pi-1 -> 2 (see the pins above)
    assert owned == {0: ["pi-0"], 2: ["pi-1"], 3: ["prime-pri", "prime-sec"], 4: ["pi-system-184"]}
    assert [p.name for p in parts[3].pairs] == ["prime-ha"]
    assert all(p.pairs == () for i, p in enumerate(parts) if i != 3)
    assert parts[3].pins is cfg.pins and parts[3].source == cfg.source


def test_a_shard_that_owns_no_store_says_why() -> None:
    cfg = dataclasses.replace(config(["pi-0", "pi-1"]), source="/etc/tofu.yml")
    assert owns_none(cfg, Shard(0, 7)) is None  # pi-0 -> 0
    assert owns_none(cfg, ALL) is None
    assert owns_none(cfg, Shard(5, 7)) == "shard 5 of 7 owns none of the 2 stores in /etc/tofu.yml"
    assert owns_none(config([]), ALL) == "shard 0 of 1 owns none of the 0 stores in <config>"
