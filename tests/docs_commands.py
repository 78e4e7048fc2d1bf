"""The ``podroutes`` command lines written in README.md and docs/*.md, extracted, for the
tests that hold the docs to the CLI (``tests/unit/test_docs_commands.py`` parses every
one with the real Click command tree; ``tests/lab/test_docs_walkthrough.py`` runs the
lab walkthrough verbatim)."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^```")
_INLINE = re.compile(r"`(podroutes [^`]+)`")


@dataclass(frozen=True)
class DocCommand:
    file: str
    line: int
    text: str
    block: bool  # from a code block (a command to run), not an inline mention

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.text}"


def blocks(path: Path) -> list[list[tuple[int, str]]]:
    """Each fenced code block as (line number, logical line) pairs, ``\\`` joined."""
    out: list[list[tuple[int, str]]] = []
    current: list[tuple[int, str]] | None = None
    pending = ""
    start = 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if _FENCE.match(line.strip()):
            if current is None:
                current = []
            else:
                out.append(current)
                current = None
            continue
        if current is None:
            continue
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        current.append((start, pending + line))
        pending = ""
    return out


def commands() -> list[DocCommand]:
    found: list[DocCommand] = []
    for path in DOCS:
        name = str(path.relative_to(ROOT))
        for block in blocks(path):
            for number, line in block:
                text = line.strip().removeprefix("$ ").removeprefix("# ")
                if text.startswith("podroutes "):
                    found.append(DocCommand(name, number, text, True))
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for m in _INLINE.finditer(line):
                found.append(DocCommand(name, number, m.group(1), False))
    return found


#: What a placeholder in the docs stands for, so that the line can be parsed.
PLACEHOLDERS = {
    "N": "3", "S": "10", "SECONDS": "60", "NAME": "node-0", "HOST": "node-0",
    "MACHINE": "node-0", "FILE": "machines.txt", "F": "machines.txt", "PATH": "machines.txt",
    "KEY=VALUE": "ServerAliveInterval=5", "CMD": "true", "SRC": "10.200.0.2",
    "DST": "10.200.1.2", "LAB": "try", "IF": "eth0", "DIR": "/tmp", "ADDR": "10.200.0.2",
    "PORT": "9147", "SECS": "10", "MS": "100", "CIDR": "10.200.0.0/24", "BRIDGE": "cni0",
    "ADDRESS": "10.200.0.2", "NS": "default", "NODE": "node-0", "URL": "http://x",
    "HOST:PORT": "127.0.0.1:9147",
}


def _group(m: re.Match[str]) -> str:
    """``[--a X | --b Y]`` -> ``--a X`` (the first of alternatives); ``[--c]`` -> ``--c``."""
    return " " + re.split(r"\s\\?\|\s", m.group(1))[0] + " "


def argvs(text: str) -> list[list[str]]:
    """The words of a documented command line, ready to parse: comments, ``...`` and
    prompts dropped, optional ``[...]`` groups included (their first alternative),
    placeholders replaced; a word of alternatives (``up|down``) gives one argv per
    alternative."""
    text = re.sub(r"\.\.\.|…", " ", text)
    text = re.sub(r"\[([^\[\]]*)\]", _group, text)
    words = shlex.split(text, comments=True)[1:]  # without "podroutes"
    variants: list[list[str]] = [[]]
    for index, word in enumerate(words):
        if "=" in word and word.startswith("--"):
            key, _, value = word.partition("=")
            value = value.split("|")[0]
            word = f"{key}={PLACEHOLDERS.get(value, value)}"
        if "|" in word and not word.startswith("-"):
            choices = [c for c in word.split("|") if c]
            option_value = index > 0 and words[index - 1].startswith("-")
            if option_value:  # --format a|b|c: every choice is tried
                variants = [[*v, PLACEHOLDERS.get(c, c)] for v in variants[:1]
                            for c in choices] + variants[1:]
            else:
                variants = [[*v, c] for v in variants for c in choices]
            continue
        variants = [[*v, PLACEHOLDERS.get(word, word)] for v in variants]
    return variants
