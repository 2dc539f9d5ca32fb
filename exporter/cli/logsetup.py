"""Logging in logfmt or JSON, with every configured secret redacted as a last line of defence."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable

from exporter.core.text import is_plain, visible

_STD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _fields(record: logging.LogRecord) -> dict[str, object]:
    out: dict[str, object] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        + f".{int(record.msecs):03d}Z",
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    out.update({k: v for k, v in vars(record).items() if k not in _STD})
    if record.exc_info:
        out["exc"] = logging.Formatter().formatException(record.exc_info)
    return out


def _logfmt_value(v: object) -> str:
    """One logfmt value on one line: peer text with CR, ESC or U+2028 is shown escaped
    (exporter.core.text.visible), never passed to the terminal or log pipeline raw."""
    s = str(v)
    if s and is_plain(s) and not any(c in s for c in ' ="'):
        return s
    return '"' + visible(s).replace('"', '\\"') + '"'


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={_logfmt_value(v)}" for k, v in _fields(record).items())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record), default=str)


class RedactingHandler(logging.StreamHandler):  # type: ignore[type-arg,unused-ignore]
    """Formats, then blanks out any secret that slipped into the text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__(sys.stderr)
        self.secrets: tuple[str, ...] = tuple(s for s in secrets if s)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        for s in self.secrets:
            text = text.replace(s, "<redacted>")
        return text


def setup(level: str = "info", fmt: str = "logfmt", secrets: Iterable[str] = ()) -> RedactingHandler:
    handler = RedactingHandler(secrets)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return handler
