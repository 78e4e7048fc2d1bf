"""Prose wrapping: at spaces, within the width, with a hanging indent, never inside a
quoted command."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from podroutes.core.prose import wrap

WHY = ("node-0 must forward its pods' packets (10.200.0.0/24) between cni0 and the node "
       "network; with forwarding off it drops them both ways (persist the fix with "
       "'net.ipv4.ip_forward = 1' in /etc/sysctl.d/)")


def test_a_long_explanation_fits_80_columns_with_a_hanging_indent() -> None:
    lines = wrap(WHY, 80, "      why: ")
    assert len(lines) > 1
    assert all(len(line) <= 80 for line in lines)
    assert lines[0].startswith("      why: node-0 must")
    assert all(line.startswith(" " * 11) and line[11] != " " for line in lines[1:])
    assert " ".join(line.strip() for line in lines).replace("why: ", "", 1) == WHY


def test_a_quoted_command_is_never_split() -> None:
    for width in range(40, 120):
        text = "\n".join(wrap(WHY, width, "why: "))
        assert "'net.ipv4.ip_forward = 1'" in text, width


def test_short_text_and_no_width_are_one_line() -> None:
    assert wrap("short", 80, "why: ") == ["why: short"]
    assert wrap(WHY, None, "why: ") == ["why: " + WHY]


@given(st.lists(st.text(alphabet="abcdefgh'", min_size=1, max_size=12), max_size=40),
       st.integers(min_value=30, max_value=120))
def test_words_survive_in_order(words: list[str], width: int) -> None:
    text = " ".join(words)
    lines = wrap(text, width, "x: ")
    assert " ".join(line[3:] if i == 0 else line.strip()
                    for i, line in enumerate(lines)).split() == text.split()
