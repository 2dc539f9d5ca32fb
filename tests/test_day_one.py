"""Day one (issue 13): `accept` turns `unknown` into `attested` evidence while `serve` runs,
and the history answers "since when?" and "what changed?".

Real parts: the demo lab (SSH PI servers, TLS endpoints), the exporter as a subprocess, the
`accept` and `history` commands as subprocesses on the same --storage.path, and for the
end-to-end test a real Prometheus and Alertmanager (tests/kit/monitoring.py).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from pilab.scene import Lab
from tests.kit.monitoring import MISSING, SKIP_REASON, Stack, running_stack, wait_until
from tests.kit.mounts import fill, tmpfs
from tests.kit.processes import REASON, accept_on_terminal, acli, cli


def verdicts(stack: Stack) -> dict[tuple[str, str], tuple[str, str]]:
    """(store, entry) -> (state, evidence), as the exporter exports them now."""
    scrape = stack.scrape()
    states = {(lab["store"], lab["entry"]): lab["state"]
              for lab, v in scrape.get("tofu_certificate_state", []) if v == 1}
    evidence = {(lab["store"], lab["entry"]): lab["evidence"]
                for lab, _ in scrape.get("tofu_certificate_evidence_info", [])}
    return {k: (s, evidence.get(k, "?")) for k, s in states.items()}


def one(stack: Stack, name: str, **labels: str) -> tuple[dict[str, str], float] | None:
    hits = [(lab, v) for lab, v in stack.scrape().get(name, [])
            if all(lab.get(k) == want for k, want in labels.items())]
    assert len(hits) <= 1, hits
    return hits[0] if hits else None




@pytest.mark.e2e
@pytest.mark.skipif(bool(MISSING), reason=SKIP_REASON)
def test_accept_while_serving_then_a_regeneration_is_mismatch_attested_with_history_and_since(
        tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        lab, data = stack.lab, str(tmp_path / "exporter-data")
        common = ("--config.file", str(stack.config_path), "--storage.path", data, "--log.level", "warn")
        sec = lab.endpoints["prime-sec"]
        peer_entry = f"{sec.host}_{sec.port}"  # prime-pri's entry for prime-sec
        wait_until(lambda: verdicts(stack).get(("prime-pri", peer_entry)), 30, "first verdicts")
        unknown = {k for k, (s, _) in verdicts(stack).items() if s == "unknown"}
        assert ("prime-pri", peer_entry) in unknown and len(unknown) >= 5, unknown

        # The operator checked the integrations and accepts every unknown entry, store by
        # store, while the exporter serves on the same storage path.
        for store in sorted({s for s, _ in unknown}):
            done = cli("accept", *common, "--store", store, "--all-unknown", "--reason", REASON, "--yes")
            assert done.returncode == 0, done.stderr + done.stdout
            assert "recorded:" in done.stdout and "you checked that" in done.stdout
        accepted = time.monotonic()
        wait_until(lambda: all(verdicts(stack).get(k) == ("match", "attested") for k in unknown),
                   15, "every accepted entry `match, attested` in the running exporter")
        print(f"\naccept -> running exporter shows match, attested: {time.monotonic() - accepted:.2f} s")
        assert not [k for k, (s, _) in verdicts(stack).items() if s == "unknown"]

        # Audit log: who, why, both fingerprints, one line per entry.
        lines = (Path(data) / "remediation-audit.jsonl").read_text().splitlines()
        audit = [json.loads(line) for line in lines]
        assert len(audit) == len(unknown)
        rec = next(r for r in audit if (r["store"], r["entry"]) == ("prime-pri", peer_entry))
        assert rec["action"] == "accept" and rec["reason"] == REASON and rec["operator"]
        assert rec["fingerprint_sha256"] == sec.current.fingerprint_sha256
        assert rec["spki_sha256"] and len(rec["spki_sha256"]) == 64
        old = sec.current.fingerprint_sha256

        # The lab regenerates prime-sec's certificate, same subject: PI still holds the old one.
        regenerated_at = time.time()
        new = stack.loop.call(lambda: lab.regenerate("prime-sec")).fingerprint_sha256
        wait_until(lambda: verdicts(stack).get(("prime-pri", peer_entry)) == ("mismatch", "attested"),
                   15, "mismatch, attested after the regeneration")
        since = one(stack, "tofu_certificate_state_since_timestamp_seconds", store="prime-pri",
                    entry=peer_entry)
        assert since is not None and regenerated_at - 1 <= since[1] <= time.time()
        prev = wait_until(lambda: one(stack, "tofu_certificate_previous_fingerprint_info",
                                      store="prime-pri", entry=peer_entry), 10, "previous fingerprint")
        assert prev[0]["fingerprint_sha256"] == old

        # The history holds the change, with both fingerprints.
        hist = cli("history", "--storage.path", data, "--store", "prime-pri", "--entry", peer_entry,
                   "--output", "json")
        assert hist.returncode == 0, hist.stderr
        changes = json.loads(hist.stdout)
        newest, accept_change = changes[0], changes[-1]
        assert newest["before"] == {"state": "match", "evidence": "attested", "fingerprint_sha256": old}
        assert newest["after"] == {"state": "mismatch", "evidence": "attested", "fingerprint_sha256": new}
        assert accept_change["after"]["evidence"] == "attested" and REASON in accept_change["reason"]

        # The notification says since when, and what the endpoint presented before.
        (_, alert), *_ = wait_until(lambda: stack.webhook.alerts(
            "TofuCertificateMismatch", "firing", store="prime-pri", entry=peer_entry),
            30, "TofuCertificateMismatch at the webhook")
        notes = alert["annotations"]
        assert notes["evidence"] == "attested"
        assert notes["previous_fingerprint_sha256"] == old and notes["fingerprint_sha256"] == new
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(since[1])))
        assert notes["since"] == f"{when} +0000 UTC"
        assert f"In mismatch since {when} +0000 UTC; before that the endpoint presented SHA-256 {old}" \
            in notes["description"]
        assert notes["command"] == f"ncs certvalidation tofu-certs deletecert host {peer_entry}"


# ---- refusals: each one exits 2 and records nothing ------------------------------------------


def _recorded(data: Path) -> tuple[bool, str]:
    audit = data / "remediation-audit.jsonl"
    return audit.exists(), (audit.read_text() if audit.exists() else "")


async def _accept(cfg: Path, data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return await acli("accept", "--config.file", str(cfg), "--storage.path", str(data),
                      "--log.level", "warn", "--reason", REASON, *args)


async def test_refuses_mismatch_unknown_key_and_unknown_store(
        demo_lab: tuple[Lab, Path], tmp_path: Path) -> None:
    lab, cfg = demo_lab
    data = tmp_path / "data"
    ise = lab.endpoints["ise"]
    got = await _accept(cfg, data, "--store", "prime-pri", "--entry", f"{ise.host}_{ise.port}", "--yes")
    assert got.returncode == 2
    assert f"refused: {ise.host}_{ise.port} on prime-pri: state mismatch (subject" in got.stdout
    assert "remediate" in got.stdout and "nothing recorded" in got.stderr

    got = await _accept(cfg, data, "--store", "prime-pri", "--entry", "10.9.9.9_443", "--yes")
    assert got.returncode == 2 and "--entry '10.9.9.9_443': no such entry in store prime-pri" in got.stderr
    assert f"127.0.0.1_{lab.endpoints['prime-pri'].port}" in got.stderr  # the keys it does hold

    got = await _accept(cfg, data, "--store", "nope", "--all-unknown", "--yes")
    assert got.returncode == 2 and "--store 'nope': no such store" in got.stderr
    assert _recorded(data) == (False, "")


async def test_refuses_an_unreachable_entry(demo_lab: tuple[Lab, Path], tmp_path: Path) -> None:
    lab, cfg = demo_lab
    data = tmp_path / "data"
    dnac = lab.endpoints["dnac-2"]
    key = f"{dnac.host}_{dnac.port}"
    await dnac.stop()
    got = await _accept(cfg, data, "--store", "pi-system-184", "--entry", key, "--yes")
    assert got.returncode == 2
    assert f"refused: {key} on pi-system-184: unreachable (" in got.stdout
    assert _recorded(data) == (False, "")


async def test_without_a_terminal_and_without_yes_it_asks_nobody_and_records_nothing(
        demo_lab: tuple[Lab, Path], tmp_path: Path) -> None:
    _, cfg = demo_lab
    data = tmp_path / "data"
    got = await _accept(cfg, data, "--store", "prime-sec", "--all-unknown")
    assert got.returncode == 2
    assert "About to record 3 attested baselines on prime-sec" in got.stdout  # shown, not asked
    assert "no terminal; pass --yes" in got.stderr
    assert _recorded(data) == (False, "")
    hist = await acli("history", "--storage.path", str(data), "--output", "json")
    assert hist.returncode == 0 and json.loads(hist.stdout) == []


async def test_refuses_a_certificate_that_changed_within_the_last_probe_interval(
        demo_lab: tuple[Lab, Path], tmp_path: Path) -> None:
    """prime-sec's certificate is renewed, then the renewal is rolled back: the entry is
    `unknown` again (its adopted baseline equals the live certificate), but PI may have
    connected during the renewal, so the integration the operator checked proves nothing yet."""
    lab, cfg = demo_lab
    data = tmp_path / "data"
    sec = lab.endpoints["prime-sec"]
    entry = f"{sec.host}_{sec.port}"
    check = ("check", "--config.file", str(cfg), "--storage.path", str(data), "--log.level", "warn")
    assert (await acli(*check)).returncode == 1  # ISE: mismatch; prime-pri's entry for prime-sec unknown
    original = sec.current
    sec.regenerate()
    assert (await acli(*check)).returncode == 1  # the renewal: a change the history records
    sec.present(original)  # rolled back
    got = await _accept(cfg, data, "--store", "prime-pri", "--entry", entry, "--yes")
    assert got.returncode == 2, got.stdout + got.stderr
    assert (f"refused: {entry} on prime-pri: the live certificate changed within the last probe "
            "interval (5s: ") in got.stdout
    assert _recorded(data) == (False, "")


async def _on_a_terminal(cfg: Path, data: Path, answer: str) -> tuple[int, str]:
    """`accept` with a real pseudo-terminal as stdin/stdout: wait for the question, answer."""
    return await accept_on_terminal(cfg, data, answer, "--store", "prime-sec", "--all-unknown")


async def test_on_a_terminal_it_asks_and_records_only_after_yes(
        demo_lab: tuple[Lab, Path], tmp_path: Path) -> None:
    _, cfg = demo_lab
    data = tmp_path / "data"
    rc, out = await _on_a_terminal(cfg, data, "no")
    assert rc == 1 and "not confirmed; nothing recorded" in out
    assert _recorded(data) == (False, "")
    rc, out = await _on_a_terminal(cfg, data, "yes")
    assert rc == 0, out
    assert out.count("recorded: prime-sec ") == 3
    assert len(_recorded(data)[1].splitlines()) == 3


# ---- the audit log ----------------------------------------------------------------------------


async def test_accept_with_an_audit_log_that_cannot_be_opened_records_nothing(
        demo_lab: tuple[Lab, Path], tmp_path: Path) -> None:
    _, cfg = demo_lab
    data = tmp_path / "data"
    (tmp_path / "not-a-dir").write_text("")
    got = await _accept(cfg, data, "--store", "prime-sec", "--all-unknown", "--yes",
                        "--audit.file", str(tmp_path / "not-a-dir" / "audit.jsonl"))
    assert got.returncode == 2, got.stdout + got.stderr
    assert "--audit.file" in got.stderr and "nothing recorded" in got.stderr
    hist = await acli("history", "--storage.path", str(data), "--output", "json")
    assert hist.returncode == 0 and json.loads(hist.stdout) == []


async def test_accept_on_a_full_audit_disk_prints_the_records_and_exits_1(
        demo_lab: tuple[Lab, Path], tmp_path: Path) -> None:
    """The attestations are committed to the database first; the audit log on a full (real)
    tmpfs cannot take their lines, so they go to stderr, and the exit code says so."""
    _, cfg = demo_lab
    data = tmp_path / "data"
    with tmpfs(tmp_path / "audit", "size=64k") as mnt:
        fill(mnt / "filler")
        got = await _accept(cfg, data, "--store", "prime-sec", "--all-unknown", "--yes",
                            "--audit.file", str(mnt / "audit.jsonl"))
    assert got.returncode == 1, got.stdout + got.stderr
    assert "No space left on device" in got.stderr and "Traceback" not in got.stderr
    kept = [json.loads(ln) for ln in got.stderr.splitlines() if ln.startswith("  {")]
    assert len(kept) == 3 and {x["action"] for x in kept} == {"accept"}
    assert {x["reason"] for x in kept} == {REASON}
    assert "recorded: 3 entries attested on prime-sec, but not in the audit log" in got.stdout
    check = await acli("check", "--config.file", str(cfg), "--storage.path", str(data),
                       "--log.level", "warn", "--output", "json")
    attested = {r["entry"] for r in json.loads(check.stdout)
                if r["store"] == "prime-sec" and r["evidence"] == "attested"}
    assert attested == {x["entry"] for x in kept}
