"""Gzip of /metrics: the spliced member (exporter.exposition.packing.GzipCache) against one deflate of the
whole body, by size. Prints, per entry count: the plain size, both gzip sizes, and the CPU of
one deflate of the whole body against a spliced scrape after one of the 4 stores changed (its
pieces recompressed, the others reused). exporter.exposition.packing.WHOLE_BELOW comes from these.

    .venv/bin/python bench/gzip_sizes.py [ENTRIES ...]
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
import time
import zlib
from collections.abc import Callable

from exporter.core.model import (
    Baseline,
    BaselineKind,
    EntryView,
    Evidence,
    Listing,
    LiveCert,
    ProbeResult,
    State,
    StoredEntry,
    StoreRead,
    StoreStatus,
    Verdict,
)
from exporter.exposition import writer as collector
from exporter.exposition.packing import GzipCache, gzip_member, plain
from exporter.fleet.snapshot import Snapshot

STORES = 4


def snapshot(n: int, version: int = 1) -> Snapshot:
    views, probes = [], {}
    for i in range(n):
        ep = f"10.{i // 65536}.{i // 256 % 256}.{i % 256}:443"
        fp = hashlib.sha256(b"%d" % i).hexdigest()
        subject = (("C", "US"), ("O", "Cisco"), ("CN", f"peer-{i}.example.net"))
        entry = StoredEntry(ep.replace(":", "_"), ep.split(":")[0], 443, "", subject)
        cert = LiveCert(fp, hashlib.sha256(fp.encode()).hexdigest(), subject,
                        f"/C=US/O=Cisco/CN=peer-{i}.example.net", "/CN=issuer", f"{i:x}", 1.7e9, 1.8e9 + i)
        probe = ProbeResult(ep, cert, None, 0.01, 1.7e9)
        probes[ep] = probe
        state = State.MISMATCH if i % 50 == 0 else State.MATCH
        views.append(EntryView(f"pi-{i % STORES}", entry, ep, Verdict(state, Evidence.BASELINE, "why"),
                               probe, Baseline(BaselineKind.ADOPTED, None, 1.0), None,
                               state_since=1.7e9 + i, previous_fingerprint=None))
    views.sort(key=lambda v: v.store)
    read = StoreRead("pi-0", True, Listing(()), 0.25, 1.7e9)
    stores = {f"pi-{s}": StoreStatus(f"pi-{s}", read, read, {}) for s in range(STORES)}
    return Snapshot(stores, tuple(views), probes, dict.fromkeys(probes, 1.7e9), {}, {}, False, True,
                    versions={f"pi-{s}": version * 10 + s for s in range(STORES)})


def cpu(fn: Callable[[], object], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best * 1000


def main(counts: list[int]) -> None:
    print(f"{'entries':>8} {'plain':>11} {'spliced':>10} {'whole':>10} {'ratio':>6}"
          f" {'whole ms':>9} {'spliced 1-store ms':>19}")
    for n in counts:
        collector._BLOCKS.clear()
        snap = snapshot(n)
        chunks = collector.render_chunks(snap)
        body = b"".join(map(plain, chunks))
        gz = GzipCache()
        pieces, crc, total = gz.pieces(chunks)
        spliced = sum(map(len, gzip_member(pieces, crc, total, b"")))
        whole = len(zlib.compress(body, 6, wbits=31))
        t_whole = cpu(lambda body=body: zlib.compress(body, 6, wbits=31))
        # One store moved on: its blocks are rendered and compressed again, the rest reused.
        views = tuple(dataclasses.replace(v, state_since=1.6e9) if v.store == "pi-0" else v
                      for v in snap.views)
        moved = dataclasses.replace(snap, views=views, versions={**snap.versions, "pi-0": -1})
        moved_chunks = collector.render_chunks(moved)
        t_spliced = cpu(lambda gz=gz, a=moved_chunks, b=chunks: (gz.pieces(a), gz.pieces(b)), 3) / 2
        print(f"{n:>8} {len(body):>11,} {spliced:>10,} {whole:>10,} {spliced / whole:>6.2f}"
              f" {t_whole:>9.2f} {t_spliced:>19.2f}")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [10, 40, 100, 300, 1000, 3000, 10000])
