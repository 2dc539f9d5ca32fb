"""The service's two seams, through the one registry (exporter.service.wiring): a store of
another kind is read through its own Source and its entries' peers probed with the Prober its
Source names, beside PI stores and their TLS probes. The Source and Prober here are real
in-process implementations of the seams (a fixed list, a fixed answer), not mocks of SSH or
TLS: what is under test is the service's routing, which only ever sees the seams."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from exporter.config.load import load_config
from exporter.config.model import StoreConfig
from exporter.core.model import Listing, ProbeResult, StoredEntry, StoreRead
from exporter.probes.seam import Target
from exporter.service import wiring
from exporter.service.service import Service
from exporter.sources.seam import Offload

pytestmark = pytest.mark.unit

ENTRY = StoredEntry("10.9.9.9_2222", "10.9.9.9", 2222, "/CN=other", (("CN", "other"),))


class FixedSource:
    """A Source of a kind PI is not: one entry, always."""

    prober = "fixed"

    def __init__(self, cfg: StoreConfig, offload: Offload) -> None:
        self.cfg = cfg
        self.closed = False

    async def read(self) -> StoreRead:
        return StoreRead(self.cfg.name, True, Listing((ENTRY,)), 0.0, time.time())

    async def close(self) -> None:
        self.closed = True


probed: list[Target] = []


async def fixed_prober(target: Target) -> ProbeResult:
    probed.append(target)
    return ProbeResult(target.endpoint, None, "no answer from the fixed prober", 0.0, time.time())


@pytest.fixture
def other_kind(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Service:
    """Two stores: `pri` a PI server (never reached), `other` of the kind `fixed`."""
    monkeypatch.setitem(wiring.SOURCES, "fixed", FixedSource)
    monkeypatch.setitem(wiring.PROBERS, "fixed", fixed_prober)
    monkeypatch.setattr(wiring, "kind", lambda cfg: "fixed" if cfg.name == "other" else "pi")
    probed.clear()
    (tmp_path / "pw").write_text("a-password\n")
    (tmp_path / "pw").chmod(0o600)
    (tmp_path / "kh").write_text("")
    (tmp_path / "exporter.yml").write_text(
        "defaults: {password_file: pw, known_hosts: kh}\n"
        "stores: [{name: pri, host: 192.0.2.1}, {name: other, host: 192.0.2.2}]\n")
    return Service(load_config(tmp_path / "exporter.yml"), ":memory:")


def test_probe_targets_are_grouped_by_each_stores_prober(other_kind: Service) -> None:
    service = other_kind
    try:
        service.stores["pri"].update(endpoint_set=frozenset({"10.0.0.1:443", "10.0.0.9:443"}))
        service.stores["other"].update(endpoint_set=frozenset({"10.9.9.9:2222", "10.0.0.9:443"}))
        groups = service.prober.targets(["10.0.0.1:443", "10.9.9.9:2222", "10.0.0.9:443"])
        got = {name: sorted(t.endpoint for t in ts) for name, ts in groups.items()}
        # One probe per endpoint: one both stores list goes with the first store in the config.
        assert got == {"tls": ["10.0.0.1:443", "10.0.0.9:443"], "fixed": ["10.9.9.9:2222"]}
    finally:
        service.db.close()


async def test_a_store_of_another_kind_is_read_and_probed_through_the_seams(
        other_kind: Service) -> None:
    service = other_kind
    source = service.stores["other"].open_source()
    assert isinstance(source, FixedSource)
    try:
        snap = await service.run_once(["other"])
        assert snap.stores["other"].last is not None and snap.stores["other"].last.ok
        assert [v.entry for v in snap.views] == [ENTRY]
        assert [t.endpoint for t in probed] == ["10.9.9.9:2222"]
        assert snap.probes["10.9.9.9:2222"].error == "no answer from the fixed prober"
    finally:
        await service.stop()
    assert source.closed  # stop() closes every store's source
