"""Every flag in either position, or an error: never accepted and ignored (issue 20, point 4).
And a shard that owns no store (point 5).

The tables come from the parser itself: a flag added to a subcommand is tested in both
positions without anyone remembering to add it here (a flag without a SAMPLE fails).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.cli import main as cli
from exporter.fleet.shard import Shard, owner
from tests.kit.lab import free_port, offline_config
from tests.kit.processes import EXPORTER, ROOT, Exporter, samples

# A non-default value per flag that may stand before the subcommand: argv, parsed value.
SAMPLES: dict[str, tuple[list[str], Any]] = {
    "config_file": (["--config.file", "c.yml"], "c.yml"),
    "storage_path": (["--storage.path", "s"], "s"),
    "log_level": (["--log.level", "debug"], "debug"),
    "log_format": (["--log.format", "json"], "json"),
    "listen": (["--web.listen-address", "127.0.0.1:9"], ["127.0.0.1:9"]),
    "systemd_socket": (["--web.systemd-socket"], True),
    "web_config": (["--web.config.file", "w.yml"], "w.yml"),
    "telemetry_path": (["--web.telemetry-path", "/m"], "/m"),
    "health_listen": (["--web.health-address", "127.0.0.1:8"], "127.0.0.1:8"),
    "max_connections": (["--web.max-connections", "7"], 7),
    "idle_timeout": (["--web.idle-timeout", "2.5"], 2.5),
    "shard": (["--shard", "1", "--total-shards", "2"], 1),
    "total_shards": (["--total-shards", "3"], 3),
    "config_check": (["--config.check"], True),
    "route_prefix": (["--web.route-prefix", "/tofu"], "/tofu"),
    "external_url": (["--web.external-url", "https://proxy.example.net/tofu/"],
                     "https://proxy.example.net/tofu/"),
}
# What a subcommand needs to parse at all.
REQUIRED = {"accept": ["--store", "s", "--entry", "k", "--reason", "r"], "doctor": ["--store", "s"]}


def _commands() -> dict[str, argparse.ArgumentParser]:
    p = cli._parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _options(p: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """dest -> action of every option but --help and --version."""
    return {a.dest: a for a in p._actions
            if a.option_strings and not isinstance(a, argparse._HelpAction | argparse._VersionAction)}


def _top_level() -> set[str]:
    """The flags the top-level parser takes (before any subcommand), by their plain dest."""
    return {a.option_strings[0] for a in _options(cli._parser()).values()}


def _shared() -> list[tuple[str, str]]:
    """(command, dest) for every flag of every subcommand that the top level takes too."""
    top = _top_level()
    return [(name, dest) for name, p in _commands().items()
            for dest, a in _options(p).items() if a.option_strings[0] in top]


def _not_taken() -> list[tuple[str, str]]:
    """(command, flag) for every top-level flag a subcommand does not take."""
    out = []
    for name, p in _commands().items():
        mine = {a.option_strings[0] for a in _options(p).values()}
        out += [(name, flag) for flag in sorted(_top_level() - mine)]
    return out


def _own() -> list[tuple[str, argparse.Action]]:
    """(command, action) for every flag only a subcommand takes."""
    top = _top_level()
    return [(name, a) for name, p in _commands().items()
            for a in _options(p).values() if a.option_strings[0] not in top]


def _value(args: argparse.Namespace, dest: str) -> Any:
    if dest in ("shard", "total_shards"):
        shard = args.shard
        return shard.index if dest == "shard" else shard.total
    return getattr(args, dest)


def test_every_flag_that_may_come_first_has_a_sample() -> None:
    """A new flag the top level takes must be added to SAMPLES, so it is tested below."""
    dests = {dest for _, dest in _shared()}
    assert dests and dests <= SAMPLES.keys(), dests - SAMPLES.keys()


@pytest.mark.parametrize(("command", "dest"), _shared(), ids=lambda v: str(v))
@pytest.mark.parametrize("position", ["before", "after"])
def test_a_flag_works_before_and_after_the_subcommand(command: str, dest: str, position: str) -> None:
    flag, want = SAMPLES[dest]
    argv = [*flag, command] if position == "before" else [command, *flag]
    args = cli._parse([*argv, *REQUIRED.get(command, [])])
    assert _value(args, dest) == want, f"{' '.join(argv)}: {dest} = {_value(args, dest)!r}"


@pytest.mark.parametrize(("command", "flag"), _not_taken(), ids=lambda v: str(v))
@pytest.mark.parametrize("position", ["before", "after"])
def test_a_flag_the_subcommand_does_not_take_is_an_error(
        command: str, flag: str, position: str, capsys: pytest.CaptureFixture[str]) -> None:
    top = {a.option_strings[0]: a for a in _options(cli._parser()).values()}
    given = [flag] if top[flag].nargs == 0 else [flag, "x"]
    argv = [*given, command] if position == "before" else [command, *given]
    with pytest.raises(SystemExit) as exited:
        cli._parse([*argv, *REQUIRED.get(command, [])])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert flag in err, err


@pytest.mark.parametrize(("command", "action"), _own(), ids=lambda v: getattr(v, "dest", v))
def test_a_subcommands_own_flag_before_it_is_an_error(
        command: str, action: argparse.Action, capsys: pytest.CaptureFixture[str]) -> None:
    flag = action.option_strings[0]
    value = [] if action.nargs == 0 else [str(next(iter(action.choices or ["x"])))]
    with pytest.raises(SystemExit) as exited:
        cli._parse([flag, *value, command, *REQUIRED.get(command, [])])
    assert exited.value.code == 2  # "unrecognized arguments", or its value taken for a command
    assert "error:" in capsys.readouterr().err


def test_defaults_when_a_flag_is_given_nowhere() -> None:
    args = cli._parse([])
    assert args.command == "serve"
    assert (args.config_file, args.storage_path, args.listen) == ("prime-tofu-exporter.yml", "data", None)
    assert (args.shard, args.config_check, args.max_connections) == (Shard(0, 1), False, 512)
    args = cli._parse(["check"])
    assert (args.config_file, args.storage_path, args.output, args.shard) == \
        ("prime-tofu-exporter.yml", "data", "table", Shard(0, 1))


def test_a_flag_on_both_sides_reads_as_if_the_subcommand_were_not_there() -> None:
    """The later value wins (as argparse does for a flag given twice); the repeatable
    --web.listen-address keeps every address, in order."""
    args = cli._parse(["--storage.path", "a", "--shard", "1", "--total-shards", "2",
                       "serve", "--storage.path", "b", "--total-shards", "3"])
    assert args.storage_path == "b"
    assert args.shard == Shard(1, 3)
    args = cli._parse(["--web.listen-address", ":1", "serve", "--web.listen-address", ":2"])
    assert args.listen == [":1", ":2"]


def test_a_shard_outside_the_total_is_refused_whichever_side(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli._parse(["--total-shards", "2", "check", "--shard", "2"])
    assert exited.value.code == 2
    assert "expected 0 <= shard < total-shards" in capsys.readouterr().err


# ---------------------------------------------------------------- the real CLI


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@contextlib.contextmanager
def _running(argv: list[str], cwd: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ok(url: str, proc: subprocess.Popen[str], seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode}: {proc.stdout.read() if proc.stdout else ''}")
        with contextlib.suppress(OSError):
            status, body = _get(url)
            if status == 200:
                return body
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{url} did not answer in {seconds} s: "
                                 f"{proc.stdout.read() if proc.stdout else ''}")
        time.sleep(0.1)


def test_serve_with_its_flags_before_the_subcommand(tmp_path: Path) -> None:
    """`--storage.path X --web.listen-address A serve` listens on A and keeps its baselines in
    X: on the old code it listened on :9877 and wrote ./data."""
    cfg = offline_config(tmp_path)
    port = free_port()
    storage = tmp_path / "elsewhere"
    argv = [*EXPORTER, "--storage.path", str(storage), "--web.listen-address", f"127.0.0.1:{port}",
            "--config.file", str(cfg), "serve"]
    with _running(argv, tmp_path) as proc:
        _wait_ok(f"http://127.0.0.1:{port}/-/healthy", proc, 30)
        assert (storage / "baseline.db").exists()
    assert not (tmp_path / "data").exists()


def test_demo_honours_the_web_flags_before_and_after_it(tmp_path: Path) -> None:
    """The demo serves the --web.* flags as serve does: the health port and the telemetry
    path (the old demo ignored both), the listen address given before `demo`."""
    port, health = free_port(), free_port()
    argv = [*EXPORTER, "--web.listen-address", f"127.0.0.1:{port}", "demo",
            "--web.health-address", f"127.0.0.1:{health}", "--web.telemetry-path", "/m",
            "--demo.dir", str(tmp_path / "demo"), "--demo.regenerate-after", "600",
            "--log.level", "warn"]
    with _running(argv, tmp_path) as proc:
        _wait_ok(f"http://127.0.0.1:{health}/-/healthy", proc, 60)
        assert "tofu_exporter_shard_info" in _wait_ok(f"http://127.0.0.1:{port}/m", proc, 10)
        assert _get(f"http://127.0.0.1:{port}/metrics")[0] == 404
    assert (tmp_path / "demo" / "data" / "baseline.db").exists()


# ---------------------------------------------------------------- a shard that owns no store


def _empty_shard(name: str, total: int) -> int:
    return next(i for i in range(total) if i != owner(name, total))


def test_check_of_a_shard_that_owns_no_store_is_an_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """It printed an empty table and exited 0 ("all match") on the old code."""
    cfg = offline_config(tmp_path)
    shard = _empty_shard("pri", 1000)
    code = cli.main(["check", "--config.file", str(cfg), "--storage.path", str(tmp_path / "data"),
                     "--shard", str(shard), "--total-shards", "1000"])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert f"shard {shard} of 1000 owns none of the 1 stores in {cfg}" in err, err


async def test_serve_of_a_shard_that_owns_no_store_runs_and_says_so(tmp_path: Path) -> None:
    """Legitimate while scaling out (more replicas than stores, or an unlucky hash): the replica
    starts and is ready, and both its log and /-/ready say it watches nothing."""
    cfg = offline_config(tmp_path)
    shard = _empty_shard("pri", 3)
    exporter = Exporter(cfg, tmp_path, extra_args=("--shard", str(shard), "--total-shards", "3"))
    try:
        await exporter.start()
        status, body, _ = await exporter.get("/-/ready")
        assert status == 200
        assert f"shard {shard} of 3 owns none of the stores in {cfg}" in body, body
        metrics, _ = await exporter.metrics()
        assert samples(metrics, "tofu_exporter_shard_info") and not samples(metrics, "tofu_store_up")
        for _ in range(50):
            if "owns none of the 1 stores" in exporter.log():
                break
            await asyncio.sleep(0.1)
        assert "level=warn" in exporter.log() and "owns none of the 1 stores" in exporter.log()
    finally:
        await exporter.stop()


async def test_a_reload_that_leaves_the_shard_empty_is_logged(tmp_path: Path) -> None:
    """The warning comes again when a reload takes the shard's last store away."""
    cfg = offline_config(tmp_path)
    name = next(f"pi-{i}" for i in range(100) if owner(f"pi-{i}", 2) == 0)
    other = next(f"pi-{i}" for i in range(100) if owner(f"pi-{i}", 2) == 1)
    cfg.write_text(cfg.read_text().replace("name: pri", f"name: {name}"))
    exporter = Exporter(cfg, tmp_path, extra_args=("--shard", "0", "--total-shards", "2"))
    try:
        await exporter.start(ready=False)
        assert "watches no store" not in exporter.log()
        cfg.write_text(cfg.read_text().replace(f"name: {name}", f"name: {other}"))
        status, body = await exporter.post("/-/reload")
        assert status == 200, body
        for _ in range(50):
            if "watches no store" in exporter.log():
                break
            await asyncio.sleep(0.1)
        assert "shard 0 of 2 owns none of the 1 stores" in exporter.log(), exporter.log()
    finally:
        await exporter.stop()
