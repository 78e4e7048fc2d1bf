"""The table layer: COLUMNS honoured for pipes, long tables as plain text (linear),
optional columns dropped rather than cells cut, and apply's result column never cut at
80 columns."""

from __future__ import annotations

import io
from ipaddress import ip_address, ip_network

import pytest
from rich.console import Console

from podroutes.cli import options
from podroutes.cli.apply_output import print_apply
from podroutes.cli.tables import RICH_ROWS, Column, fitting, plain_lines, print_table, widths_of
from podroutes.core.diff import diff
from podroutes.core.model import Host, PlannedRoute, Route
from podroutes.core.outcome import HostOutcome


def test_columns_is_honoured_for_pipes(monkeypatch: pytest.MonkeyPatch) -> None:
    pipe = io.StringIO()
    monkeypatch.setenv("COLUMNS", "80")
    assert options.width(pipe) == 80
    monkeypatch.setenv("COLUMNS", "junk")
    assert options.width(pipe) == options.PIPE_WIDTH
    monkeypatch.delenv("COLUMNS")
    assert options.width(pipe) == options.PIPE_WIDTH


def test_long_tables_are_plain_aligned_text() -> None:
    columns = (Column("host"), Column("n", right=True), Column("meaning", optional=True))
    rows = [("node-0" if i < 60 else "node-1", str(i), "x" * 30) for i in range(RICH_ROWS + 20)]
    out = Console(file=io.StringIO(), width=80)
    print_table(out, "title", columns, rows, first_only=0)
    text = out.file.getvalue()  # type: ignore[attr-defined]
    lines = text.splitlines()
    assert lines[0] == "title" and lines[1].split() == ["host", "n", "meaning"]
    assert lines[3].startswith("node-0") and lines[4].startswith("      ")  # host named once
    assert "┃" not in text and len(lines) == len(rows) + 3
    narrow = list(plain_lines(columns, widths_of(columns, rows), rows, 20))
    assert narrow[0].split() == ["host", "n"]  # the optional column went, nothing was cut


def test_fitting_drops_optional_columns_last_first() -> None:
    columns = (Column("a"), Column("b", optional=True), Column("c", optional=True))
    assert fitting(columns, [10, 10, 10], 100) == [0, 1, 2]
    assert fitting(columns, [10, 10, 10], 25) == [0, 1]
    assert fitting(columns, [10, 10, 10], 5) == [0]


def test_apply_results_are_never_cut_at_80_columns() -> None:
    want = [PlannedRoute(ip_network("10.200.1.0/24"), ip_address("192.168.10.102"), "node-1")]
    foreign = Route(dst=ip_network("10.200.1.0/24"), gateway=ip_address("192.168.10.100"),
                    protocol=4)
    outcomes = []
    for name, observed in (("worker-node-10", [foreign]), ("node-1", [])):
        host = Host(name, f"{name}.k", (ip_address("192.168.10.101"),), ())
        before = diff(want, observed, 147)
        outcomes.append(HostOutcome(host, before=before, after=before if observed else
                                    diff(want, [Route(dst=want[0].dst, gateway=want[0].gateway,
                                                      protocol=147)], 147)))
    out = Console(file=io.StringIO(), width=80, record=True)
    print_apply(out, outcomes, dry_run=False)
    text = out.export_text()
    assert "…" not in text, text
    assert "conflict left alone" in text and "worker-node-10" in text, text
    assert all(len(line) <= 80 for line in text.splitlines())
