"""A large store's exposition is kept deflated (exporter.exposition.packing.Packed) between scrapes; what
clients receive must not change: the plain, gzip and OpenMetrics answers carry exactly the
bytes the direct writer renders, over a real HTTP server against the demo lab."""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import os
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse

from exporter.config.load import load_config
from exporter.exposition import writer as collector
from exporter.exposition.packing import Packed, crc32_combine
from exporter.service.service import Service
from exporter.web.routes import make_app
from pilab.scene import Lab
from tests.kit.builders import exposition_snapshot


@pytest.mark.parametrize("len_a,len_b", [(0, 0), (1, 0), (0, 7), (1000, 1), (3, (1 << 20) + 5),
                                         (70_000, 3 << 20)])
def test_crc32_combine_equals_the_crc_of_the_joined_bytes(len_a: int, len_b: int) -> None:
    a, b = os.urandom(len_a), os.urandom(len_b)
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


def test_a_packed_slice_inflates_to_its_text() -> None:
    text = b"".join(b'tofu_entry_info{entry="10.0.%d.1_443"} 1.0\n' % i for i in range(5000))
    packed = Packed.of(text)
    assert len(packed.piece) < len(text) / 10 and packed.plain() == text
    assert (packed.size, packed.crc) == (len(text), zlib.crc32(text))


def test_blocks_cached_plain_are_packed_when_a_larger_snapshot_asks() -> None:
    """/probe renders one store of a snapshot; the store's cached blocks must follow the
    whole snapshot's packing, and a later scrape that packs must write the same text."""
    base = exposition_snapshot()
    stores = sorted({v.store for v in base.views})
    snap = dataclasses.replace(base, versions={s: -1 - i for i, s in enumerate(stores)})
    cache = collector.BlockCache()
    plain = collector.render_chunks(snap, pack=False, cache=cache)
    packed = collector.render_chunks(snap, pack=True, cache=cache)
    assert not any(isinstance(c, Packed) for c in plain)
    assert sum(isinstance(c, Packed) for c in packed) >= 3 * 4
    assert b"".join(map(collector.plain, packed)) == b"".join(plain)
    again = collector.render_chunks(snap, pack=True, cache=cache)  # reused, not packed again
    assert all(a is b for a, b in zip(again, packed, strict=True) if isinstance(a, Packed))


@pytest.fixture
async def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                 demo_lab: tuple[Lab, Path]) -> AsyncIterator[tuple[Service, TestClient]]:
    monkeypatch.setattr(collector, "PACK_ABOVE", 1)  # every demo store counts as large
    async with _demo_client(demo_lab, tmp_path) as (service, client):
        yield service, client


@contextlib.asynccontextmanager
async def _demo_client(demo_lab: tuple[Lab, Path],
                       tmp_path: Path) -> AsyncIterator[tuple[Service, TestClient]]:
    """A Service over the demo lab, read once, behind the web app's test client."""
    _, cfg = demo_lab
    service = Service(load_config(cfg), tmp_path / "data")
    client = TestClient(TestServer(make_app(service)))
    await client.start_server()
    try:
        await service.run_once()
        yield service, client
    finally:
        await client.close()
        await service.stop()


async def test_packed_stores_serve_the_same_bytes_plain_gzip_and_openmetrics(
        served: tuple[Service, TestClient], monkeypatch: pytest.MonkeyPatch) -> None:
    service, client = served
    snap = service.snapshot()
    chunks = collector.render_chunks(snap)
    assert sum(isinstance(c, Packed) for c in chunks) >= 3 * 4  # 3 stores x non-empty families
    monkeypatch.setattr(collector, "PACK_ABOVE", 10**9)
    service.blocks.clear()
    expected = collector.render_text(snap)  # the same snapshot rendered without packing
    assert b"tofu_entry_info{" in expected

    for _ in range(2):  # the second answer reuses the cached pieces
        resp = await client.get("/metrics", headers={"Accept-Encoding": "identity"},
                                auto_decompress=False)
        plain = await resp.read()
        assert "Content-Encoding" not in resp.headers
        assert plain[:len(expected)] == expected and b"process_" in plain[len(expected):]
        resp = await client.get("/metrics", headers={"Accept-Encoding": "gzip"},
                                auto_decompress=False)
        assert resp.headers["Content-Encoding"] == "gzip"
        body = await resp.read()
        unzipped = gzip.decompress(body)  # checks the trailer's CRC-32 and length too
        assert unzipped[:len(expected)] == expected

    resp = await client.get("/probe?target=prime-sec")  # reads the store again: same entries
    probe = await resp.read()

    def entry_lines(body: bytes) -> list[bytes]:
        return [ln for ln in body.splitlines() if b'store="prime-sec"' in ln
                and ln.startswith((b"tofu_entry_info{", b"tofu_certificate_"))]

    assert len(entry_lines(expected)) >= 3 * 5 and entry_lines(probe) == entry_lines(expected)

    resp = await client.get("/metrics", headers={
        "Accept": "application/openmetrics-text;version=1.0.0", "Accept-Encoding": "gzip"},
        auto_decompress=False)
    om = gzip.decompress(await resp.read()).decode()
    assert om.endswith("# EOF\n")
    entries = {(s.labels["store"], s.labels["entry"]) for f in om_parse(om)
               if f.name == "tofu_entry_info" for s in f.samples}
    assert entries == {(v.store, v.entry.key) for v in snap.views}
    assert len(entries) == len(snap.views) == 8


