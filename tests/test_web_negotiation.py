"""Content negotiation and HEAD against the real server (`python -m exporter serve`).

Any client, authenticated or not, sends Accept and Accept-Encoding: a malformed one is
answered as if the bad member were absent (RFC 9110 12.4.2, 12.5.3), never with HTTP 500 and
a traceback in the log per request. HEAD gets GET's headers and no body (RFC 9110 9.3.2).
"""

from __future__ import annotations

import gzip
import socket
from pathlib import Path

import pytest

from exporter.web.routes import accepts_gzip, wants_openmetrics
from tests.kit.lab import offline_config
from tests.kit.processes import Exporter


def raw(port: int, request: str) -> tuple[str, dict[str, str], bytes]:
    """One request on its own connection (closed by us after it): -> (status line, headers,
    every byte the server sent after the headers until it went quiet or closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request.encode())
        data = b""
        while b"\r\n\r\n" not in data:
            got = s.recv(65536)
            assert got, data
            data += got
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
        length = int(headers.get("content-length", "0"))
        s.settimeout(0.5)  # HEAD: wait a little for a body that must not come
        try:
            while True:
                got = s.recv(65536)
                if not got:
                    break
                rest += got
                if request.startswith("GET") and len(rest) >= length:
                    break
        except TimeoutError:
            pass
    return lines[0], headers, rest


def request(method: str, path: str, **headers: str) -> str:
    extra = "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in headers.items())
    return f"{method} {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n"


def errors(log: str) -> list[str]:
    return [line for line in log.splitlines() if "level=error" in line or "Traceback" in line]


@pytest.mark.parametrize(("header", "gzip_ok"), [
    ("gzip", True), ("gzip;q=0.5", True), ("GZIP ; Q=1.000", True), ("*", True),
    ("gzip;q=0", False), ("identity", False), ("", False),
    ("gzip;q=0, *", False),  # `*` stands for the codings not named (12.5.3)
    ("br, *;q=0.1", True),
    # Malformed members are ignored as if absent; a good one next to them still counts.
    ("gzip;q=.", False), ("gzip;q=abc", False), ("gzip;q=1.5", False), ("gzip;q", False),
    ("gzip;q=0.5000", False), ("gzip;q=-1", False), ("gzip;q=., *", True),
])
def test_accept_encoding(header: str, gzip_ok: bool) -> None:
    assert accepts_gzip(header) is gzip_ok


@pytest.mark.parametrize(("header", "om"), [
    ("application/openmetrics-text;version=1.0.0", True),
    ("application/openmetrics-text", True),
    ('application/openmetrics-text;version="1.0.0"', True),
    ("text/plain;version=0.0.4", False),
    ("application/openmetrics-text;version=x", False),
    ("application/openmetrics-text;version=1.x, text/plain", False),
    ("text/plain;version=abc, application/openmetrics-text;version=1.0.0", True),
])
def test_accept(header: str, om: bool) -> None:
    assert wants_openmetrics(header) is om


async def test_malformed_negotiation_and_head_on_the_real_server(tmp_path: Path) -> None:
    """Before the fix: `gzip;q=.` and `version=abc` answered 500 with a traceback logged at
    error level per request; HEAD /metrics wrote its body and logged a traceback."""
    exporter = Exporter(offline_config(tmp_path), tmp_path)
    await exporter.start(ready=False)
    try:
        for name, value in (("Accept-Encoding", "gzip;q=."), ("Accept-Encoding", "gzip;q=abc"),
                            ("Accept", "text/plain;version=abc"),
                            ("Accept", "application/openmetrics-text;version=1.x")):
            status, headers, body = raw(exporter.port, request("GET", "/metrics", **{name: value}))
            assert status.endswith(" 200 OK"), (name, value, status, body)
            assert "content-encoding" not in headers
            assert headers["content-type"].startswith("text/plain; version=")
            assert b"tofu_store_up" in body
        _, headers, body = raw(exporter.port, request(
            "GET", "/metrics", Accept_Encoding="gzip;q=., gzip;q=0.5"))
        assert headers["content-encoding"] == "gzip" and b"tofu_store_up" in gzip.decompress(body)

        for accept_encoding in ("identity", "gzip"):
            for accept in ("text/plain", "application/openmetrics-text;version=1.0.0"):
                hdrs = {"Accept": accept, "Accept-Encoding": accept_encoding}
                _, get, _ = raw(exporter.port, request("GET", "/metrics", **hdrs))
                status, head, body = raw(exporter.port, request("HEAD", "/metrics", **hdrs))
                assert status.endswith(" 200 OK") and body == b"", (hdrs, body[:200])
                for h in ("content-type", "content-encoding", "vary"):
                    assert head.get(h) == get.get(h), (hdrs, h)
                # The process series of the two scrapes differ: the size, not the same number.
                assert int(head["content-length"]) > 1000
        for path in ("/", "/-/healthy", "/api/v1/entries"):
            status, head, body = raw(exporter.port, request("HEAD", path))
            assert body == b"" and head.get("content-type"), (path, status, body[:200])
    finally:
        await exporter.stop()
    assert errors(exporter.log()) == []
