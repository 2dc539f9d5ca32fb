"""Snapshot -> the Prometheus text exposition, generated from the metric table
(exporter.exposition.metrics). Pure: no prometheus_client here (importing any part of it
starts its HTTP server module, and with it `ssl` and `socket`).

`render_chunks` writes, byte for byte, what prometheus_client's generate_latest writes for the
same table (tests/test_render.py builds the library's families as the reference), without a
Sample object per series, and reuses the per-entry lines of a store while its version
(exporter.service.state) stays the same.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Iterator

from exporter.core.model import EntryView, State
from exporter.exposition.metrics import (
    LABEL_MAX,
    METRICS,
    Metric,
    Sample,
    bound,
    subject_label,
    text_label,
)
from exporter.exposition.packing import Chunk, Packed, plain
from exporter.fleet.snapshot import Snapshot

__all__ = ["LABEL_MAX", "bound", "go_float", "render_chunks", "render_text", "samples"]


def samples(m: Metric, snap: Snapshot) -> Iterator[Sample]:
    """The samples of one table entry for `snap`, in exposition order."""
    if m.of_snapshot is not None:
        yield from m.of_snapshot(snap)
    elif m.of_entry is not None:
        for v in snap.views:
            yield from m.of_entry(v)


def go_float(d: float) -> str:
    """A sample value as prometheus_client's floatToGoString writes it (Go's formatting)."""
    d = float(d)
    if math.isinf(d):
        return "+Inf" if d > 0 else "-Inf"
    if math.isnan(d):
        return "NaN"
    s = repr(d)
    dot = s.find(".")
    # Go switches to exponents sooner than Python (only positive values, as the library).
    if d > 0 and dot > 6:
        mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1:]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return s


# ---- the direct writer -------------------------------------------------------------------

def _esc(value: str) -> str:
    """Label value escaping of the text format, as prometheus_client does it."""
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')
    return value


_VALUES = {1.0: "1.0", 0.0: "0.0"}


class _Writer:
    """Sample lines of one family: labels in sorted order, values as generate_latest writes
    them. The line template is compiled once from the table entry."""

    def __init__(self, m: Metric) -> None:
        order = sorted(range(len(m.labels)), key=m.labels.__getitem__)
        self.name = m.exposed
        labels = ",".join(f'{m.labels[i]}="{{{i}}}"' for i in order)
        n = len(m.labels)
        self.fmt = f"{self.name}{{{{{labels}}}}} {{{n}}}\n" if labels else f"{self.name} {{0}}\n"
        help_text = m.help.replace("\\", r"\\").replace("\n", r"\n")
        self.header = f"# HELP {self.name} {help_text}\n# TYPE {self.name} {m.type}\n".encode()

    def lines(self, samples: Iterable[Sample]) -> str:
        fmt, out = self.fmt.format, []
        for values, value in samples:
            joined = "".join(values)  # one test for the whole line: escaping is rare
            if "\\" in joined or "\n" in joined or '"' in joined:
                values = tuple(map(_esc, values))
            out.append(fmt(*values, _VALUES.get(value) or go_float(value)))
        return "".join(out)


_WRITERS = [(m, _Writer(m)) for m in METRICS]
_ENTRY = [(m, w) for m, w in _WRITERS if m.of_entry is not None]

_SLICE = 4096  # entries per bytes slice of a store's block
# Above this many entries in the snapshot, the stores keep their slices only deflated
# (exporter.exposition.packing.Packed): at about 1 kB of exposition per entry, 100,000 entries would
# otherwise hold 100 MB for repeat scrapes. Prometheus asks for gzip, which then costs a
# level-1 deflate once per store version instead of plain bytes plus a level-6 deflate.
PACK_ABOVE = 10_000


def _store_runs(views: tuple[EntryView, ...]) -> Iterator[tuple[EntryView, ...]]:
    start = 0
    for i in range(1, len(views) + 1):
        if i == len(views) or views[i].store != views[start].store:
            yield views[start:i]
            start = i


# The fast path for the per-entry families (with 20,000 entries the generic writer above
# costs twice the scrape budget): line templates compiled from the same table entries, with
# the label values of an entry escaped once and shared by its lines. A label names a field
# of the entry (below); `state` expands to one line per State, as the table's value does.
_FIELDS = ("store", "entry", "host", "port", "subject", "endpoint", "evidence", "mismatch",
           "since", "fingerprint_sha256", "line")
_CONST = {"tofu_entry_info": "1.0", "tofu_certificate_evidence_info": "1.0",
          "tofu_certificate_previous_fingerprint_info": "1.0"}  # always 1
# The field holding the sample value (default: the mismatch flag), and the field without
# which an entry has no sample in the family (no history yet, no earlier certificate).
_VALUE = {"tofu_certificate_state_since_timestamp_seconds": "{8}", "tofu_entry_line": "{10}"}
_NEEDS = {"tofu_certificate_state_since_timestamp_seconds": 8,
          "tofu_certificate_previous_fingerprint_info": 9, "tofu_entry_line": 10}


def _field_template(m: Metric, state: str | None = None, value: str | None = None) -> str:
    labels = ",".join(
        f'{k}="{state}"' if k == "state" else f'{k}="{{{_FIELDS.index(k)}}}"'
        for k in sorted(m.labels)
    )
    default = _CONST.get(m.name) or _VALUE.get(m.name, "{7}")
    return f"{m.exposed}{{{{{labels}}}}} {value or default}\n"


def _compile(m: Metric) -> tuple[dict[State | None, str], int | None]:
    if "state" not in m.labels:
        return {None: _field_template(m)}, _NEEDS.get(m.name)
    return ({cur: "".join(_field_template(m, s.value, "1.0" if cur is s else "0.0") for s in State)
             for cur in State}, _NEEDS.get(m.name))


_FAST = [_compile(m) for m, _ in _ENTRY]


def _fields(v: EntryView) -> tuple[str | None, ...]:
    e = v.entry
    # What the store holds, as metrics._entry_info: PI's subject, or a known_hosts key's SHA256:.
    held = text_label(e.subject_text) if e.stored_fingerprint is not None else subject_label(e.subject)
    return (_esc(v.store), _esc(e.key), _esc(e.host), str(e.port), _esc(held),
            _esc(v.endpoint), v.verdict.evidence.value,
            "1.0" if v.verdict.state is State.MISMATCH else "0.0",
            None if v.state_since is None else go_float(v.state_since),
            None if v.previous_fingerprint is None else _esc(v.previous_fingerprint),
            go_float(float(e.line)) if e.line else None)


def _lines_by_family(views: tuple[EntryView, ...]) -> list[list[str]]:
    parts: list[list[str]] = [[] for _ in _FAST]
    for v in views:
        fields, cur = _fields(v), v.verdict.state
        for out, (tmpl, needs) in zip(parts, _FAST, strict=True):
            if needs is None or fields[needs] is not None:
                out.append((tmpl.get(cur) or tmpl[None]).format(*fields))
    return parts


Blocks = tuple[tuple[Chunk, ...], ...]


def _packed(blocks: Blocks) -> Blocks:
    if all(isinstance(c, Packed) for b in blocks for c in b):
        return blocks
    return tuple(tuple(c if isinstance(c, Packed) else Packed.of(c) for c in b) for b in blocks)


def _rendered(run: tuple[EntryView, ...], pack: bool) -> Blocks:
    """Per entry family, the store's sample lines as bytes slices of _SLICE entries, packed
    if `pack`: a store of 100,000 entries never holds all its lines as str, joined str and
    bytes at once, nor its plain bytes after the scrape."""
    slices: list[list[Chunk]] = [[] for _ in _FAST]
    for start in range(0, len(run), _SLICE):
        for done, p in zip(slices, _lines_by_family(run[start:start + _SLICE]), strict=True):
            if p:
                text = "".join(p).encode()
                done.append(Packed.of(text) if pack else text)
    return tuple(tuple(s) for s in slices)


class BlockCache:
    """Per store: the version its per-entry lines were written at (versions are unique in the
    process) and those lines, one block per per-entry family. A steady-state scrape reuses the
    bytes, and the body shares them instead of copying. Owned by whoever builds the snapshots
    (exporter.service.snapshot), which drops the stores it no longer has (`retain`)."""

    def __init__(self) -> None:
        self._blocks: dict[str, tuple[int, Blocks]] = {}

    def __contains__(self, store: str) -> bool:
        return store in self._blocks

    def version(self, store: str) -> int | None:
        hit = self._blocks.get(store)
        return None if hit is None else hit[0]

    def retain(self, stores: Collection[str]) -> None:
        """Forget the blocks of every store not in `stores` (a store a reload removed)."""
        for gone in [s for s in self._blocks if s not in stores]:
            del self._blocks[gone]

    def clear(self) -> None:
        self._blocks.clear()

    def blocks(self, run: tuple[EntryView, ...], version: int | None, pack: bool) -> Blocks:
        """The store's blocks, reused while its version stays; packed or not, both write the
        same text, and blocks cached plain by a one-store snapshot (/probe's) are packed when a
        snapshot that packs asks."""
        store = run[0].store
        hit = self._blocks.get(store)
        if version is not None and hit is not None and hit[0] == version:
            blocks = _packed(hit[1]) if pack else hit[1]
        else:
            blocks = _rendered(run, pack)
        if version is not None:
            self._blocks[store] = (version, blocks)
        return blocks


def packs(snap: Snapshot) -> bool:
    return len(snap.views) > PACK_ABOVE


def render_chunks(snap: Snapshot, pack: bool | None = None,
                  cache: BlockCache | None = None) -> list[Chunk]:
    """The text exposition of the table, byte for byte what generate_latest writes for
    `families(snap)`, in chunks (per family, and per store for the per-entry families), so an
    18 MB body is never joined, copied or encoded whole. Family headers and the snapshot-wide
    families are always plain bytes; the stores' slices are Packed if `pack` (by default: if
    the snapshot holds more than PACK_ABOVE entries; a one-store view of a large snapshot
    passes the whole snapshot's answer). With a `cache`, a store's blocks are reused while
    its version stays (exporter.service.snapshot owns the service's)."""
    if pack is None:
        pack = packs(snap)
    per_store = [cache.blocks(run, snap.versions.get(run[0].store), pack) if cache is not None
                 else _rendered(run, pack) for run in _store_runs(snap.views)]
    out: list[Chunk] = []
    entry_index = 0
    for m, w in _WRITERS:
        out.append(w.header)
        if m.of_entry is not None:
            out.extend(piece for b in per_store for piece in b[entry_index])
            entry_index += 1
        elif m.of_snapshot is not None:
            body = w.lines(m.of_snapshot(snap))
            if body:
                out.append(body.encode())
    return out


def render_text(snap: Snapshot) -> bytes:
    return b"".join(map(plain, render_chunks(snap)))
