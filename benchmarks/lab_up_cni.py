"""``lab up`` with each node's KTHW 10-bridge.conf and the bridge plugin's ipMasq rules:
what they add to building a lab (issue 17: "keep lab up fast").

Times whole processes, ``python -m podroutes lab up --name prt<hex> --nodes N``, in three
variants, alternating with the order rotating round by round: ``--baseline SRC`` (the
``src`` of a tree before the change: no CNI file, no nat rules), this tree with
``--no-ipmasq`` (the 10-bridge.conf only) and this tree as is (10-bridge.conf and one
``iptables-restore --noflush`` per node, all nodes at once). Each timed ``lab up`` is
followed by an untimed ``lab down`` of the same name; ``--warmup`` untimed rounds first,
then the median (and min/max) of ``--runs`` rounds, and the ratios of the medians.

With ``--step-runs N`` it also times the ipMasq step alone, in process: N times, a lab
built with ``--no-ipmasq`` (untimed), then ``podroutes.lab.netns._ipmasq`` (every node's
``iptables-restore``) timed, then the lab removed.

Run as root from the repository root: ``python benchmarks/lab_up_cni.py --baseline
/path/to/old/src [--nodes 30] [--runs 5]``. Only labs this script names (``prt`` + 6 random
hex digits) are made, and each is removed by name, also on failure.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent / "src"


def run(src: Path, *args: str) -> float:
    env = dict(os.environ, PYTHONPATH=str(src))
    name = "prt" + secrets.token_hex(3)
    start = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-m", "podroutes", "lab", "up", "--name", name,
                               *args], env=env, capture_output=True, text=True, check=False)
        took = time.monotonic() - start
        if done.returncode != 0:
            raise SystemExit(f"lab up failed: {done.stderr}")
        return took
    finally:
        subprocess.run([sys.executable, "-m", "podroutes", "lab", "down", "--name", name],
                       env=env, capture_output=True, check=False)


def step(src: Path, nodes: int, runs: int) -> None:
    sys.path.insert(0, str(src))
    from podroutes.lab import netns  # this tree's, not an installed one

    took = []
    for _ in range(runs):
        spec = netns.up(netns.LabSpec(name="prt" + secrets.token_hex(3), nodes=nodes,
                                      ipmasq=False))
        try:
            start = time.monotonic()
            netns._ipmasq(spec, spec.machines(), spec.pods())
            took.append(time.monotonic() - start)
        finally:
            netns.down(spec)
    print(f"ipMasq step alone, {nodes} nodes x 2 pods: median {statistics.median(took):.3f} s "
          f"(min {min(took):.3f}, max {max(took):.3f}; {runs} runs; load average "
          f"{os.getloadavg()[0]:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True)
    parser.add_argument("--src", type=Path, default=HERE)
    parser.add_argument("--nodes", type=int, default=30)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--step-runs", type=int, default=0)
    opts = parser.parse_args()
    if opts.step_runs:
        step(opts.src, opts.nodes, opts.step_runs)
    nodes = ("--nodes", str(opts.nodes))
    variants = {"before (baseline)": (opts.baseline, nodes),
                "10-bridge.conf, --no-ipmasq": (opts.src, (*nodes, "--no-ipmasq")),
                "10-bridge.conf + ipMasq rules": (opts.src, nodes)}
    names = list(variants)
    times: dict[str, list[float]] = {n: [] for n in names}
    for round_ in range(opts.warmup + opts.runs):
        order = names[round_ % len(names):] + names[:round_ % len(names)]
        for name in order:
            src, args = variants[name]
            took = run(src, *args)
            if round_ >= opts.warmup:
                times[name].append(took)
                print(f"round {round_ - opts.warmup + 1}: {name}: {took:.2f} s", flush=True)
    if not opts.runs:
        return
    medians = {n: statistics.median(t) for n, t in times.items()}
    print(f"\nlab up --nodes {opts.nodes}, {opts.runs} runs each, load average "
          f"{os.getloadavg()[0]:.2f}:")
    for n in names:
        print(f"  {n}: median {medians[n]:.2f} s (min {min(times[n]):.2f}, "
              f"max {max(times[n]):.2f})")
    base = medians[names[0]]
    for n in names[1:]:
        print(f"  {n} / before: {medians[n] / base:.2f}x")


if __name__ == "__main__":
    main()
