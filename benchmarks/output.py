"""What human output costs: ``podroutes plan`` as a table against ``--format json``, end
to end as a user runs it (a fresh process each time, output to a file), on generated
31- and 300-host inventories, in alternating runs; and the table renderers alone, in
process: Rich's table against the plain one podroutes uses above ``RICH_ROWS`` rows.

    python benchmarks/output.py [--runs 5]

Prints medians. The CLI figures include interpreter start-up, imports, reading and
validating the inventory and building the plan; their difference is the human output's
cost. Nothing here needs root or touches the network.
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from podroutes.cli import plan_output as render
from podroutes.cli.tables import Column, plain_lines, widths_of
from podroutes.core.plan import plan
from podroutes.inventory import load


def inventory(hosts: int) -> str:
    lines = ["192.168.0.1 server.kubernetes.local server"]
    for i in range(hosts - 1):
        lines.append(f"192.168.{1 + i // 250}.{1 + i % 250} node-{i}.kubernetes.local node-{i} "
                     f"10.{200 + i // 256}.{i % 256}.0/24")
    return "\n".join(lines) + "\n"


def cli(path: Path, *extra: str) -> float:
    start = time.perf_counter()
    with open("/dev/null", "w") as sink:
        subprocess.run([sys.executable, "-m", "podroutes", "plan", "-i", str(path), *extra],
                       stdout=sink, check=True, env={"COLUMNS": "120", "PATH": "/usr/bin:/bin"})
    return time.perf_counter() - start


def in_process(hosts: int) -> tuple[float, float, int]:
    rows = render.plan_rows(plan(load(inventory(hosts), "bench.txt")))
    columns = (Column("host"), Column("destination"), Column("gateway"), Column("meaning"))
    if len(rows) > 5000:  # Rich needs about a minute for 90,000 rows: not measured
        rich = float("nan")
    else:
        start = time.perf_counter()
        _rich(columns, rows)
        rich = time.perf_counter() - start
    start = time.perf_counter()
    "".join(plain_lines(columns, widths_of(columns, rows), rows, 120, 0))
    return rich, time.perf_counter() - start, len(rows)


def _rich(columns: tuple[Column, ...], rows: list[tuple[str, str, str, str]]) -> float:
    table = Table(title="t")
    for c in columns:
        table.add_column(c.header)
    for row in rows:
        table.add_row(*row)
    Console(file=io.StringIO(), width=120).print(table)
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for hosts in (31, 300):
            path = Path(tmp) / f"machines-{hosts}.txt"
            path.write_text(inventory(hosts))
            table, json_ = [], []
            for _ in range(args.runs):  # alternating, so load changes hit both alike
                table.append(cli(path))
                json_.append(cli(path, "--format", "json"))
            t, j = statistics.median(table), statistics.median(json_)
            rich, plain, rows = in_process(hosts)
            print(f"{hosts} hosts ({rows} rows): plan table {t:.3f} s, --format json {j:.3f} s, "
                  f"human output adds {t - j:+.3f} s; in process: Rich table {rich:.3f} s, "
                  f"plain {plain:.4f} s")


if __name__ == "__main__":
    main()
