"""The house as documented: docs/architecture.md names every module under exporter/, and the
tests keep their own layout (fixtures in conftest, helpers in tests/kit, no test module
importing another). In-process reads of the tree: no import of the modules themselves."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
EXPORTER = ROOT / "exporter"
TESTS = ROOT / "tests"


def named_in_architecture() -> set[str]:
    """Every `path.py` the page writes in backticks (relative to exporter/)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    return set(re.findall(r"`([\w/]+\.py)`", text))


def modules() -> list[str]:
    """Every module of the package but the packages' __init__ (a package is its wing)."""
    return sorted(str(p.relative_to(EXPORTER)) for p in EXPORTER.rglob("*.py")
                  if p.name != "__init__.py")


def test_the_page_reads_the_names_it_writes() -> None:
    named = named_in_architecture()
    assert {"core/model.py", "sources/seam.py", "probes/seam.py", "version.py"} <= named


def test_every_module_under_exporter_is_named_in_docs_architecture() -> None:
    missing = [m for m in modules() if m not in named_in_architecture()]
    assert not missing, (
        f"docs/architecture.md does not name {missing}: add a line to its wing's table "
        "saying what the module holds")


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_no_test_module_imports_another() -> None:
    """Shared helpers live in tests/kit; a test module importing another runs (and couples to)
    that module's tests and fixtures."""
    offenders = {
        p.name: sorted(m for m in _imports(p) if re.match(r"tests\.test_\w+", m))
        for p in sorted(TESTS.rglob("*.py"))
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, offenders


def test_fixtures_live_only_in_conftest() -> None:
    """The kit holds plain helpers; a fixture defined in tests/kit would be found by nobody."""
    found = []
    for p in sorted((TESTS / "kit").rglob("*.py")):
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for dec in node.decorator_list:
                    target = dec.func if isinstance(dec, ast.Call) else dec
                    if ast.unparse(target).endswith("fixture"):
                        found.append(f"{p.name}:{node.name}")
    assert not found, found
