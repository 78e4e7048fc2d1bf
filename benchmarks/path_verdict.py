"""Path verdicts: what judging the kernel's path costs status, doctor and the agent.

Since 7ee0016 ("Verdicts follow the kernel") a host's read carries, in the SAME round
trip as its main tables, :func:`podroutes.core.paths.path_commands`: a shell script
printing ``ip -j rule`` for both families and every non-main table a rule looks up, and
(when confirming) one ``ip -j -force -batch -`` of ``route get ADDR`` for 2 sample
addresses per destination (every planned route plus the host's own pod CIDR). Two modes:

Local (the default). Builds a throwaway namespace (``prt<hex>-verdict``): a veth ``eth0``
(peer up) holding 192.168.10.101 (/24 when the node addresses fit in 192.168.10.0/24,
else /16, so every gateway is on-link), a bridge ``cni0`` with 10.200.0.1/24, up (with
one veth port, up, so the bridge has a carrier as a node with pods has), forwarding on.
The inventory is KTHW-shaped: ``server`` (192.168.10.100, no pod CIDR), ``node-0`` (this
host, 10.200.0.0/24 on ``cni0``) and N other nodes, so node-0 has exactly N planned
routes. The routes are installed once (``run_hosts(write=True)``), then, per size, inside
the namespace (this script again under ``ip netns exec``):

- in process, ``run_hosts(LocalTransport(), plan, 147, write=False, only=["node-0"],
  judge=..., confirm=...)`` (``status --local``'s read, without the CLI's start-up and
  output; the plan is built before the clock starts; no ``RouteCache``): ``judge=False``
  (the read alone, what status did before the verdicts), ``judge=True, confirm=False`` (the agent's:
  rules and other tables, the model's verdict), ``judge=True, confirm=True`` (status and
  doctor: also ``ip route get`` of 2 samples per destination). One untimed warm-up round,
  then ``--runs`` rounds, the order rotating round by round; every run must find the
  table in sync and (when judging) no path issue, or the script stops;
- the host's side alone, for reference: ``sh -c TABLES_SCRIPT`` and ``ip -j -force
  -batch -`` of the same ``route get`` lines, each a subprocess of its own;
- end to end, ``python -m podroutes status --local --host node-0 -i FILE`` (whole CLI:
  Python start-up, imports, inventory, plan, the read, output to a pipe), this tree
  (``PYTHONPATH`` set to ``--src``) against ``--baseline SRC`` (the ``src`` of the last commit
  before the verdicts, checked out with ``git worktree add``), alternating, median of
  ``--cli-runs``; both must exit 0.

Lab (``--lab``). Builds a ``prt<hex>`` lab of ``--lab-nodes`` nodes (one pod each), runs
``podroutes apply`` from the jumpbox, then times from the jumpbox (``ip netns exec
LAB-jumpbox``) ``python -m podroutes doctor -i machines.txt --ssh-config ssh_config
--ssh-target hostname`` (and ``doctor --probe``) with this tree against ``doctor`` with
``--baseline SRC``, whole processes, alternating (order rotating), ``--lab-warmup``
untimed rounds, then the median of ``--lab-runs``. Every run is printed with its exit
status, its findings when it has any, and how often the kernel's neighbour (ARP) table
overflowed meanwhile (``table_fulls`` of ``/proc/net/stat/arp_cache``): that table is
shared by every namespace and capped (``gc_thresh3``, 1024 on this machine kind; a
root-namespace setting, left alone); a 30-node lab's probe needs ~960 entries, so the
first probes (or another lab on the machine) can overflow it; those pings go unanswered
and the probe waits them out. The medians are printed over all timed runs and over
those that exited 0 without an overflow. The lab is removed at the end, also on failure.

Run as root from the repository root (only namespaces this script makes are touched, and
they are deleted by name at the end, also on failure). "This tree" is ``--src`` (default:
this repository's ``src/``, uncommitted changes included; a worktree pins a commit):

    git worktree add /tmp/verdicts HEAD && git worktree add /tmp/preverdict 7ee0016~1
    .venv/bin/python benchmarks/path_verdict.py --routes 30 1000 5000 --runs 9 \\
        --cli-routes 30 5000 --cli-runs 9 --src /tmp/verdicts/src \\
        --baseline /tmp/preverdict/src
    .venv/bin/python benchmarks/path_verdict.py --lab --lab-nodes 30 --lab-runs 5 \\
        --lab-warmup 3 --src /tmp/verdicts/src --baseline /tmp/preverdict/src
    git worktree remove /tmp/verdicts && git worktree remove /tmp/preverdict
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from podroutes.core.paths import TABLES_SCRIPT, destinations, samples
from podroutes.core.plan import RoutePlan, plan
from podroutes.inventory import load
from podroutes.remote.engine import run_hosts
from podroutes.remote.transport import LocalTransport

OWN = 147
REPO_SRC = Path(__file__).resolve().parent.parent / "src"
#: Node addresses in 192.168.10.0/24 up to this many other nodes (.102-.250), else /16.
SMALL = 148


def ip(ns: str | None, *argv: str, stdin: str | None = None) -> str:
    where = ["-n", ns] if ns else []
    return subprocess.run(["ip", *where, *argv], input=stdin, capture_output=True,
                          text=True, check=True).stdout


def prefix_length(n: int) -> int:
    return 24 if n <= SMALL else 16


def node_address(i: int, n: int) -> str:
    """Node i (1..n); node-0 is 192.168.10.101."""
    if n <= SMALL:
        return f"192.168.10.{101 + i}"
    return f"192.168.{11 + (i - 1) // 250}.{1 + (i - 1) % 250}"


def pod_cidr(i: int) -> str:
    return f"10.{200 + i // 256}.{i % 256}.0/24"


def machines(n: int) -> str:
    lines = ["192.168.10.100 server.kubernetes.local server",
             f"192.168.10.101 node-0.kubernetes.local node-0 {pod_cidr(0)}"]
    lines += [f"{node_address(i, n)} node-{i}.kubernetes.local node-{i} {pod_cidr(i)}"
              for i in range(1, n + 1)]
    return "\n".join(lines) + "\n"


def summary(values: list[float]) -> str:
    return (f"{statistics.median(values) * 1000:8.1f} ms  "
            f"(min {min(values) * 1000:.1f}, max {max(values) * 1000:.1f})")


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def busy_fraction(seconds: float = 2.0) -> float:
    """Fraction of all cores busy (with anything) over ``seconds`` while we sleep."""
    def jiffies() -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        idle = values[3] + values[4]  # idle + iowait
        return sum(values) - idle, sum(values)

    b0, t0 = jiffies()
    time.sleep(seconds)
    b1, t1 = jiffies()
    return (b1 - b0) / max(1, t1 - t0)


def arp_table_fulls() -> int:
    """The kernel's count of neighbour (ARP) table overflows, summed over CPUs: shared by
    every namespace and capped by a root-namespace setting (gc_thresh3), so other labs on
    the machine can fill it and make pings, hence ``doctor --probe``, fail."""
    with open("/proc/net/stat/arp_cache") as f:
        header, *rows = f.read().split("\n")
    column = header.split().index("table_fulls")
    return sum(int(row.split()[column], 16) for row in rows if row.strip())


def findings(output: str) -> str:
    """What a doctor run reported, for a run that did not exit 0: its summary line and
    the count of each finding."""
    counts = Counter(re.findall(r"✗ ([a-z-]+):", output))
    summary = next((line for line in output.splitlines()
                    if re.match(r"\d+ hosts: ", line)), "")
    return f"{summary}; " + ", ".join(f"{k} x{v}" for k, v in counts.most_common())


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def rotate(names: list[str], round_: int) -> list[str]:
    k = round_ % len(names)
    return names[k:] + names[:k]


def env_for(src: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(src)}


def describe(src: Path) -> str:
    """The commit a source tree is checked out at, and whether its src/ has changes."""
    def git(*argv: str) -> str:
        return subprocess.run(["git", "-C", str(src), *argv], capture_output=True,
                              text=True, check=False).stdout.strip()
    commit = git("rev-parse", "--short", "HEAD") or "?"
    dirty = " + uncommitted changes in src/" if git("status", "--short", "--", ".") else ""
    return f"{src} at {commit}{dirty}"


# ------------------------------------------------------------------------ local mode

def read(route_plan: RoutePlan, judge: bool, confirm: bool) -> None:
    (outcome,) = asyncio.run(run_hosts(LocalTransport(), route_plan, OWN, write=False,
                                       only=["node-0"], judge=judge, confirm=confirm,
                                       timeout=600))
    assert outcome.error is None, outcome.error
    assert outcome.before is not None and not outcome.before.changes, outcome.before
    assert not outcome.paths, outcome.paths
    assert not outcome.path_notes, outcome.path_notes


def measure_local(n: int, runs: int, cli_runs: int, baseline: Path | None,
                  src: Path) -> int:
    text = machines(n)
    route_plan = plan(load(text, "bench-machines.txt"))
    host = next(h for h in route_plan.inventory if h.name == "node-0")
    desired = route_plan.routes_for(host)
    assert len(desired) == n, len(desired)
    (outcome,) = asyncio.run(run_hosts(LocalTransport(), route_plan, OWN, write=True,
                                       only=["node-0"], timeout=600))
    assert outcome.error is None and outcome.converged, outcome.error
    probe = samples(destinations(host, desired))
    gets = "".join(f"route get {a}\n" for a in probe)

    modes: dict[str, Callable[[], object]] = {
        "judge=False (read only)": lambda: read(route_plan, False, False),
        "judge=True confirm=False": lambda: read(route_plan, True, False),
        "judge=True confirm=True": lambda: read(route_plan, True, True),
        "host: sh -c TABLES_SCRIPT": lambda: subprocess.run(
            ["sh", "-c", TABLES_SCRIPT], capture_output=True, check=True),
        f"host: ip -batch {len(probe)} route get": lambda: subprocess.run(
            ["ip", "-j", "-force", "-batch", "-"], input=gets.encode(), capture_output=True,
            check=True),
    }
    results: dict[str, list[float]] = {k: [] for k in modes}
    names = list(modes)
    for round_ in range(runs + 1):  # round 0: warm-up, not counted
        for name in rotate(names, round_):
            took = timed(modes[name])
            if round_:
                results[name].append(took)
    print(f"{n} planned routes on node-0 ({n + 2} hosts, {len(probe)} route get samples), "
          f"in process, median of {runs} alternating runs (load average after: {loadavg()})")
    for name, values in results.items():
        print(f"  {name:34} {summary(values)}")
    med = {k: statistics.median(v) for k, v in results.items()}
    base = med["judge=False (read only)"]
    for name in ("judge=True confirm=False", "judge=True confirm=True"):
        print(f"  {name}: +{(med[name] - base) * 1000:.1f} ms over the read alone "
              f"({med[name] / base:.2f}x)")

    if cli_runs:
        with tempfile.TemporaryDirectory(prefix="path-verdict-") as tmp:
            inventory = Path(tmp) / "machines.txt"
            inventory.write_text(text)
            measure_cli(inventory, cli_runs, baseline, n, src)
    return 0


def measure_cli(inventory: Path, runs: int, baseline: Path | None, n: int,
                src: Path) -> None:
    trees = {"this tree": src}
    if baseline is not None:
        trees["baseline"] = baseline
    argv = [sys.executable, "-m", "podroutes", "status", "--local", "--host", "node-0",
            "-i", str(inventory)]
    results: dict[str, list[float]] = {k: [] for k in trees}

    def run(src: Path) -> None:
        done = subprocess.run(argv, env=env_for(src), capture_output=True, text=True,
                              cwd="/", check=False)
        if done.returncode != 0:
            raise RuntimeError(f"status exited {done.returncode} ({src}):\n{done.stdout}\n"
                               f"{done.stderr}")

    names = list(trees)
    for round_ in range(runs + 1):
        for name in rotate(names, round_):
            took = timed(functools.partial(run, trees[name]))
            if round_:
                results[name].append(took)
    print(f"  CLI `python -m podroutes status --local --host node-0 -i FILE`, {n} routes, "
          f"median of {runs} alternating runs (load average after: {loadavg()})")
    for name, values in results.items():
        print(f"    {name:10} {summary(values)}  {describe(trees[name])}")
    if "baseline" in results:
        a = statistics.median(results["this tree"])
        b = statistics.median(results["baseline"])
        print(f"    this tree - baseline: {(a - b) * 1000:+.1f} ms ({a / b:.2f}x)")


def local(args: argparse.Namespace) -> int:
    ns = f"prt{secrets.token_hex(3)}-verdict"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        ip(ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
        ip(ns, "link", "set", "eth0", "up")
        ip(ns, "link", "set", "eth0p", "up")
        ip(ns, "link", "add", "cni0", "type", "bridge")
        ip(ns, "addr", "add", "10.200.0.1/24", "dev", "cni0")
        ip(ns, "link", "add", "vpod0", "type", "veth", "peer", "name", "vpod0p")
        ip(ns, "link", "set", "vpod0", "master", "cni0")
        for link in ("vpod0", "vpod0p", "cni0"):
            ip(ns, "link", "set", link, "up")
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
                       check=True)
        rc = 0
        for n in args.routes:
            ip(ns, "route", "flush", "proto", str(OWN))
            ip(ns, "addr", "flush", "dev", "eth0")
            ip(ns, "addr", "add", f"192.168.10.101/{prefix_length(n)}", "dev", "eth0")
            cli_runs = args.cli_runs if n in args.cli_routes else 0
            child = [sys.executable, __file__, "--inside", ns, "--routes", str(n),
                     "--runs", str(args.runs), "--cli-runs", str(cli_runs),
                     "--src", str(args.src)]
            if args.baseline:
                child += ["--baseline", str(args.baseline)]
            # the child imports podroutes from --src (in process and its CLI runs)
            rc |= subprocess.run(["ip", "netns", "exec", ns, *child], env=env_for(args.src),
                                 check=False).returncode
        return rc
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


# -------------------------------------------------------------------------- lab mode

def lab(args: argparse.Namespace) -> int:
    from podroutes.lab import netns as labmod

    spec = labmod.LabSpec(name="prt" + secrets.token_hex(3), nodes=args.lab_nodes,
                          pods_per_node=1)
    jumpbox = ["ip", "netns", "exec", spec.namespace("jumpbox")]
    inventory = str(spec.directory / "machines.txt")
    ssh = ["--ssh-config", str(spec.directory / "ssh_config"), "--ssh-target", "hostname"]
    podroutes = [sys.executable, "-m", "podroutes"]
    try:
        print(f"building lab {spec.name} ({spec.nodes} nodes)", file=sys.stderr)
        labmod.up(spec)
        done = subprocess.run([*jumpbox, *podroutes, "apply", "-i", inventory, *ssh],
                              env=env_for(args.src), capture_output=True, text=True,
                              check=False)
        if done.returncode != 0:
            raise RuntimeError(f"apply exited {done.returncode}:\n{done.stdout}{done.stderr}")
        methods: dict[str, tuple[Path, list[str]]] = {
            "doctor, this tree": (args.src, ["doctor"]),
            "doctor --probe, this tree": (args.src, ["doctor", "--probe"]),
        }
        if args.baseline:
            methods["doctor, baseline"] = (args.baseline, ["doctor"])
        results: dict[str, list[float]] = {k: [] for k in methods}
        clean: dict[str, list[float]] = {k: [] for k in methods}
        names = list(methods)
        print(f"doctor from the jumpbox of a {spec.nodes}-node lab ({spec.nodes + 1} hosts, "
              f"routes applied); rounds 0-{args.lab_warmup - 1} warm up, not counted")
        for round_ in range(args.lab_warmup + args.lab_runs):
            for name in rotate(names, round_):
                src, command = methods[name]
                argv = [*jumpbox, *podroutes, *command, "-i", inventory, *ssh]
                fulls = arp_table_fulls()
                start = time.perf_counter()
                done = subprocess.run(argv, env=env_for(src), capture_output=True,
                                      text=True, cwd="/", check=False)
                took = time.perf_counter() - start
                fulls = arp_table_fulls() - fulls
                if done.returncode not in (0, 3):
                    raise RuntimeError(f"{name} exited {done.returncode}:\n{done.stdout}"
                                       f"{done.stderr}")
                said = "" if done.returncode == 0 else f": {findings(done.stdout)}"
                print(f"  round {round_} {name:28} {took * 1000:7.0f} ms  exit "
                      f"{done.returncode}, ARP table full +{fulls}{said}")
                if round_ >= args.lab_warmup:
                    results[name].append(took)
                    if done.returncode == 0 and not fulls:
                        clean[name].append(took)
        print(f"median of {args.lab_runs} alternating runs (load average after: {loadavg()})")
        for name, values in results.items():
            ok = clean[name]
            print(f"  {name:28} {summary(values)}; exit 0 without ARP overflow: "
                  + (f"{len(ok)} runs, median {statistics.median(ok) * 1000:.1f} ms"
                     if ok else "none"))
        print(f"  this tree: {describe(args.src)}")
        if args.baseline:
            print(f"  baseline:  {describe(args.baseline)}")
        return 0
    finally:
        print(f"removing lab {spec.name}", file=sys.stderr)
        labmod.down(spec)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # run the finally blocks: namespaces, lab


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--routes", type=int, nargs="+", default=[30, 1000, 5000],
                        help="planned routes on node-0 (one inventory per value)")
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--cli-routes", type=int, nargs="*", default=[30, 5000],
                        help="sizes at which the CLI is timed end to end too")
    parser.add_argument("--cli-runs", type=int, default=9)
    parser.add_argument("--src", type=Path, default=REPO_SRC,
                        help="src/ of the podroutes measured as 'this tree' (default: this "
                             "repository's; a git worktree pins a commit)")
    parser.add_argument("--baseline", type=Path,
                        help="src/ of the commit to compare the CLI with (a git worktree)")
    parser.add_argument("--lab", action="store_true", help="time doctor on a lab instead")
    parser.add_argument("--lab-nodes", type=int, default=30)
    parser.add_argument("--lab-runs", type=int, default=5)
    parser.add_argument("--lab-warmup", type=int, default=1,
                        help="untimed rounds first (they also let the ARP table settle)")
    parser.add_argument("--inside", metavar="NS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for option in ("src", "baseline"):
        tree = getattr(args, option)
        if tree is not None:
            setattr(args, option, tree.resolve())
            if not (tree / "podroutes" / "__init__.py").is_file():
                parser.error(f"--{option} {tree}: no podroutes package there")
    if args.inside:  # the child: already in the namespace, which the parent owns
        (n,) = args.routes
        import podroutes
        where = Path(podroutes.__file__).resolve().parent.parent
        assert where == args.src, f"imported podroutes from {where}, not {args.src}"
        print(f"in process: {describe(args.src)}")
        return measure_local(n, args.runs, args.cli_runs, args.baseline, args.src)
    signal.signal(signal.SIGTERM, _on_sigterm)
    print(f"before: load average {loadavg()}, CPU busy {busy_fraction():.0%} over 2 s "
          "(other work on the machine)")
    try:
        return lab(args) if args.lab else local(args)
    finally:
        print(f"after: load average {loadavg()}, CPU busy {busy_fraction():.0%} over 2 s")


if __name__ == "__main__":
    sys.exit(main())
