"""A disk that fills up while the exporter runs (issue 10).

A real `prime-tofu-exporter serve` keeps its baselines on a small tmpfs (mounted here; the
test skips where it may not mount). The volume is filled with a file, then the lab PI
stores new entries, whose baselines cannot be recorded. That read is not a success:
tofu_store_up 0, a `storage` read error counted, /-/ready says why. Deleting the file
brings everything back by itself. Fails on 5dda20e: the write error escaped the read,
tofu_store_up stayed 1 and /-/ready said 200.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from pilab.pi import PiServer
from pilab.pki import make_cert, pi_subject
from pilab.tls import TlsEndpoint
from tests.kit.lab import refused_keys, start_pi, write_config
from tests.kit.mounts import fill, tmpfs
from tests.kit.processes import Exporter, value, wait_for

NEW = 300  # entries that appear while the disk is full: more than the WAL has room for


@pytest_asyncio.fixture
async def lab() -> AsyncIterator[tuple[PiServer, TlsEndpoint]]:
    peer = TlsEndpoint(pi_subject("ise"))
    await peer.start()
    pi = await start_pi("alpha", page_lines=0, entries={f"{peer.host}_{peer.port}": peer})
    yield pi, peer
    await pi.stop()
    await peer.stop()


async def test_full_disk_fails_the_read_says_why_and_recovers(
    lab: tuple[PiServer, TlsEndpoint], tmp_path: Path
) -> None:
    pi, peer = lab
    with tmpfs(tmp_path / "vol", "size=512k") as vol:
        config = write_config(tmp_path, {"alpha": pi}, interval="1s")
        exporter = Exporter(config, tmp_path)
        exporter.args = lambda: [*Exporter.args(exporter)[:-4], "--storage.path", str(vol / "data"),
                                 *Exporter.args(exporter)[-2:]]  # type: ignore[method-assign]
        await exporter.start()
        try:
            body, _ = await exporter.metrics()
            assert value(body, "tofu_store_up", store="alpha") == 1
            key = f"{peer.host}_{peer.port}"
            before = _verdicts(body, key)
            filler = vol / "filler"
            assert fill(filler) > 0
            stale = make_cert(pi_subject("gone"))
            for stale_key in refused_keys(NEW):  # every probe is refused at once
                pi.add_entry(stale_key, stale)

            async def down() -> str | None:
                b, _ = await exporter.metrics()
                return b if value(b, "tofu_store_up", store="alpha") == 0 else None

            body = await wait_for(down, 20)
            assert (value(body, "tofu_store_read_errors_total", store="alpha", reason="storage")
                    or 0) >= 1
            # The entries it could not record are not shown as read.
            assert value(body, "tofu_store_entries", store="alpha") == 1
            status, why, _ = await exporter.get("/-/ready")
            assert status == 503 and "storage" in why and "store:alpha" in why, why
            assert (await exporter.get("/-/healthy"))[0] == 200  # a restart would not help
            assert "baseline database not writable" in exporter.log()

            filler.unlink()  # space is back

            async def up() -> str | None:
                b, _ = await exporter.metrics()
                return b if value(b, "tofu_store_up", store="alpha") == 1 else None

            body = await wait_for(up, 20)
            assert value(body, "tofu_store_entries", store="alpha") == NEW + 1
            assert (await exporter.get("/-/ready"))[0] == 200
            # What was recorded before the disk filled still stands.
            assert _verdicts(body, key) == before
        finally:
            await exporter.stop()
            with contextlib.suppress(FileNotFoundError):
                (vol / "filler").unlink()


def _verdicts(body: str, key: str) -> list[str]:
    return sorted(ln for ln in body.splitlines()
                  if f'entry="{key}"' in ln and ln.startswith(("tofu_certificate_", "tofu_entry")))
