"""remediate against the real demo lab over SSH: plan, apply, verify, audit; and the refusals."""

from __future__ import annotations

import asyncio
import getpass
import json
import subprocess
import time
from pathlib import Path

import pytest

from exporter.config.load import load_config
from exporter.remediate.apply import Applier, command_failed
from exporter.remediate.plan import PlanError, deletecert_command, make_plan
from exporter.remediate.render import render_store
from exporter.service.service import Service
from exporter.web.routes import landing_page
from pilab.scene import Lab
from tests.kit.lab import DELETE, deletes, keys, one_pass
from tests.kit.processes import EXPORTER, acli


async def test_demo_end_to_end_plan_apply_witnessed_match(
    demo_lab: tuple[Lab, Path], tmp_path: Path
) -> None:
    lab, cfg = demo_lab
    k = keys(lab)
    storage = tmp_path / "data"
    audit = tmp_path / "audit.jsonl"
    common = ["--config.file", str(cfg), "--storage.path", str(storage), "--log.level", "warn"]

    first = await one_pass(cfg, storage)  # baselines adopted
    await first.stop()
    lab.regenerate("prime-sec")  # same subject, new key: only the baseline can tell
    service = await one_pass(cfg, storage)
    snap = service.snapshot()
    await service.stop()
    stale = {(v.store, v.entry.key) for v in snap.views if v.verdict.state.value == "mismatch"}
    assert stale == {("prime-pri", k["sec"]), ("prime-pri", k["ise"]),
                     ("prime-sec", k["sec_self"]), ("prime-sec", k["sec"])}

    # The landing page shows the pair in the seed's terms and the same per-store plan text.
    page = landing_page(snap)
    assert f"primary trusts secondary: mismatch (entry {k['sec']} on prime-pri)" in page
    assert "secondary trusts primary: unknown" in page
    assert "secondary trusts itself: mismatch" in page
    plan = make_plan(snap)
    pri_text = render_store(plan.stores[0])
    assert pri_text.splitlines()[0] in page and "Administration &gt; Servers &gt; ISE Servers" in page

    # The plan, as automation reads it: primary first, then secondary; HA re-registered once.
    res = await acli("remediate", *common, "--output", "json")
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    commands = {s["store"]: [st["command"] for st in s["steps"]] for s in got["stores"]}
    assert [s["store"] for s in got["stores"]][:2] == ["prime-pri", "prime-sec"]
    assert commands["prime-pri"] == [f"{DELETE} {k['sec']}", f"{DELETE} {k['ise']}"]
    # Within a server, in the order its listing prints them (the lab: self entry, then peer).
    assert commands["prime-sec"] == [f"{DELETE} {k['sec_self']}", f"{DELETE} {k['sec']}"]
    assert commands["pi-system-184"] == []
    evidence = {(st["entry"], st["store"]): st["evidence"] for s in got["stores"] for st in s["steps"]}
    assert evidence[(k["ise"], "prime-pri")] == "subject"
    assert evidence[(k["sec"], "prime-sec")] == "baseline"
    ha = [f for f in got["followups"] if "High Availability" in f]
    assert len(ha) == 1 and "from the primary prime-pri" in ha[0]
    assert got["followups"][-1].startswith("Re-add ISE on prime-pri")
    assert deletes(lab) == []  # printing a plan deletes nothing

    # Apply through the real entry point; the lab prints `Deleted certificate for host ...`.
    t0 = time.monotonic()
    res = await acli("remediate", *common, "--apply", "--yes", "--reason", "test",
                    "--audit.file", str(audit))
    assert res.returncode == 0, res.stdout + res.stderr
    print(f"apply took {time.monotonic() - t0:.1f}s")
    # In the planned order, one server after the other, and nothing else.
    assert deletes(lab) == [(s, c) for s in ("prime-pri", "prime-sec") for c in commands[s]]
    assert res.stdout.count(" ok   ") == 4 and "FAIL" not in res.stdout
    assert "Re-register HA once, from the primary prime-pri" in res.stdout

    # The lab's health monitor reconnects and stores the peers' current certificates.
    want = {"prime-pri": {k["sec"]: "prime-sec", k["ise"]: "ise"},
            "prime-sec": {k["sec"]: "prime-sec", k["sec_self"]: "prime-sec"}}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if all(key in lab.pis[s].entries() for s, m in want.items() for key in m):
            break
        await asyncio.sleep(0.2)
    for s, m in want.items():
        for key, ep in m.items():
            assert lab.pis[s].entries()[key].der == lab.endpoints[ep].current.der

    # The next cycle: those entries match, by a baseline witnessed when they came back.
    res = await acli("check", *common, "--output", "json")
    after = {(r["store"], r["entry"]): r for r in json.loads(res.stdout)}
    for s, m in want.items():
        for key in m:
            r = after[(s, key)]
            assert (r["state"], r["evidence"], r["baseline"]) == ("match", "baseline", "witnessed"), r
    assert res.returncode == 3  # no mismatch left; the never-witnessed entries stay unknown

    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert len(lines) == 4
    assert [(x["store"], x["command"]) for x in lines] == deletes(lab)
    for x in lines:
        assert x["reason"] == "test" and x["operator"] == getpass.getuser()
        assert x["result"] == "deleted" and x["verified"] in ("gone", "re-stored")
        assert x["evidence"] in ("baseline", "subject") and x["time"].endswith("Z")


