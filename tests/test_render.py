"""The fast /metrics writer must produce exactly what prometheus_client writes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from exporter.exposition.metrics import METRICS
from exporter.exposition.writer import go_float, render_text, samples
from exporter.fleet.snapshot import Snapshot
from tests.kit.builders import exposition_snapshot

pytestmark = pytest.mark.unit


class SnapshotCollector(Collector):
    """The reference: the same metric table written by prometheus_client's own families."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def collect(self) -> Iterator[Metric]:
        for m in METRICS:
            cls = CounterMetricFamily if m.type == "counter" else GaugeMetricFamily
            fam = cls(m.name, m.help, labels=list(m.labels))
            for values, value in samples(m, self.snap):
                fam.add_metric(list(values), value)
            yield fam

def test_render_text_equals_prometheus_client_output() -> None:
    snap = exposition_snapshot()
    reg = CollectorRegistry(auto_describe=False)
    reg.register(SnapshotCollector(snap))
    expected = generate_latest(reg)
    got = render_text(snap)
    assert got == expected
    names = {f.name for f in text_string_to_metric_families(got.decode())}
    assert {"tofu_entry_info", "tofu_certificate_state", "tofu_live_certificate_info",
            "tofu_certificate_state_since_timestamp_seconds",
            "tofu_certificate_previous_fingerprint_info", "tofu_entry_line"} <= names
    assert b'tofu_entry_line{entry="10.0.1.1_8001",store="pi-1"} 1001.0' in got
    assert b'port="2222",store="automation",subject="SHA256:AbC+/9"} 1.0' in got
    assert b'tofu_entry_line{entry="10.0.31.1_8031",store="pi-1"} 31001.0' in got


def test_render_text_of_an_empty_snapshot_has_every_family_header() -> None:
    snap = Snapshot({}, (), {}, {})
    reg = CollectorRegistry(auto_describe=False)
    reg.register(SnapshotCollector(snap))
    assert render_text(snap) == generate_latest(reg)


@given(st.floats() | st.integers(-10**20, 10**20).map(float)
       | st.sampled_from([0.0, -0.0, 1e6, 1e7, 123456.7, 1234567.8, 1.7e9 + 1 / 7]))
def test_go_float_writes_what_prometheus_client_writes(d: float) -> None:
    assert go_float(d) == floatToGoString(d)
