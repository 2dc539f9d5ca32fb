"""Large listings: capped while parsing, read in blocks, the SSH text sliced not split."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.sources.prime import listing
from exporter.sources.prime.listing import parse_capped, parse_listing
from exporter.sources.prime.ssh import strip_echo_and_prompt

pytestmark = pytest.mark.unit

LINE = "host=10.{a}.{b}.{c}_8082;  subject= /C=US/O=Cisco Systems/CN=peer-{i}\n\n"


def _text(n: int) -> str:
    return "".join(LINE.format(a=i // 62500, b=i // 250 % 250, c=i % 250, i=i) for i in range(n))


def test_cap_while_parsing_keeps_the_first_entries_and_counts_the_rest() -> None:
    text = _text(12_000) + "host=junk; subject=\n"
    kept, beyond = parse_capped(text, 5000)
    assert len(kept.entries) == 5000 and beyond == 7000
    assert kept.entries[-1].key == "10.0.19.249_8082"  # print order: the first 5000
    assert kept.bad_lines == ("host=junk; subject=",)  # bad lines past the cap still show
    everything = parse_listing(text)
    assert everything.entries[:5000] == kept.entries and len(everything.entries) == 12_000
    assert parse_capped(text, None) == (everything, 0)


def test_equal_subject_parts_are_shared_between_entries() -> None:
    entries = parse_listing(_text(3)).entries
    assert entries[0].subject[1] is entries[2].subject[1]  # ("O", "Cisco Systems"): one object
    assert entries[0].subject[2] == ("CN", "peer-0") and entries[2].subject[2] == ("CN", "peer-2")


_ENDS = st.text(alphabet=st.sampled_from(list("ab \t\r\n\x0b\x0c\x1c\x85\u2028=;")), max_size=80)


@settings(max_examples=300, deadline=None)
@given(_ENDS)
def test_block_reader_splits_exactly_like_splitlines(text: str) -> None:
    old = listing._BLOCK
    listing._BLOCK = 3  # many blocks, boundaries everywhere
    try:
        assert list(listing._lines(text)) == text.splitlines()
    finally:
        listing._BLOCK = old


def _reference_strip(output: str, command: str, prompt: re.Pattern[str]) -> str:
    """The line-list version the sliced one replaced (and must equal)."""
    lines = output.split("\n")
    if lines and lines[0].strip().endswith(command.strip()):
        lines = lines[1:]
    while lines and (not lines[-1].strip() or prompt.fullmatch(lines[-1].strip())):
        lines.pop()
    return "\n".join(lines)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(["pi/admin# ls", "pi/admin#", "", "  ", "host=a_1", "x ls"]),
                max_size=8))
def test_strip_echo_and_prompt_slices_like_the_line_version(lines: list[str]) -> None:
    prompt = re.compile(re.escape("pi/admin#"))
    for text in ("\n".join(lines), "\n".join(lines) + "\n"):
        assert strip_echo_and_prompt(text, "ls", prompt) == _reference_strip(text, "ls", prompt)


@pytest.mark.parametrize("n", [1, 2])
def test_strip_keeps_a_listing_without_echo_or_prompt(n: int) -> None:
    text = _text(n).rstrip("\n")
    assert strip_echo_and_prompt(text, "ls", re.compile("x#")) == text
