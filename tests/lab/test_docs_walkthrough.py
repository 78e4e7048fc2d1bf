"""docs/lab.md's "Try it" walkthrough, run line by line as written (only the lab names
are made unique to this run), with the console script on PATH as the README's quick
start leaves it: each line must do what its comment says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from podroutes.lab import netns as labmod

from ..docs_commands import ROOT, blocks
from .conftest import unique_name

pytestmark = pytest.mark.lab


def walkthrough() -> list[tuple[int, str]]:
    block = next(b for b in blocks(ROOT / "docs" / "lab.md")
                 if any("lab up --name try" in line for _, line in b))
    return [(n, line.strip()) for n, line in block if line.strip()]


def test_the_lab_walkthrough_runs_as_written() -> None:
    names = {"try": unique_name(), "ds": unique_name()}
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    lines = walkthrough()
    assert len(lines) >= 10
    try:
        for number, line in lines:
            for old, new in names.items():
                line = re.sub(rf"(--name |/lab/){old}\b", rf"\g<1>{new}", line)
            assert "--name try" not in line and "--name ds " not in line
            done = subprocess.run(["bash", "-c", line], capture_output=True, text=True,
                                  env=env, timeout=300, check=False)
            where = f"docs/lab.md:{number}: {line}\n{done.stdout}{done.stderr}"
            if "pairs fail" in line:
                assert done.returncode != 0 and "✗" in done.stdout, where
            else:
                assert done.returncode == 0, where
            if "all pass" in line or "both matrices pass" in line:
                assert "✗" not in done.stdout, where
            if "ip -6 route" in line:
                assert "via fd00" in done.stdout, where
            elif line.endswith("-- ip route"):
                assert "proto 147" in done.stdout, where
    finally:
        labmod.down(labmod.LabSpec(name=names["try"], nodes=3))
        labmod.down(labmod.LabSpec(name=names["ds"], dual_stack=True))
