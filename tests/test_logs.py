"""Parsing PI's health-monitor `TOFU failed` records (verbatim from the tech note)."""

from __future__ import annotations

import pytest

from exporter.sources.prime.tofu_log import tofu_failures

pytestmark = pytest.mark.unit

RECORD = """[system] [HealthMonitorThread] TOFU failed.
Check local trust Trust-on-first-use is configure for this connection.
 Current certificate of the remote host is different from what was used earlier
- CN=prime-sec, OU=Prime Infra, O=Cisco Systems, L=SJ, ST=CA, C=US
javax.net.ssl.SSLHandshakeException: java.security.cert.CertificateException:
Trust-on-first-use is configure for this connection.
Current certificate of the remote host is different from what was used earlier
- CN=prime-sec
"""


def test_counts_records_not_lines() -> None:
    ise = RECORD.replace("[HealthMonitorThread]", "[seqtaskexecutor-3069]").replace(
        "CN=prime-sec", "CN=ISE-server")
    assert tofu_failures(RECORD * 2 + "noise\r\n" + ise) == {"prime-sec": 2, "ISE-server": 1}


def test_escaped_comma_and_garbage() -> None:
    text = RECORD.replace("CN=prime-sec,", "CN=a\\, b,") + "TOFU failed.\n\x00\xff junk"
    assert tofu_failures(text) == {"a, b": 1}
    assert tofu_failures("") == {}
