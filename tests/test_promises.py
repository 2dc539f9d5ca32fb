"""Promises the README makes that no test held the product to: where PI's own loopback
entries are probed, `check`'s exit codes, tofu_store_unparsed_lines, log redaction."""

from __future__ import annotations

import io
import logging
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from exporter.cli.logsetup import LogfmtFormatter, RedactingHandler
from exporter.config.model import Config
from exporter.exposition.writer import render_text
from exporter.service.service import Service
from pilab.tls import TlsEndpoint
from tests.kit.faults import faults
from tests.kit.lab import start_pi, store_config, write_config
from tests.kit.processes import acli


async def test_loopback_entries_are_probed_at_self_address(tmp_path: Path) -> None:
    """PI stores itself as 127.0.0.1_P, localhost_P or ::1_P: that is the PI server, probed
    at its `self_address` (here not the SSH host), never at the exporter's own loopback."""
    tls = TlsEndpoint([("CN", "prime-self")], host="127.0.0.5")
    await tls.start()
    pi = await start_pi("prime-self")
    try:
        p = tls.port
        for key in (f"127.0.0.1_{p}", f"localhost_{p}", f"::1_{p}", f"[::1]_{p}", f"LOCALHOST_{p}"):
            pi.add_entry(key, tls.current)
        cfg = store_config(pi, tmp_path, name="pri", self_address="127.0.0.5")
        assert cfg.host == "127.0.0.1"  # the default self_address would be the SSH host
        service = Service(Config((cfg,), {}, {}), tmp_path / "data")
        try:
            snap = await service.run_once()
        finally:
            await service.stop()
        assert {v.entry.key: v.endpoint for v in snap.views} == {
            k: f"127.0.0.5:{p}" for k in pi.store}
        for v in snap.views:
            assert v.probe is not None and v.probe.cert is not None, (v.entry.key, v.probe)
            assert v.probe.cert.fingerprint_sha256 == tls.current.fingerprint_sha256
    finally:
        await pi.stop()
        await tls.stop()


async def test_unparsed_lines_are_counted_in_the_metric(tmp_path: Path) -> None:
    tls = TlsEndpoint([("CN", "peer")])
    await tls.start()
    pi = await start_pi("prime-odd")
    try:
        pi.add_entry(f"{tls.host}_{tls.port}", tls.current)
        faults(pi).extra_lines = ["host=10.0.0.9_99999; subject= /CN=port out of range",
                          "host=; subject= /CN=no key", "subject= /CN=no host at all"]
        cfg = store_config(pi, tmp_path, name="odd")
        service = Service(Config((cfg,), {}, {}), tmp_path / "data")
        try:
            snap = await service.run_once()
        finally:
            await service.stop()
        body = render_text(snap).decode()
        got = {s.labels["store"]: s.value for f in text_string_to_metric_families(body)
               for s in f.samples if s.name == "tofu_store_unparsed_lines"}
        assert got == {"odd": 3.0}
        up = [s.value for f in text_string_to_metric_families(body) for s in f.samples
              if s.name == "tofu_store_up"]
        assert up == [1.0]  # the good entry still read: bad lines do not fail the store
    finally:
        await pi.stop()
        await tls.stop()


async def test_check_exit_codes_and_mismatch_outranks_unreadable(tmp_path: Path) -> None:
    tls = TlsEndpoint([("CN", "ise")])
    await tls.start()
    good = await start_pi("prime-good")
    gone = await start_pi("prime-gone")
    gone.users = {"admin": "not-the-configured-password"}  # login rejected: unreadable
    try:
        good.add_entry(f"{tls.host}_{tls.port}", tls.current)
        endpoint = f"{tls.host}:{tls.port}"

        async def check(pis: dict[str, object], pin: str) -> tuple[int, str]:
            cfg = write_config(tmp_path, pis,  # type: ignore[arg-type]
                               extra={"pins": [{"endpoint": endpoint, "sha256": pin}]})
            done = await acli("check", "--config.file", str(cfg), "--storage.path",
                              str(tmp_path / "data"), cwd=tmp_path)
            return done.returncode, done.stdout + done.stderr

        right, wrong = tls.current.fingerprint_sha256, "0" * 64
        code, out = await check({"good": good}, right)
        assert code == 0, out  # every entry proven a match by its pin
        code, out = await check({"good": good, "gone": gone}, right)
        assert code == 2, out  # a store unreadable, nothing worse
        assert "store gone unreadable" in out
        code, out = await check({"good": good, "gone": gone}, wrong)
        assert code == 1, out  # a proven mismatch outranks the unreadable store
        assert "mismatch" in out
    finally:
        await good.stop()
        await gone.stop()
        await tls.stop()


def test_log_handler_redacts_secrets_wherever_they_appear() -> None:
    stream = io.StringIO()
    handler = RedactingHandler(["Hunter2-Pa55", "pass phrase"])
    handler.setStream(stream)
    handler.setFormatter(LogfmtFormatter())
    log = logging.getLogger("test.redaction")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("login as admin with Hunter2-Pa55 failed",
                    extra={"error": "key 'pass phrase' wrong", "store": "pri"})
        try:
            raise ValueError("decrypt failed for Hunter2-Pa55")
        except ValueError:
            log.exception("boom")
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    assert "Hunter2-Pa55" not in text and "pass phrase" not in text
    # message, extra field, and in the traceback both the source line and the error text
    assert text.count("<redacted>") == 4, text
    assert "store=pri" in text and "login as admin with <redacted> failed" in text


def test_redaction_follows_a_reload() -> None:
    """Secrets added by a reload are redacted too (the handler's list is replaced)."""
    stream = io.StringIO()
    handler = RedactingHandler(["old-secret"])
    handler.setStream(stream)
    handler.setFormatter(LogfmtFormatter())
    handler.secrets = (*handler.secrets, "new-secret")
    handler.handle(logging.makeLogRecord({"msg": "old-secret new-secret", "levelno": 30}))
    assert stream.getvalue().count("<redacted>") == 2 and "secret" not in stream.getvalue()

