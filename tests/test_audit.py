"""The operators' audit log (exporter/store/audit.py) on a real file system: opened only as a
regular file of ours, never through a symbolic link, lines ASCII-escaped JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from exporter.store.audit import AuditError, append_audit, check_audit
from tests.kit.skips import MACHINE_CANNOT

RECORD = {"action": "accept", "reason": "ok\u2028x\u202ey\u009bz\x1b[2J", "operator": "root"}


def test_lines_are_ascii_escaped_json_and_decode_to_what_was_written(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    append_audit(log, [RECORD, RECORD])
    raw = log.read_bytes()
    assert raw.isascii() and raw.count(b"\n") == 2
    assert [json.loads(ln) for ln in raw.decode().splitlines()] == [RECORD, RECORD]
    assert oct(log.stat().st_mode & 0o777) == oct(0o640)


@pytest.mark.parametrize("dangling", [False, True])
def test_a_symbolic_link_is_refused_and_its_target_untouched(tmp_path: Path, dangling: bool) -> None:
    target = tmp_path / "target"
    if not dangling:
        target.write_text("kept\n")
    log = tmp_path / "audit.jsonl"
    log.symlink_to(target)
    with pytest.raises(AuditError, match="is a symbolic link"):
        check_audit(log)
    with pytest.raises(AuditError, match="is a symbolic link") as e:
        append_audit(log, [RECORD])
    assert [json.loads(ln) for ln in e.value.lines] == [RECORD]  # the lines, for the operator
    assert (target.read_text() == "kept\n") if not dangling else not target.exists()


def test_a_log_writable_by_group_or_others_is_refused(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    log.write_text("")
    log.chmod(0o664)
    with pytest.raises(AuditError, match=r"writable by group or others \(mode 0664\)"):
        check_audit(log)
    log.chmod(0o644)
    check_audit(log)


def test_a_log_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"{MACHINE_CANNOT} only root can give a file to another user")
    log = tmp_path / "audit.jsonl"
    log.write_text("")
    os.chown(log, 65534, 65534)
    with pytest.raises(AuditError, match="owned by uid 65534, neither the user running"):
        append_audit(log, [RECORD])
    assert log.read_text() == ""


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    os.mkfifo(log)
    with pytest.raises(AuditError, match=r"audit\.jsonl': not a regular file"):
        check_audit(log)
