"""`tofu_exporter_build_info`: what is running, as blackbox_exporter's version collector
says it (version, revision, language version), plus the two libraries that decide how SSH
and TLS behave."""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator
from importlib import metadata

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.version import __version__

# Set by the image build (Dockerfile ARG REVISION); "unknown" when run from a plain install.
REVISION_ENV = "PRIME_TOFU_EXPORTER_REVISION"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def build_labels() -> dict[str, str]:
    return {
        "version": __version__,
        "revision": os.environ.get(REVISION_ENV, "") or "unknown",
        "pythonversion": platform.python_version(),
        "asyncssh": _version("asyncssh"),
        "cryptography": _version("cryptography"),
    }


class BuildInfoCollector(Collector):
    def __init__(self) -> None:
        labels = build_labels()
        self._family = GaugeMetricFamily(
            "tofu_exporter_build_info",
            "A metric with a constant '1' value labeled by version, revision, pythonversion, "
            "and the asyncssh and cryptography versions the exporter runs with",
            labels=list(labels))
        self._family.add_metric(list(labels.values()), 1.0)

    def collect(self) -> Iterator[Metric]:
        yield self._family
