"""A store's state is one frozen value replaced whole (exporter.service.state): nothing patches
it in place, concurrent swaps lose nothing, a decision serves only the data version it was
made at, and a read that the database refused leaves `observed` and `incoming` as they were.
In-process: a Service on an in-memory database whose PI (TEST-NET) is never reached."""

from __future__ import annotations

import dataclasses
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.config.load import load_config
from exporter.core.model import EntryView, Listing, StoredEntry, StoreRead
from exporter.service.reader import endpoints_of
from exporter.service.service import Service
from exporter.service.state import Decided, StoreState, StoreValue, changed, with_endpoints
from exporter.store.database import StorageError

pytestmark = pytest.mark.unit

LISTING = Listing((StoredEntry("a_1", "a", 1, "/CN=a", (("CN", "a"),)),))


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    """One PI store, `pri`, never read: the tests drive its state by hand."""
    for name, text in (("pw", "a-password\n"), ("kh", "")):
        (tmp_path / name).write_text(text)
    (tmp_path / "pw").chmod(0o600)
    (tmp_path / "c.yml").write_text("defaults: {password_file: pw, known_hosts: kh}\n"
                                    "stores: [{name: pri, host: 192.0.2.1}]\n")
    svc = Service(load_config(tmp_path / "c.yml"), ":memory:")
    yield svc
    svc.db.close()


def _read_in(state: StoreState, listing: Listing = LISTING) -> None:
    """The store's data holds `listing`, as after a successful read."""
    state.update(read=StoreRead(state.name, True, listing, 0.0, 0.0),
                 **with_endpoints(endpoints_of(state.cfg, listing)))


def test_the_state_is_frozen_and_not_assignable(service: Service) -> None:
    state = service.state("pri")
    state.count_error("timeout")
    value = state.value
    with pytest.raises(dataclasses.FrozenInstanceError):
        value.last = None  # type: ignore[misc]
    with pytest.raises(TypeError):
        value.errors["timeout"] = 0  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        value.data.capped = 1  # type: ignore[misc]
    # StoreState holds no state attribute of its own to assign: each of these raises.
    for attribute in ("value", "data", "last", "errors", "decided", "observed", "incoming"):
        with pytest.raises(AttributeError):
            setattr(state, attribute, None)
    assert state.value is value and dict(value.errors) == {"timeout": 1}


def test_concurrent_swaps_lose_nothing(service: Service) -> None:
    """Threads counting errors, swapping data, recording attempts and decisions at once: every
    change is in the final value (a read-modify-write outside the one lock loses some)."""
    state, threads, rounds = service.state("pri"), 8, 400
    start = threading.Barrier(threads)

    def work(i: int) -> None:
        start.wait()
        for n in range(rounds):
            state.count_error(f"r{i % 2}")
            state.swap(lambda d: changed(d, capped=d.capped + 1))
            ep = frozenset({f"{i}:{n}"})
            state.swap_value(lambda v, ep=ep: dataclasses.replace(v, incoming=v.incoming | ep))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: races show
    try:
        workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    value = state.value
    assert dict(value.errors) == {"r0": threads // 2 * rounds, "r1": threads // 2 * rounds}
    assert value.data.capped == threads * rounds
    assert len(value.incoming) == threads * rounds


def test_a_decision_serves_only_its_own_version(service: Service) -> None:
    state = service.state("pri")
    _read_in(state)
    data, views = service.snapshots._store_views(state)
    assert [v.entry for v in views] == list(LISTING.entries)
    assert state.value.decided.version == data.version
    state.bump()  # a probe outcome or the config moved: the views are stale
    assert state.value.views_at(state.data.version) is None
    assert state.value.views_at(data.version) == views
    again, _ = service.snapshots._store_views(state)
    assert again is state.data and state.value.decided.version == again.version


def test_an_older_decision_never_replaces_a_newer_one() -> None:
    view: tuple[EntryView, ...] = ()
    newer = StoreValue().deciding(7, view)
    assert newer.deciding(5, view) is newer
    assert newer.deciding(9, view).decided == Decided(9, view)


def test_a_refused_observation_leaves_observed_and_incoming(service: Service,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The database refused the listing (it holds what it held): `observed` stays the listing
    before, nothing is incoming. Told of it, the database is ahead of `data` until the read
    swaps in, and then nothing is incoming any more, in the same value as the new data."""
    state, reader = service.state("pri"), service.reader
    before = state.value

    def refuse(store: str, entries: object, now: float | None = None) -> set[str]:
        raise StorageError("disk full")

    monkeypatch.setattr(service.db, "observe_store", refuse)
    with pytest.raises(StorageError):
        reader._observe(state, LISTING, 0)
    assert state.value.observed is before.observed and state.value.incoming == before.incoming
    monkeypatch.undo()
    listing, eps, _, _ = reader._observe(state, LISTING, 0)
    assert state.value.observed is listing and state.value.incoming == frozenset(eps)
    assert state.data.listing is None  # not swapped in yet: the database is ahead
    reader._swap_read(state, StoreRead("pri", True, listing, 0.0, 0.0), eps, 0)
    value = state.value
    assert value.data.listing is listing and value.incoming == frozenset()
    assert value.data.endpoint_set == frozenset(eps)