async def test_nothing_deleted_for_unknown_unreachable_or_wrong_names(
    demo_lab: tuple[Lab, Path], tmp_path: Path
) -> None:
    lab, cfg = demo_lab
    k = keys(lab)
    await lab.endpoints["dnac-2"].stop()  # pi-system-184's second DNA Center: unreachable

    async def remediate(name: str, *args: str) -> subprocess.CompletedProcess[str]:
        return await acli("remediate", "--config.file", str(cfg),
                         "--storage.path", str(tmp_path / name), "--log.level", "error",
                         "--audit.file", str(tmp_path / "audit.jsonl"), *args)

    unknown, unreachable, wrong, bad_store, evil, wrong_pair, no_tty = await asyncio.gather(
        remediate("a", "--apply", "--yes", "--entry", k["pri_self"]),
        remediate("b", "--apply", "--yes", "--store", "pi-system-184", "--entry", k["dnac2"]),
        remediate("c", "--apply", "--yes", "--entry", "10.9.9.9_443"),
        remediate("d", "--apply", "--yes", "--store", "prime-tertiary"),
        remediate("e", "--apply", "--yes", "--entry", f"{k['ise']}; reload"),
        remediate("f", "--apply", "--yes", "--store", "prime-sec", "--entry", k["ise"]),
        remediate("g", "--apply"),  # the ISE mismatch is there, but nobody can confirm
    )
    assert unknown.returncode == 1 and f"Not deleting {k['pri_self']} on prime-pri: state unknown" \
        in unknown.stdout
    assert unreachable.returncode == 1 and "state unreachable" in unreachable.stdout
    for res in (wrong, evil, wrong_pair):
        assert res.returncode == 2 and "no such entry" in res.stderr and "nothing deleted" in res.stderr
    assert bad_store.returncode == 2 and "no such store" in bad_store.stderr
    assert no_tty.returncode == 2 and "refusing" in no_tty.stderr
    assert f"{DELETE} {k['ise']}" in no_tty.stdout  # it listed what it would have run
    assert deletes(lab) == []
    assert not (tmp_path / "audit.jsonl").exists()


async def test_failed_delete_stops_before_the_next_server(
    demo_lab: tuple[Lab, Path], tmp_path: Path
) -> None:
    """A `%` error (someone deleted the entry meanwhile) fails it; the secondary stays untouched."""
    lab, cfg = demo_lab
    k = keys(lab)
    service = await one_pass(cfg, tmp_path / "data")
    lab.regenerate("prime-sec")
    await service.run_once()
    plan = make_plan(service.snapshot())
    assert [sp.store for sp in plan.stores if sp.steps] == ["prime-pri", "prime-sec"]
    await lab.pis["prime-pri"].stop_health_monitor()
    lab.pis["prime-pri"].remove_entry(k["sec"])  # gone before we get there
    audit = tmp_path / "audit.jsonl"
    outcomes = await Applier(service, audit, "race", say=lambda _: None).apply(plan)
    await service.stop()
    by_entry = {(o.step.store, o.step.entry): o for o in outcomes}
    failed = by_entry[("prime-pri", k["sec"])]
    assert not failed.ok and f"% Entry not found: {k['sec']}" in failed.output
    assert not by_entry[("prime-pri", k["ise"])].ran  # the rest of that server waits
    assert all(not o.ran for o in outcomes if o.step.store == "prime-sec")
    assert deletes(lab) == [("prime-pri", f"{DELETE} {k['sec']}")]
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(x["entry"], x["result"]) for x in lines] == [(k["sec"], "failed")]


