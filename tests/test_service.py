"""The service against the demo lab: evidence, baselines, isolation of a bad store."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from exporter.config.load import load_config
from exporter.config.model import Config
from exporter.core.model import Baseline, BaselineKind, Evidence, Listing, State, StoredEntry, StoreRead
from exporter.fleet.snapshot import Snapshot
from exporter.service import workers
from exporter.service.service import Service
from exporter.service.state import with_endpoints
from pilab.pki import make_cert
from pilab.scene import Lab
from tests.kit.faults import faults
from tests.kit.lab import offline_config

LISTCERTS = "ncs certvalidation tofu-certs listcerts"


@pytest.fixture
def scene(demo_lab: tuple[Lab, Path]) -> tuple[Lab, Config]:
    lab, cfg_path = demo_lab
    return lab, load_config(cfg_path)


def verdicts(snap: Snapshot) -> dict[tuple[str, str], tuple[State, Evidence]]:
    return {(v.store, v.entry.key): (v.verdict.state, v.verdict.evidence) for v in snap.views}


def key(lab: Lab, name: str, host: str | None = None) -> str:
    ep = lab.endpoints[name]
    return f"{host or ep.host}_{ep.port}"


@pytest.fixture(params=["inline", "threads"])
def store_work(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Large stores are parsed, recorded and decided in worker threads, small ones inline:
    "threads" sends the demo's small stores that way too, so both paths are held to the
    same verdicts."""
    if request.param == "threads":
        monkeypatch.setattr(workers, "THREAD_ABOVE", -1)
    return str(request.param)


async def test_demo_scene_verdicts_before_and_after_regeneration(
    scene: tuple[Lab, Config], tmp_path: Path, store_work: str
) -> None:
    lab, config = scene
    service = Service(config, tmp_path / "data")
    try:
        first = verdicts(await service.run_once())
        assert first[("prime-pri", key(lab, "ise"))] == (State.MISMATCH, Evidence.SUBJECT)
        assert first[("pi-system-184", key(lab, "dnac-1"))] == (State.MATCH, Evidence.FINGERPRINT)
        assert first[("pi-system-184", key(lab, "dnac-2"))] == (State.UNKNOWN, Evidence.NONE)
        # Adopted baselines that equal the live certificate prove nothing: never match.
        assert first[("prime-pri", key(lab, "prime-sec"))] == (State.UNKNOWN, Evidence.NONE)

        lab.regenerate("prime-sec")  # same subject, new key: the seed's insidious case
        after = verdicts(await service.run_once())
        assert after[("prime-pri", key(lab, "prime-sec"))] == (State.MISMATCH, Evidence.BASELINE)
        assert after[("prime-sec", key(lab, "prime-sec"))] == (State.MISMATCH, Evidence.BASELINE)
        assert after[("prime-sec", key(lab, "prime-sec", "127.0.0.1"))] == (
            State.MISMATCH, Evidence.BASELINE)
        assert after[("prime-sec", key(lab, "prime-pri"))] == (State.UNKNOWN, Evidence.NONE)
        assert not any(s is State.MATCH and e is not Evidence.FINGERPRINT for s, e in after.values())
    finally:
        await service.stop()


async def test_adopted_baseline_survives_a_restart(scene: tuple[Lab, Config], tmp_path: Path) -> None:
    lab, config = scene
    service = Service(config, tmp_path / "data")
    await service.run_once()
    await service.stop()
    lab.regenerate("prime-sec")  # while the exporter was down
    again = Service(config, tmp_path / "data")
    try:
        got = verdicts(await again.run_once())
        assert got[("prime-pri", key(lab, "prime-sec"))] == (State.MISMATCH, Evidence.BASELINE)
    finally:
        await again.stop()


async def test_entry_that_appears_is_witnessed_and_matches(
    scene: tuple[Lab, Config], tmp_path: Path, store_work: str
) -> None:
    lab, config = scene
    service = Service(config, tmp_path / "data")
    try:
        await service.run_once()
        pri = lab.pis["prime-pri"]
        ise_key = key(lab, "ise")
        pri.remove_entry(ise_key)  # what deletecert does
        await service.run_once()
        await pri.connect_peers()  # PI's next connection stores the current certificate
        snap = await service.run_once()
        view = next(v for v in snap.views if v.store == "prime-pri" and v.entry.key == ise_key)
        assert view.baseline is not None and view.baseline.kind is BaselineKind.WITNESSED
        assert (view.verdict.state, view.verdict.evidence) == (State.MATCH, Evidence.BASELINE)
        lab.regenerate("ise")
        snap = await service.run_once()
        view = next(v for v in snap.views if v.store == "prime-pri" and v.entry.key == ise_key)
        assert (view.verdict.state, view.verdict.evidence) == (State.MISMATCH, Evidence.BASELINE)
    finally:
        await service.stop()


