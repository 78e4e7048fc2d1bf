"""What human output costs: ``podroutes plan`` as a table against ``--format json``, end
to end as a user runs it (a fresh process each time, output to a file), on generated
31- and 300-host inventories, in alternating runs; and the table renderers alone, in
process: Rich's table against the plain one podroutes uses above ``RICH_ROWS`` rows.

    python benchmarks/output.py [--runs 5] [--lab NAME]

With ``--lab NAME`` (root; a lab that is up and applied, e.g. ``podroutes lab up --name
NAME --nodes 30`` then an apply), also ``status``, a no-op ``apply`` and ``doctor`` from
the lab's jumpbox, each with its human output against ``--json``, alternating, warm (the
ssh masters of connection reuse live: one untimed round opens them).

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


def on_lab(lab: str, command: str, *extra: str) -> float:
    d = f"/run/podroutes/lab/{lab}"
    argv = ["ip", "netns", "exec", f"{lab}-jumpbox", sys.executable, "-m", "podroutes",
            command, "-i", f"{d}/machines.txt", "--ssh-config", f"{d}/ssh_config",
            "--ssh-target", "hostname", *extra]
    start = time.perf_counter()
    with open("/dev/null", "w") as sink:
        done = subprocess.run(argv, stdout=sink, stderr=subprocess.PIPE, text=True,
                              env={"COLUMNS": "120", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    if done.returncode not in (0, 3):
        raise SystemExit(f"{command} failed ({done.returncode}): {done.stderr}")
    return time.perf_counter() - start


def lab_figures(lab: str, runs: int) -> None:
    for command in ("status", "apply", "doctor"):
        on_lab(lab, command, "--json")  # opens the masters
        human, json_ = [], []
        for _ in range(runs):
            human.append(on_lab(lab, command))
            json_.append(on_lab(lab, command, "--json"))
        h, j = statistics.median(human), statistics.median(json_)
        print(f"lab {lab}: {command} human {h:.3f} s, --json {j:.3f} s, human output adds "
              f"{h - j:+.3f} s (medians of {runs}, alternating, warm)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--lab", help="also time status/apply/doctor on this lab")
    args = parser.parse_args()
    if args.lab:
        lab_figures(args.lab, args.runs)
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
