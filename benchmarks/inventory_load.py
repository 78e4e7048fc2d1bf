"""Inventory loading at scale: a machines.txt of N hosts read, parsed and validated
(issue 18: 10,000 hosts in under 0.2 s, memory linear in hosts).

Pure Python, no root, no namespaces. Writes one throwaway machines.txt per size under a
temporary directory (deleted at the end): ``node-0`` plus N nodes, each
``192.168.X.Y nI.k node-I 10.A.B.0/24``, the layout ``benchmarks/local_apply.py`` uses.
Each measurement runs in a fresh child process (``python -c``) whose ``PYTHONPATH`` is
the tree measured, so ``--baseline SRC`` (another checkout's ``src``) is timed
alternately with this tree's, child after child, rotating which goes first:

- load: ``podroutes.cli.options.read_inventory(PATH)``, what every command does first
  (read the file, decode, parse, validate every rule), timed ``--runs`` times per child
  with the cyclic GC as the CLI has it (on);
- memory: ``tracemalloc``'s peak during one load, and the size of what stays alive
  (the :class:`Inventory`), at each size of ``--sizes``, to show it grows linearly.

Run from the repository root:

    .venv/bin/python benchmarks/inventory_load.py --hosts 10000 --runs 9 --children 3 \\
        [--baseline /path/to/other/src]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")

CHILD = r"""
import gc, json, sys, time, tracemalloc
from podroutes.cli.options import read_inventory
path, runs, sizes = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
times = []
for _ in range(runs):
    start = time.perf_counter()
    inventory = read_inventory(path)
    times.append(time.perf_counter() - start)
    del inventory
memory = {}
for size, sized in sizes:
    gc.collect()
    tracemalloc.start()
    inventory = read_inventory(sized)
    alive, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    memory[size] = {"peak": peak, "alive": alive, "hosts": len(inventory.hosts)}
    del inventory
print(json.dumps({"times": times, "memory": memory}))
"""


def machines(n: int) -> str:
    lines = ["192.168.0.1 node-0.k node-0 10.250.0.0/24"]
    lines += [f"192.168.{1 + i // 250}.{1 + i % 250} n{i + 1}.k node-{i + 1} "
              f"10.{i // 256}.{i % 256}.0/24" for i in range(n)]
    return "\n".join(lines) + "\n"


def child(src: str, path: Path, runs: int, sizes: list[tuple[int, str]]) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": src}
    done = subprocess.run([sys.executable, "-c", CHILD, str(path), str(runs), json.dumps(sizes)],
                          capture_output=True, text=True, env=env, check=False, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"child for {src} failed: {done.stderr[-800:]}")
    result: dict[str, object] = json.loads(done.stdout)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=9, help="loads timed per child")
    parser.add_argument("--children", type=int, default=3, help="child processes per tree")
    parser.add_argument("--sizes", default="1000,2000,5000,10000",
                        help="host counts for the memory figures")
    parser.add_argument("--baseline", help="another tree's src/ to time alternately")
    args = parser.parse_args()
    trees = {"this tree": SRC} | ({"baseline": args.baseline} if args.baseline else {})
    with tempfile.TemporaryDirectory(prefix="inventory-load-") as tmp:
        path = Path(tmp) / f"machines-{args.hosts}.txt"
        path.write_text(machines(args.hosts))
        sizes = []
        for size in sorted({int(s) for s in args.sizes.split(",") if s}):
            sized = Path(tmp) / f"machines-{size}.txt"
            sized.write_text(machines(size))
            sizes.append((size, str(sized)))
        times: dict[str, list[float]] = {name: [] for name in trees}
        memory: dict[str, dict[str, dict[str, int]]] = {}
        for round_no in range(args.children):
            order = list(trees.items())
            order = order[round_no % len(order):] + order[:round_no % len(order)]
            for name, src in order:
                result = child(src, path, args.runs, sizes if round_no == 0 else [])
                times[name] += result["times"]  # type: ignore[arg-type]
                if round_no == 0:
                    memory[name] = result["memory"]  # type: ignore[assignment]
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print(f"{args.hosts + 1} hosts (node-0 + {args.hosts}), read_inventory(PATH), "
          f"{args.children} children x {args.runs} loads per tree, alternating; "
          f"{os.cpu_count()} cores, load average after: {load}")
    medians = {}
    for name, values in times.items():
        medians[name] = statistics.median(values)
        print(f"  {name:10} median {medians[name] * 1000:7.1f} ms  (min {min(values) * 1000:.1f},"
              f" max {max(values) * 1000:.1f})")
    if "baseline" in medians:
        print(f"  this tree / baseline: {medians['this tree'] / medians['baseline']:.2f}x")
    for name, table in memory.items():
        print(f"  memory, {name}:")
        for size, m in table.items():
            print(f"    {int(size):6} hosts: peak {m['peak'] / 1e6:6.1f} MB "
                  f"({m['peak'] / int(size):6.0f} B/host), inventory alive "
                  f"{m['alive'] / 1e6:6.1f} MB ({m['alive'] / int(size):6.0f} B/host)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
