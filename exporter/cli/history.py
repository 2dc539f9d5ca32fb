"""`prime-tofu-exporter history`: the recorded changes of entries, newest first. Reads the
database only (no SSH, no probes), so it answers while `serve` runs and while a PI is down."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from exporter.core import exitcodes
from exporter.core.history import change_json, render_history
from exporter.store.database import BaselineDB

DB_NAME = "baseline.db"


def run(storage_path: str, store: str | None, entry: str | None, since: float | None,
        output: str) -> int:
    path = Path(storage_path) / DB_NAME
    if not path.exists():
        print(f"no database at {path}: has the exporter run with --storage.path {storage_path}?",
              file=sys.stderr)
        return exitcodes.ERROR
    db = BaselineDB(path)  # StorageError: the command line says it in one line, exit 2
    try:
        changes = db.history(store, entry, None if since is None else time.time() - since)
    finally:
        db.close()
    if output == "json":
        print(json.dumps([change_json(c) for c in changes], indent=2))
    else:
        print(render_history(changes))
    return exitcodes.OK
