#!/usr/bin/env python3
"""The walk of one `check` on the demo lab: which exporter modules it visits, in what order.

    .venv/bin/python bench/walk.py            # from the repository root; a few seconds
    .venv/bin/python bench/walk.py --calls    # every step, not only the module sequence

The demo lab (exporter.cli.demo.prepare, free ports) runs on its own event loop in a thread;
`prime-tofu-exporter check` runs in this process (exporter.cli.main.main) under a profile hook
(sys.setprofile, and threading.setprofile for the worker threads it starts) that records each
call into a module under exporter/. Consecutive calls within one module are one visit. Printed:
the visits in order (a module entered again later is a revisit; a visit to a module that was
entered earlier in the current descent is a climb back up), then per module its visit count,
then the totals. Import-time calls are left out: the modules are imported before the walk.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import io
import pkgutil
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import exporter  # noqa: E402
from exporter.cli.demo import prepare  # noqa: E402
from exporter.cli.main import main as cli_main  # noqa: E402

PREFIX = str(ROOT / "exporter") + "/"


def import_everything() -> None:
    """Import every exporter module first, so the walk has no import-time calls in it."""
    for mod in pkgutil.walk_packages(exporter.__path__, "exporter."):
        if mod.name == "exporter.__main__":  # runs the command line when imported
            continue
        with contextlib.suppress(ImportError):
            importlib.import_module(mod.name)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []  # (thread, module, function)
        self._lock = threading.Lock()

    def hook(self, frame: FrameType, event: str, arg: Any) -> None:
        if event != "call":
            return
        path = frame.f_code.co_filename
        if not path.startswith(PREFIX):
            return
        module = path[len(PREFIX):].removesuffix(".py")
        with self._lock:
            self.calls.append((threading.current_thread().name, module, frame.f_code.co_name))

    def visits(self) -> list[tuple[str, str]]:
        """(thread, module) per visit: consecutive calls in one module of one thread merged."""
        out: list[tuple[str, str]] = []
        last: dict[str, str] = {}
        for thread, module, _ in self.calls:
            if last.get(thread) != module:
                out.append((thread, module))
                last[thread] = module
        return out


def run_check(cfg: Path, storage: Path, recorder: Recorder) -> int:
    sys.setprofile(recorder.hook)
    threading.setprofile(recorder.hook)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return cli_main(["check", "--config.file", str(cfg), "--storage.path", str(storage),
                             "--log.level", "error"])
    finally:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]


def report(recorder: Recorder, code: int, calls: bool) -> None:
    visits = recorder.visits()
    main = [m for t, m in visits if t == "MainThread"]
    seen: set[str] = set()
    climbs = 0
    stack: list[str] = []
    for m in main:
        if m in stack:  # back to a module still open above: a climb back up
            climbs += 1
            del stack[stack.index(m) + 1:]
        else:
            stack.append(m)
        seen.add(m)
    print(f"check exited {code}; {len(recorder.calls)} calls into exporter/, "
          f"{len(visits)} visits ({len(main)} on the main thread), {len(seen)} modules, "
          f"{climbs} climbs back up")
    print("\nthe walk (main thread):")
    for i, m in enumerate(main, 1):
        print(f"  {i:4d}  {m}")
    others = [(t, m) for t, m in visits if t != "MainThread"]
    if others:
        print("\nworker threads:", ", ".join(sorted({m for _, m in others})))
    print("\nvisits per module:")
    for m, n in Counter(m for _, m in visits).most_common():
        print(f"  {n:5d}  {m}")
    if calls:
        print("\nevery call:")
        for t, m, f in recorder.calls:
            print(f"  {t:12s} {m}.{f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", action="store_true", help="print every call, not only visits")
    args = ap.parse_args()
    import_everything()
    loop = asyncio.new_event_loop()
    lab_thread = threading.Thread(target=loop.run_forever, name="lab", daemon=True)
    lab_thread.start()
    with tempfile.TemporaryDirectory() as tmp:
        lab, cfg = asyncio.run_coroutine_threadsafe(
            prepare(Path(tmp) / "lab", fixed_ports=False), loop).result(60)
        recorder = Recorder()
        try:
            code = run_check(cfg, Path(tmp) / "data", recorder)
        finally:
            asyncio.run_coroutine_threadsafe(lab.stop(), loop).result(30)
            loop.call_soon_threadsafe(loop.stop)
    report(recorder, code, args.calls)


if __name__ == "__main__":
    main()
