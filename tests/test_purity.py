"""Pure means pure at run time: importing a pure module loads no I/O library.

import-linter checks what the pure modules import by name; this checks what Python actually
loads when one of them is imported in a fresh interpreter, third-party packages and the
standard library included (cryptography.x509 loads `socket` through email.utils, any
prometheus_client import loads its HTTP server and so `ssl` and `socket`). The pure modules
are the source_modules of pyproject's "pure core" contract, packages expanded to every module
under them, so the two lists cannot drift apart.

One child process imports nothing of ours, then forks once per module: each fork is a fresh
import of that one module (fast: no interpreter start per module).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
IO_LIBRARIES = ("asyncssh", "aiohttp", "sqlite3", "ssl", "socket")

# Imports each module named on stdin in a fork of itself and prints, per module, the I/O
# libraries that import loaded (or the import's error).
_CHILD = r"""
import json, os, sys
io = json.loads(sys.argv[1])
assert not [m for m in io if m in sys.modules], [m for m in io if m in sys.modules]
out = {}
for name in sys.stdin.read().split():
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            __import__(name)
            got = [m for m in io if m in sys.modules]
        except BaseException as e:
            got = f"import failed: {e!r}"
        os.write(w, json.dumps(got).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        out[name] = json.loads(f.read())
    os.waitpid(pid, 0)
print(json.dumps(out))
"""


def pure_modules() -> list[str]:
    """The pure contract's source modules, each package expanded to its modules."""
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = conf["tool"]["importlinter"]["contracts"]
    (pure,) = [c for c in contracts if c["name"].startswith("the pure core")]
    out: list[str] = []
    for name in pure["source_modules"]:
        path = ROOT / name.replace(".", "/")
        if path.is_dir():
            out += sorted(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                          for p in path.rglob("*.py"))
        else:
            assert path.with_suffix(".py").is_file(), f"{name} in the pure contract does not exist"
            out.append(name)
    return out


def loaded_io(modules: list[str]) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(IO_LIBRARIES)],
                          input=" ".join(modules), capture_output=True, text=True, cwd=ROOT,
                          timeout=60, check=True)
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_the_pure_contract_names_the_pure_core_and_the_seams() -> None:
    """The list this test walks is the one the issue calls pure; it cannot shrink unnoticed."""
    mods = pure_modules()
    for must in ("exporter.core.subject", "exporter.exposition.writer", "exporter.remediate.plan",
                 "exporter.accept.plan", "exporter.web.pages.landing", "exporter.sources.seam",
                 "exporter.probes.seam", "exporter.sources.prime.listing",
                 "exporter.sources.known_hosts.parse", "exporter.fleet.snapshot"):
        assert must in mods


def test_no_pure_module_loads_an_io_library_at_run_time() -> None:
    got = loaded_io(pure_modules())
    dirty = {m: io for m, io in got.items() if io}
    assert not dirty, f"pure modules that load I/O libraries when imported: {dirty}"


def test_the_check_sees_an_io_library_when_one_is_loaded() -> None:
    """The check itself can fail: an edge module is caught loading its libraries."""
    got = loaded_io(["exporter.sources.prime.ssh", "exporter.probes.tls"])
    assert "asyncssh" in got["exporter.sources.prime.ssh"]  # type: ignore[operator]
    assert "ssl" in got["exporter.probes.tls"]  # type: ignore[operator]
