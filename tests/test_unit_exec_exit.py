"""When an exec command's output counts as whole (exporter.sources.prime.ssh.exit_problem), the
rule the PI exec read, the known_hosts `cat` read and the shell remediation share: only exit
status 0; and what the shell remediation reports for each way its rewrite ends. The lab tests
reach both through real servers; the decisions themselves are pinned here."""

from __future__ import annotations

import pytest

from exporter.core.model import ErrorReason
from exporter.sources.prime.ssh import exit_problem

pytestmark = pytest.mark.unit


def test_exit_status_0_is_whole() -> None:
    assert exit_problem(0, None) is None


@pytest.mark.parametrize("status", [1, 2, 127, 255])
def test_another_exit_status_is_the_commands_failure(status: int) -> None:
    assert exit_problem(status, None) == (ErrorReason.COMMAND, f"exited with status {status}")


def test_a_signal_is_a_failure_named_by_a_visible_name() -> None:
    reason, text = exit_problem(None, ("KILL\x1b[2J\nrm -rf /", False, "", "en")) or (None, "")
    assert reason is ErrorReason.COMMAND
    assert text.startswith("was killed by signal KILL") and "\n" not in text and "\x1b" not in text


def test_no_exit_status_at_all_is_a_lost_connection_and_nothing_is_used() -> None:
    """A channel closed with neither: the output may be cut at a line boundary, so the read
    fails rather than letting a short listing prune baselines."""
    reason, text = exit_problem(None, None) or (None, "")
    assert reason is ErrorReason.CONNECT
    assert "without an exit status" in text and "none of it is used" in text


# ---- what the shell remediation reports (exporter.remediate.hostkey_apply._rewritten) ----------

def _rewrite(status: int | None, signal: tuple[str, bool, str, str] | None = None,
             stdout: bytes = b"", stderr: bytes = b"") -> tuple[bool, str, str | None]:
    import asyncssh

    from exporter.remediate.hostkey_apply import _rewritten
    from exporter.remediate.hostkey_plan import FilePlan
    got = _rewritten(FilePlan("jump", "/home/ops/.ssh/known_hosts", ()), asyncssh.SSHCompletedProcess(
        exit_status=status, exit_signal=signal, stdout=stdout, stderr=stderr))
    return got.ok, got.detail, got.old


def test_the_rewrite_reports_each_way_it_ends() -> None:
    assert _rewrite(0, stdout=b"/home/ops/.ssh/known_hosts.old") == (
        True, "removed 0 line(s); the file as it was is /home/ops/.ssh/known_hosts.old",
        "/home/ops/.ssh/known_hosts.old")
    assert _rewrite(3) == (False, "the file changed while it was rewritten (the rewrite exited "
                           "with status 3); nothing removed", None)
    assert _rewrite(4)[1].startswith("the file's owner could not be kept for the new file")
    assert _rewrite(1)[1] == "the rewrite failed (the rewrite exited with status 1); nothing removed"
    ok, detail, _ = _rewrite(None)
    assert not ok and "whether it ran is unknown (/home/ops/.ssh/known_hosts.old tells" in detail


def test_what_the_host_prints_is_shown_visible() -> None:
    ok, detail, _ = _rewrite(1, stderr=b"mv: \x1b[31mdenied\x1b[0m\n$ rm -rf ~\n")
    assert not ok and "\x1b" not in detail and "\n" not in detail and "denied" in detail
    ok, detail, old = _rewrite(0, stdout=b"/tmp/x\x1b[2J\nreboot")
    assert ok and old == "/tmp/x\x1b[2J\nreboot" and "\x1b" not in detail and "\n" not in detail
    assert "killed by signal TERM" in _rewrite(None, ("TERM", False, "", ""))[1]
