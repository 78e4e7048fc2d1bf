"""A huge plan says its size before streaming, and streams only with --full; the table
summarises per host."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from podroutes.cli.main import STREAM_ROUTE_LIMIT, main


def _inventory(tmp_path: Path, nodes: int) -> Path:
    path = tmp_path / "machines.txt"
    path.write_text("".join(f"10.{i // 250}.{i % 250}.1 n{i}.k n{i} "
                            f"10.{100 + i // 256}.{i % 256}.0/24\n" for i in range(nodes)))
    return path


def test_a_plan_above_the_limit_says_its_size_and_needs_full(tmp_path: Path) -> None:
    path = _inventory(tmp_path, 1001)  # 1001 * 1000 routes: just above the limit
    assert STREAM_ROUTE_LIMIT < 1001 * 1000
    done = CliRunner().invoke(main, ["plan", "-i", str(path), "--format", "batch"])
    assert done.exit_code == 2
    assert "1,001 hosts need 1,001,000 routes" in done.output and "--full" in done.output
    assert "route add" not in done.output
    table = CliRunner().invoke(main, ["plan", "-i", str(path)])
    assert table.exit_code == 0 and "one row per host" in table.output


def test_below_the_limit_or_with_full_it_streams(tmp_path: Path) -> None:
    small = _inventory(tmp_path, 3)
    done = CliRunner().invoke(main, ["plan", "-i", str(small), "--format", "batch"])
    assert done.exit_code == 0 and done.output.count("route add") == 6