async def test_pin_mismatch_and_changed_subject(scene: tuple[Lab, Config], tmp_path: Path) -> None:
    lab, config = scene
    dnac = lab.endpoints["dnac-1"].endpoint
    other_fp = make_cert([("CN", "kong")]).fingerprint_sha256
    config = replace(config, pins={dnac: other_fp})
    service = Service(config, tmp_path / "data")
    try:
        await service.run_once()
        lab.regenerate("dnac-2", [("CN", "kong-renewed")])
        got = verdicts(await service.run_once())
        assert got[("pi-system-184", key(lab, "dnac-1"))] == (State.MISMATCH, Evidence.FINGERPRINT)
        # Adopted baseline changed beats subject: the stronger evidence is named.
        assert got[("pi-system-184", key(lab, "dnac-2"))] == (State.MISMATCH, Evidence.BASELINE)
    finally:
        await service.stop()


async def test_refusing_endpoint_is_unreachable(scene: tuple[Lab, Config], tmp_path: Path) -> None:
    lab, config = scene
    dnac2 = key(lab, "dnac-2")
    await lab.endpoints["dnac-2"].stop()
    service = Service(config, tmp_path / "data")
    try:
        snap = await service.run_once()
        view = next(v for v in snap.views if v.entry.key == dnac2)
        assert view.verdict.state is State.UNREACHABLE
        assert view.probe is not None and view.probe.error == "connection refused"
        assert verdicts(snap)[("pi-system-184", key(lab, "dnac-1"))][0] is State.MATCH
    finally:
        await service.stop()


async def test_hanging_store_does_not_hold_up_the_others(
    scene: tuple[Lab, Config], tmp_path: Path
) -> None:
    lab, config = scene
    config = replace(config, stores=tuple(
        replace(s, command_timeout=1.5, store_interval=0.3, probe_interval=0.3)
        for s in config.stores))
    faults(lab.pis["prime-sec"]).hang_on_command = True
    service = Service(config, tmp_path / "data")
    try:
        start = time.monotonic()
        await service.start()
        first_pass = time.monotonic() - start
        assert first_pass < 1.5 + 1.0  # one command_timeout, not a hang nor two timeouts
        snap = service.snapshot()
        assert snap.stores["prime-sec"].last is not None
        assert snap.stores["prime-sec"].last.error_reason is not None
        assert snap.stores["prime-sec"].last.error_reason.value == "timeout"
        # The others go on at their 0.3 s interval: three more reads each take far less than
        # the 2 x 1.5 s they would if each waited for the hanging store's timeout.
        others = ("prime-pri", "pi-system-184")
        before = {n: lab.pis[n].commands.count(LISTCERTS) for n in others}
        deadline = time.monotonic() + 2 * 1.5
        while not all(lab.pis[n].commands.count(LISTCERTS) >= before[n] + 3 for n in others):
            assert time.monotonic() < deadline, {
                n: lab.pis[n].commands.count(LISTCERTS) - before[n] for n in others}
            await asyncio.sleep(0.05)
        snap = service.snapshot()
        for name in others:
            assert snap.stores[name].last is not None and snap.stores[name].last.ok
    finally:
        await service.stop()


async def test_tofu_failed_log_lines_are_log_evidence(
    scene: tuple[Lab, Config], tmp_path: Path
) -> None:
    lab, config = scene
    config = replace(config, stores=tuple(
        replace(s, log_command="show logs file ncs-0-0.log") for s in config.stores))
    service = Service(config, tmp_path / "data")
    try:
        await service.run_once()  # records already in the log have no trusted time: not evidence
        first = verdicts(service.snapshot())
        assert first[("prime-pri", key(lab, "prime-sec"))] == (State.UNKNOWN, Evidence.NONE)
        await lab.pis["prime-pri"].stop_health_monitor()
        lab.regenerate("prime-sec")
        await lab.pis["prime-pri"].connect_peers()  # PI's health monitor: TOFU failed, logged
        assert any("CN=prime-sec" in r for r in lab.pis["prime-pri"].log)
        got = verdicts(await service.run_once())
        assert got[("prime-pri", key(lab, "prime-sec"))] == (State.MISMATCH, Evidence.LOG)
        # prime-sec's log says nothing new about itself: its self entries fall back to baseline.
        assert got[("prime-sec", key(lab, "prime-sec"))] == (State.MISMATCH, Evidence.BASELINE)
    finally:
        await service.stop()


