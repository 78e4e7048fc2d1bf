"""How long podroutes takes to detect and report a dead host (root; builds its own lab).

Run: .venv/bin/python benchmarks/dead_host.py --runs 5 --timeout 3

Three cases, each a full `podroutes apply` from the lab's jumpbox on server, node-0 and
node-1, where node-1 is: stopped sshd (connection refused), an address nobody answers
(ARP fails: no route to host), or an sshd that hangs (SIGSTOP: no banner; --timeout).
Prints the median wall time of each case and of a healthy no-op apply, for comparison.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from podroutes.lab import netns as labmod


def apply(spec: labmod.LabSpec, inventory: str, timeout: float) -> float:
    argv = ["ip", "netns", "exec", spec.namespace("jumpbox"), sys.executable, "-m",
            "podroutes", "apply", "-i", inventory, "--ssh-config",
            str(spec.directory / "ssh_config"), "--timeout", str(timeout)]
    started = time.monotonic()
    subprocess.run(argv, capture_output=True, check=False)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args()
    spec = labmod.up(labmod.LabSpec(name="prt" + secrets.token_hex(3), pods_per_node=1))
    try:
        good = str(spec.directory / "machines.txt")
        ghost = spec.directory / "ghost.txt"
        ghost.write_text(Path(good).read_text().replace("192.168.10.102 ",
                                                        "192.168.10.150 "))
        results: dict[str, list[float]] = {"healthy no-op": [], "connection refused": [],
                                           "no answer (ARP)": [], "hanging sshd": []}
        apply(spec, good, args.timeout)
        for _ in range(args.runs):
            results["healthy no-op"].append(apply(spec, good, args.timeout))
            results["no answer (ARP)"].append(apply(spec, str(ghost), args.timeout))
            pid = labmod.sshd_pid(spec, "node-1")
            assert pid is not None
            os.kill(pid, signal.SIGSTOP)
            try:
                results["hanging sshd"].append(apply(spec, good, args.timeout))
            finally:
                os.kill(pid, signal.SIGCONT)
            labmod.stop_sshd(spec, "node-1")
            results["connection refused"].append(apply(spec, good, args.timeout))
            labmod.start_sshd(spec, "node-1")
        for case, times in results.items():
            print(f"{case:20s} median {statistics.median(times):.2f} s "
                  f"(min {min(times):.2f}, max {max(times):.2f}, n={len(times)}, "
                  f"--timeout {args.timeout:g})")
    finally:
        labmod.down(spec)
    return 0


if __name__ == "__main__":
    sys.exit(main())