def test_only_listcerts_keys_become_commands() -> None:
    assert deletecert_command("10.0.0.2_8082") == f"{DELETE} 10.0.0.2_8082"
    assert deletecert_command("fe80::1%eth0_8443").endswith(" fe80::1%eth0_8443")
    assert deletecert_command("[fe80::1]_8443").endswith(" [fe80::1]_8443")
    for bad in ("10.0.0.2_8082; reload", "10.0.0.2_8082\nreload", "10.0.0.2 8082", "10.0.0.2",
                "", "host=10.0.0.2_8082", "a_b_c_d_123456"):
        with pytest.raises(PlanError):
            deletecert_command(bad)
    assert command_failed("% Entry not found: 10.0.0.2_8082")
    assert not command_failed("Deleted certificate for host fe80::1%eth0_8443")


async def test_interactive_confirmation_on_a_terminal(
    demo_lab: tuple[Lab, Path], tmp_path: Path
) -> None:
    """On a real terminal it asks; anything but `yes` deletes nothing."""
    import os
    import pty

    lab, cfg = demo_lab
    master, slave = pty.openpty()
    try:
        os.write(master, b"no\n")  # typed ahead; the terminal holds the line until it is read
        proc = await asyncio.create_subprocess_exec(
            *EXPORTER, "remediate", "--config.file", str(cfg), "--storage.path",
            str(tmp_path / "d"), "--log.level", "error", "--apply",
            stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        os.close(slave)
        os.close(master)
    text = out.decode()
    assert proc.returncode == 1, err.decode()
    assert "Type 'yes' to run them" in text and "not confirmed; nothing deleted" in text
    assert f"on prime-pri: {DELETE} {keys(lab)['ise']}" in text
    assert deletes(lab) == []


async def test_running_exporter_with_log_evidence_sees_the_fix(
    demo_lab: tuple[Lab, Path], tmp_path: Path
) -> None:
    """The serving exporter reads PI's log too: TOFU-failed records written before the delete,
    but first read after it, must not make the re-stored entry a mismatch again."""
    from dataclasses import replace

    lab, cfg = demo_lab
    k = keys(lab)
    config = load_config(cfg)
    config = replace(config, stores=tuple(
        replace(s, log_command="show logs file ncs-0-0.log") for s in config.stores))
    running = Service(config, tmp_path / "data")  # shares the baseline DB, as in production
    try:
        await running.run_once()
        lab.regenerate("prime-sec")
        await lab.pis["prime-pri"].connect_peers()  # PI's health monitor: TOFU failed, logged
        await running.run_once()

        def state(key: str) -> tuple[str, str]:
            v = next(v for v in running.snapshot().views
                     if v.store == "prime-pri" and v.entry.key == key)
            return v.verdict.state.value, v.verdict.evidence.value

        assert state(k["sec"]) == ("mismatch", "log")
        await lab.pis["prime-pri"].connect_peers()  # logged again; the exporter has not read it
        fixer = Service(config, tmp_path / "data")
        plan = make_plan(await fixer.run_once(["prime-pri"]), store="prime-pri")
        outcomes = await Applier(fixer, tmp_path / "audit.jsonl", "t", say=lambda _: None).apply(plan)
        await fixer.stop()
        assert [o.ok for o in outcomes] == [True, True]
        await lab.pis["prime-pri"].connect_peers()  # PI reconnects and stores the live certs
        for _ in range(2):
            await running.run_once()
            assert state(k["sec"]) == ("match", "baseline")
            assert state(k["ise"]) == ("match", "baseline")
    finally:
        await running.stop()