async def test_store_reads_are_bounded_by_store_concurrency(
    scene: tuple[Lab, Config], tmp_path: Path
) -> None:
    lab, config = scene
    for pi in lab.pis.values():
        faults(pi).hang_on_command = True  # every read runs into its command_timeout of 0.6 s
    stores = tuple(replace(s, command_timeout=0.6) for s in config.stores)
    service = Service(replace(config, stores=stores, store_concurrency=1), tmp_path / "data")
    try:
        start = time.monotonic()
        snap = await service.run_once()
        took = time.monotonic() - start
    finally:
        await service.stop()
    assert all(st.last is not None and not st.last.ok for st in snap.stores.values())
    # One at a time: three timeouts in a row, not three side by side.
    assert took >= 3 * 0.6 - 0.05, took


def test_an_older_baseline_read_is_never_kept_over_a_newer_one(tmp_path: Path) -> None:
    """A large store's read keeps its baselines in a worker thread while the loop keeps them
    after a probe filled a pending one: whichever read is older must not be kept last
    (it was: the witnessed fingerprint vanished from the verdicts until the next read)."""
    service = Service(load_config(offline_config(tmp_path)), tmp_path / "data")
    state = service.stores["pri"]
    service.db.observe_store("pri", {"a_1": "a:1"})  # adopted, no fingerprint yet
    service.db.observe_store("pri", {"a_1": "a:1", "b_2": "b:2"})  # b_2 witnessed, pending
    # The store's data holds the listing the database was told of (as after a read).
    listing = Listing(tuple(StoredEntry(f"{h}_{p}", h, p, f"/CN={h}", (("CN", h),))
                            for h, p in (("a", 1), ("b", 2))))
    state.swap_value(lambda v: replace(v, observed=listing))
    state.update(read=StoreRead("pri", True, listing, 0.0, 0.0), **with_endpoints(("a:1", "b:2")))
    read, go = threading.Event(), threading.Event()
    real = service.db.baselines

    def baselines(store: str) -> dict[str, Baseline]:
        got = real(store)
        if threading.current_thread().name == "older":
            read.set()
            go.wait(5)  # hold the older read until the newer one had its chance
        return got

    service.db.baselines = baselines  # type: ignore[method-assign]
    older = threading.Thread(target=service._set_baselines, args=(state,), name="older")
    older.start()
    assert read.wait(5)
    assert service.db.fill({"b:2": "FP-B"}) == 1  # the probe witnessed b_2
    newer = threading.Thread(target=service._set_baselines, args=(state,), name="newer")
    newer.start()
    newer.join(0.5)  # done at once without the lock; waits for the older read with it
    go.set()
    older.join(5)
    newer.join(5)
    assert state.data.baselines["b_2"].fingerprint_sha256 == "FP-B"
    service.db.close()


async def test_a_cli_error_instead_of_a_listing_fails_the_read_and_keeps_the_baselines(
    scene: tuple[Lab, Config], tmp_path: Path
) -> None:
    """A login whose role may not run listcerts gets the CLI's error, not a listing. Read as
    an empty store, it dropped every baseline, and the entries, listed again, were witnessed
    anew: an adopted `unknown` entry turned into a `match` nobody had proven."""
    from pilab.pi import Cli, PiServer

    class Refusing(Cli):
        def listing(self, pi: PiServer) -> str:
            return "% Invalid input detected at '^' marker.\n"

    lab, config = scene
    pi = lab.pis["pi-system-184"]
    dnac2 = ("pi-system-184", key(lab, "dnac-2"))
    service = Service(config, tmp_path / "data")
    try:
        assert verdicts(await service.run_once())[dnac2] == (State.UNKNOWN, Evidence.NONE)
        normal, pi.cli = pi.cli, Refusing()
        read = await service.read_store(config.store("pi-system-184"))  # type: ignore[arg-type]
        assert not read.ok and read.error_reason == "command", read
        assert "% Invalid input detected" in (read.error or "")
        pi.cli = normal
        assert verdicts(await service.run_once())[dnac2] == (State.UNKNOWN, Evidence.NONE)
    finally:
        await service.stop()
