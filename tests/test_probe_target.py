"""/probe?target=STORE against the real exporter and the demo lab: one store's series only.

A multi-target job scrapes every store as its own target; a series that two targets both
carry is two series in Prometheus, and every alert on it fires twice. So each store's answer
holds its own store and entry series and the endpoints its entries point at; the HA pair
series belong to the pair and appear on the pair's primary only, both directions there.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from pilab.scene import Lab
from tests.kit.processes import Exporter, samples

PAIR_FAMILIES = ("tofu_ha_pair_info", "tofu_ha_pair_trust_state", "tofu_ha_pair_peer_mismatch")


def labelled(body: str) -> list[tuple[str, dict[str, str]]]:
    return [(s.name, dict(s.labels)) for f in text_string_to_metric_families(body) for s in f.samples]


async def test_probe_answers_with_one_stores_series_and_pair_series_once(
        demo_lab: tuple[Lab, Path], tmp_path: Path) -> None:
    _, cfg = demo_lab
    exporter = Exporter(cfg, tmp_path)
    try:
        await exporter.start()
        metrics, _ = await exporter.metrics()
        stores = {dict(k)["store"] for k in samples(metrics, "tofu_store_up")}
        pairs = {dict(k)["pair"]: dict(k) for k in samples(metrics, "tofu_ha_pair_info")}
        assert {"prime-pri", "prime-sec"} <= stores and "prime-ha" in pairs
        entry_endpoints = {(dict(k)["store"], dict(k)["endpoint"])
                           for k in samples(metrics, "tofu_entry_info")}

        pair_series: list[tuple[str, str, tuple[tuple[str, str], ...]]] = []
        for store in sorted(stores):
            status, body, _ = await exporter.get(f"/probe?target={store}")
            assert status == 200, body
            mine = {ep for s, ep in entry_endpoints if s == store}
            for name, labels in labelled(body):
                if name.startswith(PAIR_FAMILIES):
                    # On the pair's primary only (both directions of the pair there).
                    assert pairs[labels["pair"]]["primary"] == store, (store, name, labels)
                    pair_series.append((store, name, tuple(sorted(labels.items()))))
                elif "store" in labels:
                    assert labels["store"] == store, (store, name, labels)
                elif "endpoint" in labels:
                    assert labels["endpoint"] in mine, (store, name, labels)
        # Every pair series of /metrics is in exactly one /probe answer.
        expected = sorted((pairs[dict(k)["pair"]]["primary"], n, k) for n in PAIR_FAMILIES
                          for k in samples(metrics, n))
        assert sorted(pair_series) == expected
        assert {(st, dict(k)["store"]) for st, n, k in pair_series
                if n == "tofu_ha_pair_peer_mismatch"} == {("prime-pri", "prime-pri"),
                                                          ("prime-pri", "prime-sec")}
    finally:
        await exporter.stop()
