"""Fuzzing the two parsers that eat outside input: PI's listcerts output and the config file.

Short runs are in the default suite; the long run (>= 100k inputs in all) is
    python -m pytest -m slow tests/test_fuzz.py
tests/test_listing.py holds the basic listing properties; these go further: garbage that
mentions entry syntax, arbitrary bytes, and the config loader.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from exporter.config.load import load_config, parse_config
from exporter.config.model import Config, ConfigError
from exporter.core.model import StoredEntry
from exporter.sources.prime.listing import parse_listing
from tests.kit.builders import entry_lines

# Inputs per run; the listing-with-garbage examples are the expensive ones (~25 ms each).
SHORT = {"listing_garbage": 300, "listing_bytes": 3000, "config_tree": 1500, "config_text": 1000}
LONG = {"listing_garbage": 20_000, "listing_bytes": 50_000, "config_tree": 25_000, "config_text": 10_000}
# CI runs the long set trimmed to fit its budget (.ci/run: TOFU_SLOW_SCALE=0.25, docs/engineering/testing.md).
LONG = {k: max(1, round(n * float(os.environ.get("TOFU_SLOW_SCALE", "1")))) for k, n in LONG.items()}
_COMMON = {"deadline": None, "suppress_health_check": list(HealthCheck), "derandomize": False}

# Garbage lines: anything without a line break, biased towards what confuses a parser:
# entry syntax, ANSI and pager remnants, control bytes, invalid-decoding debris.
_FRAGMENTS = st.sampled_from([
    "host=", "HOST =", "subject=", "subject= /CN=", "; ", "_", "_443", "\x1b[", "\x1b[0m", "\x1b]0;",
    " --More-- ", "\x08\x08", "\x00", "\ufffd", "prime-pri/admin#", "=", "/", ",", "\\", '"', "10.0.0.1",
])
_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # everything str.splitlines splits on
_NO_BREAK = st.characters(blacklist_categories=("Cs",), blacklist_characters=_BREAKS)
_GARBAGE_LINE = st.lists(st.one_of(_FRAGMENTS, st.text(_NO_BREAK, max_size=12)), max_size=8).map("".join)


def _check_garbage(good: list[tuple[str, StoredEntry]], garbage: list[str], seed: int, eol: str) -> None:
    rnd = random.Random(seed)
    lines = [line for line, _ in good]
    for g in garbage:
        lines.insert(rnd.randint(0, len(lines)), g)
    listing = parse_listing(eol.join(lines))
    want = [e for _, e in good]
    got = list(listing.entries)
    # Every well-formed line survives, in order; garbage may add an entry only when it is
    # itself a well-formed entry line, never remove or alter one.
    it = iter(got)
    assert all(any(g == w for g in it) for w in want), (want, got)
    extra = len(got) - len(want)
    assert 0 <= extra <= sum("host" in g.lower() for g in garbage)


def _garbage_test(n: int) -> Any:
    @settings(max_examples=n, **_COMMON)  # type: ignore[arg-type]
    @given(
        st.lists(entry_lines(), max_size=6, unique_by=lambda le: le[1].key),
        st.lists(_GARBAGE_LINE, max_size=8).filter(
            # a garbage line that is a valid entry for a good key would legitimately shadow it
            lambda gs: not any("host" in g.lower() and parse_listing(g).entries for g in gs)
        ),
        st.integers(0, 2**32),
        st.sampled_from(["\n", "\r\n", "\r", "\r\r\n"]),
    )
    def run(good: list[tuple[str, StoredEntry]], garbage: list[str], seed: int, eol: str) -> None:
        _check_garbage(good, garbage, seed, eol)

    return run


def _bytes_test(n: int) -> Any:
    @settings(max_examples=n, **_COMMON)  # type: ignore[arg-type]
    @given(st.binary(max_size=400), st.sampled_from(["utf-8", "latin-1"]))
    def run(raw: bytes, codec: str) -> None:
        listing = parse_listing(raw.decode(codec, errors="replace"))
        for e in listing.entries:
            assert 1 <= e.port <= 65535 and e.subject and e.key
        assert len({e.key for e in listing.entries}) == len(listing.entries)

    return run


# --- config -----------------------------------------------------------------------------------

_KEYS = [
    "defaults", "stores", "pins", "endpoints", "pairs", "probe_concurrency", "name", "host", "port",
    "username", "password_file", "password_env", "private_key_file", "known_hosts", "cli_mode",
    "connect_timeout", "command_timeout", "store_interval", "prompt", "max_entries", "endpoint",
    "sha256", "sni", "connect", "primary", "secondary", "self_address", "listcerts_command",
]
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
    st.text(max_size=20), st.sampled_from(["5m", "1h30m", "0s", "-1s", "exec", "shell", "[", "(?P<",
                                           "10.0.0.1:443", "[::1]:22", "a" * 64, "known_hosts"]),
)
_TREES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(_KEYS), st.text(max_size=8), st.integers()),
                        inner, max_size=5),
    ),
    max_leaves=25,
)


def _config_tree_test(n: int, base: Path) -> Any:
    @settings(max_examples=n, **_COMMON)  # type: ignore[arg-type]
    @given(_TREES)
    @example({"stores": [None]})  # found by the long run: was a valid config with no stores
    @example({"stores": [{}]})
    def run(tree: object) -> None:
        try:
            cfg = parse_config(tree, "fuzz.yml", base)
        except ConfigError as e:
            assert e.problems and all(isinstance(p, str) and p for p in e.problems)
        else:
            assert isinstance(cfg, Config) and cfg.stores

    return run


def _config_text_test(n: int, path: Path) -> Any:
    @settings(max_examples=n, **_COMMON)  # type: ignore[arg-type]
    @given(st.one_of(
        st.binary(max_size=300),
        _TREES.map(lambda t: yaml.safe_dump(t).encode()),
        st.text(max_size=300).map(str.encode),
    ))
    def run(raw: bytes) -> None:
        path.write_bytes(raw)
        try:
            load_config(path)
        except ConfigError as e:
            assert e.problems and str(path) in str(e)

    return run


@pytest.fixture(scope="module")
def base() -> Any:
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / "known_hosts").write_text("")
        (root / "pw").write_text("x\n")
        yield root


@pytest.mark.parametrize("kind", list(SHORT))
def test_fuzz_short(kind: str, base: Path) -> None:
    _run(kind, SHORT[kind], base)


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("kind", list(LONG))
def test_fuzz_long(kind: str, base: Path) -> None:
    _run(kind, LONG[kind], base)


def _run(kind: str, n: int, base: Path) -> None:
    if kind == "listing_garbage":
        _garbage_test(n)()
    elif kind == "listing_bytes":
        _bytes_test(n)()
    elif kind == "config_tree":
        _config_tree_test(n, base)()
    else:
        _config_text_test(n, base / "fuzz.yml")()
