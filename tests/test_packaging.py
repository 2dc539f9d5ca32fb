"""Packaging as a user meets it: the wheel `python -m build` makes, and `pipx install .`.

Both work on a copy of the checkout (tracked and new files, nothing git ignores), so neither
leaves build/ or *.egg-info behind nor sees the developer's .venv.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tomllib
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.kit.lab import free_port
from tests.kit.processes import run, source_copy

ROOT = Path(__file__).resolve().parent.parent
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
DIST = "prime_tofu_exporter"
# Builds (isolated, so setuptools is fetched) and a pipx install: longer than the default bound.
pytestmark = pytest.mark.timeout(600)
# pilab: the simulated PI servers `prime-tofu-exporter demo` runs; monitoring: prime-tofu-monitoring
PACKAGES = ("exporter/", "pilab/", "monitoring/")


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(wheel, sdist) from `python -m build`: the sdist first, then the wheel built from it."""
    src = source_copy(tmp_path_factory.mktemp("src"))
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--outdir", str(out), str(src)])
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return wheel, sdist


def test_wheel_holds_the_packages_their_license_and_nothing_else(dists: tuple[Path, Path]) -> None:
    wheel, _ = dists
    assert wheel.name.startswith(f"{DIST}-{VERSION}-py3-none-any")
    names = zipfile.ZipFile(wheel).namelist()
    info = f"{DIST}-{VERSION}.dist-info/"
    strays = [n for n in names if not n.startswith((*PACKAGES, info))]
    assert not strays, f"files outside the package: {strays}"
    tests = [n for n in names if re.search(r"(^|/)(tests?|bench)/|(^|/)(test_\w+|conftest)\.py$", n)]
    assert not tests, f"test or bench files in the wheel: {tests}"
    # Every module of the packages (the demo's lab, pilab, included), and only those.
    source = {str(p.relative_to(ROOT)) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    assert {n for n in names if n.endswith(".py")} == source
    with zipfile.ZipFile(wheel) as z:
        assert z.read(f"{info}licenses/LICENSE") == (ROOT / "LICENSE").read_bytes()
        meta = z.read(f"{info}METADATA").decode()
        entry_points = z.read(f"{info}entry_points.txt").decode()
    assert f"\nVersion: {VERSION}\n" in meta
    assert "\nLicense-Expression: Apache-2.0\n" in meta
    assert "prime-tofu-exporter = exporter.cli.main:main" in entry_points
    print(f"\n{wheel.name}: {len(names)} files, {wheel.stat().st_size / 1024:.0f} KiB")


def test_sdist_carries_the_license(dists: tuple[Path, Path]) -> None:
    _, sdist = dists
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert {"LICENSE", "pyproject.toml", "README.md", "exporter/cli/main.py"} <= names


def test_pipx_install_gives_a_working_command_versioned_from_pyproject(tmp_path: Path) -> None:
    """`pipx install .` (Debian's pipx, on Debian's python3), then the command outside the tree.

    The copy's pyproject.toml carries another version: `--version` and the landing page must
    show it, since the package metadata is the one source of the version.
    """
    pipx = shutil.which("pipx")
    assert pipx, "pipx not installed (scripts/test installs Debian's pipx)"
    src = source_copy(tmp_path / "src")
    version = f"{VERSION}+packagingtest"
    pyproject = src / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace(f'version = "{VERSION}"', f'version = "{version}"', 1))
    home, bindir = tmp_path / "pipx-home", tmp_path / "bin"
    env = {**{k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")},
           "PIPX_HOME": str(home), "PIPX_BIN_DIR": str(bindir)}
    run([pipx, "install", "."], cwd=src, env=env)
    exe = bindir / "prime-tofu-exporter"
    shown = run([str(exe), "--version"], cwd=tmp_path, env=env).stdout.strip()
    assert shown == f"prime-tofu-exporter {version}"
    installed = list(home.rglob("site-packages/exporter/cli/main.py"))
    assert installed and not list(home.rglob("site-packages/tests"))

    # The installed command works away from the source tree: its demo serves the seed's scene.
    shutil.rmtree(src)
    port = free_port()
    demo = subprocess.Popen([str(exe), "demo", "--web.listen-address", f"127.0.0.1:{port}",
                             "--demo.regenerate-after", "3600"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        check = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo-check"),
                                f"http://127.0.0.1:{port}", "--no-regeneration", "--timeout", "60"],
                               capture_output=True, text=True, timeout=90)
        assert check.returncode == 0, check.stderr
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            assert version in r.read().decode()
    finally:
        os.killpg(demo.pid, signal.SIGTERM)
        try:
            demo.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