async def test_the_blocks_are_written_before_the_service_says_ready(
        demo_lab: tuple[Lab, Path], tmp_path: Path) -> None:
    """So the first scrape after a start joins cached blocks (bench/run.py: 379 -> 144 ms at
    20,000 entries) instead of writing every series while Prometheus waits."""
    _, cfg = demo_lab
    service = Service(load_config(cfg), tmp_path / "data")
    try:
        await service.start()
        assert service.ready
        snap = service.snapshot()
        assert snap.versions and all(service.blocks.version(store) == version
                                     for store, version in snap.versions.items())
    finally:
        await service.stop()


async def test_a_store_a_reload_removed_leaves_no_rendered_blocks(
        demo_lab: tuple[Lab, Path], tmp_path: Path) -> None:
    """The rendered exposition of a store is kept for repeat scrapes; once a reload removed
    the store, its blocks (up to megabytes for a large one) must go with it."""
    _, cfg = demo_lab
    config = load_config(cfg)
    service = Service(config, tmp_path / "data")
    try:
        await service.start()
        gone = config.stores[0].name
        assert gone in service.blocks
        await service.apply_config(dataclasses.replace(
            config, stores=config.stores[1:], pairs=()))
        body = render_text_of(service)
        assert f'store="{gone}"'.encode() not in body and gone not in service.blocks
        assert all(s.name in service.blocks for s in config.stores[1:])
    finally:
        await service.stop()


def render_text_of(service: Service) -> bytes:
    snap = service.snapshot()
    return b"".join(map(collector.plain, collector.render_chunks(snap, cache=service.blocks)))


@pytest.fixture
async def demo_client(demo_lab: tuple[Lab, Path], tmp_path: Path) -> AsyncIterator[TestClient]:
    async with _demo_client(demo_lab, tmp_path) as (_, client):
        yield client


async def test_a_small_body_is_gzipped_whole_as_gzip_6_would(demo_client: TestClient) -> None:
    """Splicing per-chunk pieces pays only for large bodies: at demo size (about 21 kB) the
    spliced member was 7,604 bytes against 3,687 for `gzip -6` of the same text. Below
    deflate.WHOLE_BELOW the answer is one deflate of the whole body (bench/gzip_sizes.py)."""
    for accept in ("text/plain", "application/openmetrics-text;version=1.0.0"):
        for _ in range(2):  # the second answer continues the cached compressor
            resp = await demo_client.get("/metrics", headers={"Accept": accept, "Accept-Encoding": "gzip"},
                                         auto_decompress=False)
            assert resp.headers["Content-Encoding"] == "gzip"
            body = await resp.read()
            text = gzip.decompress(body)  # checks the trailer's CRC-32 and length too
            assert b"tofu_entry_info{" in text and b"process_" in text
            whole = zlib.compress(text, 6, wbits=31)
            print(f"\n{accept}: plain {len(text):,}, gzip {len(body):,}, gzip -6 {len(whole):,}")
            assert len(body) <= len(whole) * 1.02


async def test_no_family_exposes_created(demo_client: TestClient) -> None:
    """One rule for every counter (docs/metrics.md): no `_created` series. prometheus_client's
    Counter wrote one for the three counters it keeps (baseline resets, connections closed,
    auth checks) and none for the snapshot's counters."""
    await demo_client.get("/-/healthy")  # a request, so the connection counters have children
    for accept in ("text/plain", "application/openmetrics-text;version=1.0.0"):
        resp = await demo_client.get("/metrics", headers={"Accept": accept})
        text = await resp.text()
        assert "_total{" in text or "_total " in text
        created = sorted({ln.split("{")[0].split(" ")[0] for ln in text.splitlines()
                          if "_created" in ln.split("{")[0].split(" ")[0] and not ln.startswith("#")})
        assert created == [], f"{accept}: {created}"
